"""Conversions between the wire forms of a pipeline call and Python values.

The HTTP and gRPC front doors and the client all read and write the same ``Request`` and
``Response`` (``protos/pipeserve/v1/pipeline_service.proto``). With every conversion in one
place they cannot disagree on what a tensor is, and every untrusted byte passes the same
checks (STYLE R9): a body over the limit is refused before parsing; a tensor's dtype x shape
must equal its byte count, counted with Python ints before any array exists, so a huge
declared shape fails at once; nothing is unpickled or evaluated.

Server: ``request_from_json`` → ``values_from_request``; ``response_from_values`` →
``response_to_json``. When the default RequestOp and ResponseOp would only convert, the HTTP
front door skips the protobuf messages: ``fields_from_json`` → ``values_from_fields`` and
``response_json_from_values``, with the same checks, messages and JSON. Client, the mirror:
``request_from_values`` → ``request_to_json``; ``response_from_json`` →
``values_from_response``. Bad requests raise ``RequestError`` naming the field, bad op outputs
``OpOutputError`` naming the key, the client ``TypeError`` or ``ValueError``. This is the hot
path, so checks are plain branches over module constants. The module is over 500 lines because
of that second path: it must share every check with the first, which a split would hide.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from pipeserve.pipeline import errors
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb

Array = npt.NDArray[Any]
_Err = Callable[[str], Exception]
_TensorMap = Any  # protobuf's MessageMap[str, pb.Tensor]; protobuf ships no stubs for it

ALLOWED_DTYPES: Final[tuple[str, ...]] = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)  # fmt: skip
# Wire byte order is little-endian whatever the host's.
_WIRE_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    name: np.dtype(name).newbyteorder("<") for name in ALLOWED_DTYPES
}
# Lookups by dtype object: ``dtype.name`` costs microseconds, a dict hit a hundred ns.
_SENDABLE: Final[dict[np.dtype[Any], str]] = {
    dt: name for name, wire in _WIRE_DTYPES.items() for dt in (wire, wire.newbyteorder(">"))
}
_ALLOWED_TEXT: Final = ", ".join(ALLOWED_DTYPES)
_MAX_NDIM: Final = 64  # numpy's own limit; it also keeps the byte count product small
_INT64_MAX: Final = 2**63 - 1
_REQUEST_FIELDS: Final = "key, value, name, method, logid, clientip, tensors, batch, profile"
_TENSOR_FIELDS: Final = ("dtype", "shape", "data")
_JSON_TYPES: Final[dict[type, str]] = {
    str: "string", int: "int", float: "float", bool: "bool", list: "array", dict: "object",
    type(None): "null",
}  # fmt: skip


def _json_type(v: object) -> str:
    return _JSON_TYPES.get(type(v), type(v).__name__)


# --- tensors ---------------------------------------------------------------------------


def _check_layout(
    dtype_name: str, shape: Sequence[int], nbytes: int, where: str, err: _Err
) -> np.dtype[Any]:
    """Return the wire dtype once dtype x shape is known to equal ``nbytes``; allocates nothing."""
    dtype = _WIRE_DTYPES.get(dtype_name)
    if dtype is None:
        raise err(f"{where}.dtype: unsupported dtype {dtype_name!r}; use one of {_ALLOWED_TEXT}")
    if len(shape) > _MAX_NDIM:
        raise err(f"{where}.shape: {len(shape)} dimensions is over the limit of {_MAX_NDIM}")
    if shape and min(shape) < 0:
        i = next(i for i, d in enumerate(shape) if d < 0)
        raise err(f"{where}.shape[{i}]: must be an integer >= 0, got {shape[i]}")
    # Python ints: no overflow, however large the declared dims (at most 64 of them).
    expected = dtype.itemsize * math.prod(shape)
    if expected != nbytes:
        shown = f"{dtype_name} x {list(shape)} ({expected} bytes)"
        raise err(f"{where}: {nbytes} bytes do not match {shown}")
    return dtype


def read_tensor(t: pb.Tensor, where: str, err: _Err) -> Array:
    """Check a tensor's layout and view its bytes as an array; problems raise ``err``."""
    data = t.data
    shape = t.shape[:]
    dtype = _check_layout(t.dtype, shape, len(data), where, err)
    return np.ndarray(shape, dtype, data)  # a read-only view of the bytes, no copy


