"""Import a user's class from a ``"module:Class"`` path, with errors that say where it was named."""

from __future__ import annotations

import importlib

from pipeserve.pipeline import errors


def import_class(path: str, where: str, base: type) -> type:
    """The class at ``path`` (``"module:Class"``, the attribute may be dotted).

    Raises:
        errors.ConfigError: ``where: cannot import ...`` when the module or attribute cannot be
            imported (any exception raised by the user's module is reported), or ``where: ... is
            not a <base> subclass``.
    """
    module_name, _, attr = path.partition(":")
    try:
        target: object = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:  # noqa: BLE001 - user code: any failure on import is reported
        raise errors.ConfigError(f"{where}: cannot import {path!r}: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(target, type) and issubclass(target, base)):
        article = "an" if base.__name__[0] in "AEIOU" else "a"
        raise errors.ConfigError(f"{where}: {path!r} is not {article} {base.__name__} subclass")
    return target
