"""kopf handlers: a PipelineService becomes its children, and its status follows them.

Thin on purpose: rendering (``render``), applying (``apply``) and the status (``status``)
live elsewhere and are tested without kopf. What happens here:

- create / update / resume: render the children, create-or-patch them, delete the ones no
  longer rendered, and write the status. The same code for all three, so it is idempotent.
- an invalid spec: no child is created or changed (what runs keeps running), the
  InvalidSpec condition says which op and field, a Warning Event is posted, and the handler
  fails permanently — until the spec changes, which runs the update handler afresh.
- Deployments labelled ``pipeserve.io/pipeline``: every change re-computes the parent's
  status, so it follows pods becoming ready or failing. A Deployment deleted by hand is
  re-created.
- delete: nothing to do, children go with the parent through their ownerReferences. The
  handler is optional, so kopf puts no finalizer on the parent and deletion is never blocked
  (not even when the operator is down).

Handlers register on ``registry``, not kopf's global one; ``main`` runs kopf with it, and
with ``memo.metrics`` (``metrics.OperatorMetrics``), which every handler run updates.
Credentials: the service account in a pod, else the kubeconfig (``login``).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from pipeserve.operator import apply, kube, render, resources, spec, status
from pipeserve.operator import metrics as operator_metrics

registry = kopf.OperatorRegistry()

_PS = (resources.GROUP, resources.VERSION, resources.PLURAL)
_STATUS_KEYS = ("endpoint", "ops", "opsReady", "gateway", "redis")


@kopf.on.startup(registry=registry)
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Keep kopf's bookkeeping in our annotations, Events for warnings only, and one client."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=resources.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=resources.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    memo.kube = kube.Client(settings)
    memo.status_locks = {}
    if "metrics" not in memo:  # kopf run without ``main.operate``: count anyway, serve nothing
        memo.metrics = operator_metrics.OperatorMetrics()


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod its service account, elsewhere the kubeconfig ($KUBECONFIG or ~/.kube/config).

    A registry of our own starts without kopf's default login handlers, hence this one. kopf's
    kubeconfig reader takes tokens, client certificates and basic auth, not exec plugins.
    """
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.resume(*_PS, registry=registry)
@kopf.on.create(*_PS, registry=registry)
@kopf.on.update(*_PS, registry=registry)
async def reconcile(
    body: kopf.Body, name: str, namespace: str | None, reason: str, memo: Any, logger: Any, **_: Any
) -> None:
    """Render, apply, prune, then write the status."""
    with memo.metrics.reconciliation(str(reason)):  # a kopf.Reason: "create", "update", "resume"
        # PipelineServices are namespaced; kopf types allow None
        await _reconcile(body, name, namespace or "default", memo, logger)


async def _reconcile(body: kopf.Body, name: str, namespace: str, memo: Any, logger: Any) -> None:
    parent = copy.deepcopy(dict(body))
    generation = int(parent["metadata"].get("generation") or 0)
    current = await memo.kube.get(resources.PIPELINE_SERVICES, namespace, name)
    if current is None or current["metadata"].get("uid") != parent["metadata"].get("uid"):
        # kopf may still hold an event from before a deletion (its own bookkeeping patch then
        # fails): do not re-create children of a PipelineService that is gone.
        logger.info(f"PipelineService {name} is gone; nothing to do")
        return
    try:
        children = render.render_children(parent)
    except spec.InvalidSpecError as exc:
        memo.metrics.invalid_specs.inc()
        kopf.warn(body, reason=status.INVALID_SPEC, message=str(exc))
        await refresh_status(memo, namespace, name, observed_generation=generation)
        raise kopf.PermanentError(f"invalid spec, nothing applied: {exc}") from exc
    outcomes = await apply.apply_all(memo.kube, children)
    pruned = await apply.prune(memo.kube, parent, children)
    memo.metrics.children_changed(outcomes, pruned)
    changed = {key: outcome for key, outcome in outcomes.items() if outcome != "unchanged"}
    logger.info(f"children: {changed or 'all unchanged'}; pruned: {pruned or 'none'}")
    await refresh_status(memo, namespace, name, observed_generation=generation)


