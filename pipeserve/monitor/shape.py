"""The shape of a DAG, as a picture needs it: which ops there are and which reads which.

A DAG is described in four places, and each has a reader here: a checked
:class:`~pipeserve.pipeline.dag.Graph` (the running server's), the Python code that builds
one next to a config.yml (config.yml alone lists ops, not edges), a graph.yml (what
``pipeserve gateway`` runs), and a ``PipelineService`` resource (``spec.ops[].name`` and
``inputs``; graph.yml has the same shape without the ``spec``). Every edge is checked the same way, by
:func:`pipeserve.pipeline.dag.check_edges`, so a picture never shows a DAG that would not run.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import runpy
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

from pipeserve.pipeline import config, dag, errors
from pipeserve.pipeline import op as op_mod

REQUEST = "@request"
"""Node id of the request (the RequestOp) in a :class:`DagShape`."""
RESPONSE = "@response"
"""Node id of the response (the ResponseOp)."""

#: Names a PipelineService may use in ``inputs`` for the request itself.
_REQUEST_ALIASES = ("request", "@request", op_mod.DAG_EXECUTOR_NAME)


@dataclasses.dataclass(frozen=True)
class Node:
    """One box of the picture."""

    id: str
    """The op's name, or :data:`REQUEST` / :data:`RESPONSE`."""
    label: str
    kind: Literal["request", "op", "response"]
    remote: bool = False
    """The op runs in op services, not in the gateway."""


@dataclasses.dataclass(frozen=True)
class DagShape:
    """Nodes in topological order (request first, response last) and edges between them."""

    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]
    """``(source id, target id)``: the target reads the source's output."""

    @property
    def ops(self) -> list[str]:
        """The user ops' names, in topological order."""
        return [node.id for node in self.nodes if node.kind == "op"]

    def inputs(self, node_id: str) -> list[str]:
        """Ids of the nodes ``node_id`` reads."""
        return [source for source, target in self.edges if target == node_id]


def _build(
    inputs: Mapping[str, Sequence[str]], response_inputs: Sequence[str], remote: frozenset[str]
) -> DagShape:
    """Check ``inputs`` (op name → input ids) as a DAG and order it."""
    checked: dict[str, Sequence[str]] = {REQUEST: (), **inputs, RESPONSE: response_inputs}
    order = dag.check_edges(checked, source=REQUEST, sink=RESPONSE)
    nodes = [Node(REQUEST, "request", "request")]
    nodes += [Node(name, name, "op", name in remote) for name in order if name not in (REQUEST, RESPONSE)]
    nodes.append(Node(RESPONSE, "response", "response"))
    position = {node.id: i for i, node in enumerate(nodes)}
    edges = sorted(
        ((source, target) for target, sources in checked.items() for source in sources),
        key=lambda edge: (position[edge[0]], position[edge[1]]),
    )
    return DagShape(tuple(nodes), tuple(edges))


def from_graph(graph: dag.Graph, server_config: config.ServerConfig | None = None) -> DagShape:
    """The shape of a checked DAG; ops with ``server_endpoints`` in the config are remote."""

    def node_id(name: str) -> str:
        return REQUEST if name == dag.REQUEST else name

    inputs = {name: [node_id(i) for i in graph.inputs[name]] for name in graph.ops}
    response_inputs = [node_id(i) for i in graph.inputs[dag.RESPONSE]]
    remote = frozenset(
        name for name, op in (server_config.ops if server_config else {}).items() if op.server_endpoints
    )
    return _build(inputs, response_inputs, remote)


def from_pipelineservice(document: Mapping[str, Any], source: str) -> DagShape:
    """The shape of a ``PipelineService`` resource: ``spec.ops[].name`` and ``.inputs``.

    An op without inputs (or with ``request`` among them) reads the request; the response
    reads ``spec.response.inputs`` when given, else every op nobody reads. An op whose
    ``placement`` is ``service`` (or that asks for a GPU) is drawn as remote.

    Raises:
        errors.ConfigError: A missing or malformed field, named with its path.
    """
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        raise errors.ConfigError(f"{source}: spec: must be a mapping with ops, got {spec!r}")
    return from_spec(spec, source, "spec.")


def from_spec(
    spec: Mapping[str, Any], source: str, prefix: str = "", remote_ops: frozenset[str] = frozenset()
) -> DagShape:
    """The shape of ``{ops: [{name, inputs}], response: {inputs}}``: a graph.yml, or a spec.

    Args:
        prefix: How field paths start in messages (``spec.`` for a PipelineService).
        remote_ops: Ops to draw as remote besides those whose entry says so.
    """
    ops = spec.get("ops")
    if not isinstance(ops, list) or not ops:
        raise errors.ConfigError(f"{source}: {prefix}ops: must be a non-empty list of ops, got {ops!r}")
    inputs: dict[str, list[str]] = {}
    remote = set(remote_ops)
    for i, entry in enumerate(ops):
        where = f"{source}: {prefix}ops[{i}]"
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or not name:
            raise errors.ConfigError(f"{where}.name: must be a non-empty string, got {name!r}")
        if name in inputs:
            raise errors.DagError(f"{where}.name: two ops are named '{name}'; op names must be unique")
        raw = entry.get("inputs") or []
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise errors.ConfigError(f"{where}.inputs: must be a list of op names, got {raw!r}")
        inputs[name] = [REQUEST if x in _REQUEST_ALIASES else x for x in raw] or [REQUEST]
        if _is_remote(entry):
            remote.add(name)
    read = {x for names in inputs.values() for x in names}
    response = spec.get("response")
    declared = response.get("inputs") if isinstance(response, Mapping) else None
    response_inputs = list(declared) if isinstance(declared, list) else [n for n in inputs if n not in read]
    return _build(inputs, response_inputs, frozenset(remote))


