"""BatchQueue: a batch closes when it is full or when its first item's deadline passes,
whichever comes first, and items whose request ended never reach a batch.

Aspects covered:
- a full batch leaves at once, long before a (very long) timeout;
- a partial batch leaves at the deadline, with what it has;
- the deadline runs from the first item's arrival, not from when a batcher asked;
- dead items are dropped, by ``next_batch`` and by ``purge()``;
- no batch is ever larger than ``batch_size``, and the order is first in, first out;
- ``close()`` wakes a waiting batcher so that its task ends.

Batches are made deterministic with long timeouts; time is never waited on, except a
deadline of a few milliseconds whose length is not asserted.
"""

from __future__ import annotations

import asyncio
import types

import pytest

from pipeserve.pipeline import batching

LONG_S = 1000.0
"""A timeout no test waits for: a batch that relies on it would hang the test."""
DEADLINE_S = 10.0
"""How long a test waits for something that should happen at once."""


def alive(item: int) -> bool:
    return False


async def next_batch(queue: batching.BatchQueue[int]) -> list[int]:
    return await asyncio.wait_for(queue.next_batch(), DEADLINE_S)


async def test_a_batch_closes_when_full_before_the_timeout() -> None:
    queue: batching.BatchQueue[int] = batching.BatchQueue(4, LONG_S, alive)
    for i in range(4):
        queue.put(i)

    assert await next_batch(queue) == [0, 1, 2, 3]
    assert len(queue) == 0


async def test_a_waiting_batcher_is_woken_when_the_batch_fills() -> None:
    queue: batching.BatchQueue[int] = batching.BatchQueue(4, LONG_S, alive)
    batcher = asyncio.create_task(queue.next_batch())
    queue.put(0)
    await asyncio.sleep(0)  # sync-ok: one scheduling turn so the batcher holds one item and waits
    assert not batcher.done()

    for i in range(1, 4):
        queue.put(i)

    assert await asyncio.wait_for(batcher, DEADLINE_S) == [0, 1, 2, 3]


async def test_a_batch_closes_at_the_deadline_with_fewer_items() -> None:
    queue: batching.BatchQueue[int] = batching.BatchQueue(4, 0.02, alive)
    queue.put(0)
    queue.put(1)

    assert await next_batch(queue) == [0, 1]


async def test_the_deadline_runs_from_the_first_items_arrival(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [5000.0]
    # Only the queue's clock moves; the event loop keeps the real one.
    monkeypatch.setattr(batching, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    queue: batching.BatchQueue[int] = batching.BatchQueue(4, LONG_S, alive)
    queue.put(0)
    queue.put(1)

    now[0] += LONG_S + 1  # the items queued while no batcher was free

    assert await next_batch(queue) == [0, 1]


async def test_a_batcher_waits_for_the_rest_of_the_first_items_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [5000.0]
    monkeypatch.setattr(batching, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    queue: batching.BatchQueue[int] = batching.BatchQueue(4, LONG_S, alive)
    queue.put(0)
    now[0] += LONG_S - 0.01  # 10 ms of the deadline left

    batcher = asyncio.create_task(queue.next_batch())
    await asyncio.sleep(0)  # sync-ok: one scheduling turn so the batcher starts its wait
    assert not batcher.done()

    assert await asyncio.wait_for(batcher, DEADLINE_S) == [0]


async def test_a_dead_first_item_does_not_start_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [5000.0]
    monkeypatch.setattr(batching, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    dead = {0}
    queue: batching.BatchQueue[int] = batching.BatchQueue(4, LONG_S, lambda item: item in dead)
    queue.put(0)  # its request ends; its deadline would long have passed
    now[0] += LONG_S + 1
    queue.put(1)

    batcher = asyncio.create_task(queue.next_batch())
    await asyncio.sleep(0)  # sync-ok: one scheduling turn so the batcher starts its wait
    assert not batcher.done()  # the deadline runs from item 1, the first live item
    for i in range(2, 5):
        queue.put(i)

    assert await asyncio.wait_for(batcher, DEADLINE_S) == [1, 2, 3, 4]


async def test_dead_items_are_dropped_and_never_returned() -> None:
    dead = {1, 3, 4}
    queue: batching.BatchQueue[int] = batching.BatchQueue(3, 0.01, lambda item: item in dead)
    for i in range(7):
        queue.put(i)

    assert await next_batch(queue) == [0, 2, 5]
    assert await next_batch(queue) == [6]
    assert len(queue) == 0


async def test_items_that_die_while_queued_are_dropped() -> None:
    dead: set[int] = set()
    queue: batching.BatchQueue[int] = batching.BatchQueue(4, LONG_S, lambda item: item in dead)
    queue.put(0)
    queue.put(1)
    dead.update({0, 1})
    for i in range(2, 6):
        queue.put(i)

    assert await next_batch(queue) == [2, 3, 4, 5]


async def test_purge_drops_dead_items() -> None:
    dead = {0, 2}
    queue: batching.BatchQueue[int] = batching.BatchQueue(4, LONG_S, lambda item: item in dead)
    for i in range(5):
        queue.put(i)

    assert queue.purge() == 2
    assert len(queue) == 3
    assert queue.purge() == 0
    dead.clear()
    queue.put(5)
    assert await next_batch(queue) == [1, 3, 4, 5]


async def test_a_batch_never_holds_more_than_batch_size_items_and_keeps_their_order() -> None:
    queue: batching.BatchQueue[int] = batching.BatchQueue(4, 0.01, alive)
    for i in range(10):
        queue.put(i)

    batches = [await next_batch(queue) for _ in range(3)]

    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(queue) == 0


async def test_close_wakes_a_waiting_batcher_so_its_task_ends() -> None:
    queue: batching.BatchQueue[int] = batching.BatchQueue(4, LONG_S, alive)
    batcher = asyncio.create_task(queue.next_batch())
    await asyncio.sleep(0)  # sync-ok: one scheduling turn so the batcher waits on the empty queue
    assert not batcher.done()

    await queue.close()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(batcher, DEADLINE_S)
