"""The operator's Prometheus metrics, read from its /metrics endpoint as Prometheus would.

Covers: the real kopf runtime against kmock counts a valid PipelineService's reconciliation
and children, an invalid one's refusal, and the PipelineServices by Ready status as their
Deployments become ready; the real ``pipeserve operator --metrics-port 0`` command prints
where it serves them and serves them; a metrics port that is taken is refused by name;
reconciliation results follow kopf's error kinds.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import pytest
from prometheus_client import exposition, parser

from kube_harness import (  # noqa: F401  (k8s is a fixture)
    PS,
    ApiEmulator,
    eventually,
    free_port,
    k8s,
    live,
    start_operator,
    write_kubeconfig,
)
from pipeserve.operator import main, render
from pipeserve.operator import metrics as operator_metrics

pytestmark = pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")

PS_PATH = "/apis/pipeserve.io/v1alpha1/namespaces/default/pipelineservices"
VALID = {
    "apiVersion": "pipeserve.io/v1alpha1",
    "kind": "PipelineService",
    "metadata": {"name": "demo", "namespace": "default"},
    "spec": {
        "image": "example/imdb:1",
        "ops": [
            {"name": "read", "class": "ops:ReadOp"},
            {"name": "bow", "class": "ops:BowOp", "inputs": ["read"], "placement": "service", "replicas": 2},
            {"name": "combine", "class": "ops:CombineOp", "inputs": ["bow"]},
        ],
    },
}
INVALID: dict[str, Any] = copy.deepcopy(VALID)
INVALID["metadata"]["name"] = "broken"
INVALID["spec"]["ops"][2]["inputs"] = ["bwo"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return parse(await response.text())


async def create(k8s: ApiEmulator, body: dict[str, Any]) -> None:
    response = await k8s.post(PS_PATH, json=copy.deepcopy(body))
    assert response.status == 200, await response.text()


def ready_status(k8s: ApiEmulator, name: str) -> str | None:
    conditions = (live(k8s, PS, name) or {}).get("status", {}).get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), None)


async def test_metrics_count_a_valid_and_an_invalid_pipeline_and_follow_readiness(k8s: ApiEmulator) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    options = main.Options(namespaces=("default",), metrics_port=port, metrics_host="127.0.0.1")
    async for _ in start_operator(k8s, options):
        before = await scrape(url)
        assert value(before, "pipeserve_operator_invalid_specs_total") == 0
        assert value(before, "pipeserve_operator_pipelineservices", ready="False") == 0

        await create(k8s, VALID)
        await create(k8s, INVALID)
        await eventually(lambda: ready_status(k8s, "demo") == "False", "demo's status")
        await eventually(lambda: ready_status(k8s, "broken") == "False", "broken's status")

        async def counted() -> Samples | None:
            samples = await scrape(url)
            done = value(samples, "pipeserve_operator_reconciliations_total", handler="create", result="success")
            refused = value(
                samples, "pipeserve_operator_reconciliations_total", handler="create", result="permanent_error"
            )
            return samples if done == 1 and refused == 1 else None

        samples = await eventually(counted, "a successful and a refused create in /metrics")
        assert value(samples, "pipeserve_operator_invalid_specs_total") == 1
        assert value(samples, "pipeserve_operator_reconciliation_duration_seconds_count", handler="create") == 2
        children = render.render_children(live(k8s, PS, "demo"))  # type: ignore[arg-type]
        for kind in {child["kind"] for child in children}:
            created = sum(child["kind"] == kind for child in children)
            changes = value(samples, "pipeserve_operator_child_changes_total", kind=kind, action="created")
            assert changes == created, f"{kind}: {changes} counted, {created} created"
        assert value(samples, "pipeserve_operator_child_changes_total", kind="Deployment", action="patched") is None
        assert value(samples, "pipeserve_operator_pipelineservices", ready="False") == 2
        assert value(samples, "pipeserve_operator_pipelineservices", ready="True") == 0

        for child in children:
            if child["kind"] == "Deployment":
                ready = child["spec"].get("replicas", 1)
                body = {"status": {"readyReplicas": ready, "availableReplicas": ready}}
                path = f"/apis/apps/v1/namespaces/default/deployments/{child['metadata']['name']}/status"
                response = await k8s.patch(path, json=body)
                assert response.status == 200, await response.text()

        async def one_ready() -> Samples | None:
            samples = await scrape(url)
            ready = value(samples, "pipeserve_operator_pipelineservices", ready="True")
            return samples if ready == 1 else None

        samples = await eventually(one_ready, "one PipelineService counted Ready=True")
        assert value(samples, "pipeserve_operator_pipelineservices", ready="False") == 1
        deployment_runs = value(
            samples, "pipeserve_operator_reconciliations_total", handler="deployment", result="success"
        )
        assert deployment_runs and deployment_runs >= 2

    with pytest.raises(aiohttp.ClientConnectionError):  # the endpoint stops with the operator
        await scrape(url)


async def test_the_operator_command_prints_and_serves_its_metrics_port(k8s: ApiEmulator, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", k8s)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeserve.cli", "operator", "--namespace", "default",
        "--metrics-port", "0", "--metrics-host", "127.0.0.1",
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:

        async def announced() -> str | None:
            line = (await process.stdout.readline()).decode()  # type: ignore[union-attr]
            lines.append(line)
            match = re.fullmatch(r"pipeserve operator: metrics at (http://127\.0\.0\.1:\d+/metrics)\n", line)
            assert line or process.returncode is None, "the command exited"
            return match[1] if match else None

        url = await eventually(announced, "the metrics URL on stdout", timeout=30)
        drain = asyncio.create_task(process.stdout.read())  # kopf logs to the same pipe
        await create(k8s, VALID)

        async def reconciled() -> bool:
            samples = await scrape(url)
            return value(samples, "pipeserve_operator_reconciliations_total", handler="create", result="success") == 1

        await eventually(reconciled, "the command's reconciliation in /metrics", timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
    output = "".join(lines) + (await drain).decode()
    assert process.returncode == 0, output


async def test_a_metrics_port_in_use_is_refused_by_name() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        options = main.Options(namespaces=("default",), metrics_port=port, metrics_host="127.0.0.1")
        refused = rf"^cannot bind the metrics port 127\.0\.0\.1:{port}: Address already in use$"
        with pytest.raises(OSError, match=refused):
            await main.operate(options)


@pytest.mark.parametrize(
    ("error", "result"),
    [
        (None, "success"),
        (kopf.PermanentError("invalid spec"), "permanent_error"),
        (kopf.TemporaryError("not yet", delay=1), "temporary_error"),
        (RuntimeError("boom"), "error"),
    ],
)
def test_a_reconciliation_is_counted_and_timed_with_its_result(error: Exception | None, result: str) -> None:
    metrics = operator_metrics.OperatorMetrics()
    try:
        with metrics.reconciliation("update"):
            if error is not None:
                raise error
    except Exception as exc:
        assert exc is error
    samples = parse(prometheus_text(metrics))
    assert value(samples, "pipeserve_operator_reconciliations_total", handler="update", result=result) == 1
    assert value(samples, "pipeserve_operator_reconciliation_duration_seconds_count", handler="update") == 1


def test_children_count_by_kind_and_action_and_unchanged_ones_do_not() -> None:
    metrics = operator_metrics.OperatorMetrics()
    metrics.children_changed(
        {"Deployment/a-gateway": "created", "Deployment/a-bow": "patched", "Service/a-gateway": "unchanged"},
        ["HorizontalPodAutoscaler/a-bow"],
    )
    samples = parse(prometheus_text(metrics))
    changes = {
        dict(labels)["kind"] + " " + dict(labels)["action"]: count
        for (name, labels), count in samples.items()
        if name == "pipeserve_operator_child_changes_total"
    }
    assert changes == {"Deployment created": 1, "Deployment patched": 1, "HorizontalPodAutoscaler deleted": 1}


def prometheus_text(metrics: operator_metrics.OperatorMetrics) -> str:
    return exposition.generate_latest(metrics.registry).decode()
