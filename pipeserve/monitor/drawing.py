"""A picture of a DAG: Graphviz when it is installed, else an SVG drawn here.

The built-in drawing puts each node in the layer of its longest path from the request
(left to right), orders each layer by where its inputs sit (so edges cross less), and
draws edges as curves with arrow heads. It needs nothing but the standard library, and
it is what the status page shows: every op's box has a line of figure slots
(``id="fig-<op>-<figure>"``) that the page fills in.

Every node is a ``<g class="node" data-node="...">`` and every edge a ``<path
class="edge" data-from="..." data-to="...">``, so tests and scripts can read the picture.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from pipeserve.monitor import shape as shape_mod

FIGURES = ("qps", "p50", "p99", "queue", "errors")
"""The live figures the status page shows for each op, in this order."""

_CHAR_W = 7.6  # px per character of the 13 px sans-serif label, a little generous
_BOX_H = 40
_BOX_H_FIGURES = 74
_GAP_X = 70
_GAP_Y = 26
_MARGIN = 20

_STYLE = """
.node rect { fill: #f4f7fb; stroke: #35608f; stroke-width: 1.5; rx: 6; }
.node.remote rect { stroke-dasharray: 5 3; fill: #fbf7ef; stroke: #8f6a35; }
.node.request rect, .node.response rect { fill: #e9efe6; stroke: #4d7a3a; }
.node text { font: 13px sans-serif; fill: #1c2733; text-anchor: middle; }
.node text.figures { font: 11px monospace; fill: #44515e; }
.edge { fill: none; stroke: #5c6b7a; stroke-width: 1.4; }
"""


@dataclasses.dataclass(frozen=True)
class Box:
    """Where a node is drawn."""

    node: shape_mod.Node
    x: float
    y: float
    width: float
    height: float


def layers(dag: shape_mod.DagShape) -> list[list[str]]:
    """Node ids by layer: a node sits one layer right of its furthest input."""
    depth: dict[str, int] = {}
    for node in dag.nodes:  # topological order: inputs first
        depth[node.id] = max((depth[i] + 1 for i in dag.inputs(node.id)), default=0)
    result: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in dag.nodes:
        result[depth[node.id]].append(node.id)
    # One pass of the barycenter heuristic: sort each layer by the mean row of its inputs.
    row: dict[str, float] = {}
    for layer in result:
        layer.sort(key=lambda n: _mean([row[i] for i in dag.inputs(n)], default=0.0))
        row.update((n, float(i)) for i, n in enumerate(layer))
    return result


def _mean(values: Sequence[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def layout(dag: shape_mod.DagShape, *, figures: bool = False) -> tuple[dict[str, Box], float, float]:
    """Boxes of every node, and the picture's width and height."""
    by_id = {node.id: node for node in dag.nodes}
    columns = layers(dag)
    height = _BOX_H_FIGURES if figures else _BOX_H

    def min_chars(node_id: str) -> int:
        return 26 if figures and by_id[node_id].kind == "op" else 8

    widths = [max(max(len(by_id[n].label), min_chars(n)) * _CHAR_W + 24 for n in column) for column in columns]
    tallest = max(len(column) for column in columns) * (height + _GAP_Y) - _GAP_Y
    boxes: dict[str, Box] = {}
    x = float(_MARGIN)
    for column, width in zip(columns, widths, strict=True):
        column_height = len(column) * (height + _GAP_Y) - _GAP_Y
        y = _MARGIN + (tallest - column_height) / 2
        for node_id in column:
            boxes[node_id] = Box(by_id[node_id], x, y, width, height)
            y += height + _GAP_Y
        x += width + _GAP_X
    return boxes, x - _GAP_X + _MARGIN, tallest + 2 * _MARGIN


def to_svg(dag: shape_mod.DagShape, *, figures: bool = False, title: str = "pipeline") -> str:
    """The DAG as a self-contained SVG document; with ``figures``, slots for live figures."""
    boxes, width, height = layout(dag, figures=figures)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label={quoteattr(title)}>',
        f"<title>{escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#5c6b7a"/>'
        "</marker></defs>",
    ]
    for source, target in dag.edges:
        a, b = boxes[source], boxes[target]
        x1, y1 = a.x + a.width, a.y + a.height / 2
        x2, y2 = b.x, b.y + b.height / 2
        bend = (x2 - x1) / 2
        out.append(
            f'<path class="edge" data-from={quoteattr(source)} data-to={quoteattr(target)} '
            f'd="M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" '
            'marker-end="url(#arrow)"/>'
        )
    for box in boxes.values():
        out.append(_node_svg(box, figures))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _node_svg(box: Box, figures: bool) -> str:
    node = box.node
    classes = f"node {node.kind}" + (" remote" if node.remote else "")
    cx = box.x + box.width / 2
    label = node.label + (" (op service)" if node.remote else "")
    parts = [
        f'<g class="{classes}" data-node={quoteattr(node.id)}>',
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" height="{box.height:.1f}"/>',
    ]
    if figures and node.kind == "op":
        parts.append(f'<text x="{cx:.1f}" y="{box.y + 20:.1f}">{escape(label)}</text>')
        rows = (("p50", "p99"), ("qps", "queue", "errors"))
        for i, row in enumerate(rows):
            spans = " ".join(
                f'{name} <tspan id={quoteattr(f"fig-{node.id}-{name}")}>–</tspan>' for name in row
            )
            parts.append(f'<text class="figures" x="{cx:.1f}" y="{box.y + 42 + 18 * i:.1f}">{spans}</text>')
    else:
        parts.append(f'<text x="{cx:.1f}" y="{box.y + box.height / 2 + 4.5:.1f}">{escape(label)}</text>')
    parts.append("</g>")
    return "".join(parts)


def to_dot(dag: shape_mod.DagShape, *, title: str = "pipeline") -> str:
    """The DAG in Graphviz' language, left to right, remote ops dashed."""
    lines = [
        f"digraph {_dot_id(title)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor="#f4f7fb", fontname="sans-serif"];',
    ]
    for node in dag.nodes:
        attributes = [f"label={_dot_id(node.label + (' (op service)' if node.remote else ''))}"]
        if node.kind != "op":
            attributes.append('fillcolor="#e9efe6"')
        if node.remote:
            attributes.append('style="rounded,filled,dashed"')
        lines.append(f"  {_dot_id(node.id)} [{', '.join(attributes)}];")
    lines += [f"  {_dot_id(source)} -> {_dot_id(target)};" for source, target in dag.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_available() -> bool:
    """Whether Graphviz' ``dot`` is on the PATH."""
    return shutil.which("dot") is not None


def render(dag: shape_mod.DagShape, fmt: str, *, engine: str = "auto", title: str = "pipeline") -> bytes:
    """The picture as ``fmt`` (``svg`` or ``dot``; with Graphviz also ``png``, ``pdf``).

    Args:
        engine: ``dot`` (Graphviz; an error when it is missing), ``builtin`` (the SVG drawn
            here), or ``auto`` (dot when installed).

    Raises:
        RuntimeError: Graphviz was asked for and is missing or failed, or ``fmt`` needs it.
    """
    if fmt == "dot":
        return to_dot(dag, title=title).encode()
    use_dot = engine == "dot" or (engine == "auto" and dot_available())
    if not use_dot:
        if fmt != "svg":
            why = "the built-in drawing makes svg only" if engine == "builtin" else "Graphviz (dot) is not installed"
            raise RuntimeError(f"format {fmt!r} needs Graphviz' dot: {why}; use svg or dot")
        return to_svg(dag, title=title).encode()
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("Graphviz (dot) is not installed: install graphviz, or use --engine builtin")
    done = subprocess.run(
        [dot, f"-T{fmt}"], input=to_dot(dag, title=title).encode(), capture_output=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"dot -T{fmt} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
