"""PipelineServingLogs: the seeds' three rotating log files (seed §5).

- ``pipeline.log``: INFO and up (DEBUG and up with ``log: {level: DEBUG}``);
- ``pipeline.log.wf``: WARNING and up, where every error's traceback goes;
- ``pipeline.tracer``: the tracer's periodic figures (only the ``pipeserve.tracer`` logger).

Each file rotates at its ``max_bytes`` and keeps ``backup_count`` old files; the defaults
are the seeds' (512 MB; 20, 10 and 5 files). config.yml changes them::

    log_dir: PipelineServingLogs
    log:
      level: INFO
      pipeline.log: {max_bytes: 512000000, backup_count: 20}
      pipeline.log.wf: {max_bytes: 512000000, backup_count: 10}
      pipeline.tracer: {max_bytes: 512000000, backup_count: 5}

Lines about a request carry its ``data_id`` and ``log_id`` (:func:`request_tag`); a line
about a batch (an error, or at DEBUG the op run) lists every data_id of the batch with its
log_id, in one line. At INFO nothing is written per request or batch, so that serving at
INFO pays nothing for logs (a line costs tens of microseconds).
"""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import os
from collections.abc import Sequence
from typing import Any

from pipeserve.pipeline import config_parse as parse

_FORMAT = "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s"
_TRACER_FORMAT = "%(asctime)s %(message)s"

PIPELINE_LOG = "pipeline.log"
WF_LOG = "pipeline.log.wf"
TRACER_LOG = "pipeline.tracer"
TRACER_LOGGER = "pipeserve.tracer"
"""The logger whose lines go to ``pipeline.tracer`` only."""


@dataclasses.dataclass(frozen=True)
class Rotation:
    """When one log file rotates, and how many old files it keeps."""

    max_bytes: int
    """Rotate before the file would grow past this many bytes (0: never rotate)."""
    backup_count: int
    """Old files kept (``pipeline.log.1`` ...); older ones are deleted."""


DEFAULT_ROTATION = {
    PIPELINE_LOG: Rotation(512_000_000, 20),
    WF_LOG: Rotation(512_000_000, 10),
    TRACER_LOG: Rotation(512_000_000, 5),
}
"""The seeds' defaults (seed §5.2)."""

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO}


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """The ``log:`` section of config.yml (the directory is the top-level ``log_dir``)."""

    level: str = "INFO"
    """Lowest level written to pipeline.log: INFO, or DEBUG to add one line per op run of
    each request (with its stage times); DEBUG costs time on every request."""
    rotation: dict[str, Rotation] = dataclasses.field(default_factory=lambda: dict(DEFAULT_ROTATION))
    """Per file name: its rotation."""


def read_config(value: object, where: parse.Where) -> LogConfig:
    """Read the ``log:`` section (a config_parse reader)."""
    table = {
        "level": parse.Field("level", parse.choice({k.lower(): k for k in _LEVELS}, ", ".join(_LEVELS))),
        **{name: parse.Field(name, _rotation(name)) for name in DEFAULT_ROTATION},
    }
    values = parse.fields(value, where, table)
    rotation = dict(DEFAULT_ROTATION)
    for name in DEFAULT_ROTATION:
        if name in values:
            rotation[name] = values.pop(name)
    return LogConfig(rotation=rotation, **values)


def _rotation(name: str) -> parse.Reader:
    default = DEFAULT_ROTATION[name]

    def read(value: object, where: parse.Where) -> Rotation:
        table = {
            "max_bytes": parse.Field("max_bytes", parse.integer(0)),
            "backup_count": parse.Field("backup_count", parse.integer(0)),
        }
        return dataclasses.replace(default, **parse.fields(value, where, table))

    return read


_configured: tuple[str, LogConfig] | None = None


def setup(log_dir: str = "PipelineServingLogs", config: LogConfig | None = None) -> None:
    """Send the ``pipeserve`` loggers to the rotating files under ``log_dir``.

    Calling it again with the same directory and settings changes nothing; with others, the
    files move there.
    """
    global _configured
    config = config or LogConfig()
    if _configured == (log_dir, config):
        return
    os.makedirs(log_dir, exist_ok=True)
    root = logging.getLogger("pipeserve")
    tracer = logging.getLogger(TRACER_LOGGER)
    for logger in (root, tracer):
        for handler in list(logger.handlers):
            if getattr(handler, "_pipeserve", False):
                logger.removeHandler(handler)
                handler.close()
    level = _LEVELS[config.level]
    root.setLevel(level)
    for name, file_level in ((PIPELINE_LOG, level), (WF_LOG, logging.WARNING)):
        root.addHandler(_handler(os.path.join(log_dir, name), file_level, config.rotation[name], _FORMAT))
    tracer.propagate = False
    tracer.setLevel(logging.INFO)
    tracer.addHandler(_handler(os.path.join(log_dir, TRACER_LOG), logging.INFO, config.rotation[TRACER_LOG], _TRACER_FORMAT))
    _configured = (log_dir, config)


def request_tag(data_ids: Sequence[int], log_ids: Sequence[int]) -> str:
    """``data_id=3 log_id=7`` for one request; for a batch, every request of it in one tag."""
    return " ".join(f"data_id={d} log_id={lg}" for d, lg in zip(data_ids, log_ids))


class RequestLog:
    """An observer that writes one DEBUG line per op run: the requests, their stages.

    Registered only when pipeline.log's level is DEBUG, so that INFO serving pays nothing.
    A batch's line lists every data_id of the batch.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("pipeserve.requests")
        self._pending: dict[tuple[str, tuple[int, ...]], list[str]] = {}

    def on_stage(self, timing: Any) -> None:
        key = (timing.op, timing.data_ids)
        spans = self._pending.setdefault(key, [])
        where = f"@{timing.where}" if timing.where else ""
        spans.append(f"{timing.stage}{where}[{(timing.end_ns - timing.start_ns) / 1e6:.3f} ms]")
        if timing.stage == "out" and not timing.where:
            del self._pending[key]
            size = len(timing.data_ids)
            what = f"batch of {size}" if size > 1 else "request"
            self._logger.debug(
                "[%s] op '%s' ran %s: %s", request_tag(timing.data_ids, timing.log_ids), timing.op, what, " ".join(spans)
            )

    def on_batch(self, op: str, size: int) -> None:
        return None

    def on_request(self, name: str, err_no: int, start_ns: int, end_ns: int) -> None:
        return None

    def on_op_error(self, op: str, err_no: int) -> None:
        return None


def _handler(path: str, level: int, rotation: Rotation, fmt: str) -> logging.Handler:
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=rotation.max_bytes, backupCount=rotation.backup_count
    )
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(fmt))
    handler._pipeserve = True  # type: ignore[attr-defined]
    return handler
