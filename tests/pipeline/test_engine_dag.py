"""The DAG is checked once, when the server is given its ResponseOp, and every problem is
refused with a message that names the ops involved.

Aspects covered:
- a cycle is named op by op, in the direction the data flows;
- two different ops with one name, an input that is not an Op, an op with no input;
- an op wired to the RequestOp whose output never reaches the ResponseOp;
- a multi-input op, or a ResponseOp with two inputs, left with the default hook;
- zero or two RequestOps;
- a config.yml ``op:`` section naming an op that is not in the DAG;
- ``dag.check_edges`` on plain name mappings: order, cycle, unknown input.

Every op is created inside its test, so that it is garbage collected afterwards: ops
register in a process-wide weak set that the DAG reads to find unused ops.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from pipeserve import Op, PipelineServer, RequestOp, ResponseOp
from pipeserve.pipeline import dag, errors

REQ = dag.REQUEST
RESP = dag.RESPONSE


@pytest.fixture(autouse=True)
def no_leftover_ops() -> Iterator[None]:
    """Ops left by earlier tests (in reference cycles) must not be seen as unused ops."""
    gc.collect()
    yield
    gc.collect()


class Merge(Op):
    """A multi-input op that merges its inputs, as a multi-input op must."""

    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for output in input_dicts.values():
            merged.update(output)
        return merged


class PackBoth(ResponseOp):
    """A ResponseOp with its own packing, so it may take several inputs."""

    def pack_response_package(self, channeldata: Any) -> Any:
        raise NotImplementedError


def build_error(response_op: ResponseOp) -> str:
    with pytest.raises(errors.DagError) as caught:
        dag.build(response_op)
    return str(caught.value)


# Building from Op objects --------------------------------------------------------------------


def test_a_valid_dag_lists_its_ops_in_topological_order() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read])
    b = Op(name="b", input_ops=[read])
    c = Merge(name="c", input_ops=[a, b])
    response = ResponseOp(input_ops=[c])

    graph = dag.build(response)

    assert graph.request_op is read
    assert graph.response_op is response
    assert list(graph.ops) in (["a", "b", "c"], ["b", "a", "c"])
    assert graph.inputs == {"a": (REQ,), "b": (REQ,), "c": ("a", "b"), REQ: (), RESP: ("c",)}
    assert sorted(graph.successors(REQ)) == ["a", "b"]
    assert graph.successors("a") == graph.successors("b") == ["c"]
    assert graph.successors("c") == [RESP]


def test_a_cycle_is_refused_naming_its_ops_in_the_direction_data_flows() -> None:
    read = RequestOp()
    a = Merge(name="a", input_ops=[read])
    b = Op(name="b", input_ops=[a])
    c = Op(name="c", input_ops=[b])
    a.set_input_ops([read, c])  # a -> b -> c -> a

    message = build_error(ResponseOp(input_ops=[c]))

    assert message.startswith("the DAG has a cycle: ")
    shown = message.removeprefix("the DAG has a cycle: ").split(" -> ")
    assert shown[0] == shown[-1] and len(shown) == 4
    start = shown.index("a")
    assert shown[start:-1] + shown[:start] == ["a", "b", "c"]


def test_two_different_ops_with_one_name_are_refused() -> None:
    read = RequestOp()
    first = Op(name="twin", input_ops=[read])
    second = Op(name="twin", input_ops=[first])

    assert build_error(ResponseOp(input_ops=[second])) == (
        "two different ops are named 'twin'; op names must be unique"
    )


def test_an_input_that_is_not_an_op_is_refused_naming_the_op_and_its_position() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read, "read"])  # type: ignore[list-item]

    assert build_error(ResponseOp(input_ops=[a])) == (
        "op 'a': input_ops[1] is not an Op of the DAG, got 'read'"
    )


def test_a_response_op_input_that_is_not_an_op_is_refused() -> None:
    assert build_error(ResponseOp(input_ops=[42])) == (  # type: ignore[list-item]
        "the ResponseOp: input_ops[0] is not an Op of the DAG, got 42"
    )


def test_an_op_with_no_input_ops_is_refused() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read])
    lonely = Op(name="lonely", input_ops=[])
    c = Merge(name="c", input_ops=[a, lonely])

    assert build_error(ResponseOp(input_ops=[c])) == (
        "op 'lonely' has no input ops; the first ops of a DAG take the RequestOp as input"
    )


def test_an_op_wired_to_the_request_op_that_never_reaches_the_response_op_is_refused() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read])
    orphan = Op(name="orphan", input_ops=[read])

    message = build_error(ResponseOp(input_ops=[a]))

    assert message == (
        "op 'orphan' never reaches the ResponseOp: its output is not used; add it to the "
        "input_ops of an op downstream, or remove it"
    )
    del orphan


def test_an_unused_op_that_was_garbage_collected_does_not_count() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read])
    Op(name="dropped", input_ops=[read])  # no reference kept
    gc.collect()

    assert list(dag.build(ResponseOp(input_ops=[a])).ops) == ["a"]


def test_a_multi_input_op_with_the_default_preprocess_is_refused() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read])
    b = Op(name="b", input_ops=[read])
    c = Op(name="c", input_ops=[a, b])

    assert build_error(ResponseOp(input_ops=[c])) == (
        "op 'c' has 2 inputs (a, b) but uses the default preprocess, which takes one; "
        "override preprocess to merge them"
    )


def test_a_response_op_with_two_inputs_and_the_default_packing_is_refused() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read])
    b = Op(name="b", input_ops=[read])

    assert build_error(ResponseOp(input_ops=[a, b])) == (
        "the ResponseOp has 2 inputs (a, b) but uses the default pack_response_package, "
        "which takes one; combine them in an op first, or override pack_response_package"
    )


def test_a_response_op_with_two_inputs_and_its_own_packing_is_accepted() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read])
    b = Op(name="b", input_ops=[read])

    graph = dag.build(PackBoth(input_ops=[a, b]))

    assert graph.inputs[RESP] == ("a", "b")


def test_a_dag_without_a_request_op_is_refused() -> None:
    a = Op(name="a", input_ops=[])

    assert build_error(ResponseOp(input_ops=[a])) == (
        "the DAG needs exactly one RequestOp at its start, found 0; the first ops take "
        "the RequestOp in their input_ops"
    )


def test_a_dag_with_two_request_ops_is_refused_as_such() -> None:
    first, second = RequestOp(), RequestOp()
    a = Op(name="a", input_ops=[first])
    b = Op(name="b", input_ops=[second])

    assert build_error(PackBoth(input_ops=[a, b])) == (
        "the DAG needs exactly one RequestOp at its start, found 2; the first ops take "
        "the RequestOp in their input_ops"
    )


def test_set_response_op_refuses_a_bad_dag() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read])
    b = Op(name="b", input_ops=[read])
    c = Op(name="c", input_ops=[a, b])

    with pytest.raises(errors.DagError, match=r"^op 'c' has 2 inputs \(a, b\)"):
        PipelineServer().set_response_op(ResponseOp(input_ops=[c]))


# config.yml against the DAG ------------------------------------------------------------------


CONFIG = {"http_port": 0, "op": {"a": {"concurrency": 2}, "ghost": {"concurrency": 1}}}
GHOST = "<dict>: op.ghost: no op named 'ghost' in the DAG; its ops are a"


def test_a_config_op_missing_from_the_dag_is_refused_when_the_dag_is_set_last() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read])
    server = PipelineServer()
    server.prepare_server(yml_dict=CONFIG)

    with pytest.raises(errors.ConfigError) as caught:
        server.set_response_op(ResponseOp(input_ops=[a]))

    assert str(caught.value) == GHOST


def test_a_config_op_missing_from_the_dag_is_refused_when_the_config_is_loaded_last() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read])
    server = PipelineServer()
    server.set_response_op(ResponseOp(input_ops=[a]))

    with pytest.raises(errors.ConfigError) as caught:
        server.prepare_server(yml_dict=CONFIG)

    assert str(caught.value) == GHOST


def test_a_config_naming_only_ops_of_the_dag_is_accepted() -> None:
    read = RequestOp()
    a = Op(name="a", input_ops=[read])
    server = PipelineServer()
    server.set_response_op(ResponseOp(input_ops=[a]))

    server.prepare_server(yml_dict={"http_port": 0, "op": {"a": {"concurrency": 2}}})

    assert server.config.ops["a"].concurrency == 2


# check_edges on names ------------------------------------------------------------------------


def test_check_edges_orders_every_op_after_its_inputs() -> None:
    inputs = {RESP: ["c"], "c": ["a", "b"], "b": [REQ], "a": [REQ], REQ: []}

    order = dag.check_edges(inputs, source=REQ, sink=RESP)

    assert sorted(order) == sorted(inputs)
    for name, ins in inputs.items():
        assert all(order.index(i) < order.index(name) for i in ins)
    assert dag.check_edges({RESP: ["b"], "b": ["a"], "a": [REQ], REQ: []}, source=REQ, sink=RESP) == [
        REQ,
        "a",
        "b",
        RESP,
    ]


def test_check_edges_refuses_a_cycle_naming_its_ops_in_the_direction_data_flows() -> None:
    inputs = {REQ: [], "a": [REQ, "c"], "b": ["a"], "c": ["b"], RESP: ["c"]}

    with pytest.raises(errors.DagError) as caught:
        dag.check_edges(inputs, source=REQ, sink=RESP)

    assert str(caught.value) == "the DAG has a cycle: a -> b -> c -> a"


def test_check_edges_refuses_an_unknown_input() -> None:
    inputs = {REQ: [], "a": [REQ, "ghost"], RESP: ["a"]}

    with pytest.raises(errors.DagError) as caught:
        dag.check_edges(inputs, source=REQ, sink=RESP)

    assert str(caught.value) == "op 'a' takes input from 'ghost', which is not an op of the DAG"


def test_check_edges_refuses_an_op_that_never_reaches_the_sink() -> None:
    inputs = {REQ: [], "a": [REQ], "unused": ["a"], RESP: ["a"]}

    with pytest.raises(errors.DagError) as caught:
        dag.check_edges(inputs, source=REQ, sink=RESP)

    assert str(caught.value) == (
        "op 'unused' never reaches the ResponseOp: its output is not used; add it to the "
        "input_ops of an op downstream, or remove it"
    )
