"""``pipeserve operator``: run the Kubernetes operator that turns PipelineServices into pipelines."""

from __future__ import annotations

import argparse
import sys

NAME = "operator"
HELP = "run the Kubernetes operator (kopf) for PipelineService resources"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", dest="namespaces", action="append", metavar="NS",
        help="watch this namespace (repeat for several)",
    )  # fmt: skip
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness", metavar="URL", help="serve kopf's liveness probe here, e.g. http://0.0.0.0:8080/healthz"
    )
    peers = parser.add_mutually_exclusive_group()
    peers.add_argument(
        "--peering", metavar="NAME",
        help="kopf peering object shared by the replicas: only one of them works (needs the kopf peering CRDs)",
    )  # fmt: skip
    peers.add_argument("--standalone", action="store_true", help="no peering: a single replica (the default)")
    parser.add_argument("--priority", type=int, help="this replica's peering priority (default: random)")
    parser.add_argument(
        "--metrics-port", type=int, metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0 picks a free port; default: no metrics)",
    )  # fmt: skip
    parser.add_argument("--metrics-host", metavar="HOST", help="address of the metrics endpoint (default: 0.0.0.0)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def run(args: argparse.Namespace) -> int:
    from pipeserve.operator import main

    try:
        options = main.Options(
            namespaces=tuple(args.namespaces or ()),
            all_namespaces=args.all_namespaces,
            liveness=args.liveness,
            peering=args.peering,
            priority=args.priority,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            verbose=args.verbose,
        )
    except main.OptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return main.run(options)
    except OSError as exc:  # the metrics port cannot be bound; the message names it
        print(f"error: {exc}", file=sys.stderr)
        return 1
