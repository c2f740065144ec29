"""The pipeline's config.yml, parsed once at start-up into frozen dataclasses.

Seed key names stay on the YAML side (``auto_batching_timeout``); the Python attributes
carry their unit (``auto_batching_timeout_ms``). Every problem is reported as
``config.yml: op.bow.batch_size: must be an integer >= 1, got 0`` and stops start-up.

A key set to null (``batch_size:`` with no value) keeps its default. How one value is
checked lives in :mod:`pipeserve.pipeline.config_parse`; this module holds the sections,
their defaults and the rules between keys (ports, auto-batching, devices, precision). It is
over 500 lines because every key the seeds define is here with its default and its
documentation, next to the table that reads it: split by section, a key's default, reader and
cross-checks would sit in different files.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal

import yaml

from pipeserve.pipeline import config_parse as parse
from pipeserve.pipeline import errors, logs


class DeviceType(enum.IntEnum):
    """Hardware an op runs on (seed §4.7): the numbers are the seeds' ``device_type``."""

    CPU = 0
    GPU = 1
    TENSORRT = 2
    ARM_CPU = 3
    XPU = 4


#: Precisions each device type supports (seed §4.8).
SUPPORTED_PRECISIONS: dict[DeviceType, tuple[str, ...]] = {
    DeviceType.CPU: ("fp32", "fp16", "bf16"),
    DeviceType.GPU: ("fp32", "fp16", "int8"),
    DeviceType.TENSORRT: ("fp32", "fp16", "int8"),
    DeviceType.ARM_CPU: ("fp32", "fp16"),
    DeviceType.XPU: ("fp32", "fp16"),
}


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """What an op's model runtime needs to know about its hardware.

    Handed to the op as ``op.runtime_config`` before ``init_op``.
    """

    device_type: DeviceType = DeviceType.CPU
    """Resolved device type: from ``device_type``, else GPU when ``devices`` is set, else CPU."""
    devices: tuple[int, ...] = ()
    """GPU card ids from ``devices: "0,1,2"``; empty for CPU."""
    precision: str = "fp32"
    """One of fp32, fp16, int8, bf16, checked against the device type."""
    device_id: int | None = None
    """The card this worker is bound to (process ops, round robin over ``devices``)."""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Remaining ``local_service_conf`` keys (model_config, use_mkldnn, ir_optim, ...)."""


@dataclasses.dataclass(frozen=True)
class OpConfig:
    """One entry of the ``op:`` section (seed §2.2, §3.3, §4.6-4.8)."""

    name: str
    concurrency: int = 1
    """Workers: threads for thread ops, processes for process ops."""
    timeout_ms: float = -1
    """Timeout of the process stage per attempt; < 0 means none. YAML: ``timeout``."""
    retry: int = 1
    """Attempts of the process stage on timeout; 1 means no retry (seed semantics)."""
    batch_size: int = 1
    """Auto-batching: the most samples per process() call."""
    auto_batching_timeout_ms: float | None = None
    """How long a batch waits for more samples after its first. YAML: ``auto_batching_timeout``.
    Required when batch_size > 1."""
    is_thread_op: bool | None = None
    """Per-op override of ``dag.is_thread_op``; None follows the DAG."""
    inline: bool = False
    """Run this op's hooks on the event loop: only for cheap, non-blocking code."""
    server_endpoints: tuple[str, ...] = ()
    """Op service addresses: the op runs there, not in this process. Each is "host:port"
    or a gRPC target ("dns:///bow:9000"); calls spread round robin over every address."""
    op_class: str | None = None
    """``module:Class`` of the op, for processes that build it from config (op services).
    YAML: ``class``."""
    fetch_list: tuple[str, ...] = ()
    client_config: str | None = None
    client_type: str | None = None
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


