"""Where an op service's Prometheus metrics are served: a port of their own.

With ``--metrics-port``, the op service registers a
:class:`~pipeserve.monitor.metrics.PipelineMetrics` with its handler's observers (every
batch's stages, its size, each sample's err_no; on an op service one "request" is one
sample it ran) and serves it with Prometheus' own small HTTP server, in a thread, so a
scrape never waits for the event loop.
"""

from __future__ import annotations

import prometheus_client

from pipeserve.monitor import metrics as metrics_mod


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
