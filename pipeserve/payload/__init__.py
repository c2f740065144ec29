"""Payload stores: values too large to travel inline are written once, referenced by key.

``payload.store`` picks the store: ``memory`` in this process (embedded mode, the default)
or ``redis``, shared by the gateway and the op services. Both have the same API, limits,
TTLs and errors; see :class:`PayloadStore`.
"""

from __future__ import annotations

from pipeserve.payload import memory, redis_store
from pipeserve.payload.errors import (
    PayloadExpiredError,
    PayloadStoreError,
    PayloadValueTooLargeError,
)
from pipeserve.payload.keys import KeySpace
from pipeserve.payload.store import PayloadStore
from pipeserve.pipeline import config

__all__ = [
    "KeySpace",
    "PayloadExpiredError",
    "PayloadStore",
    "PayloadStoreError",
    "PayloadValueTooLargeError",
    "open_store",
]


def open_store(settings: config.PayloadConfig, service: str) -> PayloadStore:
    """The store ``settings`` ask for, for ``service``'s keys. Nothing connects yet.

    Args:
        settings: The ``payload:`` section of config.yml.
        service: The service's name, the second component of every key.

    Raises:
        pipeline.errors.ConfigError: The Redis password cannot be read.
    """
    if settings.store == "redis":
        return redis_store.RedisStore(settings, service)
    return memory.MemoryStore(settings, service)
