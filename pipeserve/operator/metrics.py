"""The operator's Prometheus metrics: what it reconciled, how it went, what it changed.

One :class:`OperatorMetrics` per running operator, on a registry of its own (not
prometheus_client's global one), so that several operators in one process (tests) never
collide and a scrape shows only the operator's series:

- ``pipeserve_operator_reconciliations_total{handler, result}``: handler runs, by kopf cause
  (``create``, ``update``, ``resume``, ``delete``, ``deployment``) and result (``success``;
  ``permanent_error``, which kopf does not retry until the object changes; ``temporary_error``
  and ``error``, which it retries);
- ``pipeserve_operator_reconciliation_duration_seconds{handler}``: how long they took;
- ``pipeserve_operator_invalid_specs_total``: reconciliations refused for an invalid spec;
- ``pipeserve_operator_child_changes_total{kind, action}``: children ``created``,
  ``patched`` or ``deleted`` (pruned), by kind;
- ``pipeserve_operator_pipelineservices{ready}``: the PipelineServices the operator manages,
  by the status of their Ready condition (``True``, ``False``, ``Unknown``).

``serve`` exposes a registry at ``/metrics`` with prometheus_client's own HTTP server, in a
thread, so a scrape never waits for kopf's event loop.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping

import kopf
import prometheus_client
from prometheus_client import core as prom
from prometheus_client import registry as prom_registry

PREFIX = "pipeserve_operator"
READY_STATUSES = ("True", "False", "Unknown")
#: A reconciliation is a few API calls; slow ones wait on a busy API server.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class OperatorMetrics:
    """The metrics of one operator, on ``self.registry``."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.reconciliations = prometheus_client.Counter(
            f"{PREFIX}_reconciliations", "Handler runs, by kopf cause and result.",
            ["handler", "result"], registry=self.registry,
        )  # fmt: skip
        self.duration = prometheus_client.Histogram(
            f"{PREFIX}_reconciliation_duration_seconds", "How long handler runs took, by kopf cause.",
            ["handler"], buckets=DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.invalid_specs = prometheus_client.Counter(
            f"{PREFIX}_invalid_specs", "Reconciliations refused for an invalid PipelineService spec.",
            registry=self.registry,
        )  # fmt: skip
        self.child_changes = prometheus_client.Counter(
            f"{PREFIX}_child_changes", "Children created, patched or deleted, by kind.",
            ["kind", "action"], registry=self.registry,
        )  # fmt: skip
        self._readiness = _Readiness()
        self.registry.register(self._readiness)

    @contextlib.contextmanager
    def reconciliation(self, handler: str) -> Iterator[None]:
        """Time the block and count it under ``handler`` with the result its exception gives."""
        start = time.monotonic()
        result = "error"
        try:
            yield
            result = "success"
        except kopf.PermanentError:
            result = "permanent_error"
            raise
        except kopf.TemporaryError:
            result = "temporary_error"
            raise
        finally:
            self.reconciliations.labels(handler, result).inc()
            self.duration.labels(handler).observe(time.monotonic() - start)

    def children_changed(self, outcomes: Mapping[str, str], deleted: Iterable[str] = ()) -> None:
        """Count what ``apply.apply_all`` did (``{"Kind/name": outcome}``) and what
        ``apply.prune`` deleted (``["Kind/name"]``); unchanged children are not counted."""
        for key, outcome in outcomes.items():
            if outcome != "unchanged":
                self.child_changes.labels(key.partition("/")[0], outcome).inc()
        for key in deleted:
            self.child_changes.labels(key.partition("/")[0], "deleted").inc()

    def pipeline_ready(self, namespace: str, name: str, ready: str | None) -> None:
        """Record the Ready status of a PipelineService; None: it is gone, forget it."""
        self._readiness.set(namespace, name, ready)


class _Readiness(prom_registry.Collector):
    """The gauge of managed PipelineServices by Ready status, counted at scrape time from
    the last status each one was given (a gauge of counts could drift on a missed deletion
    of one label and not the other)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # kopf's loop writes, the HTTP server's thread reads
        self._ready: dict[tuple[str, str], str] = {}

    def set(self, namespace: str, name: str, ready: str | None) -> None:
        with self._lock:
            if ready is None:
                self._ready.pop((namespace, name), None)
            else:
                self._ready[(namespace, name)] = ready if ready in READY_STATUSES else "Unknown"

    def collect(self) -> Iterator[prom.Metric]:
        with self._lock:
            statuses = list(self._ready.values())
        gauge = prom.GaugeMetricFamily(
            f"{PREFIX}_pipelineservices", "PipelineServices the operator manages, by Ready condition status.",
            labels=["ready"],
        )  # fmt: skip
        for status in READY_STATUSES:
            gauge.add_metric([status], statuses.count(status))
        yield gauge


class Endpoint:
    """prometheus_client's HTTP server for one registry, on ``host:port`` (0: a free port)."""

    def __init__(self, metrics: OperatorMetrics, host: str, port: int) -> None:
        try:
            self._server, self._thread = prometheus_client.start_http_server(port, host, registry=metrics.registry)
        except OSError as exc:
            raise OSError(f"cannot bind the metrics port {host}:{port}: {exc.strerror}") from exc
        self.host = host
        self.port: int = self._server.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
