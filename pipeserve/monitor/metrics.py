"""Prometheus metrics and live per-op figures, fed by the engine's observer events.

One :class:`PipelineMetrics` per server (gateway or op service), each with its own
``CollectorRegistry``, so several servers in one process (tests) keep apart. It is an
:class:`~pipeserve.pipeline.observe.Observer`, and the engine reports every event from
its event loop: one writer thread. So each event only bumps plain counters, with no lock
and no prometheus_client object on the hot path (those lock and allocate per
observation; a lock alone costs more than the rest of an event here). Metric families are
built when ``/metrics`` is scraped, from copies of the counters: copying a dict or a list
is one step for the interpreter, so a scrape from another thread (an op service's metrics
server) sees each histogram whole.

Metrics (Prometheus naming: ``pipeserve_`` prefix, base units, ``_total`` counters):

- ``pipeserve_requests_total{service,err_no}`` and ``pipeserve_request_duration_seconds{service}``
- ``pipeserve_op_duration_seconds{op}``: a sample's time in an op, from arrival to hand-over
- ``pipeserve_op_stage_duration_seconds{op,stage,where}``: each stage (seed §6.4 terms)
- ``pipeserve_op_batch_size{op}``, ``pipeserve_op_errors_total{op,err_no}``
- ``pipeserve_op_queue_depth{op}``, ``pipeserve_requests_in_flight`` (read when scraped)
- ``pipeserve_payload_reads_total{result}``, ``pipeserve_payload_read_bytes_total``,
  ``pipeserve_payload_writes_total``, ``pipeserve_payload_written_bytes_total``
"""

from __future__ import annotations

import bisect
import collections
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import prometheus_client
from prometheus_client import core as prom

from pipeserve.pipeline import observe

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WINDOW_S = 10.0
"""Live figures (QPS, percentiles) cover the last this many seconds."""
_RECENT = 2048
"""Most recent latencies kept per op for the live percentiles."""
_PENDING_LIMIT = 65536
"""Samples whose ``out`` stage never came are forgotten beyond this many."""

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self) -> tuple[list[tuple[str, float]], float, int]:
        """Cumulative buckets, sum and count, from one copy of the counts."""
        counts, total = list(self.counts), self.total
        cumulative, out = 0, list[tuple[str, float]]()
        for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
            cumulative += count
            out.append(("+Inf" if bound == math.inf else repr(float(bound)), cumulative))
        return out, total, cumulative

    @property
    def count(self) -> int:
        return sum(self.counts)


class _Recent:
    """Latencies and completion times of the last :data:`_RECENT` samples."""

    __slots__ = ("samples", "errors")

    def __init__(self) -> None:
        self.samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=_RECENT)
        self.errors = 0

    def figures(self, now: float, window_s: float) -> dict[str, float | int | None]:
        samples = list(self.samples)
        recent = sorted(latency for at, latency in samples if now - at <= window_s)
        # QPS over the window, or over the time since the first sample when that is shorter.
        span = min(window_s, now - samples[0][0]) if samples else window_s
        return {
            "qps": round(len(recent) / max(span, 1.0), 2),
            "p50_ms": _quantile_ms(recent, 0.5),
            "p99_ms": _quantile_ms(recent, 0.99),
            "errors": self.errors,
        }


def _quantile_ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)


