"""References to values kept in the payload store, as they sit among an op's values."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class PayloadRef:
    """A large value in the payload store, standing where the value would be.

    The gateway passes it on untouched to the next op service; whoever needs the value
    itself (an op in the gateway, the response) reads it from the store.
    """

    key: str
    nbytes: int
    dtype: str = ""
    """For an array stored as raw bytes: its dtype name; empty for a serialized Value."""
    shape: tuple[int, ...] = ()


def contains_refs(value: Any) -> bool:
    """True when ``value`` holds a PayloadRef anywhere inside its dicts and lists."""
    if type(value) is PayloadRef:
        return True
    if isinstance(value, dict):
        return any(contains_refs(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_refs(item) for item in value)
    return False
