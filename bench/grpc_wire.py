"""The W1 and W2 requests and answers as the pipeline's gRPC messages.

Shared by the gRPC ceiling, the gRPC load generator and the runner's answer check, so that all
three speak exactly what ``protos/pipeserve/v1/pipeline_service.proto`` defines.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench import workloads
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb


def to_tensor(value: np.ndarray[Any, Any] | np.generic) -> pb.Tensor:
    """One array as a ``pb.Tensor``: dtype name, shape and C-order bytes."""
    array = np.asarray(value)
    return pb.Tensor(dtype=array.dtype.name, shape=array.shape, data=array.tobytes(order="C"))


def from_tensor(tensor: pb.Tensor) -> np.ndarray[Any, Any]:
    """The inverse of ``to_tensor``."""
    return np.frombuffer(tensor.data, dtype=tensor.dtype).reshape(tuple(tensor.shape))


def request(workload: str) -> pb.Request:
    """The workload's request: W1 sends ``words`` as key/value, W2 sends tensor ``x``."""
    if workload == "w1":
        return pb.Request(key=["words"], value=[workloads.W1_WORDS])
    if workload == "w2":
        return pb.Request(tensors={"x": to_tensor(workloads.W2_X)})
    raise ValueError(f"unknown workload {workload!r}: expected 'w1' or 'w2'")


def answer(workload: str, response: pb.Response) -> float:
    """The workload's answer read from a response; raises ``ValueError`` on an error response."""
    if response.err_no != 0:
        raise ValueError(f"err_no {response.err_no}: {response.err_msg}")
    name = workloads.ANSWER_TENSOR[workload]
    if name not in response.tensors:
        raise ValueError(f"response has no tensor {name!r}: {sorted(response.tensors)}")
    return float(from_tensor(response.tensors[name]).reshape(()))
