"""The operator end to end: the real kopf runtime with pipeserve's handlers against kmock.

Covers: children of every kind (Ingresses, autoscalers, budgets, Gateway API routes, Redis
included) created with the rendered fields and ownerReferences, and pruned when no longer
asked for; status patched
(observedGeneration, conditions, per-op readiness, endpoint); readiness following the
Deployments' status; an op's image or replicas update touching only its Deployment, and its
runtime settings rolling it and the gateway but no other op service; a DAG change re-rendering
the gateway config, rolling the gateway and pruning a removed op; an invalid spec reported
(condition + Event) with nothing created, and recovery once fixed; deletion never blocked;
one namespace, a list of them, or all.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import yaml

from kube_harness import (  # noqa: F401  (k8s and operator are fixtures)
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    PS,
    SERVICES,
    ApiEmulator,
    RunningOperator,
    eventually,
    free_port,
    k8s,
    live,
    names_of,
    operator,
    start_operator,
    write_kubeconfig,
)
from pipeserve.operator import apply, main, naming, render, resources, spec

pytestmark = pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")

PS_PATH = "/apis/pipeserve.io/v1alpha1/namespaces/default/pipelineservices"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "imdb_ensemble"
INGRESSES = kmock.resource("networking.k8s.io/v1/ingresses")
OPS = [
    {"name": "read", "class": "ops:ReadOp"},
    {"name": "bow", "class": "ops:BowOp", "inputs": ["read"], "placement": "service", "replicas": 2},
    {"name": "cnn", "class": "ops:CnnOp", "inputs": ["read"], "placement": "service"},
    {"name": "combine", "class": "ops:CombineOp", "inputs": ["bow", "cnn"]},
]
DEMO = {
    "apiVersion": "pipeserve.io/v1alpha1",
    "kind": "PipelineService",
    "metadata": {"name": "demo", "namespace": "default"},
    "spec": {"image": "example/imdb:1", "ops": OPS},
}
CHILD_DEPLOYMENTS = {"demo-gateway", "demo-bow", "demo-cnn"}


async def create(k8s: ApiEmulator, body: dict[str, Any] = DEMO) -> None:
    response = await k8s.post(PS_PATH, json=copy.deepcopy(body))
    assert response.status == 200, await response.text()


async def patch_spec(k8s: ApiEmulator, name: str, spec_patch: dict[str, Any]) -> None:
    response = await k8s.patch(f"{PS_PATH}/{name}", json={"spec": spec_patch})
    assert response.status == 200, await response.text()


async def set_ready(k8s: ApiEmulator, deployment: str, ready: int, **extra: Any) -> None:
    """What the Deployment controller would report: ``ready`` pods ready and available."""
    body = {"status": {"readyReplicas": ready, "availableReplicas": ready, **extra}}
    response = await k8s.patch(f"/apis/apps/v1/namespaces/default/deployments/{deployment}/status", json=body)
    assert response.status == 200, await response.text()


def parent(k8s: ApiEmulator, name: str = "demo") -> dict[str, Any]:
    found = live(k8s, PS, name)
    assert found is not None, f"PipelineService {name} is gone"
    return found


def condition(k8s: ApiEmulator, kind: str, name: str = "demo") -> dict[str, Any]:
    conditions = {c["type"]: c for c in (parent(k8s, name).get("status") or {}).get("conditions", [])}
    return conditions.get(kind) or {}


def settled(k8s: ApiEmulator, generation: int, name: str = "demo") -> bool:
    """The status describes ``generation`` (the handler has applied it)."""
    return (parent(k8s, name).get("status") or {}).get("observedGeneration") == generation


def rendered(k8s: ApiEmulator, name: str = "demo") -> dict[tuple[str, str], dict[str, Any]]:
    """What the renderer makes of the stored parent, by (kind, name)."""
    return {(child["kind"], child["metadata"]["name"]): child for child in render.render_children(parent(k8s, name))}


async def test_create_makes_every_child_with_owner_references_and_patches_status(
    k8s: ApiEmulator, operator: RunningOperator
) -> None:
    await create(k8s)
    await eventually(lambda: settled(k8s, 1), "the status of generation 1")

    ps = parent(k8s)
    owner = {"apiVersion": "pipeserve.io/v1alpha1", "kind": "PipelineService", "name": "demo",
             "uid": ps["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}  # fmt: skip
    expected = rendered(k8s)
    assert {name for kind, name in expected if kind == "Deployment"} == CHILD_DEPLOYMENTS
    by_kind = {"Deployment": DEPLOYMENTS, "Service": SERVICES, "ConfigMap": CONFIGMAPS}
    for (kind, name), child in expected.items():
        stored = live(k8s, by_kind[kind], name)
        assert stored is not None, f"{kind}/{name} was not created"
        assert stored["metadata"]["ownerReferences"] == [owner]
        assert apply.covers(stored, child), f"{kind}/{name} differs from what was rendered"
    assert names_of(k8s, DEPLOYMENTS) == CHILD_DEPLOYMENTS
    assert live(k8s, DEPLOYMENTS, "demo-bow")["spec"]["replicas"] == 2  # type: ignore[index]

    status = ps["status"]
    assert status["endpoint"] == render.endpoint(ps) == "demo-gateway.default.svc.cluster.local:8080"
    assert status["ops"] == {"bow": {"replicas": 2, "readyReplicas": 0}, "cnn": {"replicas": 1, "readyReplicas": 0}}
    assert status["opsReady"] == "0/2"
    assert condition(k8s, "Ready")["status"] == "False"
    assert condition(k8s, "Progressing")["status"] == "True"
    assert condition(k8s, "InvalidSpec")["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    assert not ps["metadata"].get("finalizers"), "the operator must not block deletion"

    async with aiohttp.ClientSession() as session, session.get(operator.liveness) as probe:
        assert probe.status == 200


def stored_as_rendered(k8s: ApiEmulator, name: str) -> list[str]:
    """Problems of the stored children against what the renderer makes of the stored parent."""
    ps = parent(k8s, name)
    problems = []
    for child in render.render_children(ps):
        where = f"{child['kind']}/{child['metadata']['name']}"
        resource = resources.for_object(child)
        stored = live(k8s, kmock.resource(f"{resource.api_version}/{resource.plural}"), child["metadata"]["name"])
        if stored is None:
            problems.append(f"{where} missing")
        elif not apply.covers(stored, child):
            problems.append(f"{where} differs from what was rendered")
        elif [ref["uid"] for ref in stored["metadata"]["ownerReferences"]] != [ps["metadata"]["uid"]]:
            problems.append(f"{where} is not owned by {name}")
    return problems


async def test_ingresses_autoscalers_budgets_routes_and_redis_are_applied_and_pruned(
    k8s: ApiEmulator, operator: RunningOperator
) -> None:
    example = yaml.safe_load((EXAMPLES / "pipelineservice-ingress.yaml").read_text())
    example["metadata"]["namespace"] = "default"
    await create(k8s, example)
    await eventually(lambda: settled(k8s, 1, "imdb-prod"), "the first status")
    assert stored_as_rendered(k8s, "imdb-prod") == []
    kinds = {child["kind"] for child in render.render_children(parent(k8s, "imdb-prod"))}
    assert {"Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert names_of(k8s, INGRESSES) == {"imdb-prod-gateway-http", "imdb-prod-gateway-grpc"}

    routes = {"parentRefs": [{"name": "public", "namespace": "gateways"}], "hostnames": ["imdb.example.com"]}
    store = {"store": "managed", "url": None, "passwordSecretRef": None}
    await patch_spec(k8s, "imdb-prod", {"gateway": {"ingress": None, "routes": routes}, "payloadStore": store})
    await eventually(lambda: settled(k8s, 2, "imdb-prod"), "the status of generation 2")
    assert stored_as_rendered(k8s, "imdb-prod") == []
    assert not names_of(k8s, INGRESSES), "the Ingresses no longer asked for are pruned"
    assert names_of(k8s, kmock.resource("gateway.networking.k8s.io/v1/httproutes")) == {"imdb-prod-gateway-http"}
    assert names_of(k8s, kmock.resource("gateway.networking.k8s.io/v1/grpcroutes")) == {"imdb-prod-gateway-grpc"}
    assert "imdb-prod-redis" in names_of(k8s, DEPLOYMENTS) and "imdb-prod-redis" in names_of(k8s, SERVICES)
    assert parent(k8s, "imdb-prod")["status"]["redis"] == {"replicas": 1, "readyReplicas": 0}


async def test_status_follows_the_deployments_becoming_ready_or_failing(
    k8s: ApiEmulator, operator: RunningOperator
) -> None:
    await create(k8s)
    await eventually(lambda: settled(k8s, 1), "the first status")
    invalid_since = condition(k8s, "InvalidSpec")["lastTransitionTime"]

    for name, replicas in (("demo-gateway", 1), ("demo-bow", 2), ("demo-cnn", 1)):
        await set_ready(k8s, name, replicas)
    await eventually(lambda: condition(k8s, "Ready").get("status") == "True", "Ready=True")
    status = parent(k8s)["status"]
    assert status["ops"] == {"bow": {"replicas": 2, "readyReplicas": 2}, "cnn": {"replicas": 1, "readyReplicas": 1}}
    assert status["opsReady"] == "2/2"
    assert condition(k8s, "Progressing")["status"] == "False"
    assert condition(k8s, "Degraded")["status"] == "False"

    await set_ready(k8s, "demo-cnn", 0)  # its pod went away: a new one is starting
    await eventually(lambda: condition(k8s, "Ready").get("status") == "False", "Ready=False")
    assert condition(k8s, "Progressing").items() >= {"status": "True", "reason": "RollingOut"}.items()
    assert "op 'cnn': 0/1 replicas ready" in condition(k8s, "Progressing")["message"]
    assert condition(k8s, "Degraded")["status"] == "False"
    assert parent(k8s)["status"]["ops"]["cnn"] == {"replicas": 1, "readyReplicas": 0}
    assert parent(k8s)["status"]["opsReady"] == "1/2"

    failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "exceeded quota"}
    await set_ready(k8s, "demo-cnn", 0, conditions=[failure])
    await eventually(lambda: condition(k8s, "Degraded").get("status") == "True", "Degraded=True")
    assert condition(k8s, "Degraded")["message"] == "op 'cnn': FailedCreate: exceeded quota"
    assert condition(k8s, "Progressing")["status"] == "False"
    assert condition(k8s, "InvalidSpec")["lastTransitionTime"] == invalid_since  # unchanged condition


async def test_changing_one_ops_settings_changes_only_its_deployment(
    k8s: ApiEmulator, operator: RunningOperator
) -> None:
    await create(k8s)
    await eventually(lambda: settled(k8s, 1), "the first status")
    before = {key: copy.deepcopy(obj.raw) for key, obj in k8s.objects.items() if key[0] in (DEPLOYMENTS, SERVICES, CONFIGMAPS)}

    ops = copy.deepcopy(OPS)
    ops[1].update(replicas=3, image="example/bow:2")
    await patch_spec(k8s, "demo", {"ops": ops})
    await eventually(lambda: settled(k8s, 2), "the status of generation 2")

    after = {key: obj.raw for key, obj in k8s.objects.items() if key[0] in (DEPLOYMENTS, SERVICES, CONFIGMAPS)}
    changed = {key[2] for key in before if before[key] != after[key]}
    assert changed == {"demo-bow"}
    bow = after[(DEPLOYMENTS, "default", "demo-bow")]
    assert bow["spec"]["replicas"] == 3
    assert bow["spec"]["template"]["spec"]["containers"][0]["image"] == "example/bow:2"
    assert parent(k8s)["status"]["ops"]["bow"]["replicas"] == 3


async def test_changing_one_ops_runtime_settings_rolls_its_pods_and_no_other_op_service(
    k8s: ApiEmulator, operator: RunningOperator
) -> None:
    await create(k8s)
    await eventually(lambda: settled(k8s, 1), "the first status")
    before = {key: copy.deepcopy(obj.raw) for key, obj in k8s.objects.items() if key[0] == DEPLOYMENTS}

    ops = copy.deepcopy(OPS)
    ops[1].update(concurrency=4, precision="fp16", deviceType="cpu")
    await patch_spec(k8s, "demo", {"ops": ops})
    await eventually(lambda: settled(k8s, 2), "the status of generation 2")

    after = {key: obj.raw for key, obj in k8s.objects.items() if key[0] == DEPLOYMENTS}
    changed = {key[2] for key in before if before[key] != after[key]}
    # The gateway holds bow's section of config.yml too (it calls bow with that concurrency).
    assert changed == {"demo-bow", "demo-gateway"}
    annotations = after[(DEPLOYMENTS, "default", "demo-bow")]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == rendered(k8s)[("Deployment", "demo-bow")]["spec"]["template"]["metadata"]["annotations"]
    config = yaml.safe_load(live(k8s, CONFIGMAPS, "demo-pipeline")["data"]["config.yml"])  # type: ignore[index]
    assert config["op"]["bow"]["concurrency"] == 4
    assert config["op"]["bow"]["local_service_conf"] == {"device_type": "cpu", "precision": "fp16"}


async def test_changing_the_dag_rerenders_the_gateway_config_and_prunes_the_removed_op(
    k8s: ApiEmulator, operator: RunningOperator
) -> None:
    await create(k8s)
    await eventually(lambda: settled(k8s, 1), "the first status")
    config_before = live(k8s, CONFIGMAPS, "demo-pipeline")["data"]  # type: ignore[index]
    hash_key = naming.CONFIG_HASH_ANNOTATION

    def gateway_hash() -> str:
        gateway = live(k8s, DEPLOYMENTS, "demo-gateway")
        assert gateway is not None
        return str(gateway["spec"]["template"]["metadata"]["annotations"][hash_key])

    hash_before = gateway_hash()

    ops = [copy.deepcopy(op) for op in OPS if op["name"] != "cnn"]
    ops[-1]["inputs"] = ["bow"]
    await patch_spec(k8s, "demo", {"ops": ops})
    await eventually(lambda: settled(k8s, 2), "the status of generation 2")

    config_after = live(k8s, CONFIGMAPS, "demo-pipeline")["data"]  # type: ignore[index]
    assert config_after != config_before
    assert config_after == rendered(k8s)[("ConfigMap", "demo-pipeline")]["data"]
    assert gateway_hash() != hash_before
    assert gateway_hash() == rendered(k8s)[("Deployment", "demo-gateway")]["spec"]["template"]["metadata"][
        "annotations"
    ][hash_key]
    await eventually(lambda: "demo-cnn" not in names_of(k8s, DEPLOYMENTS), "the cnn Deployment pruned")
    assert "demo-cnn" not in names_of(k8s, SERVICES)
    assert set(parent(k8s)["status"]["ops"]) == {"bow"}
    assert parent(k8s)["status"]["opsReady"] == "0/1"


async def test_invalid_spec_creates_nothing_reports_why_and_recovers_when_fixed(
    k8s: ApiEmulator, operator: RunningOperator
) -> None:
    broken = copy.deepcopy(DEMO)
    broken["metadata"]["name"] = "broken"
    broken["spec"]["ops"][2]["inputs"] = ["raed"]
    try:
        spec.validate(broken["spec"])
    except spec.InvalidSpecError as exc:
        message = str(exc)
    assert message.startswith("op 'cnn': spec.ops[2].inputs: unknown input 'raed'")
    await create(k8s, broken)

    await eventually(lambda: condition(k8s, "InvalidSpec", "broken").get("status") == "True", "InvalidSpec=True")
    assert condition(k8s, "InvalidSpec", "broken")["message"] == message
    assert condition(k8s, "Ready", "broken").items() >= {"status": "False", "reason": "InvalidSpec"}.items()
    warnings = await eventually(
        lambda: [
            obj.raw for key, obj in k8s.objects.items()
            if key[0] == EVENTS and obj.raw.get("reason") == "InvalidSpec"
        ],  # fmt: skip
        "a Warning Event with reason InvalidSpec",
    )
    assert warnings[0]["type"] == "Warning"
    assert warnings[0]["message"] == message
    assert warnings[0]["involvedObject"]["name"] == "broken"
    assert warnings[0]["involvedObject"]["uid"] == parent(k8s, "broken")["metadata"]["uid"]
    for resource in (DEPLOYMENTS, SERVICES, CONFIGMAPS):
        assert not {name for name in names_of(k8s, resource) if name.startswith("broken")}

    fixed = copy.deepcopy(OPS)
    await patch_spec(k8s, "broken", {"ops": fixed})
    await eventually(lambda: settled(k8s, 2, "broken"), "the status of the fixed generation")
    assert condition(k8s, "InvalidSpec", "broken")["status"] == "False"
    assert {"broken-gateway", "broken-bow", "broken-cnn"} <= names_of(k8s, DEPLOYMENTS)
    assert "broken-pipeline" in names_of(k8s, CONFIGMAPS)


async def test_an_invalid_update_leaves_the_running_children_alone(k8s: ApiEmulator, operator: RunningOperator) -> None:
    await create(k8s)
    await eventually(lambda: settled(k8s, 1), "the first status")
    before = {key: copy.deepcopy(obj.raw) for key, obj in k8s.objects.items() if key[0] in (DEPLOYMENTS, SERVICES, CONFIGMAPS)}

    ops = copy.deepcopy(OPS)
    ops[1]["placement"] = "gateway"
    ops[1]["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    await patch_spec(k8s, "demo", {"ops": ops})
    await eventually(lambda: condition(k8s, "InvalidSpec").get("status") == "True", "InvalidSpec=True")
    assert condition(k8s, "InvalidSpec")["message"].startswith("op 'bow': spec.ops[1]")
    assert parent(k8s)["status"]["observedGeneration"] == 2
    after = {key: obj.raw for key, obj in k8s.objects.items() if key[0] in (DEPLOYMENTS, SERVICES, CONFIGMAPS)}
    assert after == before


async def test_a_deployment_deleted_by_hand_is_recreated(k8s: ApiEmulator, operator: RunningOperator) -> None:
    await create(k8s)
    await eventually(lambda: settled(k8s, 1), "the first status")
    response = await k8s.delete("/apis/apps/v1/namespaces/default/deployments/demo-cnn")
    assert response.status == 200, await response.text()
    await eventually(lambda: live(k8s, DEPLOYMENTS, "demo-cnn"), "demo-cnn re-created")
    assert apply.covers(live(k8s, DEPLOYMENTS, "demo-cnn"), rendered(k8s)[("Deployment", "demo-cnn")])


async def test_delete_is_never_blocked_and_children_go_with_the_owner(
    k8s: ApiEmulator, operator: RunningOperator, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="kopf.objects")
    await create(k8s)
    await eventually(lambda: settled(k8s, 1), "the first status")
    assert names_of(k8s, DEPLOYMENTS) == CHILD_DEPLOYMENTS
    creations = sum(len(k8s["post", resource]) for resource in (DEPLOYMENTS, SERVICES, CONFIGMAPS))

    response = await k8s.delete(f"{PS_PATH}/demo")
    assert response.status == 200, await response.text()
    assert live(k8s, PS, "demo") is None, "deleted at once: no finalizer holds it"
    # The emulator collects garbage by ownerReferences, as the cluster does.
    await eventually(lambda: not names_of(k8s, DEPLOYMENTS) and not names_of(k8s, SERVICES), "children gone")
    assert not names_of(k8s, CONFIGMAPS)
    await eventually(lambda: "Deleted, really deleted, and we are notified." in caplog.text, "kopf to see the deletion")
    after = sum(len(k8s["post", resource]) for resource in (DEPLOYMENTS, SERVICES, CONFIGMAPS))
    assert after == creations, "nothing is re-created for a deleted PipelineService"


async def test_a_pipeline_deleted_while_its_children_are_being_created_leaves_nothing(
    k8s: ApiEmulator, operator: RunningOperator, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="kopf.objects")
    await create(k8s)
    await eventually(lambda: names_of(k8s, CONFIGMAPS), "the first child")  # the handler is mid-way
    response = await k8s.delete(f"{PS_PATH}/demo")
    assert response.status == 200, await response.text()
    await eventually(lambda: "Deleted, really deleted, and we are notified." in caplog.text, "kopf to see the deletion")
    for resource in (DEPLOYMENTS, SERVICES, CONFIGMAPS):
        assert not names_of(k8s, resource), f"{resource} left behind"


async def test_a_restarted_operator_resumes_without_writing_anything(k8s: ApiEmulator, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="kopf.objects")
    options = main.Options(namespaces=("default",))
    async for _ in start_operator(k8s, options):
        await create(k8s)
        await eventually(lambda: settled(k8s, 1), "the first status")
    writes_before = writes(k8s)
    caplog.clear()

    async for _ in start_operator(k8s, options):
        await eventually(lambda: "children: all unchanged; pruned: none" in caplog.text, "the resume handler's pass")
        await eventually(lambda: "Handler 'reconcile' succeeded" in caplog.text, "the resume handler to finish")
    assert writes(k8s) == writes_before, "a second pass with the same spec must change nothing"


def writes(k8s: ApiEmulator) -> int:
    """Requests that changed a child or the parent's status."""
    targets = (DEPLOYMENTS, SERVICES, CONFIGMAPS)
    count = sum(len(k8s[verb, resource]) for verb in ("post", "patch", "delete") for resource in targets)
    return count + len(k8s["patch", PS, kmock.subresource("status")])


