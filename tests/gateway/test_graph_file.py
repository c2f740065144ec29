"""A DAG written in graph.yml: built op by op with its inputs, and every mistake named by key.

``pipeserve gateway`` serving the imdb example from a graph.yml is in tests/test_examples.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeserve.gateway import graph_file
from pipeserve.pipeline import errors
from pipeserve.pipeline.op import Op

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "imdb_ensemble"

IMDB_GRAPH: dict[str, Any] = {
    "request": {"class": "ops:ImdbRequestOp"},
    "ops": [
        {"name": "combine", "class": "ops:CombineOp", "inputs": ["bow", "cnn"]},
        {"name": "bow", "class": "ops:BowOp"},
        {"name": "cnn", "class": "ops:CnnOp", "inputs": []},
    ],
}


@pytest.fixture(autouse=True)
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))


def inputs_of(op: Op) -> list[str]:
    return [upstream.name for upstream in op.get_input_ops()]


def test_ops_are_built_with_their_classes_and_inputs_whatever_order_they_are_listed_in() -> None:
    response = graph_file.build(IMDB_GRAPH, "graph.yml")
    (combine,) = response.get_input_ops()
    assert (combine.name, type(combine).__name__) == ("combine", "CombineOp")
    bow, cnn = combine.get_input_ops()
    assert (bow.name, type(bow).__name__, cnn.name, type(cnn).__name__) == ("bow", "BowOp", "cnn", "CnnOp")
    (read,) = bow.get_input_ops()
    assert type(read).__name__ == "ImdbRequestOp"
    assert cnn.get_input_ops() == [read]  # one request op, shared


def test_the_response_reads_the_ops_no_op_reads_unless_told(tmp_path: Path) -> None:
    two_ends = {"ops": [{"name": "bow", "class": "ops:BowOp"}, {"name": "cnn", "class": "ops:CnnOp"}]}
    assert inputs_of(graph_file.build(two_ends, "g.yml")) == ["bow", "cnn"]
    told = {**two_ends, "response": {"inputs": ["cnn"]}}
    assert inputs_of(graph_file.build(told, "g.yml")) == ["cnn"]
    path = tmp_path / "graph.yml"
    path.write_text("ops:\n  - {name: bow, class: 'ops:BowOp'}\n")
    assert inputs_of(graph_file.load(path)) == ["bow"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"ops": []}, "g.yml: ops: must be a non-empty list of ops, got []"),
        ({"ops": [{"name": "bow", "class": "ops:BowOp"}], "extra": 1}, "g.yml: unknown key 'extra'"),
        ({"ops": [{"name": "bow", "clas": "ops:BowOp"}]}, "g.yml: ops[0]: unknown key 'clas'"),
        ({"ops": [{"name": "bow", "class": "ops.BowOp"}]}, 'g.yml: ops[0].class: must be "module:Class"'),
        (
            {"ops": [{"name": "bow", "class": "ops:BowOp"}, {"name": "bow", "class": "ops:CnnOp"}]},
            "g.yml: ops[1].name: op 'bow' is listed twice",
        ),
        (
            {"ops": [{"name": "cnn", "class": "ops:CnnOp", "inputs": ["bo"]}, {"name": "bow", "class": "ops:BowOp"}]},
            "g.yml: ops[0].inputs: unknown op 'bo' (ops: cnn, bow)",
        ),
        (
            {
                "ops": [
                    {"name": "a", "class": "ops:BowOp", "inputs": ["b"]},
                    {"name": "b", "class": "ops:CnnOp", "inputs": ["a"]},
                    {"name": "c", "class": "ops:CombineOp", "inputs": ["a", "b"]},
                ]
            },
            "g.yml: ops: the inputs form a cycle: a -> b -> a",
        ),
        ({"ops": [{"name": "a", "class": "ops:BowOp", "inputs": ["a"]}]}, "g.yml: ops[0].inputs: op 'a' reads itself"),
        ({"ops": [{"name": "bow", "class": "nowhere:BowOp"}]}, "g.yml: ops[0].class: cannot import 'nowhere:BowOp'"),
        ({"ops": [{"name": "bow", "class": "ops:Nope"}]}, "g.yml: ops[0].class: cannot import 'ops:Nope'"),
        ({"ops": [{"name": "bow", "class": "ops:ImdbRequestOp"}], "request": {"class": "ops:BowOp"}},
         "g.yml: request.class: 'ops:BowOp' is not a RequestOp subclass"),
        ({"ops": [{"name": "bow", "class": "ops:BowOp"}], "response": {"inputs": ["cnn"]}},
         "g.yml: response.inputs: unknown op 'cnn' (ops: bow)"),
        ("just text", "g.yml: must be a mapping, got 'just text'"),
    ],
)  # fmt: skip
def test_a_mistake_fails_with_the_file_and_key(document: object, message: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        graph_file.build(document, "g.yml")
    assert str(caught.value).startswith(message)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "graph.yml"
    path.write_text("ops: [\n")
    with pytest.raises(errors.ConfigError, match=r"^graph\.yml: cannot read the DAG"):
        graph_file.load(path)
