"""kopf peering: how several operator replicas agree that only one of them works.

kopf keeps a peering object (``ClusterKopfPeering`` for a cluster-wide operator,
``KopfPeering`` in each watched namespace otherwise) where every replica writes keep-alives
with its priority. The replica with the highest priority works; the others pause until it
is gone. Replicas with *equal* priorities all pause, so each replica needs its own priority:
``pipeserve operator --peering NAME`` picks a random one unless ``--priority`` is given.

With one replica, ``--standalone`` needs neither the CRDs nor the peering object. With more,
install ``PEERING_CRDS_PATH`` (both CRDs) and the object ``peering_object`` returns. Pure.
"""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

GROUP = "kopf.dev"
VERSION = "v1"
CLUSTER_PLURAL = "clusterkopfpeerings"
NAMESPACED_PLURAL = "kopfpeerings"

PEERING_CRDS_PATH = pathlib.Path(__file__).with_name("kopf-peering.yaml")


def load_peering_crds() -> list[dict[str, Any]]:
    """The two CRDs kopf's peering needs (apiextensions.k8s.io/v1)."""
    with PEERING_CRDS_PATH.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def peering_object(name: str, namespace: str | None = None) -> dict[str, Any]:
    """The peering object replicas share: cluster-wide without a namespace, else in it."""
    if namespace is None:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "KopfPeering",
        "metadata": {"name": name, "namespace": namespace},
    }
