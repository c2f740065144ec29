"""The in-process store's own behaviour: expiry on a clock it is given, sweeping without
reads, deadlines renewed by a rewrite, and safety under threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

from pipeserve import payload
from pipeserve.payload import memory
from pipeserve.pipeline import config


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> memory.MemoryStore:
    return memory.MemoryStore(config.PayloadConfig(ttl_s=300), "imdb", clock=clock)


async def test_a_value_lives_exactly_ttl_s(store: memory.MemoryStore, clock: Clock) -> None:
    key = store.keys.value_key(1, "bow", "out")
    await store.put(key, b"v", store.keys.request_set(1))

    clock.now = 1299.5
    assert await store.get(key) == b"v"
    clock.now = 1300.0
    with pytest.raises(payload.PayloadExpiredError, match=r"\(300 s\)$"):
        await store.get(key, op="bow", value="out")


async def test_expired_entries_are_swept_without_being_read(
    store: memory.MemoryStore, clock: Clock
) -> None:
    for data_id in range(10):
        key = store.keys.value_key(data_id, "bow", "out")
        await store.put(key, b"v", store.keys.request_set(data_id))
    assert len(store) == 20

    clock.now += 300
    await store.put(store.keys.value_key(99, "bow", "out"), b"v", store.keys.request_set(99))

    assert len(store) == 2


async def test_a_rewritten_key_and_its_set_live_from_the_last_write(
    store: memory.MemoryStore, clock: Clock
) -> None:
    key, request = store.keys.value_key(1, "bow", "out"), store.keys.request_set(1)
    await store.put(key, b"first", request)
    clock.now += 200
    await store.put(key, b"second", request)

    clock.now += 150  # 350 s after the first write, 150 s after the second
    assert await store.get(key) == b"second"
    assert await store.delete_request(request) == 1


async def test_the_stored_bytes_are_returned_without_a_copy(store: memory.MemoryStore) -> None:
    data = b"x" * 10_000
    await store.put("k", data, "s")

    assert await store.get("k") is data


async def test_close_drops_every_value(store: memory.MemoryStore) -> None:
    await store.put("k", b"v", "s")

    await store.close()

    assert len(store) == 0


def test_puts_and_deletes_from_many_threads_lose_nothing(store: memory.MemoryStore) -> None:
    def work(thread: int) -> int:
        async def run() -> int:
            request = store.keys.request_set(thread)
            for i in range(200):
                await store.put(store.keys.value_key(thread, "op", str(i)), b"v", request)
            return await store.delete_request(request)

        return asyncio.run(run())

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        deleted = list(pool.map(work, range(8)))

    assert deleted == [200] * 8
    assert len(store) == 0