def _is_remote(entry: Mapping[str, Any]) -> bool:
    placement = entry.get("placement")
    if isinstance(placement, str):
        return placement != "gateway"
    resources = entry.get("resources")
    return isinstance(resources, Mapping) and bool(resources.get("gpu"))


def from_config(path: str | os.PathLike[str], dag_ref: str) -> DagShape:
    """The shape of the DAG that ``dag_ref`` builds, with the placement from config.yml ``path``.

    config.yml lists the ops but not their edges, which the Python code sets with
    ``input_ops``. ``dag_ref`` names that code's result: ``server.py:response_op`` (a
    file beside the config, run without its ``__main__`` block) or
    ``module:response_op``; the object is a ResponseOp, or anything with a ``graph``
    (a PipelineServer after set_response_op). Or ``dag_ref`` is a graph.yml.

    Raises:
        errors.ConfigError: The config is invalid or ``dag_ref`` cannot be loaded.
        errors.DagError: The DAG is invalid, or the config names an op it does not have.
    """
    server_config = config.load(path)
    folder = os.path.dirname(os.path.abspath(path))
    if dag_ref.endswith((".yml", ".yaml")):
        graph_path = dag_ref if os.path.isabs(dag_ref) else os.path.join(folder, dag_ref)
        remote = frozenset(name for name, op in server_config.ops.items() if op.server_endpoints)
        return from_spec(_read(graph_path), os.path.basename(dag_ref), remote_ops=remote)
    target = _load_object(dag_ref, folder)
    graph: object = getattr(target, "graph", None)
    if isinstance(target, op_mod.ResponseOp):
        graph = dag.build(target)
    if not isinstance(graph, dag.Graph):
        raise errors.ConfigError(
            f"--dag {dag_ref}: is a {type(target).__name__}, not a ResponseOp or a PipelineServer"
        )
    for name in server_config.ops:
        if name not in graph.ops:
            raise errors.ConfigError(
                f"{server_config.source}: op.{name}: no op named '{name}' in the DAG of {dag_ref}; "
                f"its ops are {', '.join(graph.ops) or 'none'}"
            )
    return from_graph(graph, server_config)


def _load_object(ref: str, folder: str) -> object:
    location, _, attr = ref.rpartition(":")
    if not location or not attr:
        raise errors.ConfigError(f"--dag {ref}: expected FILE.py:NAME or MODULE:NAME")
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the user's op modules sit beside their config
    try:
        if location.endswith(".py"):
            path = location if os.path.isabs(location) else os.path.join(folder, location)
            namespace: Mapping[str, Any] = runpy.run_path(path, run_name="__pipeserve_graph__")
        else:
            namespace = vars(importlib.import_module(location))
    except Exception as exc:  # noqa: BLE001 - user code: any failure is reported
        raise errors.ConfigError(f"--dag {ref}: cannot load {location}: {type(exc).__name__}: {exc}") from exc
    if attr not in namespace:
        raise errors.ConfigError(f"--dag {ref}: {location} has no '{attr}'")
    return namespace[attr]


def _read(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    source = os.path.basename(os.fspath(path))
    try:
        with open(path, "rb") as file:
            document = yaml.safe_load(file)
    except OSError as exc:
        raise errors.ConfigError(f"{source}: cannot read {os.fspath(path)!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"{source}: invalid YAML: {exc}") from exc
    if not isinstance(document, Mapping):
        raise errors.ConfigError(f"{source}: must be a YAML mapping, got {type(document).__name__}")
    return document


def load(path: str | os.PathLike[str], dag_ref: str | None = None) -> DagShape:
    """The shape described by ``path``: a PipelineService, a graph.yml, or a config.yml with ``dag_ref``.

    Raises:
        errors.ConfigError, errors.DagError: Naming the file and field at fault.
    """
    source = os.path.basename(os.fspath(path))
    document = _read(path)
    if document.get("kind") == "PipelineService":
        return from_pipelineservice(document, source)
    if isinstance(document.get("ops"), list):  # a graph.yml
        return from_spec(document, source)
    if dag_ref is None:
        raise errors.ConfigError(
            f"{source}: a config.yml lists ops but not how they connect: pass --dag graph.yml, "
            "or --dag server.py:response_op (or module:name) for a DAG built in Python"
        )
    return from_config(path, dag_ref)
