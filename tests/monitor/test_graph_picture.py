"""``pipeserve graph`` draws every op and edge of a DAG, from Python code or a PipelineService.

Aspects covered:
- the imdb example's config.yml with ``--dag server.py:response_op``: every op and edge, built-in and Graphviz;
- a graph.yml alone, or beside a config.yml whose server_endpoints make ops remote;
- a PipelineService resource: ops, inputs, the response's inputs and remote ops;
- by default Graphviz draws when ``dot`` is on the PATH, and the built-in drawing when it
  is not (where png is refused, saying why);
- layers follow the longest path, so a skip edge does not pull an op left;
- bad input is refused naming the file, field or op.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeserve import cli
from pipeserve.monitor import drawing, shape
from pipeserve.pipeline import errors

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "imdb_ensemble"
SVG = "{http://www.w3.org/2000/svg}"
IMDB_EDGES = {
    ("@request", "bow"), ("@request", "cnn"), ("bow", "combine"), ("cnn", "combine"), ("combine", "@response"),
}  # fmt: skip

PIPELINE_SERVICE = """\
apiVersion: pipeserve.io/v1alpha1
kind: PipelineService
metadata: {name: imdb}
spec:
  ops:
    - {name: read, class: "ops:ReadOp"}
    - {name: bow, class: "ops:BowOp", inputs: [read], placement: service}
    - {name: cnn, class: "ops:CnnOp", inputs: [read], resources: {gpu: 1}}
    - {name: combine, class: "ops:CombineOp", inputs: [bow, cnn]}
"""


def builtin_picture(svg: bytes) -> tuple[set[str], set[tuple[str, str]]]:
    root = ET.fromstring(svg)
    nodes = {g.attrib["data-node"] for g in root.iter(f"{SVG}g") if "data-node" in g.attrib}
    edges = {(p.attrib["data-from"], p.attrib["data-to"]) for p in root.iter(f"{SVG}path") if "data-from" in p.attrib}
    return nodes, edges


def graphviz_picture(svg: bytes) -> tuple[set[str], set[tuple[str, str]]]:
    root = ET.fromstring(svg)
    nodes, edges = set(), set()
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title")
        if title is None or title.text is None:
            continue
        if g.attrib.get("class") == "node":
            nodes.add(title.text)
        elif g.attrib.get("class") == "edge":
            source, _, target = title.text.partition("->")
            edges.add((source, target))
    return nodes, edges


@pytest.mark.parametrize(("engine", "read"), [("builtin", builtin_picture), ("dot", graphviz_picture)])
def test_graph_of_the_imdb_config_shows_every_op_and_edge(engine: str, read, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A process of its own: loading the DAG imports the example's modules (ops, models).
    output = tmp_path / "dag.svg"
    done = subprocess.run(
        [sys.executable, "-m", "pipeserve.cli", "graph", "config.yml", "--dag", "server.py:response_op",
         "-o", str(output), "--engine", engine],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{output}: 3 ops, 5 edges"
    nodes, edges = read(output.read_bytes())
    assert nodes == {"@request", "bow", "cnn", "combine", "@response"}
    assert edges == IMDB_EDGES


def test_graph_of_a_pipelineservice_marks_op_services_and_reads_inputs(tmp_path: Path) -> None:
    path = tmp_path / "pipelineservice.yaml"
    path.write_text(PIPELINE_SERVICE)
    output = tmp_path / "dag.svg"
    assert cli.main(["graph", str(path), "-o", str(output), "--engine", "builtin"]) == 0
    nodes, edges = builtin_picture(output.read_bytes())
    assert nodes == {"@request", "read", "bow", "cnn", "combine", "@response"}
    assert edges == {
        ("@request", "read"), ("read", "bow"), ("read", "cnn"), ("bow", "combine"), ("cnn", "combine"),
        ("combine", "@response"),
    }  # fmt: skip
    root = ET.fromstring(output.read_bytes())
    remote = {g.attrib["data-node"] for g in root.iter(f"{SVG}g") if "remote" in g.attrib.get("class", "").split()}
    assert remote == {"bow", "cnn"}


def test_dot_output_is_graphviz_source_with_every_edge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pipelineservice.yaml"
    path.write_text(PIPELINE_SERVICE)
    assert cli.main(["graph", str(path), "-o", "-", "--format", "dot"]) == 0
    out = capsys.readouterr().out
    for source, target in [("read", "bow"), ("bow", "combine"), ("cnn", "combine"), ("combine", "@response")]:
        assert f'  "{source}" -> "{target}";' in out
    assert '"bow" [label="bow (op service)", style="rounded,filled,dashed"];' in out


def test_a_skip_edge_puts_its_target_after_its_furthest_input() -> None:
    dag = shape.from_pipelineservice(
        {"spec": {"ops": [{"name": "a"}, {"name": "b", "inputs": ["a"]}, {"name": "c", "inputs": ["a", "b"]}]}},
        "p.yaml",
    )
    assert drawing.layers(dag) == [["@request"], ["a"], ["b"], ["c"], ["@response"]]
    boxes, width, _ = drawing.layout(dag)
    assert boxes["a"].x < boxes["b"].x < boxes["c"].x < boxes["@response"].x < width


def test_an_unknown_input_is_refused_naming_the_op(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pipelineservice.yaml"
    path.write_text(PIPELINE_SERVICE.replace("inputs: [bow, cnn]", "inputs: [bow, cnm]"))
    assert cli.main(["graph", str(path), "-o", str(tmp_path / "x.svg")]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: op 'combine' takes input from 'cnm', which is not an op of the DAG"
    )


def test_a_config_without_dag_code_says_how_to_name_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["graph", str(EXAMPLE / "config.yml"), "-o", str(tmp_path / "x.svg")]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: config.yml: a config.yml lists ops but not how they connect: pass --dag graph.yml, "
        "or --dag server.py:response_op (or module:name) for a DAG built in Python"
    )


def test_a_malformed_op_entry_names_its_field() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        shape.from_pipelineservice({"spec": {"ops": [{"name": "a", "inputs": "request"}]}}, "p.yaml")
    assert str(caught.value) == "p.yaml: spec.ops[0].inputs: must be a list of op names, got 'request'"


GRAPH_FILE = """\
request: {class: ops:ImdbRequestOp}
ops:
  - {name: bow, class: ops:BowOp}
  - {name: cnn, class: ops:CnnOp, inputs: []}
  - {name: combine, class: ops:CombineOp, inputs: [bow, cnn]}
