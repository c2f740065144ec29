"""Start a plan's processes in order, restart the ones that exit, stop them all on request.

As a cluster would: Redis first, then the op services, then the gateway, each tier ready
before the next starts; a process that exits is reported and started again after a backoff
that doubles while it keeps failing (as a Deployment's pod in CrashLoopBackOff); on stop, the
gateway goes first so that no request is sent to an op service that is already gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Callable, Sequence

from pipeserve.local import probes
from pipeserve.local.plan import Kind, Plan, Process

TIERS: tuple[Kind, ...] = ("redis", "op", "gateway")
PROBE_INTERVAL_S = 0.1
LOG_TAIL_LINES = 15


@dataclasses.dataclass(frozen=True)
class Timing:
    """How long to wait for readiness and for a stop, and how to back off restarts."""

    ready_timeout_s: float = 60.0
    grace_s: float = 25.0
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0


class StartError(RuntimeError):
    """A process exited or was not ready in time while the plan was starting."""


@dataclasses.dataclass
class Replica:
    """One running process of the plan and what is known of it."""

    process: Process
    child: asyncio.subprocess.Process | None = None
    state: str = "starting"
    restarts: int = 0
    backoff_s: float = 0.0

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None


class Supervisor:
    """Runs a :class:`Plan` until ``stop`` is set; says what happens through ``report``."""

    def __init__(self, plan: Plan, report: Callable[[str], None], timing: Timing = Timing()) -> None:
        self.plan = plan
        self.replicas = [Replica(process) for process in plan.processes]
        self._report = report
        self._timing = timing
        self._stopping = False

    async def run(self, stop: asyncio.Event) -> int:
        """Start everything, keep it running until ``stop``; 0, or 1 when it could not start.

        ``stop`` is heeded while starting too: Ctrl-C does not wait for slow models to load.
        """
        starting = asyncio.create_task(self._start_all())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            self._report("stopping before everything was ready")
            await self.stop_all()
            return 0
        try:
            starting.result()
        except StartError as exc:
            self._report(f"error: {exc}")
            await self.stop_all()
            return 1
        self._report(self.table())
        self._report(f"  HTTP  {self.plan.http_url}")
        self._report(f"  gRPC  {self.plan.grpc_target}")
        self._report("Ctrl-C stops everything.")
        watchers = [asyncio.create_task(self._watch(replica)) for replica in self.replicas]
        try:
            await stop.wait()
        finally:
            self._stopping = True
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await self.stop_all()
        return 0

    def table(self) -> str:
        """Components, their pids, ports and states, one line each."""
        rows = [("component", "pid", "port", "state", "log")]
        for replica in self.replicas:
            process = replica.process
            state = replica.state + (f" (restarted {replica.restarts}x)" if replica.restarts else "")
            rows.append((process.name, str(replica.pid or "-"), str(process.port), state, str(process.log_path)))
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
            for row in rows
        )

    async def stop_all(self) -> None:
        """Stop every process, the gateway first and Redis last."""
        self._stopping = True
        for tier in reversed(TIERS):
            await asyncio.gather(*(self._stop(r) for r in self.replicas if r.process.kind == tier))

    async def _start_all(self) -> None:
        for tier in TIERS:
            await self._start_tier([r for r in self.replicas if r.process.kind == tier])

    async def _start_tier(self, replicas: Sequence[Replica]) -> None:
        for replica in replicas:
            await self._spawn(replica)
        await asyncio.gather(*(self._until_ready(replica) for replica in replicas))

    async def _spawn(self, replica: Replica) -> None:
        process = replica.process
        with open(process.log_path, "ab") as log:
            replica.child = await asyncio.create_subprocess_exec(
                *process.argv,
                cwd=process.cwd,
                env={**os.environ, **process.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
            )
        replica.state = "starting"

    async def _until_ready(self, replica: Replica) -> None:
        deadline = time.monotonic() + self._timing.ready_timeout_s
        child = replica.child
        assert child is not None
        while not await probes.ready(replica.process):
            if child.returncode is not None:
                _kill_group(child.pid)
                raise StartError(
                    f"{replica.process.name} exited with code {child.returncode} while starting:\n"
                    + self._log_tail(replica.process)
                )
            if time.monotonic() > deadline:
                raise StartError(
                    f"{replica.process.name} not ready within {self._timing.ready_timeout_s:g} s:\n"
                    + self._log_tail(replica.process)
                )
            await asyncio.sleep(PROBE_INTERVAL_S)  # polling interval of the readiness probe
        replica.state = "ready"

    async def _watch(self, replica: Replica) -> None:
        """Restart ``replica`` each time it exits, backing off while it keeps failing."""
        while True:
            assert replica.child is not None
            code = await replica.child.wait()
            _kill_group(replica.child.pid)  # what it started goes with it, as with a container
            if self._stopping:
                return
            replica.backoff_s = min(
                max(replica.backoff_s * 2, self._timing.first_backoff_s), self._timing.max_backoff_s
            )
            replica.state = f"exited ({code})"
            self._report(
                f"{replica.process.name} (pid {replica.pid}) exited with code {code}; "
                f"restarting in {replica.backoff_s:g} s"
            )
            await asyncio.sleep(replica.backoff_s)  # the restart backoff itself, not a synchronisation
            replica.restarts += 1
            await self._spawn(replica)
            try:
                await self._until_ready(replica)
            except StartError as exc:
                self._report(str(exc))
                continue
            replica.backoff_s = 0.0
            self._report(f"{replica.process.name} ready again (pid {replica.pid})")

    async def _stop(self, replica: Replica) -> None:
        child = replica.child
        if child is None or child.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(child.wait(), self._timing.grace_s)
        except asyncio.TimeoutError:
            pass
        _kill_group(child.pid)  # its own session: its workers go too, stopped in time or not
        await child.wait()
        replica.state = "stopped"

    @staticmethod
    def _log_tail(process: Process) -> str:
        try:
            lines = process.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            lines = []
        return "\n".join(f"    | {line}" for line in lines) or "    | (no output)"


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group (a child started with its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
