"""The real kopf runtime against kmock's Kubernetes API emulator, both on loopback.

Fixtures (import them into a test module: ``from kube_harness import k8s, operator``):

- ``k8s``: an :class:`ApiEmulator` serving HTTP on 127.0.0.1:<free port>, with the
  built-in API groups and the PipelineService CRD registered for discovery (from the CRD
  file the package ships).
- ``operator``: ``pipeserve.operator.main.operate`` (kopf with our handlers) watching
  ``default``, in its own thread and event loop, with a liveness endpoint; stopped at
  teardown. Its own loop because kopf, when it stops, cancels every task created in its loop
  after it started — kmock's connection tasks included — and waits 5 s for them first.

Plus helpers to wait for a state with a deadline (never for a time).

kmock 0.8 stores objects as sent. ApiEmulator adds what kopf and the operator rely on and
a real API server does: ``uid``/``resourceVersion``/``creationTimestamp``/``generation``
(bumped when a spec changes), ``generateName``, list ``resourceVersion`` with watches that
resume after it and lose no change made while they start, ``labelSelector`` on lists, and
garbage collection of objects whose owners are all gone (ownerReferences), so deletion can
be checked end to end.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import kmock
import kopf
import pytest
import yaml
from kopf._cogs.structs.credentials import Vault, VaultKey  # kopf does not re-export them

from pipeserve.operator import crd, main

T = TypeVar("T")

PS = kmock.resource(f"{crd.GROUP}/{crd.VERSION}/{crd.PLURAL}")
DEPLOYMENTS = kmock.resource("apps/v1/deployments")
SERVICES = kmock.resource("v1/services")
CONFIGMAPS = kmock.resource("v1/configmaps")
EVENTS = kmock.resource("v1/events")


@attrs.define(kw_only=True)
class ApiEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the object metadata and list semantics of a real API server."""

    _revision: int = attrs.field(default=0, init=False)

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = self._next_revision()
        elif request.resource is not None and request.action == kmock.action.UPDATE and request.name:
            if isinstance(request.data, dict):
                meta = request.data.setdefault("metadata", {})
                meta["resourceVersion"] = self._next_revision()
                if request.subresource is None and "spec" in request.data:
                    current = self._current(request)
                    if current is not None and current.get("spec") != _merged(current.get("spec"), request.data["spec"]):
                        meta["generation"] = int(current.get("metadata", {}).get("generation") or 1) + 1
            elif isinstance(request.data, list):  # JSON patch
                request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": self._next_revision()})
        response = await super()._handle(request)
        if request.resource is not None and request.action in (
            kmock.action.CREATE, kmock.action.DELETE, kmock.action.UPDATE
        ):  # fmt: skip
            await self._collect_garbage()
        return response

    def _current(self, request: Any) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        raw: dict[str, Any] = self._objects[key].raw
        return raw

    async def _serve_list(self, request: Any) -> Any:
        result = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            result["items"] = [item for item in result["items"] if _selected(item, selector)]
        result["metadata"]["resourceVersion"] = str(self._revision)
        return result

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        """The objects there are now, then every later change, none lost in between.

        kmock 0.8 takes the snapshot under its lock but starts following the event bus only
        after sending it, so a change made meanwhile never reached the watcher (a peer's
        keep-alive, a deletion): here the bus is marked under the same lock as the snapshot.
        The replay skips what the preceding list (``resourceVersion``) already returned.
        """
        yield b""  # send the headers: the stream is open even if nothing happens
        since = int(request.params.get("resourceVersion") or 0)
        bus = self._buses[request.resource]
        async with self._lock:
            marker = await bus.mark()
            objects = [obj for obj in self._KubernetesEmulator__get_objs(request, strict=False) if not obj.deleted]
            snapshot = [obj.raw for obj in objects]
        try:
            for raw in snapshot:
                revision = int(raw.get("metadata", {}).get("resourceVersion") or 0)
                if not (revision and revision <= since):
                    yield {"type": "ADDED", "object": raw}
            async for event in bus.stream(since=marker):
                metadata = event.get("object", {}).get("metadata", {})
                namespace, name = metadata.get("namespace"), metadata.get("name")
                if self._KubernetesEmulator__check(request, request.resource, namespace, name, strict=False):
                    yield event
        finally:
            await bus.unmark(marker)

    async def _collect_garbage(self) -> None:
        """Delete objects whose owners are all gone, until nothing more goes (cascades).

        Also right after a create: a child whose owner was deleted meanwhile goes at once."""
        async with self._lock:
            while True:
                live = [(key, obj) for key, obj in self._objects.items() if not obj.deleted]
                uids = {obj.get("metadata", {}).get("uid") for _, obj in live}
                orphans = [
                    (key, obj) for key, obj in live
                    if (refs := obj.get("metadata", {}).get("ownerReferences") or [])
                    and all(ref.get("uid") not in uids for ref in refs)
                ]  # fmt: skip
                if not orphans:
                    return
                for (resource, _, _), obj in orphans:
                    raw = obj.raw
                    obj.delete()
                    await self._buses[resource].put({"type": "DELETED", "object": raw})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merged(base: Any, patch: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return patch
    result = dict(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merged(base.get(key), value)
    return result


def _selected(item: dict[str, Any], selector: str) -> bool:
    labels = item.get("metadata", {}).get("labels") or {}
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_kubeconfig(path: Path, k8s: ApiEmulator) -> Path:
    """A kubeconfig at ``path`` whose current context is the emulator, with a bearer token."""
    path.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": str(k8s.url).rstrip("/")}}],
            "users": [{"name": "operator", "user": {"token": "t0ken"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "operator"}}],
        })  # fmt: skip
    )
    return path