async def test_a_namespaced_operator_leaves_other_namespaces_alone(k8s: ApiEmulator, operator: RunningOperator) -> None:
    elsewhere = copy.deepcopy(DEMO)
    elsewhere["metadata"]["namespace"] = "other"
    response = await k8s.post(PS_PATH.replace("/default/", "/other/"), json=elsewhere)
    assert response.status == 200, await response.text()
    await create(k8s)
    await eventually(lambda: settled(k8s, 1), "the status in default")
    assert not names_of(k8s, DEPLOYMENTS, "other")
    assert "status" not in (live(k8s, PS, "demo", "other") or {})


async def test_an_operator_given_a_list_of_namespaces_serves_those_only(k8s: ApiEmulator) -> None:
    def in_namespace(namespace: str) -> dict[str, Any]:
        body = copy.deepcopy(DEMO)
        body["metadata"]["namespace"] = namespace
        return body

    async for _ in start_operator(k8s, main.Options(namespaces=("default", "team-a"))):
        for namespace in ("team-a", "team-b", "default"):
            response = await k8s.post(PS_PATH.replace("/default/", f"/{namespace}/"), json=in_namespace(namespace))
            assert response.status == 200, await response.text()
        for namespace in ("default", "team-a"):
            children = f"children in {namespace}"
            await eventually(lambda: names_of(k8s, DEPLOYMENTS, namespace) == CHILD_DEPLOYMENTS, children)
            await eventually(
                lambda: (live(k8s, PS, "demo", namespace) or {}).get("status", {}).get("observedGeneration") == 1,
                f"the status in {namespace}",
            )
    assert not names_of(k8s, DEPLOYMENTS, "team-b")
    assert "status" not in (live(k8s, PS, "demo", "team-b") or {})


