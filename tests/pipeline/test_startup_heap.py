"""Start-up objects are frozen out of the garbage collector's passes once a server is ready.

Aspects:
- ``startup_heap.freeze`` freezes what exists (the collector no longer tracks it) and reports
  how many objects that is, after collecting start-up garbage, which is not frozen;
- a served pipeline and an op service each say so in pipeline.log once they are ready (the
  process tests for those are in tests/test_examples.py and tests/observe).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from pipeserve.pipeline import startup_heap


class Node:
    """A GC-tracked object that can point at itself."""

    def __init__(self) -> None:
        self.me: Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give this test process its collector back afterwards."""
    try:
        yield
    finally:
        gc.unfreeze()


def test_freeze_takes_what_lives_out_of_the_collectors_generations(unfrozen: None) -> None:
    kept = Node()
    frozen = startup_heap.freeze()
    assert frozen == gc.get_freeze_count() > 1000  # the interpreter and what it imported
    assert not any(tracked is kept for tracked in gc.get_objects())


def test_start_up_garbage_is_collected_not_frozen(unfrozen: None) -> None:
    cycle = Node()
    cycle.me = cycle
    gone = weakref.ref(cycle)
    del cycle
    startup_heap.freeze()
    assert gone() is None
