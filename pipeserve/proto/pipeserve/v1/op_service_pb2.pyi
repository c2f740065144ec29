from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as _pipeline_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Value(_message.Message):
    __slots__ = ("tensor", "text", "blob", "integer", "real", "flag", "none", "list", "map", "ref")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    REAL_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    tensor: _pipeline_service_pb2.Tensor
    text: str
    blob: bytes
    integer: int
    real: float
    flag: bool
    none: bool
    list: ValueList
    map: ValueMap
    ref: PayloadRef
    def __init__(self, tensor: _Optional[_Union[_pipeline_service_pb2.Tensor, _Mapping]] = ..., text: _Optional[str] = ..., blob: _Optional[bytes] = ..., integer: _Optional[int] = ..., real: _Optional[float] = ..., flag: _Optional[bool] = ..., none: _Optional[bool] = ..., list: _Optional[_Union[ValueList, _Mapping]] = ..., map: _Optional[_Union[ValueMap, _Mapping]] = ..., ref: _Optional[_Union[PayloadRef, _Mapping]] = ...) -> None: ...

class ValueList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, items: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class ValueMap(_message.Message):
    __slots__ = ("keys", "values")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class PayloadRef(_message.Message):
    __slots__ = ("key", "nbytes", "dtype", "shape")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    nbytes: int
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, key: _Optional[str] = ..., nbytes: _Optional[int] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("input_dicts", "data_id", "log_id", "batch", "payload_prefix", "payload_set")
    INPUT_DICTS_FIELD_NUMBER: _ClassVar[int]
    DATA_ID_FIELD_NUMBER: _ClassVar[int]
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_PREFIX_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SET_FIELD_NUMBER: _ClassVar[int]
    input_dicts: ValueMap
    data_id: int
    log_id: int
    batch: bool
    payload_prefix: str
    payload_set: str
    def __init__(self, input_dicts: _Optional[_Union[ValueMap, _Mapping]] = ..., data_id: _Optional[int] = ..., log_id: _Optional[int] = ..., batch: _Optional[bool] = ..., payload_prefix: _Optional[str] = ..., payload_set: _Optional[str] = ...) -> None: ...

class OpBatch(_message.Message):
    __slots__ = ("op", "samples", "timed")
    OP_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TIMED_FIELD_NUMBER: _ClassVar[int]
    op: str
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    timed: bool
    def __init__(self, op: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., timed: _Optional[bool] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("output", "err_no", "err_msg")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERR_NO_FIELD_NUMBER: _ClassVar[int]
    ERR_MSG_FIELD_NUMBER: _ClassVar[int]
    output: Value
    err_no: int
    err_msg: str
    def __init__(self, output: _Optional[_Union[Value, _Mapping]] = ..., err_no: _Optional[int] = ..., err_msg: _Optional[str] = ...) -> None: ...

class ResultBatch(_message.Message):
    __slots__ = ("results", "stages")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Result]
    stages: _containers.RepeatedCompositeFieldContainer[_pipeline_service_pb2.StageSpan]
    def __init__(self, results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ..., stages: _Optional[_Iterable[_Union[_pipeline_service_pb2.StageSpan, _Mapping]]] = ...) -> None: ...
