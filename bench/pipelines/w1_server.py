"""W1 under test: the imdb ensemble written with pipeserve's public API, as the seeds write it.

DAG: read (the RequestOp) → {bow, cnn} → combine → response. The ops do exactly the work of
``bench.workloads`` (the same code the ceilings run), so only the serving machinery differs.

Run: ``python -m bench.pipelines.w1_server --config bench/pipelines/w1.yml`` from the
repository root; ``POST /imdb/prediction`` with ``{"key": ["words"], "value": ["..."]}``.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from bench import workloads
from pipeserve import Op, PipelineServer, RequestOp, ResponseOp


class ImdbRequestOp(RequestOp):
    """Turns the request's ``words`` into word ids (W1's read)."""

    def unpack_request_package(self, request: Any) -> dict[str, Any]:
        words = request.value[list(request.key).index("words")]
        return {"ids": workloads.read(words)}


class BowOp(Op):
    """W1's bow model, on a batch of ``{"ids": ...}`` feeds."""

    def init_op(self) -> None:
        self.model = workloads.BowModel()

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, np.float32]]:
        return [{"prediction": self.model(feed["ids"])} for feed in feed_list]


class CnnOp(Op):
    """W1's cnn model, on a batch of ``{"ids": ...}`` feeds."""

    def init_op(self) -> None:
        self.model = workloads.CnnModel()

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, np.float32]]:
        return [{"prediction": self.model(feed["ids"])} for feed in feed_list]


class CombineOp(Op):
    """The mean of the bow and cnn predictions."""

    # The seeds' short form: one argument, returns the feed (the engine accepts both forms).
    def preprocess(self, input_dicts: dict[str, dict[str, Any]]) -> dict[str, np.float32]:  # type: ignore[override]
        bow, cnn = input_dicts["bow"]["prediction"], input_dicts["cnn"]["prediction"]
        return {"prediction": workloads.combine(bow, cnn)}


def build_response_op() -> ResponseOp:
    """Wires the DAG and returns its ResponseOp."""
    read_op = ImdbRequestOp()
    bow_op = BowOp(name="bow", input_ops=[read_op])
    cnn_op = CnnOp(name="cnn", input_ops=[read_op])
    combine_op = CombineOp(name="combine", input_ops=[bow_op, cnn_op])
    return ResponseOp(input_ops=[combine_op])


def main() -> None:
    """Builds the pipeline and serves it with the config given on the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="the pipeline's config.yml")
    args = parser.parse_args()

    server = PipelineServer(name="imdb")
    server.set_response_op(build_response_op())
    server.prepare_server(args.config)
    server.run_server()


if __name__ == "__main__":
    main()