def _wire_array(a: Array | np.generic, where: str, err: _Err) -> tuple[str, Array]:
    """The dtype name and the little-endian array to send; a bad dtype raises ``err``."""
    arr = np.asarray(a)
    name = _SENDABLE.get(arr.dtype)
    if name is None:
        raise err(f"{where}: unsupported dtype {arr.dtype.name!r}; use one of {_ALLOWED_TEXT}")
    if arr.dtype != (dtype := _WIRE_DTYPES[name]):  # a big-endian array (or host)
        arr = arr.astype(dtype)
    return name, arr


def fill_tensor(t: pb.Tensor, a: Array | np.generic, where: str, err: _Err) -> None:
    """Write an array into ``t`` as C-order little-endian bytes; a bad dtype raises ``err``."""
    name, arr = _wire_array(a, where, err)
    t.dtype = name
    t.shape.extend(arr.shape)
    t.data = arr.tobytes()  # C order, whatever the array's own layout


def array_from_tensor(t: pb.Tensor, where: str) -> Array:
    """Check a received tensor, then view its bytes as a read-only little-endian array.

    ``where`` is the field path for error messages, e.g. ``"tensors.image"``.

    Raises:
        errors.RequestError: The dtype is not allowed, a dim is negative, or dtype x shape
            does not match the byte count.
    """
    return read_tensor(t, where, errors.RequestError)


def tensor_from_array(a: Array | np.generic, where: str) -> pb.Tensor:
    """Encode an array or numpy scalar as a tensor of C-order little-endian bytes.

    ``where`` is the key the value goes out under, for error messages.

    Raises:
        errors.OpOutputError: The dtype is not one of ``ALLOWED_DTYPES``.
    """
    t = pb.Tensor()
    fill_tensor(t, a, where, errors.OpOutputError)
    return t


def _to_array(v: object, where: str, err: _Err, verb: str) -> Array:
    kind = type(v).__name__
    if isinstance(v, np.ndarray):
        arr = v
    elif isinstance(v, (np.generic, int, float, list, tuple)):  # bool is an int
        try:
            arr = np.asarray(v)
        except (ValueError, OverflowError, TypeError) as exc:  # ragged lists
            raise err(f"{where}: cannot send this {kind} as an array ({exc})") from exc
    else:
        raise err(f"{where}: cannot send a value of type {kind}; {verb} a str or a numpy array")
    if arr.dtype in _SENDABLE:
        return arr
    if arr is v or isinstance(v, np.generic):
        raise err(f"{where}: unsupported dtype {arr.dtype.name!r}; use one of {_ALLOWED_TEXT}")
    raise err(  # e.g. a list of str, or an int over 64 bits (dtype object)
        f"{where}: numpy reads this {kind} as dtype {arr.dtype.name!r}, which cannot be sent;"
        f" {verb} a str, or numbers of one shape that fit in 64 bits"
    )


def to_value(v: object, where: str) -> str | Array:
    """Normalise a value an op returned: a str stays; a numpy array or scalar, int, float,
    bool, or list/tuple of numbers becomes an array. ``where`` is the output key.

    Raises:
        errors.OpOutputError: Any other type (dict, bytes, None, ...), or a dtype outside
            ``ALLOWED_DTYPES``.
    """
    if isinstance(v, str):
        return v
    return _to_array(v, where, errors.OpOutputError, "return")


# --- server side -------------------------------------------------------------------------

_Checked = tuple[str, list[int], bytes]
"""A tensor read from JSON whose layout passed the checks: dtype name, shape, raw bytes."""


def _pairs(
    keys: Sequence[str], values: Sequence[str], prefix: str, err: _Err
) -> dict[str, str | Array]:
    if len(keys) != len(values):
        raise err(f"{prefix}key/value: {len(keys)} keys but {len(values)} values")
    out: dict[str, str | Array] = dict(zip(keys, values))
    if len(out) != len(keys):
        seen: set[str] = set()
        for k in keys:
            if k in seen:
                raise err(f"{prefix}key: {k!r} appears twice; send each key once")
            seen.add(k)
    return out


