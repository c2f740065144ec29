"""``pipeserve analyze PROFILE TRACE``: a profile log turned into a Chrome trace (seed §6.2)."""

from __future__ import annotations

import argparse
import sys

from pipeserve.pipeline import analyst, profile

NAME = "analyze"
HELP = "turn a profile log (dag.use_profile) into a Chrome trace for chrome://tracing or Perfetto"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", help="file with PROFILE lines: pipeline.profile, or the saved server output")
    parser.add_argument("trace", help="where to write the trace (JSON)")


def run(args: argparse.Namespace) -> int:
    try:
        reader = analyst.Analyst(args.profile)
    except OSError as exc:
        print(f"error: cannot read {args.profile}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except profile.ProfileFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not reader.spans:
        print(f"error: {args.profile}: no PROFILE lines (is dag.use_profile true?)", file=sys.stderr)
        return 2
    try:
        events = reader.save_trace(args.trace)
    except OSError as exc:
        print(f"error: cannot write {args.trace}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    requests = len({span.data_id for span in reader.spans})
    print(f"{args.trace}: {events} stage events of {requests} requests; open it in chrome://tracing or ui.perfetto.dev")
    return 0
