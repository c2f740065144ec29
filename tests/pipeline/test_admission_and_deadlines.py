"""The DAG's entry gate and its request timeouts, on their own.

Aspects: the gate admits up to its limit without waiting, hands a freed slot to the oldest
waiter (a newcomer cannot overtake it), tells a waiter the server is busy after half the
timeout and loses no slot either way; deadlines expire in arrival order with one timer, and a
finished request never expires.
"""

from __future__ import annotations

import asyncio

import pytest

from pipeserve.pipeline import channel, errors
from pipeserve.pipeline.deadlines import Deadlines


async def test_the_gate_admits_up_to_its_limit_then_hands_freed_slots_to_waiters_in_order() -> None:
    gate = channel.Admission(2)
    assert gate.try_enter() and gate.try_enter()
    assert not gate.try_enter()
    first = asyncio.ensure_future(gate.wait(10.0))
    second = asyncio.ensure_future(gate.wait(10.0))
    await asyncio.sleep(0)  # sync-ok: one loop turn runs both tasks up to their wait
    gate.leave()
    await first
    assert not second.done() and gate.in_flight == 2
    assert not gate.try_enter()  # a newcomer does not overtake the second waiter
    gate.leave()
    await second
    gate.leave()
    gate.leave()
    assert gate.in_flight == 0 and gate.try_enter()


async def test_a_waiter_is_told_the_server_is_busy_after_half_its_timeout_and_no_slot_is_lost() -> None:
    gate = channel.Admission(1)
    assert gate.try_enter()
    with pytest.raises(errors.ServerBusyError, match=r"server busy: 1 requests already in the pipeline .* 20 ms"):
        await gate.wait(0.04)
    gate.leave()
    assert gate.in_flight == 0
    assert gate.try_enter()


async def test_a_cancelled_waiter_gives_back_a_slot_handed_to_it() -> None:
    gate = channel.Admission(1)
    assert gate.try_enter()
    waiter = asyncio.ensure_future(gate.wait(None))
    await asyncio.sleep(0)  # sync-ok: one loop turn runs the task up to its wait
    gate.leave()  # the slot goes to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs (its client went away)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert gate.in_flight == 0


async def test_deadlines_expire_in_arrival_order_and_never_for_finished_items() -> None:
    expired: list[str] = []
    all_done = asyncio.Event()

    def expire(item: str) -> None:
        expired.append(item)
        if len(expired) == 2:
            all_done.set()

    deadlines: Deadlines[str] = Deadlines(0.05, expire)
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadlines.add("a", start)
    deadlines.add("b", start + 0.01)
    deadlines.add("c", start + 0.02)
    deadlines.discard("b")  # finished in time
    await asyncio.wait_for(all_done.wait(), 5)
    assert expired == ["a", "c"]
    assert loop.time() >= start + 0.07  # c's deadline, not earlier
    assert len(deadlines) == 0
