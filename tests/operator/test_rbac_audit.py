"""The operator's RBAC rules against what the real operator asks of the API.

Every request kopf and the handlers send while a PipelineService is created, becomes ready,
is updated (a Service port changed, an op removed), turns invalid (a Warning Event) and loses
a Deployment by hand is checked against ``rbac.namespaced_rules()``: each must be granted
(else the operator would fail on a real cluster) and stay in the watched namespace (so a
Role suffices). Conversely, every verb granted on the kinds this run exercises fully
(PipelineServices and their status, Deployments, Services, Events) is used by it, so the Role
holds no more than the operator needs; the other child kinds get the same verbs as Services.
"""

from __future__ import annotations

import copy
from typing import Any

import kmock
import pytest

from kube_harness import (  # noqa: F401  (k8s and operator are fixtures)
    DEPLOYMENTS,
    ApiEmulator,
    RunningOperator,
    eventually,
    k8s,
    live,
    names_of,
    operator,
)
from pipeserve.operator import rbac, resources
from test_handlers import DEMO, OPS, condition, create, patch_spec, set_ready, settled

pytestmark = pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")

_VERBS = {
    kmock.action.FETCH: "get",
    kmock.action.LIST: "list",
    kmock.action.WATCH: "watch",
    kmock.action.CREATE: "create",
    kmock.action.DELETE: "delete",
}


def granted() -> dict[tuple[str, str], set[str]]:
    """(group, resource[/subresource]) -> verbs, from the namespaced rules."""
    result: dict[tuple[str, str], set[str]] = {}
    for rule in rbac.namespaced_rules():
        for group in rule["apiGroups"]:
            for plural in rule["resources"]:
                result.setdefault((group, plural), set()).update(rule["verbs"])
    return result


def verb_of(request: Any) -> str:
    if request.action == kmock.action.UPDATE:
        return "update" if str(request.method).upper().endswith("PUT") else "patch"
    return _VERBS[request.action]


def operator_requests(k8s: ApiEmulator) -> list[tuple[str, str, str, str | None]]:
    """(group, resource[/subresource], verb, namespace) of every resource request the operator sent."""
    found = []
    for request in k8s:
        if not str(request.headers.get("User-Agent", "")).startswith("kopf/"):
            continue  # the test's own requests
        if request.resource is None or request.resource.plural is None:
            continue  # discovery (granted to every authenticated user)
        plural = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        found.append((request.resource.group or "", plural, verb_of(request), request.namespace))
    return found


async def test_every_request_of_the_operator_is_granted_and_every_grant_is_used(
    k8s: ApiEmulator, operator: RunningOperator
) -> None:
    await create(k8s)
    await eventually(lambda: settled(k8s, 1), "the first status")
    for name, replicas in (("demo-gateway", 1), ("demo-bow", 2), ("demo-cnn", 1)):
        await set_ready(k8s, name, replicas)
    await eventually(lambda: condition(k8s, "Ready").get("status") == "True", "Ready=True")

    ops = [copy.deepcopy(op) for op in OPS if op["name"] != "cnn"]
    ops[-1]["inputs"] = ["bow"]
    await patch_spec(k8s, "demo", {"ops": ops, "gateway": {"httpPort": 8081}})
    await eventually(lambda: settled(k8s, 2), "the status of generation 2")
    await eventually(lambda: "demo-cnn" not in names_of(k8s, DEPLOYMENTS), "the cnn Deployment pruned")

    response = await k8s.delete("/apis/apps/v1/namespaces/default/deployments/demo-bow")
    assert response.status == 200, await response.text()
    await eventually(lambda: live(k8s, DEPLOYMENTS, "demo-bow"), "demo-bow re-created")

    await patch_spec(k8s, "demo", {"ops": [{**ops[0], "class": "NoColon"}, *ops[1:]]})
    await eventually(lambda: condition(k8s, "InvalidSpec").get("status") == "True", "InvalidSpec=True")
    await eventually(
        lambda: any(key[0].plural == "events" for key in k8s.objects), "the Warning Event of the invalid spec"
    )

    requests = operator_requests(k8s)
    rules = granted()
    denied = sorted({(g, r, v) for g, r, v, _ in requests if v not in rules.get((g, r), set())})
    assert denied == [], f"requests the Role would refuse: {denied}"
    outside = sorted({(g, r, v, ns) for g, r, v, ns in requests if ns != DEMO["metadata"]["namespace"]})
    assert outside == [], f"requests outside the watched namespace: {outside}"

    used: dict[tuple[str, str], set[str]] = {}
    for group, plural, verb, _ in requests:
        used.setdefault((group, plural), set()).add(verb)
    exercised = [
        (resources.GROUP, resources.PLURAL),
        (resources.GROUP, f"{resources.PLURAL}/status"),
        ("apps", "deployments"),
        ("", "services"),
        ("", "events"),
    ]
    for key in exercised:
        verbs = used.get(key, set())
        assert rules[key] == verbs, f"{key}: granted {sorted(rules[key])}, used {sorted(verbs)}"
    assert set(rules) >= {(child.group, child.plural) for child in resources.CHILDREN}
