"""The results as a table for people and as JSON for tools.

One row per server: its figures, then, for a pipeline, the ceiling's compared figure, the ratio
of its own to it, the target and whether it is met. Figures are medians over the rounds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench import loadgen
from bench.cases import CaseResult, Outcome

HEADER = ("case", "server", "rps", "p50 ms", "p99 ms", "errors", "ceiling", "ratio", "target", "result")


def format_figures(figures: loadgen.Figures) -> str:
    """One line of figures, for progress messages."""
    return (
        f"{figures.rps:.0f} rps, p50 {figures.p50_ms:.2f} ms, p99 {figures.p99_ms:.2f} ms, "
        f"{figures.errors} errors"
    )


def _measured_cells(outcome: Outcome) -> tuple[str, ...]:
    figures = outcome.figures()
    if figures is None:
        return ("-", "-", "-", "-")
    return (f"{figures.rps:.0f}", f"{figures.p50_ms:.2f}", f"{figures.p99_ms:.2f}", str(figures.errors))


def _verdict_cells(result: CaseResult, outcome: Outcome) -> tuple[str, ...]:
    """The ceiling's figure, the ratio, the target and the result."""
    if outcome.error is not None:
        return ("", "", "", "could not run")
    mine, ceiling = outcome.figures(), result.ceiling.figures()
    if outcome is result.ceiling or mine is None or ceiling is None:
        return ("", "", "", "")
    case = result.case
    ceiling_value = getattr(ceiling, case.figure)
    ratio = getattr(mine, case.figure) / ceiling_value
    if outcome.target is None:
        target, verdict = "report only", ""
    else:
        met = ratio >= outcome.target if case.higher_is_better else ratio <= outcome.target
        target = f"{'>=' if case.higher_is_better else '<='} {outcome.target:.2f}"
        verdict = "meets" if met else "MISSES"
    if mine.errors:
        verdict += " (errors!)"
    shown = f"{ceiling_value:.0f} rps" if case.higher_is_better else f"{ceiling_value:.2f} ms p50"
    return (shown, f"{ratio:.2f}", target, verdict)


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