@dataclasses.dataclass(frozen=True)
class DagConfig:
    """The ``dag:`` section."""

    is_thread_op: bool = True
    """True: ops run in threads; False: in processes (one per concurrency)."""
    retry: int = 1
    use_profile: bool = False
    channel_size: int = 0
    """Most requests waiting in any channel; 0 = unbounded per channel (seeds), still capped
    by the in-flight limit so memory stays bounded."""
    tracer_interval_s: float | None = None
    """YAML: ``tracer: {interval_s: 10}``; None = no tracer."""
    timeout_ms: float = 30000
    """Whole-request timeout, including the wait for room in a full DAG. YAML: ``timeout``."""
    client_type: str | None = None


@dataclasses.dataclass(frozen=True)
class PayloadConfig:
    """The ``payload:`` section: where values too big to travel inline are kept."""

    store: Literal["memory", "redis"] = "memory"
    """``memory`` (in this process; embedded mode) or ``redis`` (shared by every process)."""
    redis_url: str | None = None
    """``redis://host:6379/0``, ``rediss://`` (TLS) or ``unix:///path``; required for redis."""
    password_env: str | None = None
    """Name of an environment variable holding the Redis password, read at start."""
    password_file: str | None = None
    """Path of a file holding the Redis password (a mounted Secret); not with password_env."""
    threshold_bytes: int = 1024 * 1024
    """Values bigger than this go to the store and travel as references."""
    ttl_s: float = 300
    """Lifetime of every stored value: the bound on what a lost request leaves behind."""
    max_value_bytes: int = 512 * 1024 * 1024
    """Largest value accepted (Redis' own default limit, proto-max-bulk-len)."""
    timeout_ms: float = 2000
    """Longest one store operation may take before it fails naming the store."""


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """The whole config.yml."""

    source: str
    """Where the config came from (file name), for messages."""
    rpc_port: int | None = None
    http_port: int | None = None
    worker_num: int = 1
    build_dag_each_worker: bool = False
    name: str | None = None
    """Service name in ``/{name}/{method}``; defaults to PipelineServer(name=...)."""
    methods: tuple[str, ...] = ("prediction",)
    """Accepted ``{method}`` values (seed §4.4). YAML: ``method`` (a string or a list)."""
    max_request_bytes: int = 64 * 1024 * 1024
    """Largest request body or gRPC message accepted."""
    max_in_flight: int = 1024
    """Most requests inside one DAG at once when neither channel_size nor worker_num bounds it."""
    log_dir: str = "PipelineServingLogs"
    log: logs.LogConfig = dataclasses.field(default_factory=logs.LogConfig)
    """Level of pipeline.log and rotation of each log file. YAML: ``log``."""
    metrics: bool = False
    """Count requests, op stages, batches and queues: Prometheus ``/metrics``, ``/status.json``
    and the status page at ``/`` on the HTTP port. Off: the engine does no work for them."""
    host: str = "0.0.0.0"
    """Address both ports listen on."""
    dag: DagConfig = dataclasses.field(default_factory=DagConfig)
    payload: PayloadConfig = dataclasses.field(default_factory=PayloadConfig)
    ops: dict[str, OpConfig] = dataclasses.field(default_factory=dict)


# --- Loading ---------------------------------------------------------------------------

_NAME_PATTERN = r"[A-Za-z0-9_.-]+"
_NAME = parse.matching(_NAME_PATTERN, "letters, digits, '_', '.', '-'")
_PORT = parse.integer(0, 65535)
_STRINGS = parse.list_of(parse.string, "a list of strings")

