"""pipeserve: serve multi-model inference pipelines over gRPC and HTTP.

The names here are the seeds' (Paddle Serving's Python Pipeline), so a pipeline written
for it reads the same: ``Op``, ``RequestOp``, ``ResponseOp``, ``PipelineServer``,
``PipelineClient``, ``ProductErrCode``.
"""

from pipeserve.client import PipelineClient
from pipeserve.gateway.pipeline_server import PipelineServer
from pipeserve.pipeline import ChannelData, ChannelDataErrcode, ErrCode, Op, ProductErrCode, RequestOp, ResponseOp

__version__ = "0.1.0"

__all__ = [
    "ChannelData",
    "ChannelDataErrcode",
    "ErrCode",
    "Op",
    "PipelineClient",
    "PipelineServer",
    "ProductErrCode",
    "RequestOp",
    "ResponseOp",
]
