"""An op service's metrics: its batches, stages and per-sample answers, on a port of its own.

With ``--metrics-port``, the service runs :class:`MeteredHandler` instead of the plain
handler: every batch's ``prep``/``midp``/``postp`` stages, its size, and each sample's
err_no go to a :class:`~pipeserve.monitor.metrics.PipelineMetrics` served by Prometheus'
own small HTTP server (a thread). On an op service one "request" is one sample it ran.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import prometheus_client

from pipeserve.monitor import metrics as metrics_mod
from pipeserve.opservice import service
from pipeserve.pipeline import errors, observe, stages


class MeteredHandler(service.OpHandler):
    """:class:`service.OpHandler` that reports every batch it runs to ``metrics``."""

    def __init__(self, *args: Any, metrics: metrics_mod.PipelineMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self.in_flight = 0
        """Samples being run now."""

    async def _run(
        self, samples: list[stages.Sample], context: grpc.aio.ServicerContext, times: stages.StageTimes | None
    ) -> list[stages.Outcome]:
        own: stages.StageTimes = times if times is not None else []
        started = time.time_ns()
        self.in_flight += len(samples)
        try:
            outcomes = await super()._run(samples, context, own)
        finally:
            self.in_flight -= len(samples)
        ended = time.time_ns()
        data_ids = tuple(sample.data_id for sample in samples)
        log_ids = tuple(sample.log_id for sample in samples)
        metrics, op = self.metrics, self.op_name
        for stage, start, end, where in own:
            metrics.on_stage(observe.StageTiming(op, stage, data_ids, log_ids, start, end, where))
        metrics.on_batch(op, len(samples))
        for outcome in outcomes:
            err_no = outcome.code if isinstance(outcome, errors.PipelineError) else 0
            if err_no:
                metrics.on_op_error(op, err_no)
            metrics.on_request(op, err_no, started, ended)
        return outcomes


class MetricsEndpoint:
    """Prometheus' HTTP server for one registry, on ``host:port`` (0: a free port)."""

    def __init__(self, metrics: metrics_mod.PipelineMetrics, host: str, port: int) -> None:
        self._server, self._thread = prometheus_client.start_http_server(port, host, registry=metrics.registry)
        self.port: int = self._server.server_port

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start(metrics: metrics_mod.PipelineMetrics, host: str, port: int) -> MetricsEndpoint:
    """Serve ``metrics`` at ``http://host:port/metrics``.

    Raises:
        OSError: The port cannot be bound, naming it.
    """
    try:
        return MetricsEndpoint(metrics, host, port)
    except OSError as exc:
        raise OSError(f"cannot bind the metrics port {host}:{port}: {exc.strerror}") from exc

