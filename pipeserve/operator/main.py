"""Running the operator: kopf with our handlers, scoped and probed as the options say.

Scope: one namespace, several, or all of them (cluster-wide). Liveness: kopf's own probe
endpoint (``--liveness http://0.0.0.0:8080/healthz``), which answers once kopf is up and its
watches run. More than one replica: kopf peering (see ``peering``), where only the replica
with the highest priority works; ``--standalone`` (the default) skips peering and needs no
peering CRDs, right for a single replica. Metrics: with ``--metrics-port``, Prometheus metrics
(see ``metrics``) at ``http://HOST:PORT/metrics``, served beside kopf for as long as it runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import kopf

from pipeserve.operator import handlers
from pipeserve.operator import metrics as operator_metrics


class OptionsError(ValueError):
    """Options that do not fit together; the message says which and what to pass."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """How to run the operator.

    Attributes:
        namespaces: The namespaces to watch; empty with ``all_namespaces``.
        all_namespaces: Watch every namespace (cluster-wide).
        liveness: URL kopf serves its liveness probe on, or None for none.
        peering: Name of the kopf peering object shared by the replicas, or None to run
            standalone (one replica).
        priority: This replica's peering priority; None picks a random one, so that
            replicas differ (kopf pauses every replica of an equal top priority).
        metrics_port: Port to serve Prometheus metrics on (``/metrics``; 0 picks a free
            one), or None for no metrics endpoint.
        metrics_host: Address the metrics endpoint binds; None: every interface (0.0.0.0).
        verbose: Debug logging.
    """

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    liveness: str | None = None
    peering: str | None = None
    priority: int | None = None
    metrics_port: int | None = None
    metrics_host: str | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.all_namespaces and self.namespaces:
            raise OptionsError("--all-namespaces and --namespace exclude each other: pass one of them")
        if not self.all_namespaces and not self.namespaces:
            raise OptionsError("no namespace to watch: pass --namespace NS (repeatable) or --all-namespaces")
        if self.priority is not None and self.peering is None:
            raise OptionsError("--priority only matters with --peering NAME")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise OptionsError(f"--metrics-port must be a port number from 0 to 65535, got {self.metrics_port}")
        if self.metrics_host is not None and self.metrics_port is None:
            raise OptionsError("--metrics-host only matters with --metrics-port PORT")


def kopf_arguments(options: Options) -> dict[str, Any]:
    """The keyword arguments of ``kopf.operator`` for these options."""
    settings = kopf.OperatorSettings()
    # With explicit namespaces kopf need not list namespaces nor watch CRDs (both cluster-scoped,
    # outside a per-namespace Role): it watches the namespaces it was given. Cluster-wide it
    # watches CRDs, so a PipelineService CRD installed after the operator is still noticed.
    settings.scanning.disabled = not options.all_namespaces
    arguments: dict[str, Any] = {
        "settings": settings,
        "registry": handlers.registry,
        "clusterwide": options.all_namespaces,
        "namespaces": list(options.namespaces),
        "liveness_endpoint": options.liveness,
    }
    if options.peering is None:
        arguments["standalone"] = True
    else:
        arguments["peering_name"] = options.peering
        arguments["priority"] = options.priority if options.priority is not None else random.randint(1, 2**31 - 1)
    return arguments


async def operate(options: Options, **extra: Any) -> None:
    """Run the operator until it is stopped; ``extra`` goes to ``kopf.operator`` (tests pass
    credentials and stop/ready flags).

    Raises:
        OSError: The metrics port cannot be bound, naming it.
    """
    metrics = operator_metrics.OperatorMetrics()
    endpoint = None
    if options.metrics_port is not None:
        endpoint = operator_metrics.Endpoint(metrics, options.metrics_host or "0.0.0.0", options.metrics_port)
        print(f"pipeserve operator: metrics at {endpoint.url}", flush=True)
    try:
        await kopf.operator(**kopf_arguments(options), memo=kopf.Memo(metrics=metrics), **extra)
    finally:
        if endpoint is not None:
            endpoint.close()


def run(options: Options) -> int:
    """Run the operator in this thread until SIGINT/SIGTERM; returns the exit status."""
    kopf.configure(verbose=options.verbose)
    asyncio.run(operate(options))
    return 0

