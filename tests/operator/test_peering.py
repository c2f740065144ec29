"""An operator replica with ``--peering``: the real kopf peering against kmock.

Aspects: the replica announces itself with its priority in the namespace's KopfPeering
object (kopf's keep-alive), works only once it has seen the peering (kopf starts paused
there), serves PipelineServices, and removes its record when it stops so another replica
can take over at once. Which replica of several works is kopf's own election; what
pipeserve decides is that ``--peering`` turns it on with a distinct priority per replica
(``test_operator_setup``).
"""

from __future__ import annotations

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
from test_handlers import CHILD_DEPLOYMENTS, create, settled

pytestmark = pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")

PEERINGS = kmock.resource(f"{peering.GROUP}/{peering.VERSION}/{peering.NAMESPACED_PLURAL}")


def announced(k8s: ApiEmulator) -> dict[str, int]:
    """Identity -> priority of the replicas in the peering object."""
    found = live(k8s, PEERINGS, "pipeserve") or {}
    return {identity: record["priority"] for identity, record in (found.get("status") or {}).items() if record}


async def test_a_peering_replica_announces_itself_serves_and_leaves_the_peering_when_it_stops(
    k8s: ApiEmulator, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="kopf")
    for definition in peering.load_peering_crds():
        await install_crd(k8s, definition)
    path = f"/apis/{peering.GROUP}/{peering.VERSION}/namespaces/default/{peering.NAMESPACED_PLURAL}"
    response = await k8s.post(path, json=peering.peering_object("pipeserve", "default"))
    assert response.status == 200, await response.text()

    options = main.Options(namespaces=("default",), peering="pipeserve", priority=20)
    async for _ in start_operator(k8s, options, identity=Identity("replica-a")):
        await eventually(lambda: announced(k8s) == {"replica-a": 20}, "the replica's keep-alive")
        await eventually(lambda: "Resuming operations after the pause" in caplog.text, "the replica to start working")
        await create(k8s)
        await eventually(lambda: settled(k8s, 1), "the status written by the replica")
        assert names_of(k8s, DEPLOYMENTS) == CHILD_DEPLOYMENTS
    await eventually(lambda: announced(k8s) == {}, "the stopped replica's record gone")
