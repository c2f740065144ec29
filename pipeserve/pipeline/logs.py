"""PipelineServingLogs: the seeds' three rotating log files (seed §5).

- ``pipeline.log``: INFO and up;
- ``pipeline.log.wf``: WARNING and up, where every error's traceback goes;
- ``pipeline.tracer``: the tracer's periodic figures.

Lines about a request carry its ``data_id`` and ``log_id``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os

_FORMAT = "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s"
_TRACER_FORMAT = "%(asctime)s %(message)s"

#: (file, level, maxBytes, backupCount): the seeds' defaults.
FILES = (
    ("pipeline.log", logging.INFO, 512_000_000, 20),
    ("pipeline.log.wf", logging.WARNING, 512_000_000, 10),
)
TRACER_FILE = ("pipeline.tracer", logging.INFO, 512_000_000, 5)

_configured: str | None = None


def setup(log_dir: str = "PipelineServingLogs") -> None:
    """Send the ``pipeserve`` loggers to the rotating files under ``log_dir`` (idempotent)."""
    global _configured
    if _configured == log_dir:
        return
    os.makedirs(log_dir, exist_ok=True)
    root = logging.getLogger("pipeserve")
    tracer = logging.getLogger("pipeserve.tracer")
    for logger in (root, tracer):
        for handler in list(logger.handlers):
            if getattr(handler, "_pipeserve", False):
                logger.removeHandler(handler)
                handler.close()
    root.setLevel(logging.INFO)
    for name, level, max_bytes, backups in FILES:
        root.addHandler(_handler(os.path.join(log_dir, name), level, max_bytes, backups, _FORMAT))
    name, level, max_bytes, backups = TRACER_FILE
    tracer.propagate = False
    tracer.setLevel(logging.INFO)
    tracer.addHandler(_handler(os.path.join(log_dir, name), level, max_bytes, backups, _TRACER_FORMAT))
    _configured = log_dir


def _handler(path: str, level: int, max_bytes: int, backups: int, fmt: str) -> logging.Handler:
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(fmt))
    handler._pipeserve = True  # type: ignore[attr-defined]
    return handler