def _also_in_key(where: str, k: str) -> str:
    return f"{where}: {k!r} is also in key; send each key once, in key or in tensors"


def _values(
    keys: Sequence[str], values: Sequence[str], tensors: _TensorMap, prefix: str, err: _Err
) -> dict[str, str | Array]:
    out = _pairs(keys, values, prefix, err)
    for k in tensors:  # faster than .items() on protobuf maps
        where = f"{prefix}tensors.{k}"
        if k in out:
            raise err(_also_in_key(where, k))
        out[k] = read_tensor(tensors[k], where, err)
    return out


def values_from_request(req: pb.Request) -> dict[str, str | Array]:
    """The request's values by key: strings from key/value, arrays from tensors.

    Raises:
        errors.RequestError: key and value differ in length, a key repeats, or a tensor is bad.
    """
    return _values(req.key[:], req.value[:], req.tensors, "", errors.RequestError)


class RequestFields:
    """A checked HTTP body as plain Python values: a ``pb.Request`` without the message.

    A field the body leaves out (or sends as ``null``) is None, as proto2 leaves it unset.
    """

    __slots__ = ("key", "value", "tensors", "name", "method", "logid", "clientip", "batch", "profile")

    def __init__(self) -> None:
        self.key: list[str] = []
        self.value: list[str] = []
        self.tensors: dict[str, _Checked] = {}
        self.name: str | None = None
        self.method: str | None = None
        self.logid: int | None = None
        self.clientip: str | None = None
        self.batch: bool | None = None
        self.profile: bool | None = None


def values_from_fields(fields: RequestFields) -> dict[str, str | Array]:
    """:func:`values_from_request` for a body read by :func:`fields_from_json`: the same values
    (tensors become read-only views of the decoded bytes) and the same errors."""
    out = _pairs(fields.key, fields.value, "", errors.RequestError)
    for k, (dtype_name, shape, data) in fields.tensors.items():
        if k in out:
            raise errors.RequestError(_also_in_key(f"tensors.{k}", k))
        out[k] = np.ndarray(shape, _WIRE_DTYPES[dtype_name], data)
    return out


def _output(
    values: Mapping[str, object],
) -> tuple[list[str], list[str], list[tuple[str, Array]]]:
    """An op's output as key/value strings and arrays; a key or value that cannot travel raises."""
    keys: list[str] = []
    strs: list[str] = []
    arrays: list[tuple[str, Array]] = []
    for k, v in values.items():
        if type(k) is not str:
            raise errors.OpOutputError(f"{k!r}: output keys must be str, got {type(k).__name__}")
        if isinstance(v, str):
            keys.append(k)
            strs.append(v)
        else:
            arrays.append((k, _to_array(v, k, errors.OpOutputError, "return")))
    return keys, strs, arrays


def response_from_values(
    values: Mapping[str, object], err_no: int = 0, err_msg: str = ""
) -> pb.Response:
    """Build a response: str values go to key/value, the rest via :func:`to_value` to tensors.

    Raises:
        errors.OpOutputError: A key is not a str, or a value cannot be sent.
    """
    resp = pb.Response(err_no=err_no, err_msg=err_msg)
    keys, strs, arrays = _output(values)
    tensors = resp.tensors
    for k, arr in arrays:
        fill_tensor(tensors[k], arr, k, errors.OpOutputError)
    resp.key.extend(keys)
    resp.value.extend(strs)
    return resp


