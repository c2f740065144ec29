"""Benchmarks the embedded pipelines for W1 and W2 against their ceilings, in one invocation.

For each case, every server (the ceiling first, then each pipeline variant) is started on free
ports, checked for the right answer, warmed up, loaded, and stopped, back to back, so that
each ratio compares figures taken minutes apart on the same noisy machine. The table gives
each server's figures, the ratio of its compared figure to the ceiling's, and the target.

Exits non-zero only when a case could not run (a server did not start or answered wrongly,
or a load generator failed); a missed target is reported, not an error.

Run: ``.venv/bin/python bench/run.py [--duration 20] [--only w1-http,w1-latency]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    # Started as a script (`python bench/run.py`): make the repository root importable, so
    # that this file and the servers it starts (`python -m bench...`) share one package.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from bench import loadgen, servers, workloads

BENCH_DIR = Path(__file__).resolve().parent
ANSWER_TOLERANCE = 1e-6
#: Seconds to wait for every worker of a multi-process pipeline to listen after the first answers.
WORKERS_LISTEN_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True)
class Server:
    """A server under test: the module to run and, for pipelines, the config it is given."""

    label: str
    module: str
    args: tuple[str, ...] = ()
    config: str | None = None
    """A YAML in bench/pipelines/; its ports are replaced with free ones."""
    workers: int = 1
    """Processes expected to listen on the HTTP port (SO_REUSEPORT workers)."""


@dataclasses.dataclass(frozen=True)
class Case:
    """A load, the ceiling it is measured against, and the pipelines with their targets."""

    name: str
    load: loadgen.Load
    figure: str
    """The compared figure: "rps" (higher is better) or "p50_ms" (lower is better)."""
    ceiling: Server
    contenders: tuple[tuple[Server, float | None], ...]
    """Each pipeline and its target factor against the ceiling's figure (None: report only)."""


W1_ASGI = Server("ceiling: bare ASGI", "bench.ceilings.w1_asgi")
W2_ASGI = Server("ceiling: bare ASGI + batcher", "bench.ceilings.w2_asgi")
ECHO_W1 = Server("ceiling: grpc.aio echo", "bench.ceilings.grpc_echo", ("--mode", "w1"))
ECHO_W2 = Server("ceiling: grpc.aio echo", "bench.ceilings.grpc_echo", ("--mode", "w2"))
W1_PIPELINE = Server("pipeline, 1 process", "bench.pipelines.w1_server", config="w1.yml")
W1_PIPELINE_2 = Server("pipeline, 2 workers", "bench.pipelines.w1_server", config="w1_workers2.yml", workers=2)
W2_PIPELINE = Server("pipeline", "bench.pipelines.w2_server", config="w2.yml")

CASES = (
    Case("w1-http", loadgen.Load("w1", "http", 32), "rps", W1_ASGI, ((W1_PIPELINE, 0.7), (W1_PIPELINE_2, 1.2))),
    Case("w1-grpc", loadgen.Load("w1", "grpc", 32), "rps", ECHO_W1, ((W1_PIPELINE, 0.6),)),
    Case("w2-http", loadgen.Load("w2", "http", 128), "rps", W2_ASGI, ((W2_PIPELINE, 0.9),)),
    Case("w2-grpc", loadgen.Load("w2", "grpc", 128), "rps", ECHO_W2, ((W2_PIPELINE, None),)),
    Case("w1-latency", loadgen.Load("w1", "http", 1), "p50_ms", W1_ASGI, ((W1_PIPELINE, 1.5),)),
)


@dataclasses.dataclass
class Outcome:
    """One server's result in one case: its median figures over the rounds, or why it failed."""

    case: Case
    server: Server
    target: float | None = None
    samples: list[loadgen.Figures] = dataclasses.field(default_factory=list)
    answer: float | None = None
    error: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def figures(self) -> loadgen.Figures | None:
        if not self.samples:
            return None
        return loadgen.Figures(
            rps=statistics.median(s.rps for s in self.samples),
            p50_ms=statistics.median(s.p50_ms for s in self.samples),
            p99_ms=statistics.median(s.p99_ms for s in self.samples),
            errors=sum(s.errors for s in self.samples),
        )


@dataclasses.dataclass(frozen=True)
class Options:
    duration_s: float
    warmup_s: float
    rounds: int
    ready_timeout_s: float
    workdir: Path


# --- Measuring --------------------------------------------------------------------------------


