"""Large values cross process boundaries through the payload store, as references.

Where a value leaves a process for an op service (the gateway sending a batch, an op
service answering one), values above ``payload.threshold_bytes`` are written to the store
once and a ``PayloadRef`` travels instead. Whoever needs the value itself (an op service
before preprocess, an op in the gateway, the response) reads it back with
:func:`resolve`; the gateway passes references between op services without reading them.
Every key is listed in its request's key set, which the gateway deletes when the
request ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Any

import numpy as np

from pipeserve import codec, payload
from pipeserve.opservice import values
from pipeserve.payload import keys
from pipeserve.payload.refs import PayloadRef
from pipeserve.payload.store import PayloadStore
from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import errors
from pipeserve.proto.pipeserve.v1 import op_service_pb2 as pb


def open_shared_store(config: config_mod.ServerConfig) -> PayloadStore | None:
    """The payload store shared by the pipeline's processes, when the config names one.

    The in-memory store cannot be shared between processes: with it, values that cross
    to or from an op service travel inline (within ``max_request_bytes``), and values
    between ops of one process are passed by reference as they always are.
    """
    if config.payload.store != "redis":
        return None
    return payload.open_store(config.payload, config.name or "pipeline")


@dataclasses.dataclass(slots=True)
class RequestPayload:
    """Where one request's large values go: key prefix and key set in one store."""

    store: PayloadStore
    prefix: str
    request_set: str
    threshold: int
    written: dict[int, tuple[Any, asyncio.Future[PayloadRef]]] = dataclasses.field(default_factory=dict)
    """Values already on their way to the store, by identity: a value read by several op
    services (fan-out) is written once."""

    def spill(self) -> values.Spill:
        """A collector for this request's values above the threshold."""
        return values.Spill(self.threshold)


async def write_spilled(
    spill: values.Spill,
    store: PayloadStore,
    prefix: str,
    request_set: str,
    op: str,
    written: dict[int, tuple[Any, asyncio.Future[PayloadRef]]] | None = None,
) -> None:
    """Write every value ``spill`` collected and put its reference in its slot.

    With ``written``, a value already written (or being written) for the same request is
    not written again: its reference is reused.

    Raises:
        PayloadStoreError, PayloadValueTooLargeError: From the store.
    """

    async def write(value: Any, path: str) -> PayloadRef:
        key = f"{prefix}{keys.escape(op)}:{keys.escape(path.removeprefix(f'op {op!r} '))}"
        array = _wire_array(value)
        if array is not None:  # raw bytes, no copy on the way out
            await store.put(key, array.data.cast("B"), request_set)
            return PayloadRef(key, array.nbytes, array.dtype.name, array.shape)
        data = values.encode(value, path).SerializeToString()
        await store.put(key, data, request_set)
        return PayloadRef(key, len(data))

    async def one(slot: pb.Value, value: Any, path: str) -> None:
        if written is None:
            ref = await write(value, path)
        else:
            entry = written.get(id(value))
            future: asyncio.Future[PayloadRef]
            if entry is None:
                future = asyncio.ensure_future(write(value, path))
                written[id(value)] = (value, future)  # the value itself keeps its id unique
            else:
                future = entry[1]
            ref = await asyncio.shield(future)
        values.fill_ref(slot.ref, ref)

    await asyncio.gather(*(one(*found) for found in spill.found))


async def resolve(value: Any, store: PayloadStore | None, op: str) -> Any:
    """A copy of ``value`` with every PayloadRef replaced by the value it references.

    Raises:
        PayloadExpiredError: A referenced value is gone (names the op and the key).
        PayloadStoreError: The store is unreachable or timed out.
        OpOutputError: A reference arrived where no payload store is configured.
    """
    found: dict[str, PayloadRef] = {}
    _collect(value, found)
    if not found:
        return value
    if store is None:
        key = next(iter(found))
        raise errors.OpOutputError(
            f"op '{op}': value {key!r} is a payload reference, but no payload store is configured "
            "here; set payload.store the same in every process of the pipeline"
        )
    datas = await asyncio.gather(*(store.get(key, op=op, value=key) for key in found))
    table = {key: _stored_value(found[key], data) for key, data in zip(found, datas)}
    return _substitute(value, table)


def _wire_array(value: Any) -> np.ndarray[Any, Any] | None:
    """``value`` as a C-order little-endian array when it is an array that can travel raw."""
    if not isinstance(value, np.ndarray) or value.dtype.name not in codec.ALLOWED_DTYPES or not value.ndim:
        return None
    wire = value.dtype.newbyteorder("<")
    return np.ascontiguousarray(value if value.dtype == wire else value.astype(wire))


def _stored_value(ref: PayloadRef, data: bytes) -> Any:
    where = f"payload {ref.key!r}"
    if not ref.dtype:
        return values.decode(pb.Value.FromString(data), where, errors.OpOutputError)
    if ref.dtype not in codec.ALLOWED_DTYPES:
        raise errors.OpOutputError(f"{where}: unsupported dtype {ref.dtype!r}")
    dtype = np.dtype(ref.dtype).newbyteorder("<")
    if dtype.itemsize * math.prod(ref.shape) != len(data):
        raise errors.OpOutputError(f"{where}: {len(data)} bytes do not match {ref.dtype} x {list(ref.shape)}")
    return np.frombuffer(data, dtype).reshape(ref.shape)  # read-only, no copy


def _collect(value: Any, found: dict[str, PayloadRef]) -> None:
    if type(value) is PayloadRef:
        found[value.key] = value
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found)


def _substitute(value: Any, table: dict[str, Any]) -> Any:
    if type(value) is PayloadRef:
        return table[value.key]
    if isinstance(value, dict):
        return {key: _substitute(item, table) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, table) for item in value]
    return value
