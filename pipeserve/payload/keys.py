"""Names of payload keys: one place decides them, so writers, readers and cleanup agree.

A value key is ``pipeserve:{service}:{data_id}:{op}:{value path}`` and the set listing
every key of a request is ``pipeserve:{service}:{data_id}:keys``. Each component is
percent-encoded outside ``[A-Za-z0-9_.-]``, so a ``:`` inside a value path (or a space, a
newline, a glob character) cannot shift the fields: a value key always has exactly five
``:``-separated parts and a set name four, so the two can never collide, and
``pipeserve:{service}:{data_id}:*`` matches one request's keys only.
"""

from __future__ import annotations

import dataclasses
import re

PREFIX = "pipeserve"
"""First component of every key, so one Redis can be shared with other applications."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def escape(component: str | int) -> str:
    """Make one key component safe: percent-encode every byte outside ``[A-Za-z0-9_.-]``.

    Args:
        component: A service, data_id, op name or value path, e.g. ``out['image']``.

    Returns:
        The component as it appears in a key, e.g. ``out%5B%27image%27%5D``.

    Raises:
        ValueError: When the component is empty.
    """
    text = str(component)
    if not text:
        raise ValueError("payload key components must not be empty")
    return _UNSAFE.sub(lambda match: "".join(f"%{b:02X}" for b in match[0].encode()), text)


def value_key(service: str, data_id: str | int, op: str, value: str) -> str:
    """The key of one value written by ``op`` for request ``data_id`` of ``service``."""
    parts = (PREFIX, escape(service), escape(data_id), escape(op), escape(value))
    return ":".join(parts)


def request_set(service: str, data_id: str | int) -> str:
    """The name of the Redis SET that lists every key of request ``data_id``."""
    return ":".join((PREFIX, escape(service), escape(data_id), "keys"))


@dataclasses.dataclass(frozen=True)
class KeySpace:
    """Key names of one service: what a store hands out so callers need not repeat it."""

    service: str

    def value_key(self, data_id: str | int, op: str, value: str) -> str:
        """The key of ``value`` written by ``op`` for request ``data_id``."""
        return value_key(self.service, data_id, op, value)

    def request_prefix(self, data_id: str | int) -> str:
        """What every value key of request ``data_id`` starts with (then ``op:value``)."""
        return ":".join((PREFIX, escape(self.service), escape(data_id), ""))

    def request_set(self, data_id: str | int) -> str:
        """The set listing every key of request ``data_id``."""
        return request_set(self.service, data_id)
