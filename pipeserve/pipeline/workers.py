"""Where an op's code runs: on the event loop, in threads, or in worker processes.

Every kind offers the same two coroutines: ``start()`` runs ``init_op`` (once per op for
thread ops, once per process for process ops) and ``run(samples, timeout_s)`` runs the op
over one batch on a free worker. A batch costs one hop to a thread or process, whatever
its size. The timeout starts when a worker takes the batch, so time spent waiting for a
free worker never counts against an op's timeout; a worker whose batch timed out is
handed out again only when it has finished.

Thread workers take one batch more than they have threads: it waits in the pool's queue
and starts the moment a thread is free, without waiting for the event loop (which, under
load, is busy with the requests' I/O and would leave the model idle between batches).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import time
import traceback
from typing import Any, Protocol

from pipeserve import runtime as model_runtime
from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import errors
from pipeserve.pipeline import op as op_mod
from pipeserve.pipeline import stages, startup_heap

_LOGGER = logging.getLogger("pipeserve.workers")


class Workers(Protocol):
    """The workers of one op."""

    concurrency: int
    in_flight: int
    """Batches that may be handed over at once."""

    async def start(self) -> None: ...

    async def run(
        self, samples: list[stages.Sample], timeout_s: float | None, times: stages.StageTimes | None = None
    ) -> list[stages.Outcome]:
        """Run one batch; with ``times``, append the stages it ran (``stages.StageTimes``)."""
        ...

    async def close(self) -> None: ...


class InlineWorkers:
    """Runs the op on the event loop: no hop, no timeout; for cheap non-blocking code."""

    concurrency = in_flight = 1

    def __init__(self, op: op_mod.Op) -> None:
        self.op = op
        self.runner = stages.StageRunner(op)

    async def start(self) -> None:
        await asyncio.to_thread(model_runtime.init_op, self.op)

    async def run(
        self, samples: list[stages.Sample], timeout_s: float | None, times: stages.StageTimes | None = None
    ) -> list[stages.Outcome]:
        return self.runner.run(samples, times)

    async def close(self) -> None:
        return None


class ThreadWorkers:
    """``concurrency`` threads sharing one op instance (``init_op`` runs once, as in the seeds)."""

    def __init__(self, op: op_mod.Op, concurrency: int) -> None:
        self.op = op
        self.concurrency = concurrency
        self.in_flight = concurrency + 1
        self.runner = stages.StageRunner(op)
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix=f"op-{op.name}")
        self._free: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self._free = asyncio.Semaphore(self.in_flight)
        await asyncio.get_running_loop().run_in_executor(self._pool, model_runtime.init_op, self.op)

    async def run(
        self, samples: list[stages.Sample], timeout_s: float | None, times: stages.StageTimes | None = None
    ) -> list[stages.Outcome]:
        free = self._free
        assert free is not None, "start() first"
        await free.acquire()
        started: list[float] = []
        done = self._pool.submit(self._run_timed, samples, started, times)
        return await _await_worker(done, timeout_s, free.release, started)

    def _run_timed(
        self, samples: list[stages.Sample], started: list[float], times: stages.StageTimes | None
    ) -> list[stages.Outcome]:
        started.append(time.monotonic())
        return self.runner.run(samples, times)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class ProcessWorkers:
    """``concurrency`` forked processes, each with its own op instance and device.

    Worker ``i`` is bound to ``devices[i % len(devices)]`` (seed §4.6) through
    CUDA_VISIBLE_DEVICES (XPU_VISIBLE_DEVICES for XPU) before its ``init_op`` runs.
    Processes are forked before the server starts any thread, so user code in them
    inherits no half-held locks. Between the server and its own children, batches travel
    through multiprocessing pipes.
    """

    def __init__(self, op: op_mod.Op, concurrency: int) -> None:
        self.op = op
        self.concurrency = self.in_flight = concurrency
        self._ctx = multiprocessing.get_context("fork")
        self._procs: list[_ProcessHandle] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix=f"op-{op.name}")
        self._idle: asyncio.Queue[_ProcessHandle] | None = None

    def fork(self) -> None:
        """Start the worker processes (once); call before the server starts threads."""
        if self._procs:
            return
        runtime = self.op.runtime_config
        for index in range(self.concurrency):
            device = runtime.devices[index % len(runtime.devices)] if runtime.devices else None
            parent_end, child_end = self._ctx.Pipe()
            proc = self._ctx.Process(
                target=_process_main,
                args=(self.op, index, device, child_end),
                name=f"pipeserve-op-{self.op.name}-{index}",
                daemon=True,
            )
            proc.start()
            child_end.close()
            self._procs.append(_ProcessHandle(self.op.name, index, proc, parent_end))

    async def start(self) -> None:
        self.fork()
        loop = asyncio.get_running_loop()
        self._idle = asyncio.Queue()
        readies = [loop.run_in_executor(self._pool, handle.wait_ready) for handle in self._procs]
        for handle in await asyncio.gather(*readies):
            self._idle.put_nowait(handle)

    async def run(
        self, samples: list[stages.Sample], timeout_s: float | None, times: stages.StageTimes | None = None
    ) -> list[stages.Outcome]:
        idle = self._idle
        assert idle is not None, "start() first"
        if not any(handle.alive for handle in self._procs):
            raise errors.OpError(f"op '{self.op.name}' has no live worker process")
        handle = await idle.get()

        def give_back() -> None:
            if handle.alive:
                idle.put_nowait(handle)

        done = self._pool.submit(handle.call, samples, times)
        return await _await_worker(done, timeout_s, give_back)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._stop_all)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _stop_all(self) -> None:
        for handle in self._procs:
            handle.stop()


@dataclasses.dataclass
class _ProcessHandle:
    """The server's side of one worker process."""

    op_name: str
    index: int
    process: Any
    conn: multiprocessing.connection.Connection
    alive: bool = True

    def wait_ready(self) -> _ProcessHandle:
        status, detail = self._recv()
        if status != "ready":
            self.alive = False
            raise errors.OpError(
                f"op '{self.op_name}' worker {self.index}: init_op failed:\n{detail}"
            )
        return self

    def call(self, samples: list[stages.Sample], times: stages.StageTimes | None = None) -> list[stages.Outcome]:
        self.conn.send((samples, times is not None))
        outcomes: list[stages.Outcome]
        outcomes, ran = self._recv()
        if times is not None and ran:
            times.extend(ran)
        return outcomes

    def stop(self) -> None:
        if self.alive:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.alive = False

    def _recv(self) -> Any:
        try:
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            self.alive = False
            self.process.join(1)
            raise errors.OpError(
                f"op '{self.op_name}' worker process {self.index} exited unexpectedly "
                f"(exit code {self.process.exitcode})"
            ) from exc