@pytest.fixture
async def k8s() -> AsyncIterator[ApiEmulator]:
    """The API emulator on loopback, with the PipelineService CRD registered."""
    async with ApiEmulator() as emulator, kmock.Server(emulator):
        emulator.resources.load_bundled()
        await install_crd(emulator, crd.load_crd())
        yield emulator


async def install_crd(emulator: ApiEmulator, definition: dict[str, Any]) -> None:
    """Serve the CRD's resource (discovery included) and store the CRD, as an API server would."""
    names, group = definition["spec"]["names"], definition["spec"]["group"]
    for version in definition["spec"]["versions"]:
        emulator.resources[f"{group}/{version['name']}/{names['plural']}"] = kmock.ResourceInfo(
            kind=names["kind"],
            singular=names["singular"],
            namespaced=definition["spec"]["scope"] == "Namespaced",
            shortnames=set(names.get("shortNames", [])),
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
            subresources=set(version.get("subresources", {})),
        )
    response = await emulator.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=definition)
    assert response.status == 200, await response.text()


@attrs.define
class RunningOperator:
    """The operator the ``operator`` fixture started."""

    url: str
    liveness: str


async def start_operator(k8s: ApiEmulator, options: main.Options, **extra: Any) -> AsyncIterator[None]:
    """Run ``main.operate(options)`` against ``k8s`` in its own thread until the generator resumes;
    ``extra`` goes to ``kopf.operator`` (e.g. a peering ``identity``, which differs per pod)."""
    vault = Vault({VaultKey("kmock"): kopf.ConnectionInfo(server=str(k8s.url).rstrip("/"))})
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(main.operate(options, vault=vault, stop_flag=stop, ready_flag=ready, **extra))
        except BaseException as exc:  # surfaced at teardown
            errors.append(exc)

    thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 15), f"the operator did not start: {errors}"
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 15)  # kmock's loop keeps serving while kopf stops
    assert not thread.is_alive(), "the operator did not stop"
    assert not errors, errors


@pytest.fixture
async def operator(k8s: ApiEmulator) -> AsyncIterator[RunningOperator]:
    """kopf with the pipeserve handlers, watching namespace ``default``, with a liveness probe."""
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    options = main.Options(namespaces=("default",), liveness=liveness)
    async for _ in start_operator(k8s, options):
        yield RunningOperator(str(k8s.url).rstrip("/"), liveness)


async def eventually(probe: Callable[[], T | None | Awaitable[T | None]], what: str, timeout: float = 15) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        try:
            result = probe()
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                result = await result
            last = result
        except (KeyError, AssertionError) as exc:
            last = exc
            result = None
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
        await asyncio.sleep(0.02)  # sync-ok: the polling interval of a wait with a deadline


def live(k8s: ApiEmulator, resource: Any, name: str, namespace: str = "default") -> dict[str, Any] | None:
    """The stored object as a plain dict, or None when it does not exist (or was deleted)."""
    key = (resource, namespace, name)
    if key not in k8s.objects or k8s.objects[key].deleted:
        return None
    raw: dict[str, Any] = k8s.objects[key].raw
    return raw


def names_of(k8s: ApiEmulator, resource: Any, namespace: str = "default") -> set[str]:
    """Names of the live objects of one resource in one namespace."""
    return {
        name for (res, ns, name), obj in k8s.objects.items()
        if res == resource and ns == namespace and not obj.deleted
    }  # fmt: skip
