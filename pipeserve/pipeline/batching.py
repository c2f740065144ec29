"""Auto-batching: collect samples for one op until the batch is full or its time is up.

The deadline runs from the first sample's arrival, not from when a worker started
waiting, so samples that queued while every worker was busy leave at once: the model is
kept busy with whatever is queued the moment it is free. ``put`` never blocks; the
admission limit upstream bounds what can be queued.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class BatchQueue(Generic[T]):
    """A FIFO that hands out batches of up to ``batch_size`` items.

    Args:
        batch_size: the most items in one batch.
        timeout_s: how long a batch waits for more items after its first arrived.
        is_dead: tells which items no longer need processing (their request ended); they
            are dropped before they reach a batch.
    """

    def __init__(self, batch_size: int, timeout_s: float, is_dead: Callable[[T], bool]) -> None:
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self._is_dead = is_dead
        self._items: collections.deque[tuple[T, float]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._wake_at = 1
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Queue an item; wakes the waiting batcher when it has enough."""
        self._items.append((item, time.monotonic()))
        if self._waiter is not None and len(self._items) >= self._wake_at:
            self._wake()

    def purge(self) -> int:
        """Drop items whose request has ended; returns how many were dropped."""
        before = len(self._items)
        self._items = collections.deque(entry for entry in self._items if not self._is_dead(entry[0]))
        return before - len(self._items)

    async def next_batch(self) -> list[T]:
        """Wait for the first item, then for a full batch or the first item's deadline."""
        loop = asyncio.get_running_loop()
        while True:
            self._drop_dead_head()
            if not self._items:
                await self._wait(loop, 1)
                continue
            if len(self._items) < self.batch_size:
                remaining = self._items[0][1] + self.timeout_s - time.monotonic()
                if remaining > 0:
                    handle = loop.call_later(remaining, self._wake)
                    try:
                        await self._wait(loop, self.batch_size)
                    finally:
                        handle.cancel()
            batch = self._take()
            if batch:
                return batch

    async def close(self) -> None:
        """Wake a waiting batcher so that its task can be cancelled cleanly."""
        self._closed = True
        self._wake()

    def _take(self) -> list[T]:
        batch: list[T] = []
        items = self._items
        while items and len(batch) < self.batch_size:
            item, _ = items.popleft()
            if not self._is_dead(item):
                batch.append(item)
        return batch

    def _drop_dead_head(self) -> None:
        items = self._items
        while items and self._is_dead(items[0][0]):
            items.popleft()

    async def _wait(self, loop: asyncio.AbstractEventLoop, wake_at: int) -> None:
        if self._closed:
            raise asyncio.CancelledError
        self._wake_at = wake_at
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
