"""Create-or-patch of rendered children, and pruning of the ones no longer rendered.

Why not server-side apply: it needs a server that implements it, and the tests run the real
kopf runtime against an API emulator that does not. Create-or-patch with a last-applied
annotation gives the same results for objects only the operator writes:

- an object that does not exist is created;
- an existing one is patched with a JSON merge patch holding only what differs from the
  rendered object, plus ``null`` for the fields the previous rendering set and this one
  dropped (read from the ``pipeserve.io/last-applied`` annotation, as ``kubectl apply``
  does); fields the cluster filled in (defaults, clusterIP, status) are left alone;
- nothing differs: no request at all, so a second pass with the same input changes nothing
  and the children's resourceVersions stay put.

Lists are compared element by element with the same "rendered ⊆ live" rule, so a container
the API server defaulted (terminationMessagePath, protocol: TCP) does not count as a change;
a list that differs is replaced whole (merge-patch semantics), which is what we want for
containers, ports and env that the operator owns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pipeserve.operator import kube, resources

LAST_APPLIED = "pipeserve.io/last-applied"

Outcome = Literal["created", "patched", "unchanged"]


async def apply(client: kube.Client, desired: Mapping[str, Any]) -> Outcome:
    """Make the live object match ``desired``; returns what it had to do."""
    resource = resources.for_object(desired)
    namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
    wanted = with_last_applied(desired)
    live = await client.get(resource, namespace, name)
    if live is None:
        try:
            await client.create(resource, wanted)
            return "created"
        except kube.Conflict:  # created meanwhile (another event for the same parent): patch it
            live = await client.get(resource, namespace, name)
            if live is None:
                raise
    last = _last_applied(live)
    patch = merge_patch(wanted, live, last)
    if not patch:
        return "unchanged"
    await client.patch(resource, namespace, name, patch)
    return "patched"


async def apply_all(client: kube.Client, children: Iterable[Mapping[str, Any]]) -> dict[str, Outcome]:
    """Apply every child; returns ``{"Kind/name": outcome}``."""
    outcomes: dict[str, Outcome] = {}
    for child in children:
        outcomes[f"{child['kind']}/{child['metadata']['name']}"] = await apply(client, child)
    return outcomes


async def prune(client: kube.Client, parent: Mapping[str, Any], children: Iterable[Mapping[str, Any]]) -> list[str]:
    """Delete the parent's children that are not in ``children`` (an op removed, Ingress
    switched off, ...). Only objects labelled for this pipeline *and* owned by this parent
    (ownerReference uid) are candidates. Returns ``["Kind/name", ...]`` deleted."""
    meta = parent["metadata"]
    keep = {(child["apiVersion"], child["kind"], child["metadata"]["name"]) for child in children}
    deleted: list[str] = []
    for resource in resources.CHILDREN:
        for live in await client.list(resource, meta["namespace"], {resources.PIPELINE_LABEL: meta["name"]}):
            name = live["metadata"]["name"]
            if (resource.api_version, resource.kind, name) in keep or not owned_by(live, meta.get("uid")):
                continue
            await client.delete(resource, meta["namespace"], name)
            deleted.append(f"{resource.kind}/{name}")
    return deleted


def owned_by(obj: Mapping[str, Any], uid: str | None) -> bool:
    """Whether one of ``obj``'s ownerReferences points at ``uid``."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return uid is not None and any(ref.get("uid") == uid for ref in refs)


def with_last_applied(desired: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` with the annotation recording it (canonical JSON, so equal input gives an
    equal annotation)."""
    obj = json.loads(json.dumps(desired))
    annotations = obj["metadata"].setdefault("annotations", {})
    annotations.pop(LAST_APPLIED, None)
    record = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    annotations[LAST_APPLIED] = record
    result: dict[str, Any] = obj
    return result


def _last_applied(live: Mapping[str, Any]) -> dict[str, Any]:
    raw = (live.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        last = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return last if isinstance(last, dict) else {}


def merge_patch(desired: Mapping[str, Any], live: Mapping[str, Any], last: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that takes ``live`` to ``desired``; {} when nothing differs.

    A key the previous rendering (``last``) set and ``desired`` no longer has becomes
    ``None`` (delete); keys neither set (cluster defaults) are left alone.
    """
    patch: dict[str, Any] = {}
    for key, want in desired.items():
        have = live.get(key)
        if isinstance(want, Mapping) and isinstance(have, Mapping):
            before = last.get(key)
            sub = merge_patch(want, have, before if isinstance(before, Mapping) else {})
            if sub:
                patch[key] = sub
        elif key not in live or not covers(have, want) or (key in last and last[key] != want):
            # the last check catches a key dropped inside a list element, which covers() allows
            patch[key] = want
    for key in last:
        if key not in desired and key in live:
            patch[key] = None
    return patch


def covers(live: Any, wanted: Any) -> bool:
    """Whether ``live`` has everything ``wanted`` has (maps: a superset; lists: the same
    length, element by element; anything else: equal)."""
    if isinstance(wanted, Mapping):
        return isinstance(live, Mapping) and all(key in live and covers(live[key], want) for key, want in wanted.items())
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(covers, live, wanted))
    return bool(live == wanted)