_DEVICE_NAMES = {
    DeviceType.CPU: "cpu",
    DeviceType.GPU: "gpu",
    DeviceType.TENSORRT: "tensorrt",
    DeviceType.ARM_CPU: "arm",
    DeviceType.XPU: "xpu",
}
_DEVICE_BY_NAME = {
    **{name: device for device, name in _DEVICE_NAMES.items()},
    "trt": DeviceType.TENSORRT,
    "arm_cpu": DeviceType.ARM_CPU,
}
_PRECISION = parse.choice(
    {
        **{p: p for p in ("fp32", "fp16", "int8", "bf16")},
        **{"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"},
    },
    "fp32, fp16, int8, bf16",
)
_CLIENT_TYPES = ("brpc", "grpc", "local_predictor")
_CLIENT_TYPE = parse.choice({t: t for t in _CLIENT_TYPES}, ", ".join(_CLIENT_TYPES))
#: Values of ``local_service_conf.runtime``: which library loads the op's model.
RUNTIMES: tuple[str, ...] = ("paddle", "onnx")
_RUNTIME = parse.choice({r: r for r in RUNTIMES}, ", ".join(RUNTIMES))
_FLAGS = ("use_mkldnn", "ir_optim", "mem_optim", "use_trt", "use_lite", "use_xpu", "use_calib")


def _device_type(value: object, where: parse.Where) -> DeviceType:
    if isinstance(value, int) and not isinstance(value, bool) and value in tuple(DeviceType):
        return DeviceType(value)
    if isinstance(value, str) and value.lower() in _DEVICE_BY_NAME:
        return _DEVICE_BY_NAME[value.lower()]
    raise where.error("must be 0..4 or one of cpu, gpu, tensorrt, arm, xpu", value)


def _tracer(value: object, where: parse.Where) -> float | None:
    # Paddle's own default is `interval_s: -1` (tracer off), so a negative reads as "off".
    table = {"interval_s": parse.Field("interval_s", _tracer_interval)}
    interval: float | None = parse.fields(value, where, table).get("interval_s")
    return interval if interval is not None and interval > 0 else None


def _tracer_interval(value: object, where: parse.Where) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return -1.0
    result: float = parse.positive("seconds")(value, where)
    return result


#: Keys that may sit either flat on the op or inside its local_service_conf (seed §4.6-4.8).
_SHARED_KEYS: dict[str, parse.Field] = {
    "devices": parse.Field("devices", parse.card_ids),
    "device_type": parse.Field("device_type", _device_type),
    "precision": parse.Field("precision", _PRECISION),
    "fetch_list": parse.Field("fetch_list", _STRINGS),
    "client_type": parse.Field("client_type", _CLIENT_TYPE),
}

#: Known runtime options, checked; any other local_service_conf key passes through as is.
_LOCAL_SERVICE_KEYS: dict[str, parse.Field] = {
    **_SHARED_KEYS,
    "runtime": parse.Field("runtime", _RUNTIME),
    "model_config": parse.Field("model_config", parse.string),
    "thread_num": parse.Field("thread_num", parse.integer(1)),
    **{flag: parse.Field(flag, parse.boolean) for flag in _FLAGS},
}

_OP_KEYS: dict[str, parse.Field] = {
    **_SHARED_KEYS,
    "concurrency": parse.Field("concurrency", parse.integer(1)),
    "timeout": parse.Field("timeout_ms", parse.timeout_ms),
    "retry": parse.Field("retry", parse.integer(1)),
    "batch_size": parse.Field("batch_size", parse.integer(1)),
    "auto_batching_timeout": parse.Field("auto_batching_timeout_ms", parse.positive("ms")),
    "is_thread_op": parse.Field("is_thread_op", parse.boolean),
    "inline": parse.Field("inline", parse.boolean),
    "server_endpoints": parse.Field(
        "server_endpoints",
        parse.list_of(parse.endpoint, 'a list of "host:port" strings or gRPC targets', single=True),
    ),
    "class": parse.Field("op_class", parse.import_path),
    "client_config": parse.Field("client_config", parse.string),
    "local_service_conf": parse.Field(
        "local_service_conf",
        lambda value, where: parse.fields(value, where, _LOCAL_SERVICE_KEYS, open_ended=True),
    ),
}