def response_json_from_values(values: Mapping[str, object]) -> bytes:
    """``response_to_json(response_from_values(values))`` without the message in between.

    The same checks and the same JSON, except that tensors keep the op's order (a protobuf
    map has its own). What orjson refuses (a str that is not valid UTF-8) takes the
    protobuf path, so that it fails exactly as there.

    Raises:
        errors.OpOutputError: A key is not a str, or a value cannot be sent.
    """
    keys, strs, arrays = _output(values)
    tensors: dict[str, Any] = {}
    for k, arr in arrays:
        name, wire = _wire_array(arr, k, errors.OpOutputError)
        tensors[k] = _tensor_json(name, list(wire.shape), wire.tobytes())
    try:
        return _response_json(0, "", keys, strs, tensors)
    except orjson.JSONEncodeError:
        return response_to_json(response_from_values(values))


def _load(body: bytes, what: str, err: _Err) -> dict[str, Any]:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise err(f"{what}: not valid JSON ({exc})") from exc
    if type(obj) is not dict:
        raise err(f"{what}: must be a JSON object, got {_json_type(obj)}")
    return obj


def _string(v: object, path: str, err: _Err) -> str:
    if type(v) is not str:
        raise err(f"{path}: must be a string, got {_json_type(v)}")
    return v


def _strings(v: object, path: str, err: _Err) -> list[str]:
    if type(v) is not list:
        raise err(f"{path}: must be an array of strings, got {_json_type(v)}")
    for i, s in enumerate(v):
        if type(s) is not str:
            raise err(f"{path}[{i}]: must be a string, got {_json_type(s)}")
    return v


def _int(v: object, path: str, lo: int, hi: int, err: _Err) -> int:
    if type(v) is not int:  # not bool either
        raise err(f"{path}: must be an integer, got {_json_type(v)}")
    if not lo <= v <= hi:
        raise err(f"{path}: must be an integer from {lo} to {hi}, got {v}")
    return v


def _tensors_from_json(v: object, path: str, err: _Err) -> dict[str, _Checked]:
    if type(v) is not dict:
        raise err(f"{path}: must be an object of tensors by key, got {_json_type(v)}")
    out: dict[str, _Checked] = {}
    for key, tv in v.items():
        where = f"{path}.{key}"
        if type(tv) is not dict:
            raise err(f"{where}: must be an object of dtype, shape, data, got {_json_type(tv)}")
        if len(tv) != 3 or "dtype" not in tv or "shape" not in tv or "data" not in tv:
            for field in tv:
                if field not in _TENSOR_FIELDS:
                    raise err(f"{where}: unknown field {field!r}; use only dtype, shape, data")
            missing = next(f for f in _TENSOR_FIELDS if f not in tv)
            raise err(f"{where}: missing field {missing!r}")
        dtype_name = _string(tv["dtype"], f"{where}.dtype", err)
        shape = tv["shape"]
        if type(shape) is not list:
            raise err(f"{where}.shape: must be an array of integers, got {_json_type(shape)}")
        if len(shape) > _MAX_NDIM:
            raise err(f"{where}.shape: {len(shape)} dimensions is over the limit of {_MAX_NDIM}")
        for i, d in enumerate(shape):
            if type(d) is not int or d < 0:
                got = d if type(d) is int else _json_type(d)
                raise err(f"{where}.shape[{i}]: must be an integer >= 0, got {got}")
            if d > _INT64_MAX:
                raise err(f"{where}.shape[{i}]: must be an integer below 2**63, got {d}")
        text = _string(tv["data"], f"{where}.data", err)
        try:
            data = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
            raise err(f"{where}.data: not valid base64 ({exc})") from exc
        _check_layout(dtype_name, shape, len(data), where, err)
        out[key] = (dtype_name, shape, data)
    return out


def _fill_tensors(out: _TensorMap, checked: dict[str, _Checked]) -> None:
    for key, (dtype_name, shape, data) in checked.items():
        t = out[key]
        t.dtype = dtype_name
        t.shape.extend(shape)
        t.data = data


