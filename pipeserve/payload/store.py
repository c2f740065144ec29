"""What every payload store does, and the checks every store makes the same way.

A payload store keeps values too big to travel through channels and RPCs; a reference
(the key) travels instead. Keys of one request are also listed in the request's key set
so that whoever sends the response can delete all of them, even those written by an op
whose result was lost. Every key and every set has a TTL, which bounds what a crashed
process can leave behind.

The API is asyncio: the gateway and the op services call it from their event loops.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pipeserve.payload import errors, keys

Bytes = bytes | bytearray | memoryview
"""What ``put`` accepts: anything exposing a contiguous buffer (a numpy array's memoryview)."""


@runtime_checkable
class PayloadStore(Protocol):
    """A place for large values, shared by the processes that serve one pipeline."""

    @property
    def name(self) -> str:
        """The store in words for messages, e.g. ``redis at redis://127.0.0.1:6379/0``."""
        ...

    @property
    def keys(self) -> keys.KeySpace:
        """Key names of the service this store was opened for."""
        ...

    async def put(self, key: str, data: Bytes, request_set: str) -> None:
        """Write ``data`` under ``key`` with the TTL and list ``key`` in ``request_set``.

        Both happen together (one round trip for Redis). ``data`` must not change until
        this returns.

        Raises:
            PayloadValueTooLargeError: ``data`` is over ``max_value_bytes``; nothing written.
            PayloadStoreError: The store is unreachable, timed out or refused the write.
        """
        ...

    async def get(self, key: str, *, op: str | None = None, value: str | None = None) -> bytes:
        """Read the value under ``key``.

        Args:
            key: A key written by :meth:`put`.
            op: The op whose value this is, for the message if it is gone.
            value: The value's name in that op's output, for the message.

        Raises:
            PayloadExpiredError: No value under ``key`` (expired, deleted, never written).
            PayloadStoreError: The store is unreachable or timed out.
        """
        ...

    async def delete_request(self, request_set: str) -> int:
        """Delete every key listed in ``request_set``, and the set.

        Returns:
            How many value keys were deleted (the set itself is not counted).

        Raises:
            PayloadStoreError: The store is unreachable or timed out.
        """
        ...

    async def ping(self) -> None:
        """Check that the store answers (start-up, health checks).

        Raises:
            PayloadStoreError: As any operation would.
        """
        ...

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


def as_view(data: Bytes) -> memoryview:
    """A flat byte view of ``data``, without a copy when it is contiguous.

    A numpy array's memoryview has items of several bytes and more than one dimension;
    ``len()`` of it is not its size in bytes, so every store measures and sends this view.
    """
    view = memoryview(data)
    if view.format == "B" and view.ndim == 1:
        return view
    if view.c_contiguous:
        return view.cast("B")
    return memoryview(view.tobytes())


def check_size(store: str, key: str, size: int, max_value_bytes: int) -> None:
    """Refuse a value over ``max_value_bytes`` before anything is written.

    Raises:
        PayloadValueTooLargeError: Naming the store, the key and both sizes.
    """
    if size > max_value_bytes:
        raise errors.PayloadValueTooLargeError(
            f"payload value {key!r} is {size} bytes, over payload.max_value_bytes "
            f"({max_value_bytes}) of payload store {store}; send smaller values or raise the limit"
        )


def expired(
    store: str, key: str, ttl_s: float, op: str | None, value: str | None
) -> errors.PayloadExpiredError:
    """The error for a reference whose value is gone, naming op and value when known."""
    what = "payload value"
    if value is not None:
        what += f" {value!r}"
    if op is not None:
        what += f" of op {op!r}"
    return errors.PayloadExpiredError(
        f"{what} is no longer in payload store {store} (key {key!r}): it expired or its "
        f"request already finished; requests must finish within payload.ttl_s ({ttl_s:g} s)",
        key=key,
        op=op,
        value=value,
    )