_DAG_KEYS: dict[str, parse.Field] = {
    "is_thread_op": parse.Field("is_thread_op", parse.boolean),
    "retry": parse.Field("retry", parse.integer(1)),
    "use_profile": parse.Field("use_profile", parse.boolean),
    "channel_size": parse.Field("channel_size", parse.integer(0)),
    "tracer": parse.Field("tracer_interval_s", _tracer),
    "timeout": parse.Field("timeout_ms", parse.timeout_ms),
    "client_type": parse.Field("client_type", parse.string),
    # Found in Paddle configs (typo included); it has no meaning here.
    "channel_recv_frist_arrive": parse.Field(None, parse.boolean),
}


def _op(name: str, value: object, where: parse.Where) -> OpConfig:
    values = parse.fields(value, where, _OP_KEYS)
    local: dict[str, Any] = values.pop("local_service_conf", {})
    if "runtime" in local and "model_config" not in local:
        # Only required here; whether the file exists is checked when the runtime loads,
        # since this config is also rendered for other machines.
        what = f"required with runtime: {local['runtime']} (the model's path)"
        raise where.at("local_service_conf").at("model_config").error(what, None)
    origin = {key: where.at(key) for key in _SHARED_KEYS}
    for key in _SHARED_KEYS:
        if key not in local:
            continue
        in_local = where.at("local_service_conf").at(key)
        if key in values and values[key] != local[key]:
            raw = parse.mapping(value, where)
            raw_local = parse.mapping(raw["local_service_conf"], where)
            what = f"conflicts with {key}: {raw[key]!r} set on the op; set it in one place"
            raise in_local.error(what, raw_local[key])
        values[key], origin[key] = local.pop(key), in_local
    if values.get("batch_size", 1) > 1 and "auto_batching_timeout_ms" not in values:
        what = "required when batch_size > 1 (ms to wait for a full batch)"
        raise where.at("auto_batching_timeout").error(what, None)
    # An explicit `devices: ""` shows as '' in messages, an absent one as None.
    devices = values.pop("devices", None)
    device_type, precision = values.pop("device_type", None), values.pop("precision", "fp32")
    runtime = _runtime(device_type, devices, precision, origin)
    return OpConfig(name=name, runtime=dataclasses.replace(runtime, options=local), **values)


def _runtime(
    device_type: DeviceType | None,
    devices_set: tuple[int, ...] | None,
    precision: str,
    origin: Mapping[str, parse.Where],
) -> RuntimeConfig:
    """Resolve the hardware as the seeds do: device_type wins, else devices decide GPU or CPU."""
    devices = devices_set or ()
    if device_type is None:
        device_type = DeviceType.GPU if devices else DeviceType.CPU
    device_name = _DEVICE_NAMES[device_type]
    if device_type in (DeviceType.GPU, DeviceType.TENSORRT) and not devices:
        what = f'device_type {device_name} needs devices, e.g. "0"'
        raise origin["devices"].error(what, None if devices_set is None else "")
    if device_type in (DeviceType.CPU, DeviceType.ARM_CPU):
        devices = ()  # seed §4.7: device_type decides; card ids mean nothing to a CPU
    allowed = SUPPORTED_PRECISIONS[device_type]
    if precision not in allowed:
        what = f"device_type {device_name} supports {', '.join(allowed)}"
        raise origin["precision"].error(what, precision)
    return RuntimeConfig(device_type=device_type, devices=devices, precision=precision)


