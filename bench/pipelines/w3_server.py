"""W3 under test: a large tensor made by one op service and summed by another.

DAG: read (the RequestOp: ``seed`` and ``side``) → make → sum → response. ``make`` returns a
float32 ``side`` x ``side`` tensor (1 MiB at 512, 4 MiB at 1024) and ``sum`` its sum; only the
sum goes back to the client. Both ops run in op services (``pipeserve opservice --class
bench.pipelines.w3_server:MakeOp`` / ``:SumOp``), so the tensor crosses two process
boundaries: inline in the gRPC messages (``w3_inline.yml``), or as a reference to the
payload store (``w3_store.yml``, Redis), which the gateway passes from one service to the
other without reading it.

Run: ``python -m bench.pipelines.w3_server --config <w3_inline.yml or w3_store.yml with the
ops' server_endpoints>`` from the repository root (``bench/w3.py`` does it all);
``POST /w3/prediction`` with ``{"key": ["seed", "side"], "value": ["7", "1024"]}``.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from bench import workloads
from pipeserve import Op, PipelineServer, RequestOp, ResponseOp

#: The sides a request may ask for: the client chooses how much the op allocates.
ALLOWED_SIDES = frozenset(workloads.W3_SIDES.values())


class W3RequestOp(RequestOp):
    """Reads the request's ``seed`` and ``side`` as integers."""

    def unpack_request_package(self, request: Any) -> dict[str, int]:
        fields = dict(zip(request.key, request.value, strict=True))
        seed, side = int(fields["seed"]), int(fields["side"])
        if side not in ALLOWED_SIDES:
            raise ValueError(f"side: must be one of {sorted(ALLOWED_SIDES)}, got {side}")
        return {"seed": seed, "side": side}


class MakeOp(Op):
    """W3's op A: the tensor derived from the seed."""

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, workloads.FloatArray]]:
        return [{"x": workloads.w3_tensor(feed["seed"], feed["side"])} for feed in feed_list]


class SumOp(Op):
    """W3's op B: the tensor's sum, a float32 scalar."""

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, np.float32]]:
        return [{"sum": workloads.w3_sum(feed["x"])} for feed in feed_list]


def build_response_op() -> ResponseOp:
    """Wires the DAG and returns its ResponseOp."""
    make_op = MakeOp(name="make", input_ops=[W3RequestOp()])
    sum_op = SumOp(name="sum", input_ops=[make_op])
    return ResponseOp(input_ops=[sum_op])


def main() -> None:
    """Builds the pipeline and serves it with the config given on the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="the pipeline's config.yml")
    args = parser.parse_args()

    server = PipelineServer(name="w3")
    server.set_response_op(build_response_op())
    server.prepare_server(args.config)
    server.run_server()


if __name__ == "__main__":
    main()