def fields_from_json(body: bytes, max_bytes: int) -> RequestFields:
    """Parse and validate an HTTP body; a JSON ``null`` counts as an absent field.

    Tensors are checked (dtype, shape, byte count) here, so a bad one fails at decode time.

    Args:
        body: The raw body, untrusted.
        max_bytes: The largest body accepted, checked before parsing.

    Raises:
        errors.PayloadTooLargeError: The body is over ``max_bytes``.
        errors.RequestError: Not a JSON object of Request fields; the message names the field.
    """
    if len(body) > max_bytes:
        too_big = f"request body: {len(body)} bytes is over the limit of {max_bytes}"
        raise errors.PayloadTooLargeError(too_big)
    err = errors.RequestError
    obj = _load(body, "request body", err)
    fields = RequestFields()
    for field, v in obj.items():
        if v is None:
            continue
        if field == "key":
            fields.key = _strings(v, "key", err)
        elif field == "value":
            fields.value = _strings(v, "value", err)
        elif field == "tensors":
            fields.tensors = _tensors_from_json(v, "tensors", err)
        elif field == "name":
            fields.name = _string(v, "name", err)
        elif field == "method":
            fields.method = _string(v, "method", err)
        elif field == "logid":
            fields.logid = _int(v, "logid", -_INT64_MAX - 1, _INT64_MAX, err)
        elif field == "clientip":
            fields.clientip = _string(v, "clientip", err)
        elif field in ("batch", "profile"):
            if type(v) is not bool:
                raise err(f"{field}: must be true or false, got {_json_type(v)}")
            setattr(fields, field, v)
        else:
            raise err(f"request body: unknown field {field!r}; use only {_REQUEST_FIELDS}")
    return fields


def request_from_json(body: bytes, max_bytes: int) -> pb.Request:
    """:func:`fields_from_json` as a ``pb.Request``; the same checks and errors."""
    f = fields_from_json(body, max_bytes)
    req = pb.Request(
        key=f.key, value=f.value, name=f.name, method=f.method, logid=f.logid,
        clientip=f.clientip, batch=f.batch, profile=f.profile,
    )  # fmt: skip
    _fill_tensors(req.tensors, f.tensors)
    return req


def _tensor_json(dtype_name: str, shape: list[int], data: bytes) -> dict[str, object]:
    text = binascii.b2a_base64(data, newline=False).decode("ascii")
    return {"dtype": dtype_name, "shape": shape, "data": text}


def _tensors_to_json(tensors: _TensorMap) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for k in tensors:
        t = tensors[k]
        out[k] = _tensor_json(t.dtype, t.shape[:], t.data)
    return out


def _response_json(
    err_no: int, err_msg: str, keys: list[str], strs: list[str], tensors: dict[str, Any]
) -> bytes:
    return orjson.dumps({
        "err_no": err_no, "err_msg": err_msg, "key": keys, "value": strs, "tensors": tensors,
    })  # fmt: skip


def response_to_json(resp: pb.Response) -> bytes:
    """Encode a response as the HTTP body: err_no, err_msg, key, value, tensors (base64
    data), and ``timeline`` when the response carries one."""
    tensors = _tensors_to_json(resp.tensors)
    if not resp.timeline:
        return _response_json(resp.err_no, resp.err_msg, resp.key[:], resp.value[:], tensors)
    return orjson.dumps({
        "err_no": resp.err_no, "err_msg": resp.err_msg, "key": resp.key[:], "value": resp.value[:],
        "tensors": tensors, "timeline": [_span_json(span) for span in resp.timeline],
    })  # fmt: skip


_SPAN_FIELDS: Final = ("op", "stage", "start_ns", "end_ns", "where")


def _span_json(span: pb.StageSpan) -> dict[str, object]:
    out: dict[str, object] = {field: getattr(span, field) for field in _SPAN_FIELDS}
    out["data_ids"] = span.data_ids[:]
    out["log_ids"] = span.log_ids[:]
    return out


def _timeline_from_json(v: object, out: Any) -> None:
    if not isinstance(v, list):
        raise ValueError(f"response.timeline: must be a list, got {_json_type(v)}")
    for i, item in enumerate(v):
        where = f"response.timeline[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: must be an object, got {_json_type(item)}")
        span = out.add()
        for field in ("op", "stage", "where"):
            if item.get(field) is not None:
                setattr(span, field, _string(item[field], f"{where}.{field}", ValueError))
        for field in ("start_ns", "end_ns"):
            if item.get(field) is not None:
                setattr(span, field, _int(item[field], f"{where}.{field}", 0, _INT64_MAX, ValueError))
        for field in ("data_ids", "log_ids"):
            ids = item.get(field) or []
            if not isinstance(ids, list):
                raise ValueError(f"{where}.{field}: must be a list, got {_json_type(ids)}")
            low = 0 if field == "data_ids" else -_INT64_MAX - 1
            getattr(span, field).extend(_int(x, f"{where}.{field}", low, _INT64_MAX, ValueError) for x in ids)


