"""The PipelineService CRD: a valid, structural apiextensions/v1 object whose schema accepts
the examples and rejects what the issue lists (names, ports, replicas, batch sizes,
timeouts, enums, quantities)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_schemas import crd_errors, upstream_errors

from pipeserve.operator import crd

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*/pipelineservice*.yaml"))


def _spec_schema() -> dict[str, Any]:
    (version,) = crd.load_crd()["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _example(name: str = "pipelineservice.yaml") -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((Path(__file__).parents[2] / "examples/imdb_ensemble" / name).read_text())
    return loaded


def test_crd_is_valid_against_the_upstream_apiextensions_schema() -> None:
    assert upstream_errors(crd.load_crd()) == []


def test_crd_names_group_version_and_short_name() -> None:
    loaded = crd.load_crd()
    assert loaded["metadata"]["name"] == f"{crd.PLURAL}.{crd.GROUP}" == "pipelineservices.pipeserve.io"
    names = loaded["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("PipelineService", "pipelineservices", ["ps"])
    assert loaded["spec"]["scope"] == "Namespaced"
    (version,) = loaded["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_crd_printer_columns_show_ready_ops_ready_endpoint_and_age() -> None:
    (version,) = crd.load_crd()["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Ops ready": ".status.opsReady",
        "Endpoint": ".status.endpoint",
        "Age": ".metadata.creationTimestamp",
    }


def _walk(node: dict[str, Any], path: str) -> list[str]:
    """Paths of schema nodes that break the structural rules: every node has a type, unless it
    is int-or-string or keeps unknown fields; an object says what it holds."""
    problems = []
    if "type" not in node and not node.get("x-kubernetes-int-or-string") and not node.get(
        "x-kubernetes-preserve-unknown-fields"
    ):
        problems.append(f"{path}: no type")
    if node.get("type") == "object" and not (
        "properties" in node or "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
    ) and path != "metadata":
        problems.append(f"{path}: object without properties")
    if node.get("type") == "array" and "items" not in node:
        problems.append(f"{path}: array without items")
    for name, child in node.get("properties", {}).items():
        problems += _walk(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("additionalProperties"), dict):
        problems += _walk(node["additionalProperties"], f"{path}.*")
    if isinstance(node.get("items"), dict):
        problems += _walk(node["items"], f"{path}[]")
    return problems


def test_crd_schema_is_structural() -> None:
    assert _walk(_spec_schema(), "") == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_match_the_crd_schema(path: Path) -> None:
    resource = yaml.safe_load(path.read_text())
    assert resource["apiVersion"] == f"{crd.GROUP}/{crd.VERSION}"
    assert resource["kind"] == crd.KIND
    assert crd_errors(resource) == []


def test_there_are_at_least_two_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"pipelineservice.yaml", "pipelineservice-ingress.yaml"}


@pytest.mark.parametrize(
    ("where", "value", "error"),
    [
        (("ops", 0, "name"), "Bow_Op", "spec.ops.0.name: 'Bow_Op' does not match"),
        (("ops", 0, "class"), "ops.BowOp", "spec.ops.0.class: 'ops.BowOp' does not match"),
        (("ops", 0, "replicas"), -1, "spec.ops.0.replicas: -1 is less than the minimum of 0"),
        (("ops", 0, "batchSize"), 0, "spec.ops.0.batchSize: 0 is less than the minimum of 1"),
        (("ops", 0, "timeoutMs"), 0, "spec.ops.0.timeoutMs: 0 is less than or equal to the minimum of 0"),
        (("ops", 0, "autoBatchingTimeoutMs"), -2, "spec.ops.0.autoBatchingTimeoutMs: -2 is less than or equal"),
        (("ops", 0, "port"), 70000, "spec.ops.0.port: 70000 is greater than the maximum of 65535"),
        (("ops", 0, "placement"), "edge", "spec.ops.0.placement: 'edge' is not one of ['gateway', 'service']"),
        (("ops", 0, "deviceType"), "tpu", "spec.ops.0.deviceType: 'tpu' is not one of"),
        (("ops", 0, "precision"), "fp64", "spec.ops.0.precision: 'fp64' is not one of"),
        (("ops", 0, "resources", "limits", "memory"), "lots", "spec.ops.0.resources.limits.memory: 'lots' does not match"),
        (("ops", 0, "gpus"), 1, "spec.ops.0: Additional properties are not allowed ('gpus' was unexpected)"),
        (("gateway", "httpPort"), 0, "spec.gateway.httpPort: 0 is less than the minimum of 1"),
        (("gateway", "replicas"), -3, "spec.gateway.replicas: -3 is less than the minimum of 0"),
        (("gateway", "service", "type"), "External", "spec.gateway.service.type: 'External' is not one of"),
        (("payloadStore", "store"), "disk", "spec.payloadStore.store: 'disk' is not one of"),
        (("payloadStore", "url"), "http://redis:6379", "spec.payloadStore.url: 'http://redis:6379' does not match"),
        (("dag", "timeoutMs"), -1, "spec.dag.timeoutMs: -1 is less than or equal to the minimum of 0"),
    ],
)
def test_crd_schema_rejects(where: tuple[Any, ...], value: Any, error: str) -> None:
    resource = _example()
    node = resource["spec"]
    for key in where[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[where[-1]] = value
    errors = crd_errors(resource)
    assert any(e.startswith(error) for e in errors), errors


def test_crd_schema_accepts_quantities_as_numbers_or_strings() -> None:
    resource = _example()
    resource["spec"]["ops"][0]["resources"] = {"requests": {"cpu": 2, "memory": "1.5Gi"}, "limits": {"nvidia.com/gpu": "2"}}
    assert crd_errors(resource) == []


def test_crd_schema_requires_image_and_ops() -> None:
    resource = _example()
    del resource["spec"]["image"], resource["spec"]["ops"]
    assert crd_errors(resource) == ["spec: 'image' is a required property", "spec: 'ops' is a required property"]


def test_crd_schema_keeps_unknown_status_fields_for_kopf() -> None:
    resource = copy.deepcopy(_example())
    resource["status"] = {"kopf": {"progress": {}}, "observedGeneration": 1, "opsReady": "2/2"}
    assert crd_errors(resource) == []
