"""W2 under test: one auto-batched model op written with pipeserve's public API.

The default RequestOp hands the op ``{"x": array}`` from the request's tensors; the op's
``process`` blocks for the W2 model cost (as a GPU call would), so it is a thread op and the
sleep runs off the event loop. Batching (32 items or 2 ms) is configured in ``w2.yml``.

Run: ``python -m bench.pipelines.w2_server --config bench/pipelines/w2.yml`` from the
repository root; ``POST /w2/prediction`` with ``tensors.x``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from bench import workloads
from pipeserve import Op, PipelineServer, RequestOp, ResponseOp


class Model(Op):
    """W2's model: one blocking call per batch, ``y = sum(x)`` per item."""

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, np.float32]]:
        time.sleep(workloads.w2_model_cost_s(len(feed_list)))
        return [{"y": np.float32(feed["x"].sum())} for feed in feed_list]


def build_response_op() -> ResponseOp:
    """Wires the DAG and returns its ResponseOp."""
    model_op = Model(name="model", input_ops=[RequestOp()])
    return ResponseOp(input_ops=[model_op])


def main() -> None:
    """Builds the pipeline and serves it with the config given on the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="the pipeline's config.yml")
    args = parser.parse_args()

    server = PipelineServer(name="w2")
    server.set_response_op(build_response_op())
    server.prepare_server(args.config)
    server.run_server()


if __name__ == "__main__":
    main()
