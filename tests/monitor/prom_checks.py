"""Reading a Prometheus exposition in tests, and checking it follows Prometheus' conventions.

The text is parsed by prometheus_client's own parser, so a malformed exposition fails
there; :func:`check_conventions` then applies the naming rules of
https://prometheus.io/docs/practices/naming/ and the histogram rules of the exposition
format to every family.
"""

from __future__ import annotations

import math
import re

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

FAMILIES = {
    "pipeserve_requests": "counter",
    "pipeserve_request_duration_seconds": "histogram",
    "pipeserve_op_duration_seconds": "histogram",
    "pipeserve_op_stage_duration_seconds": "histogram",
    "pipeserve_op_batch_size": "histogram",
    "pipeserve_op_errors": "counter",
    "pipeserve_op_queue_depth": "gauge",
    "pipeserve_requests_in_flight": "gauge",
    "pipeserve_payload_reads": "counter",
    "pipeserve_payload_read_bytes": "counter",
    "pipeserve_payload_writes": "counter",
    "pipeserve_payload_written_bytes": "counter",
}
"""Every family a gateway or an op service exposes, with its type (README lists them)."""

_NAME = re.compile(r"^pipeserve_[a-z][a-z0-9_]*[a-z0-9]$")
_LABEL = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED_SUFFIXES = ("_total", "_count", "_sum", "_bucket", "_created", "_info")
_TIME_WORDS = ("duration", "latency", "time", "seconds")


def scrape(text: str) -> Samples:
    """Every sample of the exposition, by name and sorted labels."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def check_conventions(text: str) -> None:
    """Fail on any family or sample of ``text`` that breaks Prometheus conventions, or on a
    family missing from (or not in) :data:`FAMILIES`."""
    families = list(text_string_to_metric_families(text))
    assert {f.name: f.type for f in families} == FAMILIES
    for family in families:
        name = family.name
        assert _NAME.match(name), f"{name}: not a pipeserve_ snake_case name"
        assert not name.endswith(_RESERVED_SUFFIXES), f"{name}: a reserved suffix in the family name"
        assert family.documentation.strip(), f"{name}: no HELP text"
        if any(word in name for word in _TIME_WORDS):
            assert name.endswith("_seconds"), f"{name}: time in base units, named _seconds"
        if "bytes" in name:
            assert name.endswith("_bytes"), f"{name}: bytes as the unit suffix"
        for sample in family.samples:
            for label in sample.labels:
                assert _LABEL.match(label) and not label.startswith("__"), f"{name}: label {label!r}"
            assert math.isfinite(sample.value) and sample.value >= 0, f"{sample.name}: {sample.value}"
        if family.type == "counter":
            assert {s.name for s in family.samples} <= {name + "_total"}, f"{name}: counter samples end in _total"
        elif family.type == "gauge":
            assert {s.name for s in family.samples} <= {name}, name
            assert not name.endswith("_total"), f"{name}: a gauge named like a counter"
        else:
            _check_histogram(name, family.samples)


def _check_histogram(name: str, samples: list) -> None:  # type: ignore[type-arg]
    assert {s.name for s in samples} <= {name + "_bucket", name + "_sum", name + "_count"}, name
    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for sample in samples:
        labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        if sample.name.endswith("_bucket"):
            series.setdefault(labels, []).append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            counts[labels] = sample.value
        else:
            assert "le" not in sample.labels, sample
    assert set(series) == set(counts), f"{name}: every series has buckets and a count"
    for labels, buckets in series.items():
        bounds = [bound for bound, _ in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf, f"{name}{labels}: buckets must end at +Inf"
        values = [value for _, value in buckets]
        assert values == sorted(values), f"{name}{labels}: buckets are cumulative"
        assert values[-1] == counts[labels], f"{name}{labels}: the +Inf bucket is the count"
