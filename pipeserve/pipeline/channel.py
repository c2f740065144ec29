"""What flows out of the DAG, and the gate that bounds what flows in.

The seeds bound a pipeline's memory at its entry: the whole graph's input goes through
one channel whose size is the service's flow control (seed §1.2.4). Here the
:class:`Admission` gate admits at most ``limit`` requests into the DAG at once; since a
request occupies at most one slot in each op's channel, no channel ever holds more. A
request that finds the DAG full waits for room up to its own timeout and then gets a
clear "busy" error. It waits at most half of its timeout: requests already inside have
the same timeout and started earlier, so a full wait would always end with a slot freed
by their timeouts, and the caller would see a timeout where the truth is "busy".
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from typing import Any

from pipeserve.pipeline import errors


@dataclasses.dataclass(slots=True)
class ChannelData:
    """The DAG's result for one request, as ResponseOp.pack_response_package receives it."""

    data_id: int
    log_id: int
    dicts: dict[str, Any]
    """Outputs of the ResponseOp's input ops, by op name (empty on error)."""
    error: errors.PipelineError | None = None
    last_op: str = ""
    """Name of the op that produced the result (or the error)."""
    timeline: list[Any] | None = None
    """Every ``observe.StageTiming`` of the request, when it was profiled."""

    @property
    def error_code(self) -> int:
        """``err_no`` for the response: 0, a framework code, or the ProductErrCode value."""
        return 0 if self.error is None else self.error.code

    @property
    def error_info(self) -> str:
        """``err_msg`` for the response."""
        return "" if self.error is None else self.error.message

    def single_output(self) -> dict[str, Any]:
        """The output of the ResponseOp's only input op, which must be a dict."""
        ((_, output),) = self.dicts.items()
        if not isinstance(output, dict):
            raise errors.OpOutputError(
                f"op '{self.last_op}' must output a dict for the response, "
                f"got {type(output).__name__}"
            )
        return output


class Admission:
    """Admits at most ``limit`` requests into the DAG at once.

    A counter and a queue of waiters rather than an ``asyncio.Semaphore``: a request that
    finds room enters without a coroutine or an await (:meth:`try_enter`), which the hot path
    notices; only a full DAG makes a request wait (:meth:`wait`). A freed slot is handed to the
    oldest waiter directly, so a newcomer cannot overtake it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        """Requests inside the DAG now."""
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody waits for one."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return True
        return False

    async def wait(self, timeout_s: float | None) -> None:
        """Wait for a slot, at most half of ``timeout_s``; raises ServerBusyError after that."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        wait_s = None if timeout_s is None else timeout_s / 2
        try:
            await asyncio.wait_for(asyncio.shield(waiter), wait_s)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # the slot was handed over as the wait ended: pass it on
            else:
                waiter.cancel()
            if isinstance(exc, asyncio.TimeoutError):
                raise errors.ServerBusyError(
                    f"server busy: {self.limit} requests already in the pipeline and none finished "
                    f"within {(wait_s or 0) * 1000:.0f} ms (half the request timeout); retry later"
                ) from None
            raise

    async def enter(self, timeout_s: float | None) -> None:
        """:meth:`try_enter`, else :meth:`wait`."""
        if not self.try_enter():
            await self.wait(timeout_s)

    def leave(self) -> None:
        """Give the slot back: to the oldest waiter still waiting, else to the pool."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; in_flight stays
                return
        self.in_flight -= 1
