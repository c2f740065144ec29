"""Stores for the payload tests: each test that takes ``store`` runs on memory and on Redis."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from pipeserve import payload
from pipeserve.pipeline import config

SERVICE = "imdb"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[payload.PayloadStore]:
    """A store opened for service ``imdb``, 4 KiB threshold and 64 KiB limit."""
    settings = config.PayloadConfig(threshold_bytes=4096, max_value_bytes=65536)
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        settings = dataclasses.replace(settings, store="redis", redis_url=server.url)
    opened = payload.open_store(settings, SERVICE)
    try:
        yield opened
    finally:
        await opened.close()
