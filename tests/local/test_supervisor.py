"""``pipeserve run``'s supervisor with a small Redis stand-in: a process that answers PING.

Aspects: a process that exits is reported and restarted, with a backoff that doubles while
its restarts keep failing and resets once it is ready again; what an exited process started
is killed with it; Ctrl-C while a process is still starting stops it at once.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeserve.local import plan, supervisor

# Answers PING like Redis on the port it is given; exits with code 3 at once while the file
# `broken` exists; with `--child` first starts a grandchild that sleeps (its pid in `child`).
STAND_IN = """\
import os, pathlib, socket, subprocess, sys
port, here = int(sys.argv[1]), pathlib.Path(sys.argv[2])
if (here / "broken").exists():
    sys.exit(3)
if "--child" in sys.argv:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # sync-ok: a grandchild that lives until killed
    (here / "child").write_text(str(sleeper.pid))
server = socket.create_server(("127.0.0.1", port))
while True:
    connection, _ = server.accept()
    with connection:
        if connection.recv(64).startswith(b"PING"):
            connection.sendall(b"+PONG\\r\\n")
"""
DEADLINE_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stand_in_plan(tmp_path: Path, *extra: str, argv: tuple[str, ...] | None = None) -> plan.Plan:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    port = free_port()
    process = plan.Process(
        name="redis",
        kind="redis",
        argv=argv or (sys.executable, str(script), str(port), str(tmp_path), *extra),
        cwd=tmp_path,
        env={},
        port=port,
        log_path=tmp_path / "redis.log",
    )
    return plan.Plan(processes=(process,), http_url="http://127.0.0.1:1/x/prediction", grpc_target="-", notes=())


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def until(condition: Callable[[], bool], what: str, reports: list[str]) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` and the reports at the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what}, reported:\n" + "\n".join(reports)
        await asyncio.sleep(0.02)  # sync-ok: polls the condition, with a deadline


async def test_an_exited_process_is_restarted_with_a_backoff_that_doubles_while_it_keeps_failing(
    tmp_path: Path,
) -> None:
    reports: list[str] = []
    timing = supervisor.Timing(ready_timeout_s=10, grace_s=5, first_backoff_s=0.05, max_backoff_s=0.2)
    running = supervisor.Supervisor(stand_in_plan(tmp_path), reports.append, timing)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        await until(lambda: "Ctrl-C stops everything." in reports, "never ready", reports)
        (replica,) = running.replicas
        first = replica.pid
        assert first is not None
        (tmp_path / "broken").touch()
        os.kill(first, signal.SIGKILL)
        backoffs = re.compile(r"^redis \(pid \d+\) exited with code (-9|3); restarting in ([\d.]+) s$")
        await until(lambda: sum(bool(backoffs.match(r)) for r in reports) >= 4, "not restarted 4 times", reports)
        (tmp_path / "broken").unlink()
        await until(lambda: any(r.startswith("redis ready again") for r in reports), "not ready again", reports)
        exits = [m.groups() for r in reports if (m := backoffs.match(r))]
        assert exits[:4] == [("-9", "0.05"), ("3", "0.1"), ("3", "0.2"), ("3", "0.2")], reports
        assert any(r.startswith("redis exited with code 3 while starting:") for r in reports)
        assert replica.pid != first and replica.state == "ready" and replica.backoff_s == 0
        assert f"restarted {replica.restarts}x" in running.table()
        again = replica.pid
        assert again is not None
        os.kill(again, signal.SIGKILL)  # after a good restart the backoff starts over
        await until(lambda: f"redis (pid {again}) exited with code -9; restarting in 0.05 s" in reports, "", reports)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, DEADLINE_S) == 0
    assert replica.child is not None and replica.child.returncode is not None


async def test_what_an_exited_process_started_is_killed_with_it(tmp_path: Path) -> None:
    reports: list[str] = []
    timing = supervisor.Timing(ready_timeout_s=10, grace_s=5, first_backoff_s=0.05)
    running = supervisor.Supervisor(stand_in_plan(tmp_path, "--child"), reports.append, timing)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        await until(lambda: "Ctrl-C stops everything." in reports, "never ready", reports)
        grandchild = int((tmp_path / "child").read_text())
        (tmp_path / "child").unlink()
        assert alive(grandchild)
        os.kill(running.replicas[0].pid or 0, signal.SIGKILL)
        await until(lambda: not alive(grandchild), "the grandchild outlived its parent", reports)
        await until(lambda: (tmp_path / "child").exists(), "not restarted", reports)
        second = int((tmp_path / "child").read_text())
    finally:
        stop.set()
        assert await asyncio.wait_for(task, DEADLINE_S) == 0
    await until(lambda: not alive(second), "stopping left the restarted process' child behind", reports)


async def test_ctrl_c_while_starting_stops_at_once(tmp_path: Path) -> None:
    reports: list[str] = []
    never_ready = (sys.executable, "-c", "import time; time.sleep(600)")  # sync-ok: a process that never gets ready
    timing = supervisor.Timing(ready_timeout_s=300, grace_s=5)
    running = supervisor.Supervisor(stand_in_plan(tmp_path, argv=never_ready), reports.append, timing)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    await until(lambda: running.replicas[0].pid is not None, "never started", reports)
    pid = running.replicas[0].pid or 0
    stop.set()
    assert await asyncio.wait_for(task, DEADLINE_S) == 0
    assert reports == ["stopping before everything was ready"]
    await until(lambda: not alive(pid), "the starting process was left running", reports)
