"""The tracer (seed §5, §6.4): every ``dag.tracer.interval_s``, what each op did.

Per interval it writes to ``pipeline.tracer`` one line for the whole DAG, one per op and
one per channel, in the seeds' ``name[value]`` style::

    DAGExecutor: query[120] succ[119] error[1] qps[12.00 q/s] in_flight[3] latency ave[8.210 ms] .50[7.900 ms] .90[11.300 ms] .99[15.020 ms]
    Op(bow): query[120] qps[12.00 q/s] in[0.120 ms] prep[0.051 ms] midp[2.300 ms] postp[0.020 ms] out[0.050 ms] error[0] batch[count 60 ave 2.00 max 2]
    Channel(@DAGExecutor->bow): size[4]

``query`` counts the samples an op ran (a batch of 2 counts 2), ``in``..``out`` are the
average durations of each stage per run, ``batch`` the runs and their sizes; a channel's
size is how many samples wait for the op now. Stages an op service ran are reported by
it (in its own pipeline.tracer when it traces); here ``prep``..``postp`` include them.

The tracer is an observer: it is registered only when configured, so without it the
engine does none of this work and nothing is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pipeserve.pipeline import logs, observe

_PERCENTILES = (50, 90, 99)


class Tracer:
    """Collects the engine's events and writes one summary per interval.

    Args:
        interval_s: seconds between summaries (:meth:`run`).
        ops: each op's input names, in DAG order (channels are named after them).
        queue_depths: samples waiting per op now.
        in_flight: requests inside the DAG now.
        logger: where the lines go (``pipeline.tracer`` by default).
        clock: seconds, monotonic; the QPS divides by the time since the last summary.
    """

    def __init__(
        self,
        interval_s: float,
        ops: Mapping[str, tuple[str, ...]],
        queue_depths: Callable[[], Mapping[str, int]],
        in_flight: Callable[[], int],
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._ops = dict(ops)
        self._queue_depths = queue_depths
        self._in_flight = in_flight
        self._logger = logger or logging.getLogger(logs.TRACER_LOGGER)
        self._clock = clock
        self._since = clock()
        self._reset()

    def _reset(self) -> None:
        self._stages: dict[tuple[str, str], list[int]] = {}
        self._batches: dict[str, list[int]] = {}
        self._op_errors: dict[str, int] = {}
        self._latencies_ns: list[int] = []
        self._failed = 0

    # Observer --------------------------------------------------------------------------

    def on_stage(self, timing: observe.StageTiming) -> None:
        if timing.where and timing.stage in ("in", "out"):
            return  # the op service's own hand-over; the gateway's in/out cover the op
        total = self._stages.setdefault((timing.op, timing.stage), [0, 0])
        total[0] += timing.end_ns - timing.start_ns
        total[1] += 1

    def on_batch(self, op: str, size: int) -> None:
        batches = self._batches.setdefault(op, [0, 0, 0])
        batches[0] += 1
        batches[1] += size
        batches[2] = max(batches[2], size)

    def on_request(self, name: str, err_no: int, start_ns: int, end_ns: int) -> None:
        self._latencies_ns.append(end_ns - start_ns)
        if err_no:
            self._failed += 1

    def on_op_error(self, op: str, err_no: int) -> None:
        self._op_errors[op] = self._op_errors.get(op, 0) + 1

    # Summaries -------------------------------------------------------------------------

    def flush(self) -> list[str]:
        """Write the figures gathered since the last summary, start a new interval, and
        return the lines written."""
        now = self._clock()
        elapsed = max(now - self._since, 1e-9)
        self._since = now
        lines = [self._dag_line(elapsed)]
        lines.extend(self._op_line(op, elapsed) for op in self._ops)
        depths = self._queue_depths()
        for op, inputs in self._ops.items():
            lines.append(f"Channel({','.join(inputs)}->{op}): size[{depths.get(op, 0)}]")
        for line in lines:
            self._logger.info(line)
        self._reset()
        return lines

    async def run(self) -> None:
        """Write a summary every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            self.flush()

    def _dag_line(self, elapsed: float) -> str:
        latencies = sorted(self._latencies_ns)
        count = len(latencies)
        line = (
            f"DAGExecutor: query[{count}] succ[{count - self._failed}] error[{self._failed}] "
            f"qps[{count / elapsed:.2f} q/s] in_flight[{self._in_flight()}]"
        )
        if count:
            average = sum(latencies) / count
            parts = [f"ave[{_ms(average)}]"]
            for p in _PERCENTILES:
                parts.append(f".{p}[{_ms(latencies[min(count - 1, count * p // 100)])}]")
            line += " latency " + " ".join(parts)
        return line

    def _op_line(self, op: str, elapsed: float) -> str:
        runs, samples, biggest = self._batches.get(op, (0, 0, 0))
        parts = [f"Op({op}): query[{samples}] qps[{samples / elapsed:.2f} q/s]"]
        for stage in observe.STAGES:
            total, count = self._stages.get((op, stage), (0, 0))
            parts.append(f"{stage}[{_ms(total / count) if count else '-'}]")
        parts.append(f"error[{self._op_errors.get(op, 0)}]")
        average = samples / runs if runs else 0.0
        parts.append(f"batch[count {runs} ave {average:.2f} max {biggest}]")
        return " ".join(parts)


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.3f} ms"


def for_executor(executor: Any) -> Tracer | None:
    """The tracer ``dag.tracer.interval_s`` asks for (None when not configured)."""
    interval_s = executor.config.dag.tracer_interval_s
    if interval_s is None:
        return None
    ops = {name: node.inputs for name, node in executor.nodes.items()}
    return Tracer(interval_s, ops, executor.queue_depths, lambda: executor.in_flight)