response: {inputs: [combine]}
"""


def test_graph_of_a_graph_file_beside_its_config_marks_remote_ops(tmp_path: Path) -> None:
    (tmp_path / "graph.yml").write_text(GRAPH_FILE)
    (tmp_path / "config.yml").write_text(
        "http_port: 0\nop:\n  bow:\n    server_endpoints: [\"127.0.0.1:9000\"]\n  cnn: {}\n  combine: {}\n"
    )
    alone = shape.load(tmp_path / "graph.yml")
    beside = shape.load(tmp_path / "config.yml", "graph.yml")
    assert set(alone.edges) == set(beside.edges) == IMDB_EDGES
    assert [n.id for n in beside.nodes if n.remote] == ["bow"]
    assert not any(n.remote for n in alone.nodes)


def test_png_comes_from_graphviz_and_the_builtin_drawing_says_it_cannot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "graph.yml"
    path.write_text(GRAPH_FILE)
    assert cli.main(["graph", str(path), "-o", str(tmp_path / "dag.png"), "--engine", "dot"]) == 0
    assert (tmp_path / "dag.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["graph", str(path), "-o", str(tmp_path / "x.png"), "--engine", "builtin"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: format 'png' needs Graphviz' dot: the built-in drawing makes svg only; use svg or dot"
    )


def test_by_default_graph_uses_dot_when_installed_and_draws_itself_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "graph.yml"
    path.write_text(GRAPH_FILE)
    with_dot, without_dot = tmp_path / "with.svg", tmp_path / "without.svg"

    assert cli.main(["graph", str(path), "-o", str(with_dot)]) == 0
    monkeypatch.setenv("PATH", str(tmp_path / "no-graphviz-here"))
    assert cli.main(["graph", str(path), "-o", str(without_dot)]) == 0
    assert cli.main(["graph", str(path), "-o", str(tmp_path / "dag.png")]) == 2

    drawn_by_dot = with_dot.read_bytes()
    assert b"Generated by graphviz" in drawn_by_dot
    assert graphviz_picture(drawn_by_dot) == ({"@request", "bow", "cnn", "combine", "@response"}, IMDB_EDGES)
    drawn_here = without_dot.read_bytes()
    assert b"graphviz" not in drawn_here.lower()
    assert builtin_picture(drawn_here) == ({"@request", "bow", "cnn", "combine", "@response"}, IMDB_EDGES)
    assert capsys.readouterr().err.strip().endswith(
        "error: format 'png' needs Graphviz' dot: Graphviz (dot) is not installed; use svg or dot"
    )