@kopf.on.delete(*_PS, optional=True, registry=registry)
async def released(name: str, namespace: str | None, memo: Any, logger: Any, **_: Any) -> None:
    """Children carry ownerReferences: Kubernetes deletes them with the parent."""
    with memo.metrics.reconciliation("delete"):
        memo.metrics.pipeline_ready(namespace or "default", name, None)
        logger.info(f"PipelineService {name} deleted; its children go with it")


@kopf.on.event("apps", "v1", "deployments", labels={resources.PIPELINE_LABEL: kopf.PRESENT}, registry=registry)
async def deployment_changed(
    type: str, namespace: str | None, labels: Mapping[str, str], memo: Any, logger: Any, **_: Any
) -> None:
    """A child Deployment changed: update the parent's status (re-create it if deleted)."""
    with memo.metrics.reconciliation("deployment"):
        await _deployment_changed(type, namespace or "default", labels[resources.PIPELINE_LABEL], memo, logger)


async def _deployment_changed(type: str, namespace: str, pipeline: str, memo: Any, logger: Any) -> None:
    if type == "DELETED":
        parent = await memo.kube.get(resources.PIPELINE_SERVICES, namespace, pipeline)
        if parent is not None and not parent["metadata"].get("deletionTimestamp"):
            try:
                children = render.render_children(parent)
            except spec.InvalidSpecError:
                children = []  # the status says why; nothing to re-create from
            outcomes = await apply.apply_all(memo.kube, children)
            memo.metrics.children_changed(outcomes)
            recreated = [key for key, outcome in outcomes.items() if outcome == "created"]
            if recreated:
                logger.info(f"re-created {recreated} of {pipeline}")
    await refresh_status(memo, namespace, pipeline)


async def refresh_status(memo: Any, namespace: str, name: str, *, observed_generation: int | None = None) -> None:
    """Re-compute the parent's status from its Deployments and patch it if it changed.

    One refresh at a time per parent, so a slower one cannot overwrite a newer one with
    what it saw earlier. ``observed_generation`` is the generation just rendered; without
    it (a Deployment changed) the previous one stays.
    """
    locks: dict[tuple[str, str], asyncio.Lock] = memo.status_locks
    async with locks.setdefault((namespace, name), asyncio.Lock()):
        client: kube.Client = memo.kube
        parent = await client.get(resources.PIPELINE_SERVICES, namespace, name)
        if parent is None or parent["metadata"].get("deletionTimestamp"):
            memo.metrics.pipeline_ready(namespace, name, None)
            return
        deployments = await client.list(resources.DEPLOYMENTS, namespace, {resources.PIPELINE_LABEL: name})
        previous = parent.get("status") or {}
        if observed_generation is None:
            observed_generation = int(previous.get("observedGeneration") or 0)
        now = datetime.datetime.now(datetime.UTC)
        new = status.compute_status(parent, deployments, now, previous, observed_generation=observed_generation)
        ready = [c["status"] for c in new.get("conditions", []) if c.get("type") == status.READY]
        memo.metrics.pipeline_ready(namespace, name, ready[0] if ready else "Unknown")
        patch: dict[str, Any] = {key: value for key, value in new.items() if previous.get(key) != value}
        if "ops" in patch:  # a merge patch merges maps: ops no longer there must be nulled
            gone = {op: None for op in previous.get("ops") or {} if op not in patch["ops"]}
            patch["ops"] = {**gone, **patch["ops"]}
        patch.update({key: None for key in _STATUS_KEYS if key in previous and key not in new})
        if patch:
            await client.patch(resources.PIPELINE_SERVICES, namespace, name, {"status": patch}, subresource="status")