async def test_a_cluster_wide_operator_serves_every_namespace(k8s: ApiEmulator) -> None:
    elsewhere = copy.deepcopy(DEMO)
    elsewhere["metadata"]["namespace"] = "other"
    async for _ in start_operator(k8s, main.Options(all_namespaces=True)):
        response = await k8s.post(PS_PATH.replace("/default/", "/other/"), json=elsewhere)
        assert response.status == 200, await response.text()
        await eventually(lambda: names_of(k8s, DEPLOYMENTS, "other") == CHILD_DEPLOYMENTS, "children in other")
        await eventually(
            lambda: (live(k8s, PS, "demo", "other") or {}).get("status", {}).get("observedGeneration") == 1,
            "the status in other",
        )


async def test_the_pipeserve_operator_command_logs_in_with_the_kubeconfig_and_stops_on_sigterm(
    k8s: ApiEmulator, tmp_path: Path
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", k8s)
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeserve.cli", "operator", "--namespace", "default", "--liveness", liveness,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await create(k8s)
        await eventually(lambda: settled(k8s, 1), "the status written by the command's operator", timeout=30)
        async with aiohttp.ClientSession() as session, session.get(liveness) as probe:
            assert probe.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, output.decode()
    assert names_of(k8s, DEPLOYMENTS) == CHILD_DEPLOYMENTS
    reads = list(k8s["get", PS])
    assert reads and all(request.headers.get("Authorization") == "Bearer t0ken" for request in reads)
