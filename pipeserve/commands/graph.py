"""``pipeserve graph FILE -o dag.svg``: draw a pipeline's DAG."""

from __future__ import annotations

import argparse
import os
import sys

NAME = "graph"
HELP = "draw a pipeline's DAG (from a PipelineService, a graph.yml, or a config.yml with --dag)"

_FORMATS = ("svg", "dot", "png", "pdf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a pipelineservice.yaml, a graph.yml, or a config.yml (then --dag is required)")
    parser.add_argument("-o", "--output", default="dag.svg", help="where to write the picture (default dag.svg; - for stdout)")
    parser.add_argument(
        "--dag", help="for a config.yml: its graph.yml, or the Python object that holds the DAG (server.py:response_op, module:name)"
    )
    parser.add_argument(
        "--format", choices=_FORMATS, help="svg, dot, png or pdf (default: from the output's extension, else svg)"
    )
    parser.add_argument(
        "--engine", choices=("auto", "dot", "builtin"), default="auto",
        help="auto: Graphviz dot when installed, else the built-in drawing (default auto)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from pipeserve.monitor import drawing, shape
    from pipeserve.pipeline import errors

    fmt = args.format or _format_of(args.output)
    try:
        dag = shape.load(args.file, args.dag)
        title = os.path.splitext(os.path.basename(args.file))[0]
        picture = drawing.render(dag, fmt, engine=args.engine, title=title)
    except (errors.ConfigError, errors.DagError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output == "-":
        sys.stdout.buffer.write(picture)
        return 0
    with open(args.output, "wb") as file:
        file.write(picture)
    print(f"{args.output}: {len(dag.ops)} ops, {len(dag.edges)} edges")
    return 0


def _format_of(output: str) -> str:
    extension = os.path.splitext(output)[1].lstrip(".").lower()
    return extension if extension in _FORMATS else "svg"
