"""``pipeserve gateway --config C --graph G``: serve a pipeline whose DAG is written in a file.

What a PipelineService's gateway runs: the config.yml and graph.yml the operator renders
(``pipeserve.gateway.graph_file`` describes the latter). The user's op modules are imported from
the current directory or the graph's directory.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipeserve.pipeline import errors

NAME = "gateway"
HELP = "serve a pipeline from its config.yml and a graph.yml describing its DAG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="path of the pipeline's config.yml")
    parser.add_argument("--graph", required=True, help="path of the graph.yml: each op's class and inputs")
    parser.add_argument("--name", help="the pipeline's name in request URLs (default: the config's name:)")


def run(args: argparse.Namespace) -> int:
    from pipeserve.gateway import graph_file
    from pipeserve.gateway.pipeline_server import PipelineServer

    for path in (os.path.dirname(os.path.abspath(args.graph)), os.getcwd()):
        if path not in sys.path:
            sys.path.insert(0, path)  # the user's op modules
    try:
        response_op = graph_file.load(args.graph)
        server = PipelineServer(name=args.name)
        server.set_response_op(response_op)
        server.prepare_server(args.config)
    except (errors.ConfigError, errors.DagError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server.run_server()
    return 0
