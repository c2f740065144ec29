"""The gateway's status page: the DAG's picture with each op's live figures.

One self-contained HTML document (no external scripts, styles or fonts): the built-in SVG
of the DAG with figure slots in every op's box, a table of the same figures, and a small
script that fetches ``status.json`` every second and fills both in.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from pipeserve.monitor import drawing
from pipeserve.monitor import shape as shape_mod

REFRESH_MS = 1000

_SCRIPT = """
const FIGURES = ["qps", "p50", "p99", "queue", "errors"];
function show(value, unit) {
  return value === null || value === undefined ? "\\u2013" : unit ? value + " " + unit : String(value);
}
function fill(id, text) {
  const element = document.getElementById(id);
  if (element) element.textContent = text;
}
async function refresh() {
  let status;
  try {
    const response = await fetch("status.json", {cache: "no-store"});
    status = await response.json();
  } catch (error) {
    fill("state", "gateway unreachable: " + error);
    return;
  }
  if (!status.metrics) {
    fill("state", "metrics are off: set metrics: true in config.yml to see live figures");
    return;
  }
  for (const [op, f] of Object.entries(status.ops)) {
    const text = {qps: show(f.qps), p50: show(f.p50_ms, "ms"), p99: show(f.p99_ms, "ms"),
                  queue: show(f.queue), errors: show(f.errors)};
    for (const name of FIGURES) {
      fill("fig-" + op + "-" + name, text[name]);
      fill("row-" + op + "-" + name, text[name]);
    }
  }
  const r = status.requests;
  fill("state", "requests " + r.requests + ", " + r.qps + " per second, p50 " + show(r.p50_ms, "ms") +
       ", p99 " + show(r.p99_ms, "ms") + ", errors " + r.errors + ", in flight " + r.in_flight +
       " (last " + status.window_s + " s)");
  document.body.dataset.updated = String(Date.now());
}
refresh();
setInterval(refresh, REFRESH_MS);
"""

_STYLE = """
body { font: 14px sans-serif; margin: 24px; color: #1c2733; }
h1 { font-size: 20px; margin: 0 0 4px; }
#state { color: #44515e; margin-bottom: 16px; }
table { border-collapse: collapse; margin-top: 16px; }
th, td { border: 1px solid #c9d3dd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
"""


def page(dag: shape_mod.DagShape, service: str) -> str:
    """The status page of ``service`` whose DAG is ``dag``."""
    header = "".join(f"<th>{name}</th>" for name in ("op", "QPS", "p50", "p99", "queue", "errors"))
    rows = "\n".join(
        f"<tr data-op={quoteattr(op)}><td>{escape(op)}</td>"
        + "".join(f'<td id={quoteattr(f"row-{op}-{name}")}>–</td>' for name in drawing.FIGURES)
        + "</tr>"
        for op in dag.ops
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(service)} · pipeserve</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{escape(service)}</h1>
<div id="state">waiting for the first figures…</div>
{drawing.to_svg(dag, figures=True, title=service)}
<table id="ops">
<thead><tr>{header}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
<script>
const REFRESH_MS = {REFRESH_MS};
{_SCRIPT}
</script>
</body>
</html>
"""
