"""The results as a table for people and as JSON for tools.

One row per server: its figures, then, for a pipeline, the ceiling's compared figure and the
ratio of its own to it, the same for its baseline (another pipeline of the case) if it has one,
the target and whether it is met. A target applies to the baseline's ratio where there is a
baseline, else to the ceiling's. Figures are medians over the rounds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench import loadgen
from bench.cases import Case, CaseResult, Outcome

HEADER = (
    "case", "server", "rps", "p50 ms", "p99 ms", "errors", "cpu us/req",
    "ceiling", "ratio", "baseline", "ratio", "target", "result",
)  # fmt: skip


def format_figures(figures: loadgen.Figures) -> str:
    """One line of figures, for progress messages."""
    cpu = "" if figures.cpu_us is None else f", {figures.cpu_us:.0f} us CPU per request"
    return (
        f"{figures.rps:.0f} rps, p50 {figures.p50_ms:.2f} ms, p99 {figures.p99_ms:.2f} ms, "
        f"{figures.errors} errors{cpu}"
    )


def _measured_cells(outcome: Outcome) -> tuple[str, ...]:
    figures = outcome.figures()
    if figures is None:
        return ("-", "-", "-", "-", "-")
    cpu = "-" if figures.cpu_us is None else f"{figures.cpu_us:.0f}"
    return (f"{figures.rps:.0f}", f"{figures.p50_ms:.2f}", f"{figures.p99_ms:.2f}", str(figures.errors), cpu)


def _verdict_cells(result: CaseResult, outcome: Outcome) -> tuple[str, ...]:
    """The ceiling's figure and the ratio to it, the baseline's and the ratio, the target, the result."""
    if outcome.error is not None:
        return ("", "", "", "", "", "could not run")
    mine = outcome.figures()
    if outcome is result.ceiling or mine is None:
        return ("",) * 6
    case = result.case
    ceiling_cells, ceiling_ratio = _compared(case, mine, result.ceiling)
    baseline = result.baseline_of(outcome)
    baseline_cells, baseline_ratio = _compared(case, mine, baseline) if baseline else (("", ""), None)
    ratio = ceiling_ratio if baseline is None else baseline_ratio
    target, verdict = "report only", ""
    if outcome.target is not None:
        target = f"{'>=' if case.higher_is_better else '<='} {outcome.target:.2f}"
        target += "" if baseline is None else " x baseline"
        if ratio is not None:
            met = ratio >= outcome.target if case.higher_is_better else ratio <= outcome.target
            verdict = "meets" if met else "MISSES"
    if mine.errors:
        verdict += " (errors!)"
    return (*ceiling_cells, *baseline_cells, target, verdict)


def _compared(case: Case, mine: loadgen.Figures, other: Outcome) -> tuple[tuple[str, str], float | None]:
    """``other``'s compared figure and the ratio of ``mine`` to it (blank if not measured)."""
    theirs = other.figures()
    if theirs is None:
        return ("", ""), None
    value = getattr(theirs, case.figure)
    ratio: float = getattr(mine, case.figure) / value
    shown = f"{value:.0f} rps" if case.higher_is_better else f"{value:.2f} ms p50"
    return (shown, f"{ratio:.2f}"), ratio


def table(results: list[CaseResult]) -> str:
    """The results table, then a line per note and per failure."""
    rows: list[tuple[str, ...]] = [HEADER]
    for result in results:
        for outcome in result.outcomes:
            cells = (*_measured_cells(outcome), *_verdict_cells(result, outcome))
            rows.append((result.case.name, outcome.server.label, *cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    for result in results:
        for outcome in result.outcomes:
            where = f"{result.case.name}, {outcome.server.label}"
            lines += [f"note: {where}: {note}" for note in outcome.notes]
            if outcome.error:
                lines.append(f"could not run: {where}: {outcome.error}")
    return "\n".join(lines)


def to_json(results: list[CaseResult], duration_s: float, rounds: int) -> dict[str, Any]:
    """Every figure and sample, for comparing runs."""
    return {
        "duration_s": duration_s,
        "rounds": rounds,
        "results": [
            {
                "case": result.case.name,
                "load": result.case.load.describe(),
                "compared": result.case.figure,
                "server": outcome.server.label,
                "is_ceiling": outcome is result.ceiling,
                "target": outcome.target,
                "baseline": outcome.baseline.label if outcome.baseline else None,
                "figures": dataclasses.asdict(figures) if (figures := outcome.figures()) else None,
                "samples": [dataclasses.asdict(sample) for sample in outcome.samples],
                "answer": outcome.answer,
                "error": outcome.error,
                "notes": outcome.notes,
            }
            for result in results
            for outcome in result.outcomes
        ],
    }
