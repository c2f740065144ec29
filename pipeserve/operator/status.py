"""A PipelineService's status, computed from its spec and the Deployments that run it.

``compute_status`` is pure (no kopf, no client): the handlers feed it the parent and the
Deployments they observed, and write what it returns to the ``/status`` subresource. It may
be called any number of times; the same inputs give the same status.

The expected Deployments are the ones the renderer produces for the parent (one per op
service, the gateway, and Redis when the operator runs it). For each one:

- desired replicas: the live Deployment's ``spec.replicas`` (an autoscaler may have changed
  it), else the rendered one, else 1;
- **ready**: it exists, ``readyReplicas`` and ``availableReplicas`` reach the desired
  replicas, and, when the Deployment reports them, ``updatedReplicas`` does too and its
  ``status.observedGeneration`` has caught up with its ``metadata.generation``;
- **failed**: its ``ReplicaFailure`` condition is True, or its ``Progressing`` condition is
  False (``ProgressDeadlineExceeded``), or its rollout has finished
  (``Progressing`` reason ``NewReplicaSetAvailable``) yet replicas are unavailable — pods
  that crashed after they had been running.

The conditions (``type``, ``status`` "True"/"False", ``reason``, ``message``,
``lastTransitionTime``, ``observedGeneration``):

- **InvalidSpec**: True when the spec fails validation; the message names the op and the
  field. Nothing else can be ready then, so Ready is False with reason InvalidSpec.
- **Ready**: True when the spec is valid and every expected Deployment is ready.
- **Progressing**: True while some expected Deployment is missing or not ready yet and has
  not failed (a rollout or scale-up under way).
- **Degraded**: True when some expected Deployment has failed; the message names it.

Progressing and Degraded can both be True (one op rolling out, another failing).
``lastTransitionTime`` is kept from the previous status while a condition's status does not
change. Besides the conditions: ``observedGeneration``, ``endpoint`` (the gateway's address),
``ops`` (op name → ``replicas`` and ``readyReplicas`` of its op service), ``opsReady``
("ready/total" op services, the printer column), and ``gateway`` / ``redis`` (replicas and
ready replicas of those Deployments).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from pipeserve.operator import render, resources, spec

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
INVALID_SPEC = "InvalidSpec"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED, INVALID_SPEC)


@dataclasses.dataclass(frozen=True)
class DeploymentState:
    """What the status needs to know about one expected Deployment."""

    name: str
    component: str  # gateway | op | redis
    op: str | None
    desired: int
    ready_replicas: int
    exists: bool
    ready: bool
    failure: str | None  # why it failed, or None

    @property
    def label(self) -> str:
        """How messages name it: "op 'cnn'", "gateway", "redis"."""
        return f"op {self.op!r}" if self.op else self.component

    def summary(self) -> dict[str, Any]:
        """Its entry in the status."""
        return {"replicas": self.desired, "readyReplicas": self.ready_replicas}


def compute_status(
    parent: Mapping[str, Any],
    deployments: Iterable[Mapping[str, Any]],
    now: datetime.datetime,
    previous_status: Mapping[str, Any] | None,
    *,
    observed_generation: int | None = None,
) -> dict[str, Any]:
    """The full status of ``parent`` given the Deployments observed for it.

    Args:
        parent: the whole PipelineService object.
        deployments: the live Deployments labelled for this pipeline (others are ignored).
        now: the time written as ``lastTransitionTime`` of conditions that change.
        previous_status: the status the parent has now, for the transition times.
        observed_generation: the generation the children were last rendered from; defaults
            to the parent's current generation (pass the previous one when only the
            children's state changed and the spec may not have been applied yet).
    """
    previous = dict(previous_status or {})
    generation = int(parent.get("metadata", {}).get("generation") or 0)
    observed = generation if observed_generation is None else observed_generation
    try:
        expected = [child for child in render.render_children(parent) if child.get("kind") == "Deployment"]
    except spec.InvalidSpecError as exc:
        conditions = _invalid_conditions(str(exc))
        status: dict[str, Any] = {"observedGeneration": observed, "ops": previous.get("ops", {})}
        if "endpoint" in previous:
            status["endpoint"] = previous["endpoint"]
        status["conditions"] = _with_transitions(conditions, previous, now, observed)
        return status

    live = {str(d.get("metadata", {}).get("name")): d for d in deployments}
    states = [_state(child, live.get(child["metadata"]["name"])) for child in expected]
    conditions = _conditions(states)
    ops = {str(state.op): state.summary() for state in states if state.component == "op"}
    counted = [state for state in states if state.component == "op"]
    status = {
        "observedGeneration": observed,
        "endpoint": render.endpoint(parent),
        "ops": ops,
        "opsReady": f"{sum(state.ready for state in counted)}/{len(counted)}",
        "conditions": _with_transitions(conditions, previous, now, observed),
    }
    for component in ("gateway", "redis"):
        found = [state.summary() for state in states if state.component == component]
        if found:
            status[component] = found[0]
    return status


def _state(rendered: Mapping[str, Any], live: Mapping[str, Any] | None) -> DeploymentState:
    labels = rendered.get("metadata", {}).get("labels", {})
    component = str(labels.get(resources.COMPONENT_LABEL, "op"))
    op = labels.get(resources.OP_LABEL)
    rendered_replicas = rendered.get("spec", {}).get("replicas")
    name = str(rendered["metadata"]["name"])
    if live is None:
        desired = 1 if rendered_replicas is None else int(rendered_replicas)
        return DeploymentState(name, component, op, desired, 0, exists=False, ready=desired == 0, failure=None)
    live_replicas = live.get("spec", {}).get("replicas")
    desired = int(next((n for n in (live_replicas, rendered_replicas) if n is not None), 1))
    status = live.get("status") or {}
    ready_replicas = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    ready = ready_replicas >= desired and available >= desired
    if "updatedReplicas" in status:
        ready = ready and int(status["updatedReplicas"] or 0) >= desired
    if "observedGeneration" in status:
        ready = ready and int(status["observedGeneration"]) >= int(live.get("metadata", {}).get("generation") or 0)
    return DeploymentState(name, component, op, desired, ready_replicas, True, ready, _failure(status, desired))


def _failure(status: Mapping[str, Any], desired: int) -> str | None:
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    replica_failure = conditions.get("ReplicaFailure")
    if replica_failure and replica_failure.get("status") == "True":
        return f"{replica_failure.get('reason', 'ReplicaFailure')}: {replica_failure.get('message', '')}".rstrip(": ")
    progressing = conditions.get("Progressing")
    if progressing and progressing.get("status") == "False":
        return f"{progressing.get('reason', 'ProgressDeadlineExceeded')}: {progressing.get('message', '')}".rstrip(": ")
    unavailable = int(status.get("unavailableReplicas") or 0)
    if progressing and progressing.get("reason") == "NewReplicaSetAvailable" and desired and unavailable:
        return f"{unavailable} of {desired} replicas unavailable"
    return None


def _conditions(states: list[DeploymentState]) -> list[dict[str, str]]:
    failed = [state for state in states if state.failure]
    waiting = [state for state in states if not state.ready and not state.failure]
    not_ready = [state for state in states if not state.ready]
    if not_ready:
        ready = _condition(READY, False, "NotReady", "; ".join(_progress(state) for state in not_ready))
    else:
        ready = _condition(READY, True, "AllReady", f"{len(states)} deployments ready")
    if waiting:
        progressing = _condition(
            PROGRESSING, True, "RollingOut", "waiting for " + "; ".join(_progress(state) for state in waiting)
        )
    else:
        progressing = _condition(PROGRESSING, False, "Settled", "")
    if failed:
        degraded = _condition(DEGRADED, True, "DeploymentFailed", "; ".join(f"{s.label}: {s.failure}" for s in failed))
    else:
        degraded = _condition(DEGRADED, False, "AsExpected", "")
    return [ready, progressing, degraded, _condition(INVALID_SPEC, False, "SpecValid", "")]


def _invalid_conditions(message: str) -> list[dict[str, str]]:
    return [
        _condition(READY, False, INVALID_SPEC, message),
        _condition(PROGRESSING, False, INVALID_SPEC, "the spec must be fixed before anything rolls out"),
        _condition(DEGRADED, False, INVALID_SPEC, ""),
        _condition(INVALID_SPEC, True, INVALID_SPEC, message),
    ]


def _progress(state: DeploymentState) -> str:
    if not state.exists:
        return f"{state.label}: deployment {state.name} not created yet"
    return f"{state.label}: {state.ready_replicas}/{state.desired} replicas ready"


def _condition(kind: str, value: bool, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": "True" if value else "False", "reason": reason, "message": message}


def _with_transitions(
    conditions: list[dict[str, str]], previous: Mapping[str, Any], now: datetime.datetime, observed: int
) -> list[dict[str, Any]]:
    before = {c.get("type"): c for c in previous.get("conditions") or []}
    stamp = format_time(now)
    result: list[dict[str, Any]] = []
    for condition in conditions:
        old = before.get(condition["type"])
        kept = old is not None and old.get("status") == condition["status"] and old.get("lastTransitionTime")
        result.append({**condition, "lastTransitionTime": kept or stamp, "observedGeneration": observed})
    return result


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC, to the second, as Kubernetes writes timestamps."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
