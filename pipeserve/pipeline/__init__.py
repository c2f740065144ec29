"""The DAG engine: ops, channels, batching, workers and the executor that runs them."""

from pipeserve.pipeline.analyst import Analyst
from pipeserve.pipeline.channel import ChannelData
from pipeserve.pipeline.errors import ErrCode, ProductErrCode
from pipeserve.pipeline.op import Op, RequestOp, ResponseOp

ChannelDataErrcode = ErrCode
"""The seeds' name for the framework's error codes."""

__all__ = ["Analyst", "ChannelData", "ChannelDataErrcode", "ErrCode", "Op", "ProductErrCode", "RequestOp", "ResponseOp"]