def _process_main(
    op: op_mod.Op, index: int, device: int | None, conn: multiprocessing.connection.Connection
) -> None:
    """Body of a worker process: bind the device, init the op, then serve batches."""
    runtime = op.runtime_config
    if device is not None:
        variable = "XPU_VISIBLE_DEVICES" if runtime.device_type is config_mod.DeviceType.XPU else "CUDA_VISIBLE_DEVICES"
        os.environ[variable] = str(device)
    op.concurrency_idx = index
    op.runtime_config = dataclasses.replace(runtime, device_id=device)
    try:
        model_runtime.init_op(op)
        runner = stages.StageRunner(op)
    except BaseException:  # noqa: BLE001 - reported to the server, which refuses to start
        conn.send(("init_failed", traceback.format_exc()))
        return
    startup_heap.freeze()  # the model and what it imported: never scanned again
    conn.send(("ready", None))
    while True:
        try:
            call = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if call is None:
            return
        samples, timed = call
        times: stages.StageTimes | None = [] if timed else None
        conn.send((runner.run(samples, times), times))


async def _await_worker(
    done: concurrent.futures.Future[list[stages.Outcome]],
    timeout_s: float | None,
    release: Any,
    started: list[float] | None = None,
) -> list[stages.Outcome]:
    """Wait for a worker's batch; on timeout, free the worker only once it finishes.

    ``started`` receives the moment a worker took the batch, when it may wait in a queue
    first; the timeout runs from then (from now when None).
    """
    loop = asyncio.get_running_loop()
    waiter = asyncio.wrap_future(done, loop=loop)
    try:
        if timeout_s is None:
            result = await waiter
        else:
            result = await _within(waiter, timeout_s, started)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        done.add_done_callback(lambda _: loop.call_soon_threadsafe(release))
        raise
    except BaseException:
        release()
        raise
    release()
    return result


async def _within(
    waiter: asyncio.Future[list[stages.Outcome]], timeout_s: float, started: list[float] | None
) -> list[stages.Outcome]:
    remaining = timeout_s
    while True:
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), remaining)
        except asyncio.TimeoutError:
            if started is None:
                raise
            if started:  # a worker took it late: the timeout runs from then
                remaining = started[0] + timeout_s - time.monotonic()
                if remaining <= 0:
                    raise
            # else still queued behind a running batch: give it a full timeout again
