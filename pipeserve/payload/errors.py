"""Errors of the payload store, in the pipeline's error tree so every front door maps them.

They live here, not in :mod:`pipeserve.pipeline.errors`, because only code that touches a
store raises them; they subclass its classes so :func:`pipeserve.pipeline.errors.to_err`
passes them through unchanged and both adapters answer with the same codes.

    PipelineError                      err_no  HTTP  gRPC
    ├── PayloadStoreError                   5   503  UNAVAILABLE        down, slow, refusing
    ├── PayloadExpiredError                 1   504  DEADLINE_EXCEEDED  referenced value gone
    └── RequestError                        9   400  INVALID_ARGUMENT
        └── PayloadTooLargeError            9   413  RESOURCE_EXHAUSTED
            └── PayloadValueTooLargeError   9   413  RESOURCE_EXHAUSTED > max_value_bytes

Why TIMEOUT (1) for an expired reference: a value disappears before its reader only when
the request outlived ``payload.ttl_s`` or was already finished (timed out, failed) and
cleaned up. Either way the request's time ran out, nothing in the request was wrong, and
the remedy is a timeout's: retry, or raise ``ttl_s`` above the slowest request. It also
survives an op service boundary unchanged: a peer's ``err_no`` 1 is rebuilt by
:func:`pipeserve.pipeline.errors.from_code` as ``TimeoutError_``, with the same statuses.

Messages name the store (``redis at redis://127.0.0.1:6379/0``), never its password.
"""

from __future__ import annotations

import grpc

from pipeserve.pipeline import errors


class PayloadStoreError(errors.PipelineError):
    """The payload store could not do an operation: unreachable, too slow, or refusing us.

    Transient by nature: the same store object works again once the store is back.
    """

    err_no = errors.ErrCode.CLIENT_ERROR
    http_status = 503
    grpc_status = grpc.StatusCode.UNAVAILABLE


class PayloadExpiredError(errors.PipelineError):
    """A payload reference whose value is no longer in the store (expired or deleted).

    Attributes:
        key: The store key that was missing (None after crossing a process boundary).
        op: Name of the op whose value it was, when the caller said.
        value: Name of the value inside the op's output, when the caller said.
    """

    err_no = errors.ErrCode.TIMEOUT
    http_status = 504
    grpc_status = grpc.StatusCode.DEADLINE_EXCEEDED

    # Class-level defaults: an error rebuilt from (code, message) has no __init__ run.
    key: str | None = None
    op: str | None = None
    value: str | None = None

    def __init__(
        self, message: str, *, key: str, op: str | None = None, value: str | None = None
    ) -> None:
        super().__init__(message)
        self.key, self.op, self.value = key, op, value


class PayloadValueTooLargeError(errors.PayloadTooLargeError):
    """A value above ``payload.max_value_bytes``; it was refused before any write."""
