"""Observers: how the engine tells logs, the tracer, the profile and metrics what it did.

The engine reports four kinds of events: a stage of an op ran (:class:`StageTiming`, in the
seed's §6.4 terms ``in``/``prep``/``midp``/``postp``/``out``), an op ran a batch, a request
ended, an op failed. Anything that wants them implements :class:`Observer` and registers with
the executor's :class:`Observers`.

The serving hot path pays for this only when someone listens: every instrumentation point
checks ``observers.active`` (a plain attribute) before it reads a clock or builds an event,
so with no observer registered no event is allocated.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

_LOGGER = logging.getLogger("pipeserve.observe")

STAGES = ("in", "prep", "midp", "postp", "out")
"""The stages of an op, in the order they run (seed §6.4)."""


@dataclasses.dataclass(frozen=True, slots=True)
class StageTiming:
    """One stage of one op over one sample or one batch of samples."""

    op: str
    """The op's name."""
    stage: str
    """``"in"`` | ``"prep"`` | ``"midp"`` | ``"postp"`` | ``"out"``."""
    data_ids: tuple[int, ...]
    """Every request the stage ran for (several when the op batched them)."""
    log_ids: tuple[int, ...]
    """The client's log_id of each of those requests, in the same order."""
    start_ns: int
    """``time.time_ns()`` when the stage began: wall clock, so gateway and op services line up."""
    end_ns: int
    """``time.time_ns()`` when it ended."""
    where: str = ""
    """``""`` in this process; ``"remote:<host:port>"`` for stages an op service ran."""


class Observer(Protocol):
    """What the engine calls; implement the four methods (they may do nothing)."""

    def on_stage(self, timing: StageTiming) -> None:
        """A stage of an op ran."""

    def on_batch(self, op: str, size: int) -> None:
        """An op ran a batch of ``size`` samples."""

    def on_request(self, name: str, err_no: int, start_ns: int, end_ns: int) -> None:
        """A request of the service ``name`` ended with ``err_no`` (0: success)."""

    def on_op_error(self, op: str, err_no: int) -> None:
        """An op failed a sample with ``err_no``."""


class Observers:
    """Fans each event out to the registered observers.

    ``active`` is true while at least one observer is registered; check it before building
    an event. An observer that raises is logged and does not stop the others, nor the request.
    """

    __slots__ = ("active", "_observers")

    def __init__(self) -> None:
        self.active = False
        self._observers: tuple[Observer, ...] = ()

    def add(self, observer: Observer) -> None:
        """Register ``observer`` (once; adding it again changes nothing)."""
        if observer not in self._observers:
            self._observers = (*self._observers, observer)
        self.active = True

    def remove(self, observer: Observer) -> None:
        """Unregister ``observer``; unknown observers are ignored."""
        self._observers = tuple(o for o in self._observers if o is not observer)
        self.active = bool(self._observers)

    def __len__(self) -> int:
        return len(self._observers)

    def on_stage(self, timing: StageTiming) -> None:
        """Tell every observer that a stage ran."""
        for observer in self._observers:
            try:
                observer.on_stage(timing)
            except Exception:  # noqa: BLE001 - an observer must never fail a request
                _LOGGER.exception("observer %r failed in on_stage", observer)

    def on_batch(self, op: str, size: int) -> None:
        """Tell every observer that ``op`` ran a batch of ``size``."""
        for observer in self._observers:
            try:
                observer.on_batch(op, size)
            except Exception:  # noqa: BLE001
                _LOGGER.exception("observer %r failed in on_batch", observer)

    def on_request(self, name: str, err_no: int, start_ns: int, end_ns: int) -> None:
        """Tell every observer that a request ended."""
        for observer in self._observers:
            try:
                observer.on_request(name, err_no, start_ns, end_ns)
            except Exception:  # noqa: BLE001
                _LOGGER.exception("observer %r failed in on_request", observer)

    def on_op_error(self, op: str, err_no: int) -> None:
        """Tell every observer that ``op`` failed a sample."""
        for observer in self._observers:
            try:
                observer.on_op_error(op, err_no)
            except Exception:  # noqa: BLE001
                _LOGGER.exception("observer %r failed in on_op_error", observer)
