"""Typed reading of config.yml values: each reader checks one value and knows where it sits.

Kept apart from ``config.py`` so that module says only what config.yml *means* (its
sections, defaults and the rules between keys) while this one says how a single value
is checked. Every reader has the signature ``(value, where) -> typed value`` and raises
``ConfigError("config.yml: op.bow.batch_size: must be an integer >= 1, got 0")``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

from pipeserve.pipeline import errors

T = TypeVar("T")

Reader = Callable[[object, "Where"], Any]
"""Checks one YAML value found at ``where`` and returns it typed, or raises ConfigError."""


@dataclasses.dataclass(frozen=True)
class Where:
    """A place in a config: the file's name and the dotted key path inside it."""

    source: str
    path: str = ""

    def at(self, key: str) -> Where:
        """The place of ``key`` inside this mapping."""
        return Where(self.source, f"{self.path}.{key}" if self.path else key)

    def index(self, position: int) -> Where:
        """The place of item ``position`` inside this list."""
        return Where(self.source, f"{self.path}[{position}]")

    def error(self, what: str, value: object) -> errors.ConfigError:
        """An error for this place: ``file: key.path: what, got value``."""
        path = self.path or "(top level)"
        return errors.ConfigError(f"{self.source}: {path}: {what}, got {value!r}")


class Field(NamedTuple):
    """One known key of a section: the attribute it fills (None: accepted and ignored)."""

    attr: str | None
    read: Reader


def _as_int(value: object) -> int | None:
    # bool is a subclass of int, but `batch_size: true` is a mistake, not a 1.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_number(value: object) -> float | None:
    number = float(value) if isinstance(value, float) else _as_int(value)
    return float(number) if number is not None and math.isfinite(number) else None


def boolean(value: object, where: Where) -> bool:
    """Read ``true``/``false``; YAML's 0/1 or strings are refused."""
    if isinstance(value, bool):
        return value
    raise where.error("must be true or false", value)


def string(value: object, where: Where) -> str:
    """Read a non-empty string."""
    if isinstance(value, str) and value:
        return value
    raise where.error("must be a non-empty string", value)


def integer(minimum: int, maximum: int | None = None) -> Reader:
    """A reader of integers within ``minimum..maximum`` (no upper bound when None)."""
    bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"

    def read(value: object, where: Where) -> int:
        number = _as_int(value)
        if number is not None and minimum <= number and (maximum is None or number <= maximum):
            return number
        raise where.error(f"must be an integer {bounds}", value)

    return read


def positive(unit: str) -> Reader:
    """A reader of finite numbers > 0, in ``unit`` (named in the message)."""

    def read(value: object, where: Where) -> float:
        number = _as_number(value)
        if number is not None and number > 0:
            return number
        raise where.error(f"must be a number of {unit} > 0", value)

    return read


def timeout_ms(value: object, where: Where) -> float:
    """Read a timeout in ms: > 0, or any negative number (normalised to -1) for none."""
    number = _as_number(value)
    if number is not None and number != 0:
        return number if number > 0 else -1.0
    raise where.error("must be a number of ms > 0, or -1 for no timeout", value)


def matching(pattern: str, hint: str) -> Reader:
    """A reader of strings that fully match ``pattern``; ``hint`` says it in words."""
    compiled = re.compile(pattern)

    def read(value: object, where: Where) -> str:
        if isinstance(value, str) and compiled.fullmatch(value):
            return value
        raise where.error(f"must match {pattern} ({hint})", value)

    return read


def choice(options: Mapping[str, T], shown: str) -> Callable[[object, Where], T]:
    """A reader of one of ``options``' keys, case-insensitive; returns the key's value."""

    def read(value: object, where: Where) -> T:
        if isinstance(value, str) and value.lower() in options:
            return options[value.lower()]
        raise where.error(f"must be one of {shown}", value)

    return read