def _write_config(name: str, ports: dict[str, int], workdir: Path) -> Path:
    config = yaml.safe_load((BENCH_DIR / "pipelines" / name).read_text())
    config["http_port"] = ports["http"]
    config["rpc_port"] = ports["grpc"]
    path = workdir / f"{Path(name).stem}-{ports['http']}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _child_env() -> dict[str, str]:
    root = str(BENCH_DIR.parent)
    pythonpath = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath}


def _log_tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"    | {line}" for line in text) or "    | (no output)"


def measure_once(outcome: Outcome, options: Options, round_index: int) -> None:
    """Starts the server, checks its answer, warms it up, loads it, and stops it."""
    server, load = outcome.server, outcome.case.load
    ports = {"http": servers.free_port(), "grpc": servers.free_port()}
    port = ports[load.transport]
    argv = [sys.executable, "-m", server.module, *server.args]
    if server.config:
        argv += ["--config", str(_write_config(server.config, ports, options.workdir))]
    else:
        argv += ["--port", str(port)]
    slug = "".join(c if c.isalnum() else "-" for c in server.label)
    log_path = options.workdir / f"{outcome.case.name}-{slug}-{round_index}.log"
    with servers.running(argv, options.workdir, log_path, _child_env()) as process:
        try:
            servers.wait_ready(process, load.transport, port, load.workload, options.ready_timeout_s)
            _check_listeners(outcome, port)
            outcome.answer = _checked_answer(outcome, port)
            loadgen.run(load, port, options.warmup_s)
            figures = loadgen.run(load, port, options.duration_s)
            if process.poll() is not None:
                raise servers.ServerError(f"exited with code {process.returncode} during the load")
        except (servers.ServerError, loadgen.LoadError) as error:
            raise servers.ServerError(f"{error}\n  log {log_path.name}:\n{_log_tail(log_path)}") from error
    outcome.samples.append(figures)


def _check_listeners(outcome: Outcome, port: int) -> None:
    if outcome.server.workers > 1 and outcome.case.load.transport == "http":
        found = servers.wait_listening(port, outcome.server.workers, WORKERS_LISTEN_TIMEOUT_S)
        note = f"{found} socket(s) listening on the HTTP port for {outcome.server.workers} workers"
        if note not in outcome.notes:
            outcome.notes.append(note)


def _checked_answer(outcome: Outcome, port: int) -> float:
    workload = outcome.case.load.workload
    ask = servers.http_answer if outcome.case.load.transport == "http" else servers.grpc_answer
    answer = ask(port, workload)
    reference = workloads.expected(workload)
    if abs(answer - reference) > ANSWER_TOLERANCE:
        raise servers.ServerError(f"wrong answer {answer!r}, expected {reference!r}")
    return answer


def run_case(case: Case, options: Options) -> list[Outcome]:
    """Measures the ceiling and each contender, back to back, ``options.rounds`` times."""
    outcomes = [Outcome(case, case.ceiling), *(Outcome(case, s, t) for s, t in case.contenders)]
    for round_index in range(options.rounds):
        for outcome in outcomes:
            if outcome.error is not None:
                continue
            _progress(f"{case.name}: {outcome.server.label} (round {round_index + 1}/{options.rounds})")
            try:
                measure_once(outcome, options, round_index)
            except (servers.ServerError, OSError) as error:
                outcome.error = str(error)
                _progress(f"  could not run: {outcome.error}")
                continue
            _progress(f"  {_format_figures(outcome.samples[-1])}")
    _compare_answers(outcomes)
    return outcomes


def _compare_answers(outcomes: list[Outcome]) -> None:
    """Each pipeline's answer must equal the ceiling's, to within ``ANSWER_TOLERANCE``."""
    ceiling = outcomes[0].answer
    for outcome in outcomes[1:]:
        if ceiling is not None and outcome.answer is not None and abs(outcome.answer - ceiling) > ANSWER_TOLERANCE:
            outcome.error = f"answer {outcome.answer!r} differs from the ceiling's {ceiling!r}"


# --- Reporting --------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _format_figures(figures: loadgen.Figures) -> str:
    return f"{figures.rps:.0f} rps, p50 {figures.p50_ms:.2f} ms, p99 {figures.p99_ms:.2f} ms, {figures.errors} errors"


