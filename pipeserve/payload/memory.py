"""The in-process payload store of embedded mode: a dict with TTLs and request key sets.

It behaves like the Redis store (same TTLs, key sets, limits and errors), so the engine has
one code path and tests of it hold for both. Values are kept as immutable ``bytes``; a
reader gets the very object that was stored, without a copy.

Expired entries are dropped when read and swept at each call from a heap ordered by
deadline, so a service that stops reading still frees memory, at O(log n) per entry.
A lock makes it safe to call from the event loop and from worker threads at once.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable

from pipeserve.payload import keys, store
from pipeserve.pipeline import config


class MemoryStore:
    """A :class:`~pipeserve.payload.store.PayloadStore` inside this process."""

    def __init__(
        self,
        settings: config.PayloadConfig,
        service: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an empty store.

        Args:
            settings: The ``payload:`` section (ttl_s and max_value_bytes apply).
            service: The service whose keys this store names.
            clock: Seconds, monotonic; tests pass a fake one to expire entries at will.
        """
        self._settings = settings
        self._keys = keys.KeySpace(service)
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[bytes, float]] = {}
        self._sets: dict[str, tuple[set[str], float]] = {}
        # (deadline, name): a name may appear more than once when rewritten; an entry is
        # only dropped when its current deadline has passed.
        self._deadlines: list[tuple[float, str]] = []

    @property
    def name(self) -> str:
        """``memory (in process)``."""
        return "memory (in process)"

    @property
    def keys(self) -> keys.KeySpace:
        """Key names of the service this store was opened for."""
        return self._keys

    def __len__(self) -> int:
        """Live value keys and key sets: what a leak test counts."""
        with self._lock:
            self._sweep(self._clock())
            return len(self._values) + len(self._sets)

    async def put(self, key: str, data: store.Bytes, request_set: str) -> None:
        """Store ``data`` under ``key`` and list it in ``request_set``; see PayloadStore."""
        view = store.as_view(data)
        store.check_size(self.name, key, view.nbytes, self._settings.max_value_bytes)
        value = data if isinstance(data, bytes) else view.tobytes()
        with self._lock:
            now = self._clock()
            self._sweep(now)
            deadline = now + self._settings.ttl_s
            self._values[key] = (value, deadline)
            members, _ = self._sets.get(request_set, (set(), 0.0))
            members.add(key)
            self._sets[request_set] = (members, deadline)
            heapq.heappush(self._deadlines, (deadline, key))
            heapq.heappush(self._deadlines, (deadline, request_set))

    async def get(self, key: str, *, op: str | None = None, value: str | None = None) -> bytes:
        """The value under ``key``; see PayloadStore."""
        with self._lock:
            now = self._clock()
            self._sweep(now)
            entry = self._values.get(key)
        if entry is None:
            raise store.expired(self.name, key, self._settings.ttl_s, op, value)
        return entry[0]

    async def delete_request(self, request_set: str) -> int:
        """Delete every key of ``request_set`` and the set; see PayloadStore."""
        with self._lock:
            self._sweep(self._clock())
            members, _ = self._sets.pop(request_set, (set(), 0.0))
            return sum(self._values.pop(key, None) is not None for key in members)

    async def ping(self) -> None:
        """Always answers: the store is this process."""

    async def close(self) -> None:
        """Drop every value."""
        with self._lock:
            self._values.clear()
            self._sets.clear()
            self._deadlines.clear()

    def _sweep(self, now: float) -> None:
        # Called with the lock held. Expiry is exact (>=), as Redis' is.
        while self._deadlines and self._deadlines[0][0] <= now:
            _, name = heapq.heappop(self._deadlines)
            for table in (self._values, self._sets):
                entry = table.get(name)
                if entry is not None and entry[1] <= now:
                    del table[name]
