"""Benchmarks the embedded pipelines for W1 and W2 against their ceilings, in one invocation.

For each case, every server (the ceiling first, then each pipeline variant) is started on free
ports, checked for the right answer, warmed up, loaded, and stopped, back to back, so that
each ratio compares figures taken a minute apart on the same noisy machine. A distributed
variant's op services are started before its gateway and stopped after it. With ``--rounds
N`` the sequence repeats N times and the table shows medians.

Exits non-zero only when a case could not run (a server did not start or answered wrongly,
or a load generator failed); a missed target is reported, not an error.

Run: ``.venv/bin/python bench/run.py [--duration 20] [--only w1-http,w1-latency]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    # Started as a script (`python bench/run.py`): make the repository root importable, so
    # that this file and the servers it starts (`python -m bench...`) share one package.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from bench import loadgen, report, servers, workloads
from bench.cases import CASES, Case, CaseResult, Outcome, Server

BENCH_DIR = Path(__file__).resolve().parent
ANSWER_TOLERANCE = 1e-6
#: Seconds to wait for every worker of a multi-process pipeline to listen after the first answers.
WORKERS_LISTEN_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True)
class Options:
    """How long and how often to measure, and where servers keep their logs."""

    duration_s: float
    warmup_s: float
    rounds: int
    ready_timeout_s: float
    workdir: Path


def _write_config(name: str, ports: dict[str, int], workdir: Path, op_ports: dict[str, int], server: Server) -> Path:
    """A copy of bench/pipelines/``name`` with the free ports filled in, and each remote op's
    op service as its ``server_endpoints`` (with its ``class``, for the record)."""
    config = yaml.safe_load((BENCH_DIR / "pipelines" / name).read_text())
    config["http_port"] = ports["http"]
    config["rpc_port"] = ports["grpc"]
    for op, class_path in server.op_services:
        section = config.setdefault("op", {}).setdefault(op, {})
        section["server_endpoints"] = [f"127.0.0.1:{op_ports[op]}"]
        section["class"] = class_path
    path = workdir / f"{Path(name).stem}-{ports['http']}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _child_env() -> dict[str, str]:
    """The environment, with the repository root importable (for ``python -m bench...``)."""
    root = str(BENCH_DIR.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def _log_tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"    | {line}" for line in text) or "    | (no output)"


def measure_once(case: Case, outcome: Outcome, options: Options, round_index: int) -> None:
    """Starts the server (after its op services), checks its answer, warms it up, loads it,
    and stops it (then its op services)."""
    server, load = outcome.server, case.load
    ports = {"http": servers.free_port(), "grpc": servers.free_port()}
    port = ports[load.transport]
    slug = re.sub(r"[^a-z0-9]+", "-", server.label.lower()).strip("-")
    log_stem = f"{case.name}-{slug}-{round_index + 1}"
    log_path = options.workdir / f"{log_stem}.log"
    # The op services enter the stack first, so they are stopped after the gateway.
    with contextlib.ExitStack() as stack:
        op_services = _start_op_services(server, options, log_stem, stack)
        argv = [sys.executable, "-m", server.module, *server.args]
        if server.config:
            op_ports = {op: op_port for op, (op_port, _) in op_services.items()}
            argv += ["--config", str(_write_config(server.config, ports, options.workdir, op_ports, server))]
        else:
            argv += ["--port", str(port)]
        process = stack.enter_context(servers.running(argv, options.workdir, log_path, _child_env()))
        try:
            servers.wait_ready(process, load.transport, port, load.workload, options.ready_timeout_s)
            _note_listeners(case, outcome, port)
            outcome.answer = _checked_answer(case, port)
            loadgen.run(load, port, options.warmup_s)
            roots = [process.pid, *(service.pid for _, service in op_services.values())]
            pids = [pid for root in roots for pid in servers.tree(root)]
            cpu_before = servers.cpu_seconds(pids)
            figures = loadgen.run(load, port, options.duration_s)
            figures = _with_cpu(figures, servers.cpu_seconds(pids) - cpu_before, options.duration_s)
            if process.poll() is not None:
                raise servers.ServerError(f"exited with code {process.returncode} during the load")
            for op, (_, service) in op_services.items():
                if service.poll() is not None:
                    service_log = options.workdir / f"{log_stem}-{op}.log"
                    raise servers.ServerError(
                        f"op service '{op}' exited with code {service.returncode} (log {service_log})"
                    )
        except (servers.ServerError, loadgen.LoadError) as error:
            raise servers.ServerError(f"{error}\n  log {log_path}:\n{_log_tail(log_path)}") from error
    outcome.samples.append(figures)


def _with_cpu(figures: loadgen.Figures, cpu_s: float, duration_s: float) -> loadgen.Figures:
    """``figures`` with the server's CPU time per request (approximate: requests = rps x duration)."""
    requests = figures.rps * duration_s
    return dataclasses.replace(figures, cpu_us=cpu_s / requests * 1e6 if requests else None)