def _verdict(outcome: Outcome, ceiling: Outcome) -> tuple[str, str, str, str]:
    """The ceiling's figure, the ratio, the target and the result, as table cells."""
    mine, theirs = outcome.figures(), ceiling.figures()
    if outcome is ceiling or mine is None or theirs is None:
        return "", "", "", "could not run" if mine is None else ""
    figure = outcome.case.figure
    ceiling_value, ratio = getattr(theirs, figure), getattr(mine, figure) / getattr(theirs, figure)
    higher_is_better = figure == "rps"
    if outcome.target is None:
        target, result = "report only", ""
    else:
        target = f"{'>=' if higher_is_better else '<='} {outcome.target:.2f}"
        met = ratio >= outcome.target if higher_is_better else ratio <= outcome.target
        result = "meets" if met else "MISSES"
    if mine.errors:
        result += " (errors!)"
    unit = "rps" if higher_is_better else "ms p50"
    return f"{ceiling_value:.{0 if higher_is_better else 2}f} {unit}", f"{ratio:.2f}", target, result


def print_table(outcomes: list[Outcome]) -> None:
    header = ("case", "server", "rps", "p50 ms", "p99 ms", "errors", "ceiling", "ratio", "target", "result")
    rows = [header]
    for outcome in outcomes:
        ceiling = next(o for o in outcomes if o.case is outcome.case and o.server is outcome.case.ceiling)
        figures = outcome.figures()
        measured = (
            (f"{figures.rps:.0f}", f"{figures.p50_ms:.2f}", f"{figures.p99_ms:.2f}", str(figures.errors))
            if figures
            else ("-", "-", "-", "-")
        )
        rows.append((outcome.case.name, outcome.server.label, *measured, *_verdict(outcome, ceiling)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for outcome in outcomes:
        for note in outcome.notes:
            print(f"note: {outcome.case.name}, {outcome.server.label}: {note}")
        if outcome.error:
            print(f"could not run: {outcome.case.name}, {outcome.server.label}: {outcome.error}")


def to_json(outcomes: list[Outcome], options: Options) -> dict[str, object]:
    return {
        "duration_s": options.duration_s,
        "rounds": options.rounds,
        "results": [
            {
                "case": o.case.name,
                "load": o.case.load.describe(),
                "server": o.server.label,
                "is_ceiling": o.server is o.case.ceiling,
                "target": o.target,
                "figures": dataclasses.asdict(f) if (f := o.figures()) else None,
                "samples": [dataclasses.asdict(s) for s in o.samples],
                "error": o.error,
                "notes": o.notes,
            }
            for o in outcomes
        ],
    }


# --- Command line -----------------------------------------------------------------------------


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [case.name for case in CASES]
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per server (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="measure each server this many times; medians")
    parser.add_argument("--only", help=f"comma-separated cases, of: {','.join(names)}")
    parser.add_argument("--ceilings-only", action="store_true", help="measure only the ceilings")
    parser.add_argument("--grpc-channels", type=int, default=1, help="channels the gRPC load spreads over")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds a server may take to answer")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs and configs in this folder")
    args = parser.parse_args()
    selected = args.only.split(",") if args.only else names
    unknown = sorted(set(selected) - set(names))
    if unknown:
        parser.error(f"--only: unknown case(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.duration <= 0 or args.warmup <= 0 or args.rounds < 1 or args.grpc_channels < 1:
        parser.error("--duration and --warmup must be > 0, --rounds and --grpc-channels >= 1")
    args.cases = [case for case in CASES if case.name in selected]
    return args


def _selected_cases(args: argparse.Namespace) -> list[Case]:
    cases: list[Case] = []
    for case in args.cases:
        load = dataclasses.replace(case.load, grpc_channels=args.grpc_channels)
        contenders = () if args.ceilings_only else case.contenders
        cases.append(dataclasses.replace(case, load=load, contenders=contenders))
    return cases


def main() -> int:
    args = _parse_args()
    cases = _selected_cases(args)
    if any(case.load.transport == "http" for case in cases) and shutil.which("wrk") is None:
        print("wrk is not installed: run bench/setup.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="pipeserve-bench-") as scratch:
        workdir = args.logs or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        options = Options(args.duration, args.warmup, args.rounds, args.ready_timeout, workdir.resolve())
        outcomes = [outcome for case in cases for outcome in run_case(case, options)]
    print(f"\n{options.duration_s:g} s per run after {options.warmup_s:g} s warm-up; medians of "
          f"{options.rounds} round(s); ratio = pipeline / ceiling on the compared figure.")  # fmt: skip
    for case in cases:
        print(f"  {case.name}: {case.load.describe()}, compares {case.figure}")
    print()
    print_table(outcomes)
    if args.json:
        args.json.write_text(json.dumps(to_json(outcomes, options), indent=2))
    return 1 if any(outcome.error for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
