"""The DAG: which op reads which, checked once before anything runs.

Built backwards from the ResponseOp through each op's ``input_ops``. Every problem is
reported with the names of the ops involved: a cycle, two ops with one name, an input
that is not an op of the DAG, an op with no input, an op whose output never reaches the
ResponseOp, a multi-input op left with the default preprocess.

:func:`check_edges` works on names alone, so a DAG described in a config file can be
checked the same way as one built from Op objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from pipeserve.pipeline import errors
from pipeserve.pipeline import op as op_mod

REQUEST = op_mod.DAG_EXECUTOR_NAME
"""Key of the RequestOp's output in ``input_dicts`` (the seeds' name for it)."""
RESPONSE = "@ResponseOp"
"""Internal key of the ResponseOp, which has no output of its own."""


@dataclasses.dataclass(frozen=True)
class Graph:
    """A checked DAG."""

    request_op: op_mod.RequestOp
    response_op: op_mod.ResponseOp
    ops: dict[str, op_mod.Op]
    """The user ops by name, in topological order."""
    inputs: dict[str, tuple[str, ...]]
    """Each op's input names, the ResponseOp under :data:`RESPONSE`."""

    def successors(self, name: str) -> list[str]:
        """Ops that read ``name``'s output."""
        return [other for other, ins in self.inputs.items() if name in ins]


def build(response_op: op_mod.ResponseOp) -> Graph:
    """Check and build the DAG that ends in ``response_op``.

    Raises:
        DagError: naming the ops involved in the first problem found.
    """
    if not isinstance(response_op, op_mod.ResponseOp):
        raise errors.DagError(f"set_response_op needs a ResponseOp, got {type(response_op).__name__}")
    found = _collect(response_op)
    requests = [op for op in found.values() if isinstance(op, op_mod.RequestOp)]
    if len(requests) != 1:
        raise errors.DagError(
            "the DAG needs exactly one RequestOp at its start, found "
            f"{len(requests)}; the first ops take the RequestOp in their input_ops"
        )
    inputs = {name: tuple(i.name for i in op.get_input_ops()) for name, op in found.items()}
    inputs[RESPONSE] = tuple(i.name for i in response_op.get_input_ops())
    order = check_edges(inputs, source=REQUEST, sink=RESPONSE)
    _check_unused_ops(found)
    ops = {name: found[name] for name in order if name not in (REQUEST, RESPONSE)}
    for name, op in ops.items():
        if len(inputs[name]) > 1 and not op_mod.overrides(op, "preprocess"):
            raise errors.DagError(
                f"op '{name}' has {len(inputs[name])} inputs ({', '.join(inputs[name])}) but "
                "uses the default preprocess, which takes one; override preprocess to merge them"
            )
    if len(inputs[RESPONSE]) > 1 and not op_mod.overrides(response_op, "pack_response_package"):
        raise errors.DagError(
            f"the ResponseOp has {len(inputs[RESPONSE])} inputs ({', '.join(inputs[RESPONSE])}) "
            "but uses the default pack_response_package, which takes one; combine them in an "
            "op first, or override pack_response_package"
        )
    return Graph(requests[0], response_op, ops, inputs)


def check_edges(inputs: Mapping[str, Sequence[str]], *, source: str, sink: str) -> list[str]:
    """Check a DAG given as ``{op: [input ops]}`` and return its ops in topological order.

    ``source`` is the only op allowed to have no inputs; every op must reach ``sink``.
    """
    for name, ins in inputs.items():
        for input_name in ins:
            if input_name not in inputs or input_name == sink:
                raise errors.DagError(
                    f"op '{_show(name, sink)}' takes input from '{input_name}', which is not an op of the DAG"
                )
        if not ins and name != source:
            raise errors.DagError(
                f"op '{_show(name, sink)}' has no input ops; the first ops of a DAG take the "
                "RequestOp as input"
            )
    order = _topological_order(inputs, sink)
    reached = {sink}
    for name in reversed(order):
        if name in reached:
            reached.update(inputs[name])
    unreached = [_show(name, sink) for name in order if name not in reached]
    if unreached:
        raise errors.DagError(
            f"op '{unreached[0]}' never reaches the ResponseOp: its output is not used; add it "
            "to the input_ops of an op downstream, or remove it"
        )
    return order


def _topological_order(inputs: Mapping[str, Sequence[str]], sink: str) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in inputs:
        if start in state:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            name, i = stack[-1]
            ins = inputs[name]
            if i < len(ins):
                stack[-1] = (name, i + 1)
                nxt = ins[i]
                if state.get(nxt) == 1:
                    path = [entry[0] for entry in stack]
                    cycle = path[path.index(nxt) :] + [nxt]
                    shown = " -> ".join(_show(n, sink) for n in reversed(cycle))
                    raise errors.DagError(f"the DAG has a cycle: {shown}")
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                stack.pop()
                state[name] = 2
                order.append(name)
    return order


def _collect(response_op: op_mod.ResponseOp) -> dict[str, op_mod.Op]:
    """Every op upstream of the ResponseOp, by name, checking types and unique names."""
    found: dict[str, op_mod.Op] = {}
    seen: set[int] = set()
    todo: list[op_mod.Op] = [response_op]
    while todo:
        op = todo.pop()
        if id(op) in seen:
            continue
        seen.add(id(op))
        for i, input_op in enumerate(op.get_input_ops()):
            owner = "the ResponseOp" if op is response_op else f"op '{op.name}'"
            if not isinstance(input_op, op_mod.Op) or isinstance(input_op, op_mod.ResponseOp):
                raise errors.DagError(
                    f"{owner}: input_ops[{i}] is not an Op of the DAG, got {input_op!r}"
                )
            todo.append(input_op)
        if op is response_op:
            continue
        if op.name == op_mod.DAG_EXECUTOR_NAME and not isinstance(op, op_mod.RequestOp):
            raise errors.DagError(f"op name '{op.name}' is reserved for the RequestOp and ResponseOp")
        if isinstance(op, op_mod.RequestOp):
            if any(isinstance(o, op_mod.RequestOp) and o is not op for o in found.values()):
                raise errors.DagError(
                    "the DAG needs exactly one RequestOp at its start, found 2; the first ops "
                    "take the RequestOp in their input_ops"
                )
        other = found.get(op.name)
        if other is not None and other is not op:
            raise errors.DagError(f"two different ops are named '{op.name}'; op names must be unique")
        found[op.name] = op
    return found


def _check_unused_ops(found: dict[str, op_mod.Op]) -> None:
    """Ops that read from this DAG but are not part of it never reach the ResponseOp."""
    members = {id(op) for op in found.values()}
    for op in list(op_mod._ALL_OPS):  # noqa: SLF001 - the registry exists for this check
        if id(op) in members or isinstance(op, op_mod.ResponseOp):
            continue
        if any(id(i) in members for i in op.get_input_ops()):
            raise errors.DagError(
                f"op '{op.name}' never reaches the ResponseOp: its output is not used; add it "
                "to the input_ops of an op downstream, or remove it"
            )


def _show(name: str, sink: str) -> str:
    return "ResponseOp" if name == sink else name
