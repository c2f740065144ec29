"""How clients reach the gateway and how the pods scale and survive disruptions.

Ingresses (networking.k8s.io/v1) come in a pair: HTTP and gRPC need different backend
protocols on most controllers (ingress-nginx's ``backend-protocol: GRPC``), so each has
its own annotations. Gateway API routes (HTTPRoute, GRPCRoute) are the alternative when
the cluster runs a Gateway. Autoscalers and disruption budgets are per Deployment: one for
the gateway and one per op service that asks for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeserve.operator import naming
from pipeserve.operator import spec as spec_mod

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"


def ingresses(parent: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The HTTP and gRPC Ingresses the spec asks for (none without spec.gateway.ingress)."""
    spec, name = parent["spec"], parent["metadata"]["name"]
    ingress = (spec.get("gateway") or {}).get("ingress")
    if not ingress:
        return []
    http_port, grpc_port = spec_mod.ports(spec)
    rendered = []
    for protocol, port in (("http", http_port), ("grpc", grpc_port)):
        route = ingress.get(protocol)
        if not route:
            continue
        metadata = naming.metadata(parent, f"{naming.gateway_name(name)}-{protocol}", "gateway")
        annotations = {**(ingress.get("annotations") or {}), **(route.get("annotations") or {})}
        if annotations:
            metadata["annotations"] = dict(sorted(annotations.items()))
        backend = {"service": {"name": naming.gateway_name(name), "port": {"number": port}}}
        rule = {
            "host": route["host"],
            "http": {"paths": [{"path": route.get("path") or "/", "pathType": "Prefix", "backend": backend}]},
        }
        ingress_spec: dict[str, Any] = {"rules": [rule]}
        if ingress.get("className"):
            ingress_spec = {"ingressClassName": ingress["className"], **ingress_spec}
        if route.get("tlsSecretName"):
            ingress_spec["tls"] = [{"hosts": [route["host"]], "secretName": route["tlsSecretName"]}]
        rendered.append({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": metadata,
            "spec": ingress_spec,
        })
    return rendered


def routes(parent: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Gateway API HTTPRoute and GRPCRoute the spec asks for."""
    spec, name = parent["spec"], parent["metadata"]["name"]
    wanted = (spec.get("gateway") or {}).get("routes")
    if not wanted:
        return []
    http_port, grpc_port = spec_mod.ports(spec)
    parent_refs = []
    for ref in wanted["parentRefs"]:
        rendered_ref: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": ref["name"]}
        for key in ("namespace", "sectionName"):
            if ref.get(key):
                rendered_ref[key] = ref[key]
        parent_refs.append(rendered_ref)
    rendered = []
    for kind, protocol, port in (("HTTPRoute", "http", http_port), ("GRPCRoute", "grpc", grpc_port)):
        if not wanted.get(protocol, True):
            continue
        route_spec: dict[str, Any] = {"parentRefs": parent_refs}
        if wanted.get("hostnames"):
            route_spec["hostnames"] = list(wanted["hostnames"])
        route_spec["rules"] = [{"backendRefs": [{"name": naming.gateway_name(name), "port": port}]}]
        rendered.append({
            "apiVersion": GATEWAY_API_VERSION,
            "kind": kind,
            "metadata": naming.metadata(parent, f"{naming.gateway_name(name)}-{protocol}", "gateway"),
            "spec": route_spec,
        })
    return rendered


def autoscaler(
    parent: Mapping[str, Any], target: str, component: str, op_name: str | None, settings: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """A HorizontalPodAutoscaler for the Deployment ``target``, when ``settings`` asks for one."""
    autoscaling = settings.get("autoscaling")
    if not autoscaling:
        return []
    metrics: list[dict[str, Any]] = []
    for resource, key in (("cpu", "targetCPUUtilizationPercentage"), ("memory", "targetMemoryUtilizationPercentage")):
        if autoscaling.get(key) is not None:
            target_value = {"type": "Utilization", "averageUtilization": autoscaling[key]}
            metrics.append({"type": "Resource", "resource": {"name": resource, "target": target_value}})
    metrics.extend(dict(metric) for metric in autoscaling.get("metrics") or ())
    return [{
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": naming.metadata(parent, target, component, op_name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": autoscaling.get("minReplicas", 1),
            "maxReplicas": autoscaling["maxReplicas"],
            "metrics": metrics,
        },
    }]


def disruption_budget(
    parent: Mapping[str, Any], target: str, component: str, op_name: str | None, settings: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """A PodDisruptionBudget for the pods of the Deployment ``target``, when asked for."""
    budget = settings.get("podDisruptionBudget")
    if not budget:
        return []
    parent_name = parent["metadata"]["name"]
    budget_spec: dict[str, Any] = {
        key: budget[key] for key in ("minAvailable", "maxUnavailable") if budget.get(key) is not None
    }
    budget_spec["selector"] = {"matchLabels": naming.selector_labels(parent_name, component, op_name)}
    return [{
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": naming.metadata(parent, target, component, op_name),
        "spec": budget_spec,
    }]