def _start_op_services(
    server: Server, options: Options, log_stem: str, stack: contextlib.ExitStack
) -> dict[str, tuple[int, subprocess.Popen[bytes]]]:
    """Starts an op service per remote op of ``server``, on a free loopback port, until
    ``stack`` closes; waits for each one's banner. Returns each op's port and process."""
    started: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    if server.op_service_config is None:  # no op services (Server checks that they come with one)
        return started
    for op, class_path in server.op_services:
        port = servers.free_port()
        argv = [
            sys.executable, "-m", "pipeserve.cli", "opservice",
            "--config", str(BENCH_DIR / "pipelines" / server.op_service_config),
            "--op", op, "--class", class_path, "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        log_path = options.workdir / f"{log_stem}-{op}.log"
        process = stack.enter_context(servers.running(argv, options.workdir, log_path, _child_env()))
        try:
            servers.wait_banner(process, log_path, f"op service '{op}' serving on", options.ready_timeout_s)
        except servers.ServerError as error:
            raise servers.ServerError(f"op service '{op}': {error}\n  log {log_path}:\n{_log_tail(log_path)}") from error
        started[op] = (port, process)
    return started


def _note_listeners(case: Case, outcome: Outcome, port: int) -> None:
    """For a multi-process pipeline: how many of its workers listen (load may land on one)."""
    if outcome.server.workers == 1 or case.load.transport != "http":
        return
    found = servers.wait_listening(port, outcome.server.workers, WORKERS_LISTEN_TIMEOUT_S)
    note = f"{found} socket(s) listening on the HTTP port for {outcome.server.workers} workers"
    if note not in outcome.notes:
        outcome.notes.append(note)


def _checked_answer(case: Case, port: int) -> float:
    """One request's answer, which must be the reference's (the same code, run here)."""
    workload = case.load.workload
    ask = servers.http_answer if case.load.transport == "http" else servers.grpc_answer
    answer = ask(port, workload)
    reference = workloads.expected(workload)
    if abs(answer - reference) > ANSWER_TOLERANCE:
        raise servers.ServerError(f"wrong answer {answer!r}, expected {reference!r}")
    return answer


def run_case(case: Case, options: Options) -> CaseResult:
    """Measures the ceiling and each contender, back to back, ``options.rounds`` times."""
    result = CaseResult.empty(case)
    for round_index in range(options.rounds):
        for outcome in result.outcomes:
            if outcome.error is not None:
                continue
            _progress(f"{case.name}: {outcome.server.label} (round {round_index + 1}/{options.rounds})")
            try:
                measure_once(case, outcome, options, round_index)
            except (servers.ServerError, OSError) as error:
                outcome.error = str(error)
                _progress(f"  could not run: {outcome.error}")
                continue
            _progress(f"  {report.format_figures(outcome.samples[-1])}")
    _compare_answers(result)
    return result


def _compare_answers(result: CaseResult) -> None:
    """Each pipeline's answer must equal the ceiling's, to within ``ANSWER_TOLERANCE``."""
    ceiling = result.ceiling.answer
    for outcome in result.outcomes[1:]:
        if ceiling is None or outcome.answer is None:
            continue
        if abs(outcome.answer - ceiling) > ANSWER_TOLERANCE:
            outcome.error = f"answer {outcome.answer!r} differs from the ceiling's {ceiling!r}"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = [case.name for case in CASES]
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of load per server (default 20)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="measure each server this many times (medians)")
    parser.add_argument("--only", help=f"comma-separated cases, of: {','.join(names)}")
    parser.add_argument("--ceilings-only", action="store_true", help="measure the ceilings, no pipeline")
    parser.add_argument("--grpc-channels", type=int, default=1, help="channels the gRPC load spreads over")
    parser.add_argument(
        "--ready-timeout", type=float, default=60.0, help="seconds a server may take to start"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs and configs in this folder")
    args = parser.parse_args()
    selected = args.only.split(",") if args.only else names
    if unknown := sorted(set(selected) - set(names)):
        parser.error(f"--only: unknown case(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.duration <= 0 or args.warmup <= 0 or args.rounds < 1 or args.grpc_channels < 1:
        parser.error("--duration and --warmup must be > 0, --rounds and --grpc-channels >= 1")
    args.selected = selected
    return args


def _cases(args: argparse.Namespace) -> list[Case]:
    """The selected cases, with the command line's gRPC channels and without pipelines if asked."""
    cases = []
    for case in CASES:
        if case.name in args.selected:
            load = dataclasses.replace(case.load, grpc_channels=args.grpc_channels)
            contenders = () if args.ceilings_only else case.contenders
            cases.append(dataclasses.replace(case, load=load, contenders=contenders))
    return cases


def main() -> int:
    """Runs the selected cases and prints the table; 1 when a case could not run."""
    args = _parse_args()
    cases = _cases(args)
    if any(case.load.transport == "http" for case in cases) and shutil.which("wrk") is None:
        print("wrk is not installed: run bench/setup.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="pipeserve-bench-") as scratch:
        workdir = (args.logs or Path(scratch)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        options = Options(args.duration, args.warmup, args.rounds, args.ready_timeout, workdir)
        results = [run_case(case, options) for case in cases]
    print(f"\n{args.duration:g} s of load per run after {args.warmup:g} s of warm-up;", end=" ")
    print(f"medians of {args.rounds} round(s).")
    for case in cases:
        print(f"  {case.name}: {case.load.describe()}; ratio = {case.figure} / the ceiling's {case.figure}", end="")
        print(", then / the baseline's" if any(c.baseline for c in case.contenders) else "")
        for contender in case.contenders:
            if contender.baseline is not None:
                print(f"    baseline of {contender.server.label!r}: {contender.baseline.label!r}")
    print()
    print(report.table(results))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(results, args.duration, args.rounds), indent=2))
    failed = any(outcome.error for result in results for outcome in result.outcomes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
