"""The seeds' imdb_model_ensemble (seed §3.4), with numpy models instead of remote ones:
read → {bow, cnn} → combine."""

import numpy as np

from models import Bow, Cnn, word_ids
from pipeserve import Op, PipelineServer, RequestOp, ResponseOp


class ImdbRequestOp(RequestOp):
    def unpack_request_package(self, request):
        dictdata = {}
        for idx, key in enumerate(request.key):
            if key != "words":
                continue
            dictdata[key] = word_ids(request.value[idx])
        return dictdata


class BowOp(Op):
    def init_op(self):
        self.model = Bow()

    def process(self, feed_list, typical_logid):
        return [{"prediction": self.model(feed["words"])} for feed in feed_list]


class CnnOp(Op):
    def init_op(self):
        self.model = Cnn()

    def process(self, feed_list, typical_logid):
        return [{"prediction": self.model(feed["words"])} for feed in feed_list]


class CombineOp(Op):
    def preprocess(self, input_data):
        combined_prediction = 0
        for op_name, data in input_data.items():
            combined_prediction += data["prediction"]
        data = {"prediction": np.float32(combined_prediction / 2)}
        return data


read_op = ImdbRequestOp()
bow_op = BowOp(name="bow", input_ops=[read_op])
cnn_op = CnnOp(name="cnn", input_ops=[read_op])
combine_op = CombineOp(name="combine", input_ops=[bow_op, cnn_op])

# use default ResponseOp implementation
response_op = ResponseOp(input_ops=[combine_op])

server = PipelineServer(name="imdb")
server.set_response_op(response_op)
server.prepare_server("config.yml")
server.run_server()
