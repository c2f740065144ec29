"""The ``pipeserve`` command line: one subcommand per module of ``pipeserve.commands``."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from pipeserve.commands import analyze, check, gateway, graph, operator, opservice, run

COMMANDS: tuple[ModuleType, ...] = (check, gateway, opservice, graph, operator, analyze, run)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (what a Deployment's or image's arguments must satisfy)."""
    parser = argparse.ArgumentParser(prog="pipeserve", description="Serve inference pipelines.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command")
    for command in COMMANDS:
        command.add_arguments(subparsers.add_parser(command.NAME, help=command.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from pipeserve import __version__

        print(__version__)
        return 0
    for command in COMMANDS:
        if args.command == command.NAME:
            status: int = command.run(args)
            return status
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
