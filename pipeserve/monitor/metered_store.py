"""A payload store that counts what passes through it, for ``pipeserve_payload_*`` metrics.

It wraps the store a server opened, only when metrics are on, so stores themselves stay
free of metrics code.
"""

from __future__ import annotations

from pipeserve.monitor import metrics as metrics_mod
from pipeserve.payload import errors, keys
from pipeserve.payload.store import Bytes, PayloadStore, as_view


class MeteredStore:
    """``store`` with every read (hit or miss) and write counted in ``metrics``."""

    def __init__(self, store: PayloadStore, metrics: metrics_mod.PipelineMetrics) -> None:
        self.inner = store
        self.metrics = metrics

    @property
    def name(self) -> str:
        """The wrapped store's name."""
        return self.inner.name

    @property
    def keys(self) -> keys.KeySpace:
        """The wrapped store's key space."""
        return self.inner.keys

    async def put(self, key: str, data: Bytes, request_set: str) -> None:
        """Write through, then count the bytes."""
        await self.inner.put(key, data, request_set)
        self.metrics.on_payload_write(as_view(data).nbytes)

    async def get(self, key: str, *, op: str | None = None, value: str | None = None) -> bytes:
        """Read through; a missing value counts as a miss."""
        try:
            data = await self.inner.get(key, op=op, value=value)
        except errors.PayloadExpiredError:
            self.metrics.on_payload_read(None)
            raise
        self.metrics.on_payload_read(len(data))
        return data

    async def delete_request(self, request_set: str) -> int:
        """Delete through."""
        return await self.inner.delete_request(request_set)

    async def ping(self) -> None:
        """Ping through."""
        await self.inner.ping()

    async def close(self) -> None:
        """Close the wrapped store."""
        await self.inner.close()


def metered(store: PayloadStore | None, metrics: metrics_mod.PipelineMetrics) -> PayloadStore | None:
    """``store`` counted in ``metrics`` (None stays None; a store is never wrapped twice)."""
    if store is None or isinstance(store, MeteredStore):
        return store
    wrapped: PayloadStore = MeteredStore(store, metrics)
    return wrapped
