"""Analyst (seed §6.2): a profile log turned into a Chrome trace.

``Analyst("profile.txt").save_trace("trace.json")`` reads every PROFILE line of the file
(server output may surround them) and writes a trace that chrome://tracing and Perfetto
load: each request is a process (``request data_id=7 log_id=12``), each op a thread of it
(an op service's stages on a thread of their own, ``bow @ remote:host:port``), and each
stage a complete (``"X"``) event. Events are written in time order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from pipeserve.pipeline import profile

_REQUEST_TRACK = "DAG"


class Analyst:
    """Reads a profile log (the seeds' class of the same name).

    Args:
        profile_file: a file holding PROFILE lines (``pipeline.profile``, or the server's
            saved standard output).

    Raises:
        FileNotFoundError: the file does not exist.
        profile.ProfileFormatError: a PROFILE line is malformed (file and line named).
    """

    def __init__(self, profile_file: str | os.PathLike[str]) -> None:
        self.profile_file = os.fspath(profile_file)
        with open(self.profile_file, encoding="utf-8", errors="replace") as lines:
            self.spans = list(profile.parse(lines, self.profile_file))

    def trace(self) -> dict[str, Any]:
        """The Chrome trace as a JSON-ready dict."""
        return chrome_trace(self.spans)

    def save_trace(self, trace_file: str | os.PathLike[str]) -> int:
        """Write the Chrome trace to ``trace_file``; returns how many stage events it holds."""
        trace = self.trace()
        with open(trace_file, "w", encoding="utf-8") as out:
            json.dump(trace, out)
        return sum(1 for event in trace["traceEvents"] if event["ph"] == "X")


def chrome_trace(spans: Iterable[profile.Span]) -> dict[str, Any]:
    """Chrome's Trace Event Format for ``spans``: metadata, then "X" events by time."""
    names: dict[int, str] = {}
    threads: dict[tuple[int, str], int] = {}
    events: list[dict[str, Any]] = []
    for span in spans:
        pid = span.data_id
        names.setdefault(pid, f"request data_id={span.data_id} log_id={span.log_id}")
        track = span.op if not span.where else f"{span.op} @ {span.where}"
        key = (pid, track)
        if key not in threads:
            threads[key] = 0 if span.op == _REQUEST_TRACK and not span.where else len(threads) + 1
        is_call = span.op == _REQUEST_TRACK and span.stage == "call"
        events.append({
            "name": span.stage,
            "cat": "request" if is_call else "stage",
            "ph": "X",
            "ts": span.start_us,
            "dur": max(0, span.end_us - span.start_us),
            "pid": pid,
            "tid": threads[key],
            "args": {"op": span.op, "where": span.where or "local", "data_id": span.data_id, "log_id": span.log_id},
        })  # fmt: skip
    events.sort(key=lambda event: (event["ts"], -event["dur"]))
    meta: list[dict[str, Any]] = []
    for pid, name in names.items():
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}})
        meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
    for (pid, track), tid in threads.items():
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": track}})
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
    return {"traceEvents": meta + events, "displayTimeUnit": "ms"}
