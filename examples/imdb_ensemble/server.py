"""The seeds' imdb_model_ensemble (seed §3.4), with numpy models: read → {bow, cnn} → combine.

The ops live in ops.py; with ``server_endpoints`` set in config.yml, bow and cnn run in op
services (``pipeserve opservice``) and this process only orchestrates.
"""

from ops import BowOp, CnnOp, CombineOp, ImdbRequestOp
from pipeserve import PipelineServer, ResponseOp

read_op = ImdbRequestOp()
bow_op = BowOp(name="bow", input_ops=[read_op])
cnn_op = CnnOp(name="cnn", input_ops=[read_op])
combine_op = CombineOp(name="combine", input_ops=[bow_op, cnn_op])

# use default ResponseOp implementation
response_op = ResponseOp(input_ops=[combine_op])

if __name__ == "__main__":  # importable without serving: `pipeserve graph config.yml --dag server.py:response_op`
    server = PipelineServer(name="imdb")
    server.set_response_op(response_op)
    server.prepare_server("config.yml")
    server.run_server()
