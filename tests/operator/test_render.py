"""Rendering as a whole: which children a PipelineService becomes, that each one is valid
Kubernetes (upstream schema, offline), carries the pipeline's labels and ownerReference, and
that the same input always renders the same objects."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_schemas import crd_errors, gateway_route_errors, upstream_errors, with_crd_defaults

from pipeserve.operator import render

EXAMPLES = Path(__file__).parents[2] / "examples/imdb_ensemble"


def parent_from(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    loaded["metadata"].update(namespace="ml", uid="0f4c-uid", generation=3)
    return loaded


def kinds_and_names(children: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["kind"], c["metadata"]["name"]) for c in children]


def test_imdb_example_renders_gateway_op_services_and_managed_redis() -> None:
    children = render.render_children(parent_from("pipelineservice.yaml"))
    assert kinds_and_names(children) == [
        ("ConfigMap", "imdb-pipeline"),
        ("Deployment", "imdb-gateway"),
        ("Service", "imdb-gateway"),
        ("Deployment", "imdb-bow"),
        ("Service", "imdb-bow"),
        ("Deployment", "imdb-cnn"),
        ("Service", "imdb-cnn"),
        ("Deployment", "imdb-redis"),
        ("Service", "imdb-redis"),
    ]


def test_second_example_renders_ingresses_autoscalers_and_budgets_without_redis() -> None:
    children = render.render_children(parent_from("pipelineservice-ingress.yaml"))
    assert kinds_and_names(children) == [
        ("ConfigMap", "imdb-prod-pipeline"),
        ("Deployment", "imdb-prod-gateway"),
        ("Service", "imdb-prod-gateway"),
        ("Ingress", "imdb-prod-gateway-http"),
        ("Ingress", "imdb-prod-gateway-grpc"),
        ("HorizontalPodAutoscaler", "imdb-prod-gateway"),
        ("PodDisruptionBudget", "imdb-prod-gateway"),
        ("Deployment", "imdb-prod-bow"),
        ("Service", "imdb-prod-bow"),
        ("HorizontalPodAutoscaler", "imdb-prod-bow"),
        ("PodDisruptionBudget", "imdb-prod-bow"),
        ("Deployment", "imdb-prod-cnn"),
        ("Service", "imdb-prod-cnn"),
        ("PodDisruptionBudget", "imdb-prod-cnn"),
    ]


def with_routes(parent: dict[str, Any]) -> dict[str, Any]:
    parent = copy.deepcopy(parent)
    gateway = parent["spec"]["gateway"]
    del gateway["ingress"]
    gateway["routes"] = {
        "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        "hostnames": ["imdb.example.com"],
    }
    return parent


@pytest.mark.parametrize(
    "parent",
    [
        parent_from("pipelineservice.yaml"),
        parent_from("pipelineservice-ingress.yaml"),
        with_routes(parent_from("pipelineservice-ingress.yaml")),
    ],
    ids=["imdb", "ingress", "gateway-api"],
)
def test_every_child_is_valid_kubernetes(parent: dict[str, Any]) -> None:
    children = render.render_children(parent)
    for child in children:
        where = f"{child['kind']}/{child['metadata']['name']}"
        if child["apiVersion"].startswith("gateway.networking.k8s.io/"):
            # Gateway API CRDs are not in the upstream schema: checked against their own rules.
            assert list(gateway_route_errors(child)) == [], where
        else:
            assert upstream_errors(child) == [], where


@pytest.mark.parametrize("name", ["pipelineservice.yaml", "pipelineservice-ingress.yaml"])
def test_every_child_carries_labels_namespace_and_owner_reference(name: str) -> None:
    parent = parent_from(name)
    pipeline = parent["metadata"]["name"]
    for child in render.render_children(parent):
        metadata = child["metadata"]
        assert metadata["namespace"] == "ml"
        labels = metadata["labels"]
        assert labels["app.kubernetes.io/name"] == "pipeserve"
        assert labels["app.kubernetes.io/instance"] == pipeline
        assert labels["app.kubernetes.io/managed-by"] == "pipeserve-operator"
        assert labels["pipeserve.io/pipeline"] == pipeline
        assert labels["app.kubernetes.io/component"] in ("gateway", "op", "redis")
        if labels["app.kubernetes.io/component"] == "op":
            assert metadata["name"] == f"{pipeline}-{labels['pipeserve.io/op']}"
        assert metadata["ownerReferences"] == [{
            "apiVersion": "pipeserve.io/v1alpha1",
            "kind": "PipelineService",
            "name": pipeline,
            "uid": "0f4c-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }]


def test_rendering_is_deterministic() -> None:
    parent = parent_from("pipelineservice-ingress.yaml")
    first = render.render_children(parent)
    again = render.render_children(copy.deepcopy(parent))
    assert first == again
    assert yaml.safe_dump_all(first) == yaml.safe_dump_all(again)


def test_rendering_does_not_change_its_input() -> None:
    parent = parent_from("pipelineservice-ingress.yaml")
    before = copy.deepcopy(parent)
    render.render_children(parent)
    assert parent == before


def test_children_are_independent_copies() -> None:
    parent = parent_from("pipelineservice.yaml")
    children = render.render_children(parent)
    children[3]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 7
    children[1]["metadata"]["labels"]["x"] = "y"
    assert render.render_children(parent_from("pipelineservice.yaml"))[3] != children[3]
    assert parent["spec"]["ops"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_endpoint_is_the_gateway_service_dns_name_and_http_port() -> None:
    assert render.endpoint(parent_from("pipelineservice.yaml")) == "imdb-gateway.ml.svc.cluster.local:18070"
    assert render.endpoint(parent_from("pipelineservice-ingress.yaml")) == (
        "imdb-prod-gateway.ml.svc.cluster.local:8080"
    )


def test_names_of_children() -> None:
    assert render.gateway_name("imdb") == "imdb-gateway"
    assert render.op_resource_name("imdb", "bow") == "imdb-bow"
    assert render.redis_name("imdb") == "imdb-redis"


def every_option() -> dict[str, Any]:
    """A PipelineService that sets every optional field the renderer turns into objects."""
    parent = with_routes(parent_from("pipelineservice-ingress.yaml"))
    spec = parent["spec"]
    spec.update(imagePullSecrets=[{"name": "regcred"}], serviceAccountName="pipelines", runAsUser=4242)
    spec["ops"][1].update(
        runtime="onnx", model={"path": "/models/cnn.onnx", "claimName": "models", "mountPath": "/models"},
        env=[{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        autoscaling={"maxReplicas": 4, "metrics": [{"type": "Pods", "pods": {
            "metric": {"name": "pipeserve_queue_depth"}, "target": {"type": "AverageValue", "averageValue": "5"}}}]},
    )  # fmt: skip
    spec["gateway"]["service"] = {"type": "NodePort", "httpNodePort": 30080, "grpcNodePort": 30081}
    spec["payloadStore"] = {"store": "managed", "redis": {"image": "redis:7.4", "nodeSelector": {"pool": "cache"},
                                                          "tolerations": [{"operator": "Exists"}]}}  # fmt: skip
    return parent


def test_every_option_renders_valid_kubernetes() -> None:
    parent = every_option()
    assert crd_errors(parent) == []
    children = render.render_children(parent)
    assert {c["kind"] for c in children} == {
        "ConfigMap", "Deployment", "Service", "HTTPRoute", "GRPCRoute", "HorizontalPodAutoscaler", "PodDisruptionBudget",
    }  # fmt: skip
    for child in children:
        if child["apiVersion"].startswith("gateway.networking.k8s.io/"):
            assert list(gateway_route_errors(child)) == []
        else:
            assert upstream_errors(child) == [], f"{child['kind']}/{child['metadata']['name']}"


@pytest.mark.parametrize("name", ["pipelineservice.yaml", "pipelineservice-ingress.yaml"])
def test_schema_defaults_the_api_server_fills_in_render_the_same(name: str) -> None:
    parent = parent_from(name)
    defaulted = with_crd_defaults(parent)
    assert defaulted != parent  # some default did apply (placement, gateway replicas, store)
    assert render.render_children(defaulted) == render.render_children(parent)
