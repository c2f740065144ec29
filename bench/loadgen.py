"""Load generators as child processes: wrk for HTTP, ``bench.grpc_load`` for gRPC.

Both report the same figures (requests/s, p50, p99, errors), parsed into ``Figures``. The load
generator shares the machine's two cores with the server, identically for a ceiling and a
pipeline, which is why only ratios measured in one run are meaningful.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from bench import workloads

BENCH_DIR = Path(__file__).resolve().parent
POST_LUA = BENCH_DIR / "post.lua"
#: Extra seconds a load generator may take past its duration before it is abandoned.
OVERRUN_S = 30.0

_LATENCY_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


class LoadError(RuntimeError):
    """The load generator failed or printed something unreadable."""


@dataclasses.dataclass(frozen=True)
class Figures:
    """What one load run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    """Socket errors, non-2xx answers, failed RPCs, and answers whose err_no is not 0."""
    cpu_us: float | None = None
    """CPU time the server used per answered request, in µs: the server, its worker processes
    and its op services, user and system time (None where not measured)."""


@dataclasses.dataclass(frozen=True)
class Load:
    """One kind of load: which workload, over which transport, at which concurrency."""

    workload: str
    transport: str
    connections: int
    grpc_channels: int = 1

    def describe(self) -> str:
        """E.g. "W1 over http, 32 connections"."""
        unit = "connection" if self.transport == "http" else "call"
        plural = "" if self.connections == 1 else "s"
        in_flight = " in flight" if self.transport == "grpc" else ""
        return f"{self.workload.upper()} over {self.transport}, {self.connections} {unit}{plural}{in_flight}"


def run(load: Load, port: int, duration_s: float) -> Figures:
    """Applies ``load`` to the server on 127.0.0.1:``port`` for ``duration_s`` seconds."""
    if load.transport == "http":
        return _run_wrk(load, port, duration_s)
    return _run_grpc_load(load, port, duration_s)


def _run_wrk(load: Load, port: int, duration_s: float) -> Figures:
    url = f"http://127.0.0.1:{port}{workloads.HTTP_PATH[load.workload]}"
    return wrk(url, workloads.request_json(load.workload), load.connections, duration_s)


def wrk(url: str, body: dict[str, object], connections: int, duration_s: float) -> Figures:
    """POSTs ``body`` (JSON) to ``url`` from ``connections`` connections for ``duration_s`` seconds."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "-s", str(POST_LUA), url]
    env = {**os.environ, "WRK_BODY": json.dumps(body)}
    return parse_wrk(_output(argv, env, duration_s))


def _run_grpc_load(load: Load, port: int, duration_s: float) -> Figures:
    argv = [
        sys.executable, "-m", "bench.grpc_load",
        "--target", f"127.0.0.1:{port}",
        "--workload", load.workload,
        "--concurrency", str(load.connections),
        "--duration", f"{duration_s:g}",
        "--channels", str(load.grpc_channels),
    ]  # fmt: skip
    output = _output(argv, {**os.environ, "PYTHONPATH": str(BENCH_DIR.parent)}, duration_s)
    try:
        figures = json.loads(output.strip().splitlines()[-1])
        return Figures(figures["rps"], figures["p50_ms"], figures["p99_ms"], int(figures["errors"]))
    except (IndexError, KeyError, ValueError) as error:
        raise LoadError(f"grpc_load printed no figures: {output[-2000:]}") from error


def _output(argv: list[str], env: dict[str, str], duration_s: float) -> str:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration_s + OVERRUN_S)
    except subprocess.TimeoutExpired as error:
        raise LoadError(f"{argv[0]} ran past {duration_s + OVERRUN_S:.0f} s") from error
    if done.returncode != 0:
        raise LoadError(f"{' '.join(argv[:3])} exited with code {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def parse_wrk(output: str) -> Figures:
    """Figures from ``wrk --latency`` output, with post.lua's ``err_no errors`` line."""

    def number(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise LoadError(f"wrk output has no match for {pattern!r}: {output[-2000:]}")
        return match

    def latency_ms(percent: int) -> float:
        value, unit = number(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m|h)\s*$").groups()
        return float(value) * _LATENCY_UNITS_MS[unit]

    rps = float(number(r"Requests/sec:\s+([\d.]+)").group(1))
    errors = int(number(r"err_no errors: (\d+)").group(1))
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(count) for count in match.groups())
    return Figures(rps, latency_ms(50), latency_ms(99), errors)