class PipelineMetrics:
    """An observer that keeps Prometheus metrics and live figures for one server.

    Args:
        service: The ``service`` label of request metrics (the pipeline's name).
        queue_depths: Read when scraped: waiting samples by op.
        in_flight: Read when scraped: requests inside the DAG.
    """

    def __init__(
        self,
        service: str,
        *,
        queue_depths: Callable[[], Mapping[str, int]] | None = None,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        self.service = service
        self._queue_depths = queue_depths
        self._in_flight = in_flight
        self._requests: dict[int, int] = {}
        self._request_hist = _Histogram(LATENCY_BUCKETS_S)
        self._request_recent = _Recent()
        self._stage_hist: dict[tuple[str, str, str], _Histogram] = {}
        self._op_hist: dict[str, _Histogram] = {}
        self._op_recent: dict[str, _Recent] = {}
        self._batch_hist: dict[str, _Histogram] = {}
        self._op_errors: dict[tuple[str, int], int] = {}
        self._pending: dict[tuple[str, int], int] = {}
        self.payload = {"hits": 0, "misses": 0, "read_bytes": 0, "writes": 0, "written_bytes": 0}
        self.registry = prometheus_client.CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    # Observer ------------------------------------------------------------------------------

    def on_stage(self, timing: observe.StageTiming) -> None:
        """Count the stage; a sample's op time runs from its ``in`` to the end of its ``out``.

        Stages an op service ran (``where`` set) only count as stages: the gateway's own
        ``in`` and ``out`` of the op surround them.
        """
        op, stage, where = timing.op, timing.stage, timing.where
        start, end = timing.start_ns, timing.end_ns
        seconds = (end - start) / 1e9
        hist = self._stage_hist.get((op, stage, where))
        if hist is None:
            hist = self._stage_hist[(op, stage, where)] = _Histogram(LATENCY_BUCKETS_S)
        hist.counts[bisect.bisect_left(hist.bounds, seconds)] += 1
        hist.total += seconds
        if where:
            return
        # Stages of one run of an op over a batch share their data_ids: the first names it.
        if stage == "in":
            if len(self._pending) > _PENDING_LIMIT:
                self._pending.clear()
            self._pending[(op, timing.data_ids[0])] = start
        elif stage == "out":
            op_seconds = (end - self._pending.pop((op, timing.data_ids[0]), start)) / 1e9
            op_hist = self._op_hist.get(op)
            if op_hist is None:
                op_hist = self._op_hist[op] = _Histogram(LATENCY_BUCKETS_S)
                self._op_recent[op] = _Recent()
            samples = len(timing.data_ids)
            op_hist.counts[bisect.bisect_left(op_hist.bounds, op_seconds)] += samples
            op_hist.total += op_seconds * samples
            if samples == 1:
                self._op_recent[op].samples.append((time.monotonic(), op_seconds))
            else:
                self._op_recent[op].samples.extend([(time.monotonic(), op_seconds)] * samples)

    def on_batch(self, op: str, size: int) -> None:
        """Count a batch of ``size`` samples."""
        hist = self._batch_hist.get(op)
        if hist is None:
            hist = self._batch_hist[op] = _Histogram(BATCH_BUCKETS)
        hist.observe(size)

    def on_request(self, name: str, err_no: int, start_ns: int, end_ns: int) -> None:
        """Count a request by its err_no."""
        seconds = (end_ns - start_ns) / 1e9
        self._requests[err_no] = self._requests.get(err_no, 0) + 1
        self._request_hist.observe(seconds)
        self._request_recent.samples.append((time.monotonic(), seconds))
        if err_no:
            self._request_recent.errors += 1

    def on_op_error(self, op: str, err_no: int) -> None:
        """Count a failed sample of ``op``."""
        key = (op, err_no)
        self._op_errors[key] = self._op_errors.get(key, 0) + 1
        if op not in self._op_recent:
            self._op_recent[op] = _Recent()
            self._op_hist[op] = _Histogram(LATENCY_BUCKETS_S)
        self._op_recent[op].errors += 1

    # Payload store --------------------------------------------------------------------------

    def on_payload_read(self, size: int | None) -> None:
        """A payload value was read (``size`` bytes), or was missing (None)."""
        if size is None:
            self.payload["misses"] += 1
        else:
            self.payload["hits"] += 1
            self.payload["read_bytes"] += size

    def on_payload_write(self, size: int) -> None:
        """A payload value of ``size`` bytes was written."""
        self.payload["writes"] += 1
        self.payload["written_bytes"] += size

    # Reading --------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return prometheus_client.generate_latest(self.registry)

    def live(self, ops: list[str] | None = None, window_s: float = WINDOW_S) -> dict[str, Any]:
        """Per-op and whole-service figures over the last ``window_s`` seconds.

        Every op of ``ops`` is listed, with zeros before its first sample.
        """
        now = time.monotonic()
        depths = dict(self._queue_depths()) if self._queue_depths else {}
        recent, hists = dict(self._op_recent), dict(self._op_hist)
        figures = {
            name: {
                **(recent[name] if name in recent else _Recent()).figures(now, window_s),
                "count": hists[name].count if name in hists else 0,
                "queue": depths.get(name, 0),
            }
            for name in dict.fromkeys([*(ops or []), *recent])
        }
        service = {
            **self._request_recent.figures(now, window_s),
            "requests": sum(dict(self._requests).values()),
            "in_flight": self._in_flight() if self._in_flight else 0,
        }
        return {"service": self.service, "window_s": window_s, "requests": service, "ops": figures}

    def collect(self) -> Iterator[prom.Metric]:
        """Metric families of everything counted so far (the registry's collector)."""
        requests = prom.CounterMetricFamily(
            "pipeserve_requests", "Requests answered, by err_no (0: success)", labels=["service", "err_no"]
        )
        for err_no, count in sorted(dict(self._requests).items()):
            requests.add_metric([self.service, str(err_no)], count)
        request_duration = prom.HistogramMetricFamily(
            "pipeserve_request_duration_seconds", "Time from a request's arrival to its answer", labels=["service"]
        )
        _add_histogram(request_duration, [self.service], self._request_hist)
        op_duration = prom.HistogramMetricFamily(
            "pipeserve_op_duration_seconds",
            "A sample's time in an op, from its arrival (stage in) to its hand-over (end of stage out)",
            labels=["op"],
        )
        for op, hist in sorted(dict(self._op_hist).items()):
            _add_histogram(op_duration, [op], hist)
        stage = prom.HistogramMetricFamily(
            "pipeserve_op_stage_duration_seconds",
            "Time of each stage of an op (in, prep, midp, postp, out); where is remote:host:port "
            "for stages an op service ran",
            labels=["op", "stage", "where"],
        )
        for (op, name, where), hist in sorted(dict(self._stage_hist).items()):
            _add_histogram(stage, [op, name, where or "local"], hist)
        batch = prom.HistogramMetricFamily("pipeserve_op_batch_size", "Samples per process() call", labels=["op"])
        for op, hist in sorted(dict(self._batch_hist).items()):
            _add_histogram(batch, [op], hist)
        op_errors = prom.CounterMetricFamily(
            "pipeserve_op_errors", "Samples an op failed, by err_no", labels=["op", "err_no"]
        )
        for (op, err_no), count in sorted(dict(self._op_errors).items()):
            op_errors.add_metric([op, str(err_no)], count)
        yield from (requests, request_duration, op_duration, stage, batch, op_errors)
        yield from self._gauges()
        yield from _payload_families(dict(self.payload))

    def _gauges(self) -> Iterator[prom.Metric]:
        if self._queue_depths is not None:
            depth = prom.GaugeMetricFamily(
                "pipeserve_op_queue_depth", "Samples waiting for an op's workers", labels=["op"]
            )
            for op, size in sorted(self._queue_depths().items()):
                depth.add_metric([op], size)
            yield depth
        if self._in_flight is not None:
            yield prom.GaugeMetricFamily(
                "pipeserve_requests_in_flight", "Requests being served now", value=self._in_flight()
            )


def _add_histogram(family: prom.HistogramMetricFamily, labels: list[str], hist: _Histogram) -> None:
    buckets, total, count = hist.family()
    if count:
        family.add_metric(labels, buckets, total)


def _payload_families(payload: Mapping[str, int]) -> Iterator[prom.Metric]:
    reads = prom.CounterMetricFamily(
        "pipeserve_payload_reads", "Payload store reads: hit (found) or miss (expired or gone)", labels=["result"]
    )
    reads.add_metric(["hit"], payload["hits"])
    reads.add_metric(["miss"], payload["misses"])
    yield reads
    yield prom.CounterMetricFamily(
        "pipeserve_payload_read_bytes", "Bytes read from the payload store", value=payload["read_bytes"]
    )
    yield prom.CounterMetricFamily(
        "pipeserve_payload_writes", "Values written to the payload store", value=payload["writes"]
    )
    yield prom.CounterMetricFamily(
        "pipeserve_payload_written_bytes", "Bytes written to the payload store", value=payload["written_bytes"]
    )


class _Collector(prometheus_client.registry.Collector):
    def __init__(self, metrics: PipelineMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[prom.Metric]:
        return self.metrics.collect()