# --- client side -------------------------------------------------------------------------


def request_from_values(
    feed: Mapping[str, object],
    *,
    batch: bool = False,
    name: str = "",
    method: str = "",
    logid: int | None = None,
) -> pb.Request:
    """Build a request from a feed dict: str values to key/value, numbers and arrays to tensors.

    Args:
        feed: Values by key: str, numpy arrays or scalars, int, float, bool, lists of numbers.
        batch: Every tensor carries a leading batch dimension (checked).
        name: The service name; method: the method; both sent when not empty.
        logid: The log id, sent when given.

    Raises:
        TypeError: A value of any other type, or of a dtype outside ``ALLOWED_DTYPES``.
        ValueError: With ``batch=True``, a tensor without a leading dimension, or tensors
            whose leading dimensions differ.
    """
    # None leaves a proto2 field unset, so an empty name is not sent at all.
    req = pb.Request(name=name or None, method=method or None, logid=logid, batch=batch or None)
    keys: list[str] = []
    strs: list[str] = []
    sizes: dict[str, int] = {}
    for k, v in feed.items():
        if isinstance(v, str):
            keys.append(k)
            strs.append(v)
            continue
        where = f"feed[{k!r}]"
        arr = _to_array(v, where, TypeError, "use")
        if batch:
            if arr.ndim == 0:
                raise ValueError(f"{where}: batch=True needs a leading batch dimension, got 0-d")
            sizes[k] = arr.shape[0]
        fill_tensor(req.tensors[k], arr, where, TypeError)
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{k!r}: {n}" for k, n in sizes.items())
        raise ValueError(f"feed: batch=True needs one leading dimension for all, got {listed}")
    req.key.extend(keys)
    req.value.extend(strs)
    return req


def request_to_json(req: pb.Request) -> bytes:
    """Encode a request as an HTTP body that :func:`request_from_json` accepts."""
    out: dict[str, object] = {"key": req.key[:], "value": req.value[:]}
    for field in ("name", "method", "logid", "clientip", "batch", "profile"):
        if req.HasField(field):
            out[field] = getattr(req, field)
    if req.tensors:
        out["tensors"] = _tensors_to_json(req.tensors)
    return orjson.dumps(out)


def response_from_json(body: bytes) -> pb.Response:
    """Parse a gateway's HTTP response body; unknown fields are ignored (newer servers).

    Raises:
        ValueError: The body is not JSON, or a known field has the wrong type.
    """
    obj = _load(body, "response body", ValueError)
    resp = pb.Response()
    if (v := obj.get("err_no")) is not None:
        resp.err_no = _int(v, "response.err_no", -(2**31), 2**31 - 1, ValueError)
    if (v := obj.get("err_msg")) is not None:
        resp.err_msg = _string(v, "response.err_msg", ValueError)
    if (v := obj.get("key")) is not None:
        resp.key.extend(_strings(v, "response.key", ValueError))
    if (v := obj.get("value")) is not None:
        resp.value.extend(_strings(v, "response.value", ValueError))
    if (v := obj.get("tensors")) is not None:
        _fill_tensors(resp.tensors, _tensors_from_json(v, "response.tensors", ValueError))
    if (v := obj.get("timeline")) is not None:
        _timeline_from_json(v, resp.timeline)
    return resp


def values_from_response(resp: pb.Response) -> dict[str, str | Array]:
    """The response's values by key: strings from key/value, arrays from tensors.

    Raises:
        ValueError: key and value differ in length, a key repeats, or a tensor is malformed.
    """
    return _values(resp.key[:], resp.value[:], resp.tensors, "response.", ValueError)
