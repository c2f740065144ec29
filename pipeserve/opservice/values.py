"""Python values ↔ the OpService's ``Value`` messages.

What flows between ops is ordinary Python: dicts of arrays, strings, numbers, nested lists.
Each kind has its own field (``protos/pipeserve/v1/op_service.proto``), so nothing is
pickled and a peer can only send data, never code. Arrays travel as raw tensors with the
same layout checks as the gateway's requests; a numpy scalar travels as a tensor of shape
``[]`` and comes back as a numpy scalar of the same dtype. Tuples come back as lists.

``where`` names the value in errors, e.g. ``input_dicts['bow']['words']``; ``err`` is the
error class the caller wants for bad data (RequestError in a service reading a batch,
OpOutputError for an op's output that cannot be sent).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np

from pipeserve import codec
from pipeserve.payload.refs import PayloadRef
from pipeserve.pipeline import errors
from pipeserve.proto.pipeserve.v1 import op_service_pb2 as pb

_Err = Callable[[str], Exception]
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_MAX_DEPTH: Final = 32
_SENDABLE_KINDS: Final = (
    "numpy arrays and scalars, str, bytes, int, float, bool, None, lists, tuples and dicts with str keys"
)


@dataclasses.dataclass
class Spill:
    """Collects the values above ``threshold`` bytes while encoding, instead of writing
    them into the message: each goes to the payload store, and its place (``slot``) is
    filled with the reference afterwards."""

    threshold: int
    found: list[tuple[pb.Value, Any, str]] = dataclasses.field(default_factory=list)
    """(slot in the message, the value, its path)."""


@dataclasses.dataclass
class Refs:
    """Lets decoding keep payload references as :class:`PayloadRef` leaves."""

    count: int = 0


def encode(value: object, where: str, err: _Err = errors.OpOutputError) -> pb.Value:
    """Return ``value`` as a Value message.

    Raises:
        err: A kind of value that cannot travel (an object, a set, an int beyond int64,
            a dict key that is not a string, an array of an unsupported dtype).
    """
    out = pb.Value()
    _fill(out, value, where, err, 0)
    return out


def fill(
    out: pb.Value, value: object, where: str, err: _Err = errors.OpOutputError, spill: Spill | None = None
) -> None:
    """Write ``value`` into an existing Value message (a map entry or list item)."""
    _fill(out, value, where, err, 0, spill)


def fill_map(
    out: pb.ValueMap,
    values: Mapping[str, Any],
    where: str,
    err: _Err = errors.OpOutputError,
    spill: Spill | None = None,
) -> None:
    """Write a dict into a ValueMap, keeping its order; big values go to ``spill``."""
    _fill_map(out, values, where, err, 0, spill)


def decode(value: pb.Value, where: str, err: _Err = errors.RequestError, refs: Refs | None = None) -> Any:
    """Return the Python value a Value message carries.

    Raises:
        err: A tensor whose bytes do not match its dtype x shape, an empty value, or a
            payload reference (large values are resolved before they reach here).
    """
    return _read(value, where, err, 0, refs)


def decode_map(
    values: pb.ValueMap, where: str, err: _Err = errors.RequestError, refs: Refs | None = None
) -> dict[str, Any]:
    """Read a ValueMap into a dict, in its order; with ``refs``, payload references stay
    as PayloadRef leaves (and are counted) instead of being refused."""
    return _read_map(values, where, err, 0, refs)


def _fill(out: pb.Value, value: object, where: str, err: _Err, depth: int, spill: Spill | None = None) -> None:
    kind = type(value)
    if spill is not None and _is_big(value, spill.threshold):
        spill.found.append((out, value, where))
    elif kind is np.ndarray:
        codec.fill_tensor(out.tensor, value, where, err)  # type: ignore[arg-type]
    elif kind is str:
        out.text = value  # type: ignore[assignment]
    elif kind is float:
        out.real = value  # type: ignore[assignment]
    elif kind is bool:
        out.flag = value  # type: ignore[assignment]
    elif kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            raise err(f"{where}: int {value} does not fit in 64 bits; send it as a str or an array")
        out.integer = value  # type: ignore[assignment]
    elif value is None:
        out.none = True
    elif kind is PayloadRef:
        fill_ref(out.ref, value)  # type: ignore[arg-type]
    elif isinstance(value, (str, bytes, bytearray, memoryview)):  # np.str_ and np.bytes_ too
        if isinstance(value, str):
            out.text = str(value)
        else:
            out.blob = bytes(value)
    elif isinstance(value, np.ma.MaskedArray):
        raise err(f"{where}: a masked array would lose its mask; send its data and mask as two arrays")
    elif isinstance(value, (np.ndarray, np.generic)):  # subclasses (memmap) and numpy scalars
        codec.fill_tensor(out.tensor, np.asarray(value), where, err)
    elif isinstance(value, Mapping):
        _fill_map(out.map, value, where, err, depth, spill)
    elif isinstance(value, (list, tuple)):
        _nest(depth, where, err)
        out.list.SetInParent()  # an empty list still travels as a list
        add = out.list.items.add
        for i, item in enumerate(value):
            _fill(add(), item, f"{where}[{i}]", err, depth + 1, spill)
    elif isinstance(value, int):
        _fill(out, int(value), where, err, depth)
    elif isinstance(value, float):
        out.real = float(value)
    else:
        raise err(f"{where}: a value of type {kind.__name__} cannot be sent between ops; use {_SENDABLE_KINDS}")


def _is_big(value: object, threshold: int) -> bool:
    if isinstance(value, np.ndarray):
        return bool(value.nbytes > threshold)
    if isinstance(value, (bytes, bytearray, str)):
        return len(value) > threshold
    return False


def _fill_map(
    out: pb.ValueMap, value: Mapping[Any, Any], where: str, err: _Err, depth: int, spill: Spill | None = None
) -> None:
    _nest(depth, where, err)
    out.SetInParent()  # an empty dict still travels as a dict
    keys, add = out.keys, out.values.add
    for key, item in value.items():
        if not isinstance(key, str):
            raise err(f"{where}: dict keys must be strings, got {type(key).__name__} {key!r}")
        keys.append(key)
        _fill(add(), item, f"{where}[{key!r}]", err, depth + 1, spill)


def fill_ref(out: pb.PayloadRef, ref: PayloadRef) -> None:
    """Write a reference into its message."""
    out.key = ref.key
    out.nbytes = ref.nbytes
    if ref.dtype:
        out.dtype = ref.dtype
        out.shape.extend(ref.shape)


def _nest(depth: int, where: str, err: _Err) -> None:
    if depth >= _MAX_DEPTH:
        raise err(f"{where}: values nest deeper than {_MAX_DEPTH} levels")


def _read(value: pb.Value, where: str, err: _Err, depth: int, refs: Refs | None) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "tensor":
        array = codec.read_tensor(value.tensor, where, err)
        return array[()] if array.ndim == 0 else array
    if kind == "text":
        return value.text
    if kind == "integer":
        return value.integer
    if kind == "real":
        return value.real
    if kind == "flag":
        return value.flag
    if kind == "none":
        return None
    if kind == "blob":
        return value.blob
    if kind == "map":
        return _read_map(value.map, where, err, depth, refs)
    if kind == "list":
        _nest(depth, where, err)
        return [_read(item, f"{where}[{i}]", err, depth + 1, refs) for i, item in enumerate(value.list.items)]
    if kind == "ref" and refs is not None:
        refs.count += 1
        ref = value.ref
        return PayloadRef(ref.key, ref.nbytes, ref.dtype, tuple(ref.shape))
    if kind == "ref":
        raise err(
            f"{where}: payload reference {value.ref.key!r} cannot be resolved: no payload store "
            "is configured for this service"
        )
    raise err(f"{where}: empty or unknown value kind (this peer understands {', '.join(_KINDS)})")


def _read_map(value: pb.ValueMap, where: str, err: _Err, depth: int, refs: Refs | None) -> dict[str, Any]:
    _nest(depth, where, err)
    keys, items = value.keys, value.values
    if len(keys) != len(items):
        raise err(f"{where}: {len(keys)} keys for {len(items)} values")
    out = {key: _read(item, f"{where}[{key!r}]", err, depth + 1, refs) for key, item in zip(keys, items)}
    if len(out) != len(keys):
        duplicate = next(key for i, key in enumerate(keys) if key in keys[:i])
        raise err(f"{where}: key {duplicate!r} appears more than once")
    return out


_KINDS: Final = tuple(field.name for field in pb.Value.DESCRIPTOR.oneofs_by_name["kind"].fields)
