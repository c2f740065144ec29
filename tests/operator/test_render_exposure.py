"""Field by field: Ingresses, Gateway API routes, autoscalers and disruption budgets."""

from __future__ import annotations

from typing import Any

import pytest
from k8s_schemas import gateway_route_errors, upstream_errors

from pipeserve.operator import render


def parent_with(gateway: dict[str, Any] | None = None, **bow: Any) -> dict[str, Any]:
    return {
        "apiVersion": "pipeserve.io/v1alpha1",
        "kind": "PipelineService",
        "metadata": {"name": "imdb", "namespace": "ml", "uid": "uid-7"},
        "spec": {
            "image": "imdb:1",
            "ops": [
                {"name": "bow", "class": "ops:BowOp", "placement": "service", **bow},
                {"name": "combine", "class": "ops:CombineOp", "inputs": ["bow"]},
            ],
            "gateway": gateway or {},
        },
    }


def of_kind(parent: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in render.render_children(parent) if c["kind"] == kind]


INGRESS = {
    "className": "nginx",
    "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "16m"},
    "http": {"host": "imdb.example.com", "path": "/imdb", "tlsSecretName": "imdb-tls"},
    "grpc": {"host": "grpc.imdb.example.com",
             "annotations": {"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"}},
}  # fmt: skip


def test_http_and_grpc_ingresses_point_at_their_gateway_ports() -> None:
    http, grpc = of_kind(parent_with({"ingress": INGRESS, "httpPort": 8000, "grpcPort": 8001}), "Ingress")
    assert http["metadata"]["name"] == "imdb-gateway-http"
    assert http["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-body-size": "16m"}
    assert http["spec"] == {
        "ingressClassName": "nginx",
        "rules": [{
            "host": "imdb.example.com",
            "http": {"paths": [{"path": "/imdb", "pathType": "Prefix",
                                "backend": {"service": {"name": "imdb-gateway", "port": {"number": 8000}}}}]},
        }],
        "tls": [{"hosts": ["imdb.example.com"], "secretName": "imdb-tls"}],
    }  # fmt: skip
    assert grpc["metadata"]["name"] == "imdb-gateway-grpc"
    assert grpc["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/backend-protocol": "GRPC",
        "nginx.ingress.kubernetes.io/proxy-body-size": "16m",
    }
    rule = grpc["spec"]["rules"][0]
    assert rule["host"] == "grpc.imdb.example.com"
    assert rule["http"]["paths"][0]["path"] == "/"
    assert rule["http"]["paths"][0]["backend"]["service"]["port"] == {"number": 8001}
    assert "tls" not in grpc["spec"]
    for ingress in (http, grpc):
        assert upstream_errors(ingress) == []


def test_only_the_asked_ingress_is_rendered() -> None:
    (only,) = of_kind(parent_with({"ingress": {"grpc": {"host": "g.example.com"}}}), "Ingress")
    assert only["metadata"]["name"] == "imdb-gateway-grpc"
    assert "ingressClassName" not in only["spec"]
    assert of_kind(parent_with(), "Ingress") == []


def test_gateway_api_routes_attach_to_the_named_gateway() -> None:
    routes = {"parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "https"}],
              "hostnames": ["imdb.example.com"]}  # fmt: skip
    parent = parent_with({"routes": routes})
    (http,) = of_kind(parent, "HTTPRoute")
    (grpc,) = of_kind(parent, "GRPCRoute")
    ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "infra",
           "sectionName": "https"}  # fmt: skip
    assert http["apiVersion"] == grpc["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert http["spec"] == {
        "parentRefs": [ref],
        "hostnames": ["imdb.example.com"],
        "rules": [{"backendRefs": [{"name": "imdb-gateway", "port": 8080}]}],
    }
    assert grpc["spec"]["rules"] == [{"backendRefs": [{"name": "imdb-gateway", "port": 9090}]}]
    assert (http["metadata"]["name"], grpc["metadata"]["name"]) == ("imdb-gateway-http", "imdb-gateway-grpc")
    for route in (http, grpc):
        assert list(gateway_route_errors(route)) == []


def test_a_route_can_be_switched_off() -> None:
    parent = parent_with({"routes": {"parentRefs": [{"name": "public"}], "http": False}})
    assert of_kind(parent, "HTTPRoute") == []
    (grpc,) = of_kind(parent, "GRPCRoute")
    assert "hostnames" not in grpc["spec"]
    assert grpc["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}]


def test_route_checker_catches_what_it_is_for() -> None:
    route = of_kind(parent_with({"routes": {"parentRefs": [{"name": "public"}]}}), "HTTPRoute")[0]
    route["spec"]["rules"][0]["backendRefs"][0]["port"] = 0
    route["spec"]["hostnames"] = ["Bad_Host"]
    assert sorted(gateway_route_errors(route)) == [
        "spec.hostnames[0]: 'Bad_Host' is not a hostname",
        "spec.rules[0].backendRefs[0].port: 0 is not a port",
    ]


def test_op_autoscaler_targets_its_deployment_with_resource_and_custom_metrics() -> None:
    custom = {"type": "Pods", "pods": {"metric": {"name": "pipeserve_queue_depth"},
                                       "target": {"type": "AverageValue", "averageValue": "10"}}}  # fmt: skip
    parent = parent_with(autoscaling={"minReplicas": 2, "maxReplicas": 10, "targetCPUUtilizationPercentage": 70,
                                      "targetMemoryUtilizationPercentage": 80, "metrics": [custom]})  # fmt: skip
    (hpa,) = of_kind(parent, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["name"] == "imdb-bow"
    assert hpa["metadata"]["labels"]["pipeserve.io/op"] == "bow"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "imdb-bow"},
        "minReplicas": 2,
        "maxReplicas": 10,
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}},
            custom,
        ],
    }
    assert upstream_errors(hpa) == []


def test_gateway_autoscaler() -> None:
    parent = parent_with({"autoscaling": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 50}})
    (hpa,) = of_kind(parent, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "imdb-gateway"
    assert hpa["spec"]["minReplicas"] == 1
    assert hpa["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"


@pytest.mark.parametrize("budget", [{"minAvailable": 1}, {"maxUnavailable": "25%"}])
def test_disruption_budgets_select_the_pods_of_their_deployment(budget: dict[str, Any]) -> None:
    parent = parent_with({"podDisruptionBudget": {"minAvailable": "50%"}}, podDisruptionBudget=budget)
    gateway_pdb, op_pdb = of_kind(parent, "PodDisruptionBudget")
    assert gateway_pdb["spec"] == {
        "minAvailable": "50%",
        "selector": {"matchLabels": {"app.kubernetes.io/instance": "imdb", "app.kubernetes.io/component": "gateway"}},
    }
    assert op_pdb["metadata"]["name"] == "imdb-bow"
    assert op_pdb["spec"] == {
        **budget,
        "selector": {"matchLabels": {"app.kubernetes.io/instance": "imdb", "app.kubernetes.io/component": "op",
                                     "pipeserve.io/op": "bow"}},
    }  # fmt: skip
    for pdb in (gateway_pdb, op_pdb):
        assert upstream_errors(pdb) == []
