"""The profile (seed §6.2, §6.3): one line per request with the start and end of every stage.

With ``dag.use_profile: true`` the server prints, for each request, a line in the seeds'
Timeline form to standard output, and writes the same line to ``pipeline.profile`` in the
log directory::

    PROFILE<TAB>pid:4242<TAB>call#DAG_0:1700000000000001 call#DAG_1:1700000000004321 in#bow_0:... in#bow_1:...<TAB>data_id:7<TAB>log_id:12

Each event is ``<stage>#<op>_0:<start>`` and ``<stage>#<op>_1:<end>``, in microseconds
since the epoch; a stage an op service ran names the op ``<op>@remote:<host:port>``. As in
the seeds' Timeline, the events are the third field, so tools written for the seeds' lines
read ours (those that split an event at its one ``:`` read the stages run here; a remote
stage's name holds the endpoint's colons); the request's ids follow. The Analyst
(:mod:`pipeserve.pipeline.analyst`) turns such lines, and the seeds', into a Chrome trace.
The client's ``predict(..., profile=True)`` prints the same line for its own request.
"""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from pipeserve.pipeline import observe

PREFIX = "PROFILE"
PROFILE_LOG = "pipeline.profile"
PROFILE_KEY = "pipeline.profile"
"""The key/value pair by which the seeds' client asks for its request's profile (value
``"1"``) and finds it in the response (the profile line)."""


def format_line(data_id: int, log_id: int, timeline: Iterable[observe.StageTiming], pid: int | None = None) -> str:
    """The profile line of one request (without its newline)."""
    events = []
    for timing in timeline:
        track = f"{timing.op}@{timing.where}" if timing.where else timing.op
        events.append(f"{timing.stage}#{track}_0:{timing.start_ns // 1000}")
        events.append(f"{timing.stage}#{track}_1:{timing.end_ns // 1000}")
    pid = os.getpid() if pid is None else pid
    return f"{PREFIX}\tpid:{pid}\t{' '.join(events)}\tdata_id:{data_id}\tlog_id:{log_id}"


@dataclasses.dataclass(frozen=True)
class Span:
    """One stage read back from a profile line (times in microseconds since the epoch)."""

    pid: int
    data_id: int
    log_id: int
    stage: str
    op: str
    where: str
    start_us: int
    end_us: int


_ID_FIELDS = frozenset({"pid", "data_id", "log_id"})


class ProfileFormatError(ValueError):
    """A PROFILE line that cannot be read; the message names the file and line."""


def parse(lines: Iterable[str], source: str = "profile") -> Iterator[Span]:
    """The spans of every PROFILE line; other lines (server output) are skipped.

    Lines of the seeds' own Timeline (no data_id field, ``prep#[op|0]_0:...``) are read
    too: their requests are numbered in order. So are lines written with the events last.

    Raises:
        ProfileFormatError: a PROFILE line is malformed.
    """
    unnamed = 0
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        at = line.find(PREFIX + "\t")
        if at < 0:
            continue
        info: dict[str, str] = {}
        events: list[str] = []
        for field in line[at:].split("\t")[1:]:
            key, _, value = field.partition(":")
            if key in _ID_FIELDS:
                info[key] = value
            else:
                events.append(field)
        try:
            pid = int(info.get("pid", "0"))
            if "data_id" in info:
                data_id = int(info["data_id"])
            else:
                data_id, unnamed = unnamed, unnamed + 1
            log_id = int(info.get("log_id", "0"))
            yield from _spans(" ".join(events), pid, data_id, log_id)
        except ValueError as exc:
            raise ProfileFormatError(f"{source}:{number}: not a profile line ({exc}): {line[:200]!r}") from None


def _spans(events: str, pid: int, data_id: int, log_id: int) -> Iterator[Span]:
    open_: dict[str, int] = {}
    for event in events.split():
        name, _, stamp = event.rpartition(":")
        label, _, edge = name.rpartition("_")
        if not label or edge not in ("0", "1"):
            raise ValueError(f"event {event!r} is not <stage>#<op>_0|1:<us>")
        when = int(stamp)
        if edge == "0":
            open_[label] = when
            continue
        start = open_.pop(label, when)
        stage, _, track = label.partition("#")
        op, _, where = track.partition("@")
        yield Span(pid, data_id, log_id, stage, op or "DAG", where, start, when)


class ProfileSink:
    """Writes each profiled request's line to standard output and to ``pipeline.profile``
    (rotating like pipeline.log: ``max_bytes``, ``backup_count``)."""

    def __init__(
        self,
        log_dir: str | None,
        stream: TextIO | None = None,
        max_bytes: int = 512_000_000,
        backup_count: int = 20,
    ) -> None:
        self._stream = stream
        self._logger: logging.Logger | None = None
        if log_dir is not None:
            self._logger = _file_logger(os.path.join(log_dir, PROFILE_LOG), max_bytes, backup_count)

    def __call__(self, result: Any) -> None:
        line = format_line(result.data_id, result.log_id, result.timeline or ())
        stream = self._stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()
        if self._logger is not None:
            self._logger.info(line)


def _file_logger(path: str, max_bytes: int, backup_count: int) -> logging.Logger:
    logger = logging.getLogger("pipeserve.profile")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        if getattr(handler, "baseFilename", None) == os.path.abspath(path):
            return logger
        logger.removeHandler(handler)
        handler.close()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backup_count, delay=True)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger
