"""compute_status: conditions, per-op readiness and transition times, from plain data."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from pipeserve.operator import render, status

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)
PARENT: dict[str, Any] = {
    "apiVersion": "pipeserve.io/v1alpha1",
    "kind": "PipelineService",
    "metadata": {"name": "demo", "namespace": "ml", "uid": "u-1", "generation": 3},
    "spec": {
        "image": "example/imdb:1",
        "ops": [
            {"name": "read", "class": "ops:ReadOp"},
            {"name": "bow", "class": "ops:BowOp", "inputs": ["read"], "placement": "service", "replicas": 2},
            {"name": "cnn", "class": "ops:CnnOp", "inputs": ["read"], "placement": "service"},
            {"name": "combine", "class": "ops:CombineOp", "inputs": ["bow", "cnn"]},
        ],
    },
}


def deployments(**ready: int) -> list[dict[str, Any]]:
    """The rendered Deployments as the cluster would show them, ``name=ready replicas``."""
    result = []
    for child in render.render_children(PARENT):
        if child["kind"] == "Deployment":
            live = copy.deepcopy(child)
            count = ready.get(child["metadata"]["name"].removeprefix("demo-"), 0)
            live["status"] = {"readyReplicas": count, "availableReplicas": count}
            result.append(live)
    return result


def conditions(computed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in computed["conditions"]}


def test_all_deployments_ready_makes_ready_true() -> None:
    computed = status.compute_status(PARENT, deployments(gateway=1, bow=2, cnn=1), T0, None)
    found = conditions(computed)
    assert [c["type"] for c in computed["conditions"]] == ["Ready", "Progressing", "Degraded", "InvalidSpec"]
    assert found["Ready"] == {
        "type": "Ready", "status": "True", "reason": "AllReady", "message": "3 deployments ready",
        "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 3,
    }  # fmt: skip
    assert found["Progressing"]["status"] == found["Degraded"]["status"] == found["InvalidSpec"]["status"] == "False"
    assert computed["observedGeneration"] == 3
    assert computed["ops"] == {"bow": {"replicas": 2, "readyReplicas": 2}, "cnn": {"replicas": 1, "readyReplicas": 1}}
    assert computed["opsReady"] == "2/2"
    assert computed["gateway"] == {"replicas": 1, "readyReplicas": 1}
    assert computed["endpoint"] == "demo-gateway.ml.svc.cluster.local:8080"


def test_a_deployment_short_of_replicas_is_progressing_not_degraded() -> None:
    found = conditions(status.compute_status(PARENT, deployments(gateway=1, bow=1, cnn=1), T0, None))
    assert found["Ready"]["status"] == "False"
    assert found["Ready"]["message"] == "op 'bow': 1/2 replicas ready"
    assert found["Progressing"]["status"] == "True"
    assert found["Progressing"]["message"] == "waiting for op 'bow': 1/2 replicas ready"
    assert found["Degraded"]["status"] == "False"


def test_a_missing_deployment_is_waited_for() -> None:
    present = [d for d in deployments(gateway=1, bow=2) if d["metadata"]["name"] != "demo-cnn"]
    computed = status.compute_status(PARENT, present, T0, None)
    assert "op 'cnn': deployment demo-cnn not created yet" in conditions(computed)["Progressing"]["message"]
    assert computed["ops"]["cnn"] == {"replicas": 1, "readyReplicas": 0}
    assert computed["opsReady"] == "1/2"


def test_failed_deployments_make_degraded_naming_the_op() -> None:
    live = deployments(gateway=1, bow=2, cnn=0)
    live[2]["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
    ]
    found = conditions(status.compute_status(PARENT, live, T0, None))
    assert found["Degraded"]["status"] == "True"
    assert found["Degraded"]["message"] == "op 'cnn': ProgressDeadlineExceeded: too slow"
    assert found["Progressing"]["status"] == "False"
    assert found["Ready"]["status"] == "False"


def test_pods_lost_after_a_finished_rollout_are_degraded() -> None:
    live = deployments(gateway=1, bow=1, cnn=1)
    live[1]["status"].update(
        unavailableReplicas=1,
        conditions=[{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
    )
    found = conditions(status.compute_status(PARENT, live, T0, None))
    assert found["Degraded"]["message"] == "op 'bow': 1 of 2 replicas unavailable"


def test_a_rollout_not_yet_observed_by_the_deployment_controller_is_not_ready() -> None:
    live = deployments(gateway=1, bow=2, cnn=1)
    live[1]["metadata"]["generation"] = 4
    live[1]["status"]["observedGeneration"] = 3
    assert conditions(status.compute_status(PARENT, live, T0, None))["Ready"]["status"] == "False"


def test_transition_times_change_only_with_the_status() -> None:
    first = status.compute_status(PARENT, deployments(gateway=1, bow=2, cnn=1), T0, None)
    second = status.compute_status(PARENT, deployments(gateway=1, bow=2, cnn=0), T1, first)
    before, after = conditions(first), conditions(second)
    assert after["Ready"]["lastTransitionTime"] == "2026-01-02T03:09:05Z"
    assert after["Progressing"]["lastTransitionTime"] == "2026-01-02T03:09:05Z"
    assert after["Degraded"]["lastTransitionTime"] == before["Degraded"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert after["InvalidSpec"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    third = status.compute_status(PARENT, deployments(gateway=1, bow=2, cnn=0), T1 + datetime.timedelta(hours=1), second)
    assert third == second


def test_an_invalid_spec_sets_invalid_spec_and_keeps_what_was_observed() -> None:
    valid = status.compute_status(PARENT, deployments(gateway=1, bow=2, cnn=1), T0, None)
    broken = copy.deepcopy(PARENT)
    broken["metadata"]["generation"] = 4
    broken["spec"]["ops"][1]["class"] = "BowOp"
    computed = status.compute_status(broken, deployments(gateway=1, bow=2, cnn=1), T1, valid)
    found = conditions(computed)
    message = "op 'bow': spec.ops[1].class: must be \"module:Class\", e.g. \"ops:BowOp\", got 'BowOp'"
    assert found["InvalidSpec"] == {
        "type": "InvalidSpec", "status": "True", "reason": "InvalidSpec", "message": message,
        "lastTransitionTime": "2026-01-02T03:09:05Z", "observedGeneration": 4,
    }  # fmt: skip
    assert found["Ready"]["status"] == "False" and found["Ready"]["reason"] == "InvalidSpec"
    assert computed["observedGeneration"] == 4
    assert computed["ops"] == valid["ops"]
    assert computed["endpoint"] == valid["endpoint"]


def test_observed_generation_can_be_held_back() -> None:
    computed = status.compute_status(PARENT, deployments(), T0, None, observed_generation=2)
    assert computed["observedGeneration"] == 2
    assert {c["observedGeneration"] for c in computed["conditions"]} == {2}


def test_an_autoscaled_deployment_counts_its_live_replicas() -> None:
    live = deployments(gateway=1, bow=2, cnn=1)
    live[1]["spec"]["replicas"] = 5
    computed = status.compute_status(PARENT, live, T0, None)
    assert computed["ops"]["bow"] == {"replicas": 5, "readyReplicas": 2}
    assert conditions(computed)["Ready"]["status"] == "False"
