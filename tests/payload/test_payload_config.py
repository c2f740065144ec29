"""The ``payload:`` section of config.yml: defaults, a full Redis section, and every bad
value refused with a message naming the file and the key path (never a password).
"""

from __future__ import annotations

import pathlib
import textwrap
from typing import Any

import pytest

from pipeserve.pipeline import config, errors


def load_payload(section: object) -> config.PayloadConfig:
    return config.load({"http_port": 0, "payload": section}).payload


def error_of(tmp_path: pathlib.Path, section: str) -> str:
    path = tmp_path / "config.yml"
    text = "http_port: 0\npayload:\n" + textwrap.indent(textwrap.dedent(section), "  ")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(errors.ConfigError) as info:
        config.load(path)
    return str(info.value)


def test_defaults_keep_payloads_in_memory_above_one_mebibyte() -> None:
    loaded = config.load({"http_port": 0}).payload

    assert loaded == config.PayloadConfig()
    assert loaded.store == "memory"
    assert loaded.redis_url is None
    assert (loaded.password_env, loaded.password_file) == (None, None)
    assert loaded.threshold_bytes == 1048576
    assert loaded.ttl_s == 300
    assert loaded.max_value_bytes == 512 * 1024 * 1024
    assert loaded.timeout_ms == 2000


def test_an_empty_section_keeps_the_defaults() -> None:
    assert load_payload(None) == config.PayloadConfig()


def test_a_full_redis_section_loads_into_the_right_attributes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        textwrap.dedent(
            """\
            http_port: 0
            payload:
              store: redis
              redis_url: rediss://redis.default.svc:6379/0
              password_env: REDIS_PASSWORD
              threshold_bytes: 65536
              ttl_s: 60
              max_value_bytes: 1048576
              timeout_ms: 500
            """
        ),
        encoding="utf-8",
    )

    assert config.load(path).payload == config.PayloadConfig(
        store="redis",
        redis_url="rediss://redis.default.svc:6379/0",
        password_env="REDIS_PASSWORD",
        threshold_bytes=65536,
        ttl_s=60,
        max_value_bytes=1048576,
        timeout_ms=500,
    )


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://redis:6380", "unix:///run/redis/redis.sock"]
)
def test_redis_unix_and_tls_urls_are_accepted(url: str) -> None:
    assert load_payload({"store": "redis", "redis_url": url}).redis_url == url


def test_a_password_file_is_accepted() -> None:
    loaded = load_payload({"store": "redis", "redis_url": "redis://r", "password_file": "/s/pw"})

    assert loaded.password_file == "/s/pw"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("threshold_bytes: 3", "payload.threshold_bytes: must be an integer >= 1024, got 3"),
        ("store: disk", "payload.store: must be one of memory, redis, got 'disk'"),
        (
            "store: redis",
            "payload.redis_url: required when store is redis (e.g. redis://redis:6379/0), got None",
        ),
        (
            "redis_url: http://redis:6379",
            "payload.redis_url: must be a redis://, rediss:// or unix:// URL, "
            "got 'http://redis:6379'",
        ),
        (
            "redis_url: 'redis://'",
            "payload.redis_url: must be a redis://, rediss:// or unix:// URL, got 'redis://'",
        ),
        (
            "redis_url: http://user:hunter2@redis:6379",
            "payload.redis_url: must be a redis://, rediss:// or unix:// URL, got '<redacted>'",
        ),
        (
            "redis_url: redis://:hunter2@redis:6379\npassword_env: REDIS_PASSWORD",
            "payload.redis_url: holds a password and password_env or password_file is set too; "
            "keep one, got '<redacted>'",
        ),
        (
            "password_env: REDIS_PASSWORD\npassword_file: /run/secrets/redis",
            "payload.password_file: cannot be set together with password_env; keep one, "
            "got '/run/secrets/redis'",
        ),
        (
            "password_env: 1BAD",
            "payload.password_env: must match [A-Za-z_][A-Za-z0-9_]* "
            "(an environment variable name), got '1BAD'",
        ),
        ("ttl_s: 0", "payload.ttl_s: must be a number of seconds > 0, got 0"),
        ("timeout_ms: -1", "payload.timeout_ms: must be a number of ms > 0, got -1"),
        ("max_value_bytes: true", "payload.max_value_bytes: must be an integer >= 1024, got True"),
        (
            "threshold_bytes: 4096\nmax_value_bytes: 2048",
            "payload.max_value_bytes: must be >= threshold_bytes (4096), got 2048",
        ),
        (
            "treshold_bytes: 4096",
            "payload.treshold_bytes: unknown key; did you mean 'threshold_bytes'? (allowed: "
            "max_value_bytes, password_env, password_file, redis_url, store, threshold_bytes, "
            "timeout_ms, ttl_s), got 4096",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_file_and_key(
    tmp_path: pathlib.Path, section: str, message: str
) -> None:
    assert error_of(tmp_path, section + "\n") == f"config.yml: {message}"


def test_a_section_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(errors.ConfigError) as info:
        load_payload(5)

    assert str(info.value) == "<dict>: payload: must be a mapping of keys to values, got 5"


def test_a_password_never_appears_in_a_config_error(tmp_path: pathlib.Path) -> None:
    sections: list[Any] = [
        "redis_url: http://user:hunter2@redis:6379\n",
        "redis_url: redis://:hunter2@redis:6379\npassword_file: /pw\n",
    ]

    for section in sections:
        assert "hunter2" not in error_of(tmp_path, section)
