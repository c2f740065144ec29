"""The ops of the imdb ensemble, in their own module so that an op service can import one
(``class: ops:BowOp`` in config.yml) without starting the whole pipeline."""

import numpy as np

from models import Bow, Cnn, word_ids
from pipeserve import Op, RequestOp


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
