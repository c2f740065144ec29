"""Names, labels and ownership of the objects a PipelineService owns.

One place decides what every child is called and how it is labelled, so the renderer,
the handlers that watch children and the local runner agree without repeating strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeserve.operator.crd import GROUP, KIND, VERSION

MANAGED_BY = "pipeserve-operator"
PIPELINE_LABEL = "pipeserve.io/pipeline"
OP_LABEL = "pipeserve.io/op"
CONFIG_HASH_ANNOTATION = "pipeserve.io/config-hash"
CONFIG_DIR = "/etc/pipeserve"
CONFIG_FILE = "config.yml"
GRAPH_FILE = "graph.yml"


def gateway_name(parent_name: str) -> str:
    """Name of the gateway's Deployment and Service."""
    return f"{parent_name}-gateway"


def op_resource_name(parent_name: str, op_name: str) -> str:
    """Name of an op service's Deployment and headless Service."""
    return f"{parent_name}-{op_name}"


def redis_name(parent_name: str) -> str:
    """Name of the managed Redis Deployment and Service."""
    return f"{parent_name}-redis"


def config_map_name(parent_name: str) -> str:
    """Name of the ConfigMap holding config.yml and graph.yml."""
    return f"{parent_name}-pipeline"


def service_host(name: str, namespace: str) -> str:
    """The cluster DNS name of a Service."""
    return f"{name}.{namespace}.svc.cluster.local"


def selector_labels(parent_name: str, component: str, op_name: str | None = None) -> dict[str, str]:
    """The labels a child's Deployment selects its pods by (immutable once created)."""
    labels = {
        "app.kubernetes.io/instance": parent_name,
        "app.kubernetes.io/component": component,
    }
    if op_name is not None:
        labels[OP_LABEL] = op_name
    return labels


def labels(parent_name: str, component: str, op_name: str | None = None) -> dict[str, str]:
    """Every label of a child: the selector labels plus name, manager and pipeline."""
    return {
        "app.kubernetes.io/name": "pipeserve",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        PIPELINE_LABEL: parent_name,
        **selector_labels(parent_name, component, op_name),
    }


def metadata(
    parent: Mapping[str, Any], name: str, component: str, op_name: str | None = None
) -> dict[str, Any]:
    """A child's metadata: name, the parent's namespace, labels and the ownerReference."""
    owner = parent["metadata"]
    return {
        "name": name,
        "namespace": owner.get("namespace") or "default",
        "labels": labels(owner["name"], component, op_name),
        "ownerReferences": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": owner["name"],
                "uid": owner.get("uid", ""),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