def list_of(
    item: Reader, expected: str, *, single: bool = False, non_empty: bool = False
) -> Reader:
    """A reader of YAML lists into tuples, each item read by ``item`` at ``key[i]``.

    Args:
        item: Reader of each element.
        expected: What the list should be, for the message (``"a list of strings"``).
        single: Also accept one bare string, as a one-item list.
        non_empty: Refuse an empty list.
    """

    def read(value: object, where: Where) -> tuple[Any, ...]:
        if single and isinstance(value, str):
            return (item(value, where),)
        if not isinstance(value, list) or (non_empty and not value):
            raise where.error(f"must be {expected}", value)
        return tuple(item(element, where.index(i)) for i, element in enumerate(value))

    return read


def card_ids(value: object, where: Where) -> tuple[int, ...]:
    """Read ``"0,1,2"``, ``""``, ``0`` or ``[0, 1]`` into card ids."""
    if isinstance(value, str):
        items: list[object] = [part.strip() for part in value.split(",")] if value.strip() else []
    elif isinstance(value, list):
        items = list(value)
    else:
        items = [value]
    ids = []
    for item in items:
        if isinstance(item, str) and item.isascii() and item.isdigit():
            item = int(item)
        if not isinstance(item, int) or isinstance(item, bool) or item < 0:
            raise where.error('must be card ids like "0" or "0,1,2", or "" for CPU', value)
        ids.append(item)
    return tuple(ids)


_TARGET_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")


def endpoint(value: object, where: Where) -> str:
    """Read an op service address: ``"host:port"``, or a gRPC target such as
    ``"dns:///bow.default.svc:9000"`` or ``"ipv4:10.0.0.1:9000,10.0.0.2:9000"``."""
    if isinstance(value, str):
        if value.startswith(_TARGET_SCHEMES):
            if value.partition(":")[2].strip("/"):
                return value
        else:
            host, _, port = value.rpartition(":")
            if host and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535:
                return value
    raise where.error('must be "host:port" or a gRPC target such as "dns:///name:port"', value)


def import_path(value: object, where: Where) -> str:
    """Read a ``"module:Class"`` string (a dotted module, then the attribute)."""
    if isinstance(value, str):
        module, colon, attr = value.partition(":")
        names = [*module.split("."), *attr.split(".")]
        if colon and all(name.isidentifier() for name in names):
            return value
    raise where.error('must be "module:Class", e.g. "ops:BowOp"', value)


def mapping(value: object, where: Where) -> Mapping[str, object]:
    """Read a mapping section; an empty section (YAML null) reads as ``{}``."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return value
    raise where.error("must be a mapping of keys to values", value)


def fields(
    value: object, where: Where, table: Mapping[str, Field], *, open_ended: bool = False
) -> dict[str, Any]:
    """Read a mapping section whose keys are listed in ``table``.

    Keys set to null keep their default, so they are left out of the result.

    Args:
        value: The section as YAML loaded it.
        where: The section's place.
        table: Known keys: the attribute each fills and its reader.
        open_ended: Keep unknown string keys, unchecked, under their own name instead
            of refusing them (``local_service_conf`` passes them on to the runtime).

    Returns:
        Attribute name → checked value.
    """
    result: dict[str, Any] = {}
    for key, raw in mapping(value, where).items():
        at = where.at(str(key))
        field = table.get(key) if isinstance(key, str) else None
        if field is None:
            if open_ended and isinstance(key, str):
                result[key] = raw
                continue
            raise at.error(_unknown_key(str(key), table), raw)
        if raw is not None and field.attr is not None:
            result[field.attr] = field.read(raw, at)
        elif raw is not None:
            field.read(raw, at)  # accepted and ignored, but still checked
    return result


def _unknown_key(key: str, table: Mapping[str, Field]) -> str:
    close = difflib.get_close_matches(key, table, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key{hint} (allowed: {', '.join(sorted(table))})"
