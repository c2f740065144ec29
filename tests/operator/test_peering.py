"""Two operator replicas with ``--peering``: the real kopf peering against kmock.

Aspects: both replicas announce themselves (with their priorities) in the namespace's
KopfPeering object; the one with the lower priority pauses; the other serves
PipelineServices; when it stops, its record goes and the paused replica resumes and serves.
Each replica gets its own peering identity, as pods do (their names differ).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import kmock
import pytest
from kopf._core.engines.peering import Identity  # kopf does not re-export it

from kube_harness import (  # noqa: F401  (k8s is a fixture)
    DEPLOYMENTS,
    ApiEmulator,
    eventually,
    install_crd,
    k8s,
    live,
    names_of,
    start_operator,
)
from pipeserve.operator import main, peering
from test_handlers import CHILD_DEPLOYMENTS, DEMO, create, settled

pytestmark = pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")

PEERINGS = kmock.resource(f"{peering.GROUP}/{peering.VERSION}/{peering.NAMESPACED_PLURAL}")


def announced(k8s: ApiEmulator) -> dict[str, int]:
    """Identity -> priority of the replicas in the peering object."""
    found = live(k8s, PEERINGS, "pipeserve") or {}
    return {identity: record["priority"] for identity, record in (found.get("status") or {}).items() if record}


async def test_the_replica_with_the_highest_priority_works_and_the_other_takes_over_when_it_stops(
    k8s: ApiEmulator, caplog: Any
) -> None:
    caplog.set_level(logging.INFO)
    for definition in peering.load_peering_crds():
        await install_crd(k8s, definition)
    path = f"/apis/{peering.GROUP}/{peering.VERSION}/namespaces/default/{peering.NAMESPACED_PLURAL}"
    response = await k8s.post(path, json=peering.peering_object("pipeserve", "default"))
    assert response.status == 200, await response.text()

    def replica(priority: int) -> main.Options:
        return main.Options(namespaces=("default",), peering="pipeserve", priority=priority)

    async for _ in start_operator(k8s, replica(10), identity=Identity("replica-low")):
        async for _ in start_operator(k8s, replica(20), identity=Identity("replica-high")):
            await eventually(lambda: announced(k8s) == {"replica-low": 10, "replica-high": 20}, "both keep-alives")
            await eventually(lambda: "Pausing operations in favour of" in caplog.text, "the lower replica to pause")
            await create(k8s)
            await eventually(lambda: settled(k8s, 1), "the status written by the working replica")
            assert names_of(k8s, DEPLOYMENTS) == CHILD_DEPLOYMENTS
        await eventually(lambda: announced(k8s) == {"replica-low": 10}, "the stopped replica's record gone")
        await eventually(lambda: "Resuming operations after the pause" in caplog.text, "the other replica to resume")
        second = copy.deepcopy(DEMO)
        second["metadata"]["name"] = "second"
        await create(k8s, second)
        await eventually(lambda: settled(k8s, 1, "second"), "the status written by the remaining replica")
        assert {"second-gateway", "second-bow", "second-cnn"} <= names_of(k8s, DEPLOYMENTS)
