"""The Kubernetes resources the operator reads and writes, in one table.

The applier prunes children by walking this table, and the RBAC rules are derived from it,
so a kind the renderer starts producing is added here once and both follow. Pure data: no
kopf, no client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pipeserve.operator import crd, naming

GROUP, VERSION, PLURAL, KIND = crd.GROUP, crd.VERSION, crd.PLURAL, crd.KIND
API_VERSION = f"{GROUP}/{VERSION}"

PIPELINE_LABEL = naming.PIPELINE_LABEL
OP_LABEL = naming.OP_LABEL
COMPONENT_LABEL = "app.kubernetes.io/component"

@dataclasses.dataclass(frozen=True)
class Resource:
    """One Kubernetes resource type, as the API addresses it."""

    api_version: str  # "v1" for the core group, "group/version" otherwise
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        """The API group; "" for the core group."""
        return self.api_version.rpartition("/")[0]

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The API path: the collection, or one object, or one object's subresource."""
        root = f"/api/{self.api_version}" if not self.group else f"/apis/{self.api_version}"
        parts = [root]
        if namespace is not None and self.namespaced:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if subresource is not None:
                parts.append(subresource)
        return "/".join(parts)


PIPELINE_SERVICES = Resource(API_VERSION, KIND, PLURAL)
DEPLOYMENTS = Resource("apps/v1", "Deployment", "deployments")
EVENTS = Resource("v1", "Event", "events")

# Every kind the renderer may produce as a child of a PipelineService.
CHILDREN: tuple[Resource, ...] = (
    DEPLOYMENTS,
    Resource("v1", "Service", "services"),
    Resource("v1", "ConfigMap", "configmaps"),
    Resource("networking.k8s.io/v1", "Ingress", "ingresses"),
    Resource("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
    Resource("gateway.networking.k8s.io/v1", "GRPCRoute", "grpcroutes"),
    Resource("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    Resource("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
)

_BY_KIND = {(resource.api_version, resource.kind): resource for resource in CHILDREN}


def for_object(obj: Mapping[str, Any]) -> Resource:
    """The resource of a rendered child, from its apiVersion and kind.

    Raises:
        ValueError: the kind is not one the operator manages (add it to ``CHILDREN``).
    """
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    try:
        return _BY_KIND[(str(api_version), str(kind))]
    except KeyError:
        raise ValueError(
            f"{api_version}/{kind} is not a kind the operator manages; add it to resources.CHILDREN"
        ) from None
