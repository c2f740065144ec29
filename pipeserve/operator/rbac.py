"""The operator's least-privilege RBAC rules, as data.

The Helm chart renders these rules into one ClusterRole (``--all-namespaces``) or one Role
per watched namespace (``--namespace``); ``cluster_rules`` adds what only a cluster-wide
operator needs. The rules are derived from ``resources.CHILDREN`` so a new child kind cannot
be forgotten here. Pure: no kopf, no client.

What each rule is for:

- pipelineservices: watch (list/watch), read (get), kopf's annotations and finalizer
  housekeeping (patch); ``/status``: the conditions and per-op readiness (patch; the status
  is read with the object itself).
- every child kind: create-or-patch (get/create/patch), prune children no longer rendered
  (list/delete); Deployments also watch, to follow pods becoming ready or failing.
- events (core v1, where kopf posts them): Warning events for invalid specs (create; kopf
  never updates an event it posted).
- kopf peering (only with ``--peering``): the peering object's keep-alives (get/list/watch/patch).
- customresourcedefinitions (cluster-wide operators only, read-only, ``crd_rules``): kopf
  follows CRDs installed after it started. A namespaced operator needs nothing
  cluster-scoped: ``main`` turns kopf's namespace and CRD scanning off for it.
"""

from __future__ import annotations

from typing import Any

from pipeserve.operator import peering, resources

Rule = dict[str, list[str]]

_CHILD_VERBS = ["get", "list", "create", "patch", "delete"]
_WATCHED_CHILD_VERBS = ["get", "list", "watch", "create", "patch", "delete"]


def namespaced_rules(*, with_peering: bool = False) -> list[Rule]:
    """Rules for the namespaces the operator watches: what a per-namespace Role grants."""
    rules: list[Rule] = [
        _rule(resources.GROUP, [resources.PLURAL], ["get", "list", "watch", "patch"]),
        _rule(resources.GROUP, [f"{resources.PLURAL}/status"], ["patch"]),
    ]
    by_group: dict[str, list[resources.Resource]] = {}
    for child in resources.CHILDREN:
        by_group.setdefault(child.group, []).append(child)
    for group, children in by_group.items():
        watched = [child.plural for child in children if child is resources.DEPLOYMENTS]
        others = [child.plural for child in children if child is not resources.DEPLOYMENTS]
        if watched:
            rules.append(_rule(group, watched, _WATCHED_CHILD_VERBS))
        if others:
            rules.append(_rule(group, others, _CHILD_VERBS))
    rules.append(_rule("", [resources.EVENTS.plural], ["create"]))
    if with_peering:
        rules.append(_rule(peering.GROUP, [peering.NAMESPACED_PLURAL], ["get", "list", "watch", "patch"]))
    return rules


def crd_rules() -> list[Rule]:
    """Cluster-scoped, read-only: a cluster-wide operator follows CRDs installed after it started."""
    return [_rule("apiextensions.k8s.io", ["customresourcedefinitions"], ["get", "list", "watch"])]


def cluster_rules(*, with_peering: bool = False) -> list[Rule]:
    """Rules for a cluster-wide operator: one ClusterRole with these replaces the Roles."""
    rules = namespaced_rules(with_peering=False) + crd_rules()
    if with_peering:
        rules.append(_rule(peering.GROUP, [peering.CLUSTER_PLURAL], ["get", "list", "watch", "patch"]))
    return rules


def role(name: str, namespace: str, *, with_peering: bool = False) -> dict[str, Any]:
    """A Role for one watched namespace."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": namespaced_rules(with_peering=with_peering),
    }


def cluster_role(name: str, *, with_peering: bool = False) -> dict[str, Any]:
    """A ClusterRole for an operator that watches every namespace."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": cluster_rules(with_peering=with_peering),
    }


def _rule(group: str, plurals: list[str], verbs: list[str]) -> Rule:
    return {"apiGroups": [group], "resources": list(plurals), "verbs": list(verbs)}
