"""The W2 ceiling's hand-written asyncio micro-batcher, shared by the HTTP and gRPC ceilings.

It is what a serving framework's auto-batching is measured against, so it does only what W2
needs and does it cheaply (shared/bench/PERF_NOTES.md, point 4): the model is kept busy by
taking whatever is queued the moment it is free, the batcher is woken by count (the first item,
then a full batch), and each batch has at most one timer.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from bench import workloads

#: One queued request: its ``x``, the future its ``y`` goes to, and when it arrived.
_Item = tuple[workloads.FloatArray, asyncio.Future[np.float32], float]


class MicroBatcher:
    """Collects up to ``batch_size`` items, or what came within ``timeout_s`` of the first one.

    One batch at a time goes to the model (one model instance): ``await asyncio.sleep(cost)``,
    then ``y = sum(x)`` per item.
    """

    def __init__(self, batch_size: int, timeout_s: float) -> None:
        self._batch_size = batch_size
        self._timeout_s = timeout_s
        self._items: list[_Item] = []
        self._wake: asyncio.Future[None] | None = None
        self._wake_at = 1
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts the batching loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stops the batching loop; items still queued are cancelled."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, future, _ in self._items:
            future.cancel()

    async def submit(self, x: workloads.FloatArray) -> np.float32:
        """Queues one item and waits for its ``y``."""
        future: asyncio.Future[np.float32] = asyncio.get_running_loop().create_future()
        self._items.append((x, future, time.monotonic()))
        if len(self._items) >= self._wake_at and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        return await future

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            # One model call per batch: the CPU is free while it waits, as with a GPU.
            await asyncio.sleep(workloads.w2_model_cost_s(len(batch)))
            sums = np.stack([x for x, _, _ in batch]).sum(axis=1)
            for (_, future, _), y in zip(batch, sums, strict=True):
                if not future.done():  # the client may have gone away
                    future.set_result(y)

    async def _next_batch(self) -> list[_Item]:
        if not self._items:
            await self._wait_for_count(1, timeout_s=None)
        first_arrival = self._items[0][2]
        remaining_s = first_arrival + self._timeout_s - time.monotonic()
        if len(self._items) < self._batch_size and remaining_s > 0:
            await self._wait_for_count(self._batch_size, timeout_s=remaining_s)
        batch = self._items[: self._batch_size]
        del self._items[: self._batch_size]
        return batch

    async def _wait_for_count(self, count: int, timeout_s: float | None) -> None:
        """Waits until ``count`` items are queued, or ``timeout_s`` passed."""
        loop = asyncio.get_running_loop()
        self._wake = loop.create_future()
        self._wake_at = count
        timer = None
        if timeout_s is not None:
            timer = loop.call_later(timeout_s, _set_if_pending, self._wake)
        try:
            await self._wake
        finally:
            if timer is not None:
                timer.cancel()
            self._wake = None


def _set_if_pending(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
