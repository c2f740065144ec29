"""The payload store of distributed mode: Redis (or Valkey) through ``redis.asyncio``.

Every operation is bounded by ``payload.timeout_ms`` twice: socket timeouts inside
redis-py, and ``asyncio.wait_for`` around the whole call (connecting, one retry,
reading), because a half-open connection or a paused server must give a clear error,
never a hang. The connection pool reconnects by itself, so the same store object works
again once Redis is back; one immediate retry hides a pooled connection the server closed.

Large values: the hiredis *command packer* copies a whole value into one buffer and makes
big SETs about 3x slower (research/feasibility.md §3). That packer is only used by the
synchronous client; ``redis.asyncio`` always packs with redis-py's Python packer, which
sends any value over 6000 bytes, and any memoryview, as its own chunk without a copy.
The hiredis *parser* (fast replies) is still used. So ``put`` passes a memoryview straight
through and needs no custom connection class (4 MiB on loopback, 2 cores: put 2.2 ms
median here, against 16.7 ms for a SET through the default synchronous client).

A store belongs to the event loop that first uses it (redis-py's asyncio connections do);
each process, and each loop in it, opens its own.

Passwords come from ``password_env`` or ``password_file`` (read once, at open) or the URL;
``name`` and every message show the URL without it. ``rediss://`` is TLS; certificate
options go in the URL's query (``?ssl_ca_certs=/etc/redis/ca.crt``), as redis-py reads them.
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pipeserve.payload import errors, keys, store
from pipeserve.pipeline import config
from pipeserve.pipeline import errors as pipeline_errors

T = TypeVar("T")

MAX_CONNECTIONS = 64
"""Connections one store opens at most; more concurrent operations wait for one."""

# Deletes a request's keys and its set in one step, so no reader sees half of it. UNLINK
# in slices: Lua's unpack() has a stack limit, and UNLINK frees big values off-thread.
_DELETE_REQUEST = """
local members = redis.call('SMEMBERS', KEYS[1])
local deleted = 0
for i = 1, #members, 1000 do
  deleted = deleted + redis.call('UNLINK', unpack(members, i, math.min(i + 999, #members)))
end
redis.call('UNLINK', KEYS[1])
return deleted
"""


def redacted_url(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` query item)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{host}" if user else host
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    shown = [(k, "***" if k == "password" else v) for k, v in query]
    kept = urllib.parse.urlencode(shown, safe="*")
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{kept}" if kept else "")


def read_password(settings: config.PayloadConfig) -> tuple[str | None, str]:
    """The Redis password from ``password_env`` or ``password_file``, and where it came from.

    A file's trailing newline is dropped (``echo secret > file`` writes one).

    Returns:
        ``(password, source)``; the password is None when neither key is set.

    Raises:
        pipeline.errors.ConfigError: The variable is unset or empty, or the file is
            unreadable or empty.
    """
    if settings.password_env is not None:
        name = settings.password_env
        password = os.environ.get(name, "")
        if not password:
            what = f"environment variable {name!r} is not set or is empty"
            raise pipeline_errors.ConfigError(f"payload.password_env: {what}")
        return password, f"environment variable {name}"
    if settings.password_file is not None:
        path = settings.password_file
        try:
            with open(path, encoding="utf-8") as file:
                password = file.read().rstrip("\r\n")
        except OSError as exc:
            what = f"cannot read the password file {path!r}: {exc.strerror}"
            raise pipeline_errors.ConfigError(f"payload.password_file: {what}") from exc
        if not password:
            raise pipeline_errors.ConfigError(f"payload.password_file: {path!r} is empty")
        return password, f"file {path}"
    return None, "payload.redis_url"


class RedisStore:
    """A :class:`~pipeserve.payload.store.PayloadStore` in Redis, shared by every process."""

    def __init__(self, settings: config.PayloadConfig, service: str) -> None:
        """Prepare the client; nothing connects until the first operation.

        Args:
            settings: The ``payload:`` section; ``redis_url`` must be set.
            service: The service whose keys this store names.

        Raises:
            pipeline.errors.ConfigError: No redis_url, or the password cannot be read.
        """
        if settings.redis_url is None:
            raise pipeline_errors.ConfigError("payload.redis_url: required when store is redis")
        self._settings = settings
        self._keys = keys.KeySpace(service)
        self._name = f"redis at {redacted_url(settings.redis_url)}"
        self._password, self._password_source = read_password(settings)
        url_password = urllib.parse.urlsplit(settings.redis_url).password
        self._secrets = [secret for secret in (self._password, url_password) if secret]
        self._timeout_s = settings.timeout_ms / 1000
        self._ttl_ms = max(1, round(settings.ttl_s * 1000))
        # A blocking pool: a burst of operations queues for a connection (bounded by the
        # timeout around each call) instead of failing at redis-py's default 100.
        try:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=MAX_CONNECTIONS,
                timeout=None,
                password=self._password,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=0,
            )
        except ValueError as exc:  # a port that is not a number, a bad query option
            what = f"{self._hide(str(exc))} in {redacted_url(settings.redis_url)!r}"
            raise pipeline_errors.ConfigError(f"payload.redis_url: {what}") from exc
        self._client = redis.asyncio.Redis.from_pool(pool)
        self._delete_script = self._client.register_script(_DELETE_REQUEST)

    @property
    def name(self) -> str:
        """``redis at <url without password>``."""
        return self._name

    @property
    def keys(self) -> keys.KeySpace:
        """Key names of the service this store was opened for."""
        return self._keys

    async def put(self, key: str, data: store.Bytes, request_set: str) -> None:
        """Write ``data`` and list ``key`` in ``request_set`` in one transaction; see
        PayloadStore."""
        view = store.as_view(data)
        store.check_size(self._name, key, view.nbytes, self._settings.max_value_bytes)

        async def write() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(key, view, px=self._ttl_ms)
                pipe.sadd(request_set, key)
                pipe.pexpire(request_set, self._ttl_ms)
                await pipe.execute()

        await self._call(f"put {key!r}", write)

    async def get(self, key: str, *, op: str | None = None, value: str | None = None) -> bytes:
        """The value under ``key``; see PayloadStore."""
        data = await self._call(f"get {key!r}", lambda: self._client.get(key))
        if data is None:
            raise store.expired(self._name, key, self._settings.ttl_s, op, value)
        # Always bytes (decode_responses is off); redis-py's types cannot say so.
        return data.encode() if isinstance(data, str) else data

    async def delete_request(self, request_set: str) -> int:
        """Delete every key of ``request_set`` and the set, in one script; see PayloadStore."""

        async def delete() -> int:
            return int(await self._delete_script(keys=[request_set]))

        return await self._call(f"delete_request {request_set!r}", delete)

    async def ping(self) -> None:
        """Check the store answers, e.g. at start-up or from a health check.

        Raises:
            PayloadStoreError: As any operation would.
        """
        await self._call("ping", lambda: self._client.ping())

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._client.aclose()

    async def _call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one store operation within the timeout, translating redis-py's errors."""
        try:
            return await asyncio.wait_for(operation(), self._timeout_s)
        except (TimeoutError, redis.exceptions.TimeoutError) as exc:
            limit = f"{self._settings.timeout_ms:g} ms (payload.timeout_ms)"
            problem = f"did not answer {what} within {limit}; check that Redis is up"
            raise self._error(problem) from exc
        except redis.exceptions.AuthenticationError as exc:
            if not self._secrets:
                hint = "set payload.password_env or payload.password_file"
                problem = f"requires a password ({what}); {hint}"
            else:
                problem = f"refused the password from {self._password_source} ({what}): {exc}"
            raise self._error(problem) from exc
        except redis.exceptions.ConnectionError as exc:
            problem = f"is unreachable ({what}): {exc}; check payload.redis_url and that Redis runs"
            raise self._error(problem) from exc
        except redis.exceptions.RedisError as exc:
            raise self._error(f"refused {what}: {exc}") from exc

    def _error(self, problem: str) -> errors.PayloadStoreError:
        return errors.PayloadStoreError(self._hide(f"payload store {self._name} {problem}"))

    def _hide(self, text: str) -> str:
        # Server and socket errors should never quote a password, but make sure.
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text
