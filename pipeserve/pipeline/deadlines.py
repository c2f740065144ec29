"""Request timeouts with one timer for all requests.

Every request of a DAG has the same timeout, so deadlines come due in the order requests
arrived: an ordered registry and one timer armed for its oldest entry replace a timer per
request (creating and cancelling one per request is a measurable share of a cheap DAG's cost).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Deadlines(Generic[T]):
    """Calls ``expire(item)`` for each item still registered ``timeout_s`` after it was added."""

    def __init__(self, timeout_s: float, expire: Callable[[T], None]) -> None:
        self.timeout_s = timeout_s
        self._expire = expire
        self._due: collections.OrderedDict[T, float] = collections.OrderedDict()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._due)

    def add(self, item: T, started: float) -> None:
        """Register ``item``, which started at ``started`` (the running loop's ``time()``)."""
        deadline = started + self.timeout_s
        self._due[item] = deadline
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._fire)

    def discard(self, item: T) -> None:
        """Forget ``item`` (it finished); nothing happens if it is not registered."""
        self._due.pop(item, None)

    def _fire(self) -> None:
        self._timer = None
        due = self._due
        loop = asyncio.get_running_loop()
        now = loop.time()
        while due:
            item, deadline = next(iter(due.items()))
            if deadline > now:
                self._timer = loop.call_at(deadline, self._fire)
                return
            del due[item]
            self._expire(item)
