"""A DAG written in a file rather than in Python: what a gateway runs from a PipelineService.

An embedded pipeline builds its DAG in code (``BowOp(name="bow", input_ops=[read_op])``). A
gateway deployed from a PipelineService has no such code, so the operator writes the DAG's
shape next to the config (``graph.yml``)::

    request: {class: ops:ImdbRequestOp}          # optional; pipeserve:RequestOp by default
    ops:
      - {name: bow, class: ops:BowOp}            # no inputs: it reads the request op
      - {name: cnn, class: ops:CnnOp, inputs: []}
      - {name: combine, class: ops:CombineOp, inputs: [bow, cnn]}
    response: {inputs: [combine]}                # class optional; inputs default to the ops no op reads

Ops that run in op services are listed too: their config section's ``server_endpoints`` is what
sends them away, so the gateway still knows each op's inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pipeserve.pipeline import classes, errors
from pipeserve.pipeline.op import Op, RequestOp, ResponseOp

DEFAULT_REQUEST_CLASS = "pipeserve:RequestOp"
DEFAULT_RESPONSE_CLASS = "pipeserve:ResponseOp"
_TOP_KEYS = frozenset({"request", "ops", "response"})
_OP_KEYS = frozenset({"name", "class", "inputs"})


def load(path: str | Path) -> ResponseOp:
    """Build the DAG described in ``path`` and return its ResponseOp.

    Raises:
        errors.ConfigError: ``file: key: what is wrong`` for a malformed file, an unknown or
            duplicate op, a cycle, or a class that cannot be imported.
    """
    source = Path(path).name
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise errors.ConfigError(f"{source}: cannot read the DAG: {exc}") from exc
    return build(document, source)


def build(document: object, source: str) -> ResponseOp:
    """Build the DAG described by ``document`` (graph.yml's content); ``source`` names it in errors."""
    top = _mapping(document, source, "", _TOP_KEYS)
    request_section = _mapping(top.get("request") or {}, source, "request", frozenset({"class"}))
    request_class = _class_path(request_section.get("class", DEFAULT_REQUEST_CLASS), source, "request.class")
    entries = _op_entries(top.get("ops"), source)
    names = [name for name, _, _ in entries]
    response_section = _mapping(top.get("response") or {}, source, "response", frozenset({"class", "inputs"}))
    response_class = _class_path(response_section.get("class", DEFAULT_RESPONSE_CLASS), source, "response.class")
    read_by_some_op = {name for _, _, inputs in entries for name in inputs}
    response_inputs = _names(
        response_section.get("inputs", [name for name in names if name not in read_by_some_op]),
        source,
        "response.inputs",
        names,
    )
    if not response_inputs:
        raise errors.ConfigError(f"{source}: response.inputs: the response reads no op")

    request_op = classes.import_class(request_class, f"{source}: request.class", RequestOp)()
    built: dict[str, Op] = {}
    for name in _in_dependency_order(entries, source):
        index = names.index(name)
        _, class_path, inputs = entries[index]
        op_type = classes.import_class(class_path, f"{source}: ops[{index}].class", Op)
        input_ops = [built[i] for i in inputs] if inputs else [request_op]
        built[name] = op_type(name=name, input_ops=input_ops)
    response_type = classes.import_class(response_class, f"{source}: response.class", ResponseOp)
    response: ResponseOp = response_type(input_ops=[built[name] for name in response_inputs])
    return response


def _op_entries(value: object, source: str) -> list[tuple[str, str, list[str]]]:
    if not isinstance(value, list) or not value:
        raise errors.ConfigError(f"{source}: ops: must be a non-empty list of ops, got {value!r}")
    sections = [_mapping(item, source, f"ops[{index}]", _OP_KEYS) for index, item in enumerate(value)]
    names: list[str] = []
    for index, section in enumerate(sections):
        name = section.get("name")
        if not isinstance(name, str) or not name:
            raise errors.ConfigError(f"{source}: ops[{index}].name: must be a non-empty string, got {name!r}")
        if name in names:
            raise errors.ConfigError(f"{source}: ops[{index}].name: op {name!r} is listed twice")
        names.append(name)
    entries = []
    for index, (name, section) in enumerate(zip(names, sections, strict=True)):
        class_path = _class_path(section.get("class"), source, f"ops[{index}].class")
        inputs = _names(section.get("inputs") or [], source, f"ops[{index}].inputs", names)
        if name in inputs:
            raise errors.ConfigError(f"{source}: ops[{index}].inputs: op {name!r} reads itself")
        entries.append((name, class_path, inputs))
    return entries


def _in_dependency_order(entries: Sequence[tuple[str, str, list[str]]], source: str) -> list[str]:
    """The op names, each after its inputs; a cycle is an error naming its ops."""
    inputs_of = {name: inputs for name, _, inputs in entries}
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*path[path.index(name) :], name]
            raise errors.ConfigError(f"{source}: ops: the inputs form a cycle: {' -> '.join(cycle)}")
        state[name] = "visiting"
        for upstream in inputs_of[name]:
            visit(upstream, [*path, name])
        state[name] = "done"
        order.append(name)

    for name, _, _ in entries:
        visit(name, [])
    return order


def _mapping(value: object, source: str, key: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    where = f"{source}: {key}" if key else source
    if not isinstance(value, Mapping):
        raise errors.ConfigError(f"{where}: must be a mapping, got {value!r}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise errors.ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    return value


def _class_path(value: object, source: str, key: str) -> str:
    if isinstance(value, str):
        module, colon, attr = value.partition(":")
        if colon and all(part.isidentifier() for part in [*module.split("."), *attr.split(".")]):
            return value
    raise errors.ConfigError(f'{source}: {key}: must be "module:Class", e.g. "ops:BowOp", got {value!r}')


def _names(value: object, source: str, key: str, known: Sequence[str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise errors.ConfigError(f"{source}: {key}: must be a list of op names, got {value!r}")
    for item in value:
        if item not in known:
            raise errors.ConfigError(f"{source}: {key}: unknown op {item!r} (ops: {', '.join(known)})")
    return list(value)
