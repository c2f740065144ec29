"""Errors of the pipeline, with the codes they carry across every boundary.

One tree, one table: each class names its ``err_no`` (the seeds' ChannelDataErrcode),
the HTTP status and the gRPC status it maps to, so the HTTP and gRPC adapters cannot
drift apart (they both call :func:`to_err`).

    PipelineError                      err_no  HTTP  gRPC
    ├── RequestError                        9   400  INVALID_ARGUMENT   bad field in a request
    │   └── PayloadTooLargeError            9   413  RESOURCE_EXHAUSTED body over the limit
    ├── NoServiceError                      7   404  NOT_FOUND          unknown name or method
    ├── ServerBusyError                    10   503  UNAVAILABLE        DAG full for half the request timeout
    ├── ClosedError                         6   503  UNAVAILABLE        server is draining
    ├── TimeoutError_                       1   504  DEADLINE_EXCEEDED  op or request timed out
    ├── OpServiceError                      5   502  UNAVAILABLE        an op service could not be reached
    ├── OpOutputError                       3   500  INTERNAL           an op returned the wrong shape of data
    ├── OpError                             8   500  INTERNAL           user code raised
    └── ProductError               user's code   200  OK                a ProductErrCode from pre/postprocess

Unknown exceptions become ``OpError("internal error in op 'x'")``; the traceback goes to
the log only, never to the caller.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import grpc


class ErrCode(enum.IntEnum):
    """Framework error codes (``err_no``), numbered as the seeds' ChannelDataErrcode."""

    OK = 0
    TIMEOUT = 1
    NOT_IMPLEMENTED = 2
    TYPE_ERROR = 3
    RPC_PACKAGE_ERROR = 4
    CLIENT_ERROR = 5
    CLOSED_ERROR = 6
    NO_SERVICE = 7
    UNKNOW = 8
    INPUT_PARAMS_ERROR = 9
    SERVER_BUSY = 10
    PRODUCT_ERROR = 500


class ProductErrCode(enum.Enum):
    """Base class for business error codes (seed §4.1).

    Subclass it and return a member from ``preprocess`` or ``postprocess``: the downstream
    ops are skipped and the response carries the member's value as ``err_no``.
    """


class PipelineError(Exception):
    """Base of every error the pipeline reports to a caller."""

    err_no: ClassVar[int] = ErrCode.UNKNOW
    http_status: ClassVar[int] = 500
    grpc_status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> int:
        """The ``err_no`` of this error (instance-level so ProductError can override)."""
        return int(self.err_no)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Process workers send errors back through a pipe; subclasses differ in __init__.
        return (_rebuild, (type(self), self.code, self.message))


class RequestError(PipelineError):
    """A request that cannot be understood: the message names the field."""

    err_no = ErrCode.INPUT_PARAMS_ERROR
    http_status = 400
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class PayloadTooLargeError(RequestError):
    """A request body or value over the configured limit."""

    http_status = 413
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED


class NoServiceError(PipelineError):
    """The request names a service or method this server does not serve."""

    err_no = ErrCode.NO_SERVICE
    http_status = 404
    grpc_status = grpc.StatusCode.NOT_FOUND


class ServerBusyError(PipelineError):
    """The DAG is full and stayed full for the whole request timeout."""

    err_no = ErrCode.SERVER_BUSY
    http_status = 503
    grpc_status = grpc.StatusCode.UNAVAILABLE


class ClosedError(PipelineError):
    """The server is shutting down and takes no new requests."""

    err_no = ErrCode.CLOSED_ERROR
    http_status = 503
    grpc_status = grpc.StatusCode.UNAVAILABLE


class TimeoutError_(PipelineError):  # noqa: N801 - the builtin TimeoutError is a different thing
    """An op's process stage, or the whole request, ran past its timeout."""

    err_no = ErrCode.TIMEOUT
    http_status = 504
    grpc_status = grpc.StatusCode.DEADLINE_EXCEEDED


class OpServiceError(PipelineError):
    """A call to a remote op's service failed as a call (unreachable, refused, too large).

    ``retryable`` is True when another attempt, on another replica, may succeed.
    """

    err_no = ErrCode.CLIENT_ERROR
    http_status = 502
    grpc_status = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class OpOutputError(PipelineError):
    """An op returned data of the wrong type or length."""

    err_no = ErrCode.TYPE_ERROR


class OpError(PipelineError):
    """User code in an op raised; the traceback is in the log only."""

    err_no = ErrCode.UNKNOW


class ProductError(PipelineError):
    """A business error returned by an op as a :class:`ProductErrCode`."""

    err_no = ErrCode.PRODUCT_ERROR
    http_status = 200
    grpc_status = grpc.StatusCode.OK

    def __init__(self, prod_errcode: ProductErrCode | int, message: str) -> None:
        super().__init__(message)
        value = prod_errcode.value if isinstance(prod_errcode, ProductErrCode) else prod_errcode
        if not isinstance(value, int):
            raise TypeError(f"ProductErrCode values must be integers, got {value!r}")
        self.prod_code = value

    @property
    def code(self) -> int:
        return self.prod_code


_BY_CODE: dict[int, type[PipelineError]] = {
    int(cls.err_no): cls
    for cls in (TimeoutError_, OpOutputError, OpServiceError, ClosedError, NoServiceError,
                OpError, RequestError, ServerBusyError)
}  # fmt: skip


def from_code(code: int, message: str) -> PipelineError:
    """Rebuild the error a peer reported as ``err_no`` and message (codes outside the
    framework's table are product error codes)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return ProductError(code, message)
    return _rebuild(cls, code, message)


def _rebuild(cls: type[PipelineError], code: int, message: str) -> PipelineError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.message = message
    if isinstance(error, ProductError):
        error.prod_code = code
    if isinstance(error, OpServiceError):
        error.retryable = False
    return error


class ConfigError(ValueError):
    """A configuration problem, found at start-up: ``file: key.path: what is wrong, got X``."""


class DagError(ValueError):
    """A DAG that cannot run: the message names the ops involved."""


def to_err(error: BaseException, op_name: str | None = None) -> PipelineError:
    """Translate any exception into the PipelineError a caller sees.

    Known errors pass through; anything else becomes an internal error naming the op,
    so no traceback or exception text from user code leaks to the caller.
    """
    if isinstance(error, PipelineError):
        return error
    where = f"in op '{op_name}'" if op_name else "in the pipeline"
    return OpError(f"internal error {where}: {type(error).__name__} (see pipeline.log.wf)")