def _ops(value: object, where: parse.Where) -> dict[str, OpConfig]:
    ops = {}
    for name, section in parse.mapping(value, where).items():
        if not isinstance(name, str) or not name:
            raise where.at(str(name)).error("op names must be non-empty strings", name)
        ops[name] = _op(name, section, where.at(name))
    return ops


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_ENV_NAME = parse.matching(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name")
_STORES = parse.choice({"memory": "memory", "redis": "redis"}, "memory, redis")


def _redis_url(value: object, where: parse.Where) -> str:
    if isinstance(value, str) and value.startswith(_REDIS_SCHEMES):
        rest = value.partition("://")[2]
        if rest.strip("/") and not any(c.isspace() for c in value):
            return value
    # A URL with "@" may hold a password: never echo it.
    shown = "<redacted>" if isinstance(value, str) and "@" in value else value
    raise where.error("must be a redis://, rediss:// or unix:// URL", shown)


_PAYLOAD_KEYS: dict[str, parse.Field] = {
    "store": parse.Field("store", _STORES),
    "redis_url": parse.Field("redis_url", _redis_url),
    "password_env": parse.Field("password_env", _ENV_NAME),
    "password_file": parse.Field("password_file", parse.string),
    "threshold_bytes": parse.Field("threshold_bytes", parse.integer(1024)),
    "ttl_s": parse.Field("ttl_s", parse.positive("seconds")),
    "max_value_bytes": parse.Field("max_value_bytes", parse.integer(1024)),
    "timeout_ms": parse.Field("timeout_ms", parse.positive("ms")),
}


def _payload(value: object, where: parse.Where) -> PayloadConfig:
    values = parse.fields(value, where, _PAYLOAD_KEYS)
    payload = PayloadConfig(**values)
    if payload.store == "redis" and payload.redis_url is None:
        what = "required when store is redis (e.g. redis://redis:6379/0)"
        raise where.at("redis_url").error(what, None)
    if payload.password_env is not None and payload.password_file is not None:
        what = "cannot be set together with password_env; keep one"
        raise where.at("password_file").error(what, payload.password_file)
    has_own = payload.password_env is not None or payload.password_file is not None
    url_password = payload.redis_url and urllib.parse.urlsplit(payload.redis_url).password
    if has_own and url_password:
        # Never echo the URL here: it holds a password.
        what = "holds a password and password_env or password_file is set too; keep one"
        raise where.at("redis_url").error(what, "<redacted>")
    if payload.max_value_bytes < payload.threshold_bytes:
        what = f"must be >= threshold_bytes ({payload.threshold_bytes})"
        raise where.at("max_value_bytes").error(what, payload.max_value_bytes)
    return payload


_SERVER_KEYS: dict[str, parse.Field] = {
    "rpc_port": parse.Field("rpc_port", _PORT),
    "http_port": parse.Field("http_port", _PORT),
    "worker_num": parse.Field("worker_num", parse.integer(1)),
    "build_dag_each_worker": parse.Field("build_dag_each_worker", parse.boolean),
    "name": parse.Field("name", _NAME),
    "method": parse.Field(
        "methods",
        parse.list_of(_NAME, "a method name or a list of them", single=True, non_empty=True),
    ),
    "max_request_bytes": parse.Field("max_request_bytes", parse.integer(1024)),
    "max_in_flight": parse.Field("max_in_flight", parse.integer(1)),
    "log_dir": parse.Field("log_dir", parse.string),
    "log": parse.Field("log", logs.read_config),
    "metrics": parse.Field("metrics", parse.boolean),
    "host": parse.Field("host", parse.string),
    "dag": parse.Field("dag", lambda v, w: DagConfig(**parse.fields(v, w, _DAG_KEYS))),
    "payload": parse.Field("payload", _payload),
    "op": parse.Field("ops", _ops),
}


def _ports(values: dict[str, Any], where: parse.Where) -> None:
    """Apply the seeds' port rules: one port is required; rpc_port defaults to http_port + 1."""
    rpc_port, http_port = values.get("rpc_port"), values.get("http_port")
    if rpc_port is None and http_port is None:
        both = where.at("rpc_port, http_port")
        what = "cannot both be empty; set rpc_port, or http_port (rpc_port defaults to it + 1)"
        raise both.error(what, None)
    if rpc_port is None:
        # Port 0 asks the OS for a free port, so "0 + 1" would be a real, fixed port: keep 0.
        rpc_port = http_port + 1 if http_port else 0
        if rpc_port > 65535:
            what = f"defaults to http_port + 1 = {rpc_port}, above 65535; set rpc_port"
            raise where.at("rpc_port").error(what, None)
        values["rpc_port"] = rpc_port
    if rpc_port and rpc_port == http_port:
        raise where.at("http_port").error(f"must differ from rpc_port ({rpc_port})", http_port)


def _read_yaml(path: str | os.PathLike[str]) -> tuple[str, object]:
    filename = os.fspath(path)
    source = os.path.basename(filename)
    try:
        with open(filename, "rb") as file:
            return source, yaml.safe_load(file)
    except OSError as exc:
        what = f"cannot read the config file {filename!r}: {exc.strerror}"
        raise errors.ConfigError(f"{source}: {what}") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        place = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise errors.ConfigError(f"{source}: {place}invalid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"{source}: invalid YAML: {exc}") from exc


def load(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    name: str | None = None,
    op_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> ServerConfig:
    """Read and check a config.yml, once, at start-up.

    Args:
        source: Path of a YAML file, or the already-loaded mapping (named ``<dict>`` in
            messages).
        name: Default service name, from ``PipelineServer(name=...)``; a ``name:`` key in
            the config wins.
        op_overrides: Per op name, keys set over that op's section before it is checked
            (``local_service_conf`` merged key by key): what a command line sets.

    Returns:
        The whole config, with defaults filled in and ``rpc_port`` resolved.

    Raises:
        errors.ConfigError: On the first problem found, as
            ``config.yml: op.bow.batch_size: must be an integer >= 1, got 0``.
    """
    label, raw = ("<dict>", source) if isinstance(source, Mapping) else _read_yaml(source)
    if op_overrides:
        raw = _with_op_overrides(raw, op_overrides)
    where = parse.Where(label)
    values = parse.fields(raw, where, _SERVER_KEYS)
    _ports(values, where)
    if "name" not in values and name is not None:
        values["name"] = _NAME(name, where.at("name (from PipelineServer(name=...))"))
    return ServerConfig(source=label, **values)


def _with_op_overrides(raw: object, overrides: Mapping[str, Mapping[str, Any]]) -> object:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("op") or {}, Mapping):
        return raw  # not a config: parsing says so
    ops = dict(raw.get("op") or {})
    for op_name, keys in overrides.items():
        section = dict(ops.get(op_name) or {})
        for key, value in keys.items():
            if key == "local_service_conf" and isinstance(section.get(key), Mapping):
                section[key] = {**section[key], **value}
            else:
                section[key] = value
        ops[op_name] = section
    return {**raw, "op": ops}


def in_flight_limit(config: ServerConfig) -> int:
    """The most requests one DAG admits at once; later ones wait for room.

    The seeds bound a DAG's queues in two ways: ``dag.channel_size`` (when > 0) and, with
    ``build_dag_each_worker: False``, the gRPC thread pool of ``worker_num`` threads, which
    is the only thing that keeps channels from growing without end (seed §1.2.4). Our
    front doors are async, so that cap must be applied explicitly; ``max_in_flight``
    bounds memory when neither applies. With ``build_dag_each_worker: True`` each worker
    process owns its own DAG, so ``worker_num`` does not cap one DAG.

    Args:
        config: The loaded config.

    Returns:
        The smallest of the limits that apply, always >= 1.
    """
    limits = [config.max_in_flight]
    if config.dag.channel_size > 0:
        limits.append(config.dag.channel_size)
    if not config.build_dag_each_worker:
        limits.append(config.worker_num)
    return min(limits)


def effective_is_thread_op(config: ServerConfig, op_name: str) -> bool:
    """Whether op ``op_name`` runs in threads: its own ``is_thread_op``, else the DAG's.

    Args:
        config: The loaded config.
        op_name: An op's name; an op absent from ``op:`` follows the DAG.
    """
    op = config.ops.get(op_name)
    if op is not None and op.is_thread_op is not None:
        return op.is_thread_op
    return config.dag.is_thread_op
