"""Observers fan the engine's events out to every registered observer.

Aspects covered:
- ``active`` follows registration, so instrumentation can skip all work when nobody listens;
- each of the four events reaches every observer, in registration order;
- an observer that raises is logged and does not stop the others;
- adding an observer twice registers it once; removing an unknown one is harmless.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from pipeserve.pipeline import observe


class Recorder:
    def __init__(self, name: str, log: list[tuple[str, object]]) -> None:
        self.name = name
        self.log = log

    def on_stage(self, timing: observe.StageTiming) -> None:
        self.log.append((self.name, timing))

    def on_batch(self, op: str, size: int) -> None:
        self.log.append((self.name, ("batch", op, size)))

    def on_request(self, name: str, err_no: int, start_ns: int, end_ns: int) -> None:
        self.log.append((self.name, ("request", name, err_no, end_ns - start_ns)))

    def on_op_error(self, op: str, err_no: int) -> None:
        self.log.append((self.name, ("op_error", op, err_no)))


class Broken(Recorder):
    def on_stage(self, timing: observe.StageTiming) -> None:
        raise RuntimeError("observer bug")


TIMING = observe.StageTiming("bow", "midp", (3, 4), (0, 7), 100, 250)


def test_active_follows_registration() -> None:
    observers = observe.Observers()
    assert not observers.active
    first, second = Recorder("a", []), Recorder("b", [])
    observers.add(first)
    observers.add(second)
    assert observers.active
    observers.remove(first)
    assert observers.active
    observers.remove(second)
    assert not observers.active
    observers.remove(second)  # unknown now: ignored
    assert not observers.active and len(observers) == 0


def test_every_event_reaches_every_observer_in_order() -> None:
    log: list[tuple[str, object]] = []
    observers = observe.Observers()
    observers.add(Recorder("a", log))
    observers.add(Recorder("b", log))
    observers.on_stage(TIMING)
    observers.on_batch("bow", 2)
    observers.on_request("imdb", 0, 10, 35)
    observers.on_op_error("cnn", 5002)
    assert log == [
        ("a", TIMING), ("b", TIMING),
        ("a", ("batch", "bow", 2)), ("b", ("batch", "bow", 2)),
        ("a", ("request", "imdb", 0, 25)), ("b", ("request", "imdb", 0, 25)),
        ("a", ("op_error", "cnn", 5002)), ("b", ("op_error", "cnn", 5002)),
    ]  # fmt: skip


def test_a_failing_observer_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    log: list[tuple[str, object]] = []
    observers = observe.Observers()
    observers.add(Broken("broken", log))
    observers.add(Recorder("ok", log))
    with caplog.at_level(logging.ERROR, logger="pipeserve.observe"):
        observers.on_stage(TIMING)
    assert log == [("ok", TIMING)]
    assert "on_stage" in caplog.text and "observer bug" in caplog.text


def test_adding_twice_registers_once() -> None:
    log: list[tuple[str, object]] = []
    observers = observe.Observers()
    recorder = Recorder("a", log)
    observers.add(recorder)
    observers.add(recorder)
    observers.on_batch("bow", 1)
    assert log == [("a", ("batch", "bow", 1))]


def test_stage_timing_is_immutable_and_local_by_default() -> None:
    assert TIMING.where == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        TIMING.op = "other"  # type: ignore[misc]
    assert observe.STAGES == ("in", "prep", "midp", "postp", "out")
