"""The files a PipelineService's gateway and op services read: config.yml and graph.yml.

``config.yml`` is the ordinary pipeline config (:func:`pipeserve.pipeline.config.load`
reads it): ports, workers, the DAG settings, the payload store and one ``op.<name>``
section per op. An op with ``placement: service`` gets ``server_endpoints`` pointing at its
headless Service through gRPC's ``dns:///`` resolver, so the gateway spreads calls over
every pod; that is also how the gateway knows the op is not its own to run. Op services
read the same file and ignore their own endpoints.

``graph.yml`` is the DAG's shape, which an embedded pipeline writes in Python
(``BowOp(name="bow", input_ops=[read_op])``): the request op's class, each op's class and
inputs, and the response op's class and inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeserve.operator import naming
from pipeserve.operator import spec as spec_mod

LOG_DIR = "/tmp/pipeserve/logs"
DEFAULT_WORKER_NUM = 64
DEFAULT_REQUEST_CLASS = "pipeserve:RequestOp"
DEFAULT_RESPONSE_CLASS = "pipeserve:ResponseOp"
REDIS_PORT = 6379
#: Environment variable that carries the external Redis' password from its Secret.
REDIS_PASSWORD_ENV = "PIPESERVE_REDIS_PASSWORD"


def render_pipeline_config(parent: Mapping[str, Any]) -> dict[str, Any]:
    """The config.yml content of the gateway and the op services (the spec is not checked)."""
    spec = parent["spec"]
    name = parent["metadata"]["name"]
    namespace = parent["metadata"].get("namespace") or "default"
    gateway = spec.get("gateway") or {}
    http_port, grpc_port = spec_mod.ports(spec)
    config: dict[str, Any] = {
        "name": spec.get("serviceName") or name,
        "host": "0.0.0.0",
        "http_port": http_port,
        "rpc_port": grpc_port,
        "worker_num": gateway.get("workerNum", DEFAULT_WORKER_NUM),
        "build_dag_each_worker": bool(gateway.get("buildDagEachWorker", False)),
        "log_dir": LOG_DIR,
        "metrics": spec_mod.metrics_enabled(spec),
    }
    if spec.get("methods"):
        config["method"] = list(spec["methods"])
    _copy(gateway, config, {"maxRequestBytes": "max_request_bytes", "maxInFlight": "max_in_flight"})
    config["dag"] = _dag(spec)
    payload = _payload(spec, name, namespace)
    if payload:
        config["payload"] = payload
    config["op"] = {str(op["name"]): _op(op, name, namespace) for op in spec["ops"]}
    return config


#: config.yml keys only the gateway reads; an op service's pods need not restart when they change.
GATEWAY_ONLY_KEYS = ("name", "method", "http_port", "rpc_port", "worker_num", "build_dag_each_worker", "max_in_flight")


def op_service_view(config: Mapping[str, Any], op_name: str) -> dict[str, Any]:
    """The part of config.yml an op service uses: everything but the gateway's own keys and
    the other ops' sections. Its hash rolls the op's pods; other ops' changes leave them be."""
    view = {key: value for key, value in config.items() if key not in (*GATEWAY_ONLY_KEYS, "op")}
    view["op"] = {op_name: config["op"][op_name]}
    return view


def render_graph(parent: Mapping[str, Any]) -> dict[str, Any]:
    """The graph.yml content: which class each op is and which ops feed it."""
    spec = parent["spec"]
    return {
        "request": {"class": (spec.get("request") or {}).get("class") or DEFAULT_REQUEST_CLASS},
        "ops": [
            {"name": str(op["name"]), "class": str(op["class"]), "inputs": [str(i) for i in op.get("inputs") or ()]}
            for op in spec["ops"]
        ],
        "response": {
            "class": (spec.get("response") or {}).get("class") or DEFAULT_RESPONSE_CLASS,
            "inputs": spec_mod.response_inputs(spec),
        },
    }


def op_endpoint(parent_name: str, namespace: str, op: Mapping[str, Any]) -> str:
    """The gRPC target the gateway calls an op service at (every pod, via DNS)."""
    host = naming.service_host(naming.op_resource_name(parent_name, str(op["name"])), namespace)
    return f"dns:///{host}:{spec_mod.op_port(op)}"


def _dag(spec: Mapping[str, Any]) -> dict[str, Any]:
    dag_spec = spec.get("dag") or {}
    observability = spec.get("observability") or {}
    dag: dict[str, Any] = {}
    _copy(dag_spec, dag, {"isThreadOp": "is_thread_op", "retry": "retry", "channelSize": "channel_size",
                          "timeoutMs": "timeout"})
    dag["use_profile"] = bool(observability.get("profile", False))
    tracer = observability.get("tracer")
    if tracer:
        dag["tracer"] = {"interval_s": tracer["intervalSeconds"]}
    return dag


def _payload(spec: Mapping[str, Any], name: str, namespace: str) -> dict[str, Any]:
    store = spec.get("payloadStore") or {}
    kind = spec_mod.payload_store(spec)
    if kind == "none":
        return {}
    payload: dict[str, Any] = {"store": "redis"}
    if kind == "managed":
        payload["redis_url"] = f"redis://{naming.service_host(naming.redis_name(name), namespace)}:{REDIS_PORT}/0"
    else:
        payload["redis_url"] = store["url"]
        if store.get("passwordSecretRef"):
            payload["password_env"] = REDIS_PASSWORD_ENV
    _copy(store, payload, {"thresholdBytes": "threshold_bytes", "ttlSeconds": "ttl_s",
                           "maxValueBytes": "max_value_bytes", "timeoutMs": "timeout_ms"})
    return payload


def _op(op: Mapping[str, Any], parent_name: str, namespace: str) -> dict[str, Any]:
    section: dict[str, Any] = {"class": op["class"]}
    _copy(op, section, {
        "concurrency": "concurrency",
        "isThreadOp": "is_thread_op",
        "batchSize": "batch_size",
        "autoBatchingTimeoutMs": "auto_batching_timeout",
        "timeoutMs": "timeout",
        "retry": "retry",
    })
    if op.get("inline"):
        section["inline"] = True
    if spec_mod.is_remote(op):
        section["server_endpoints"] = [op_endpoint(parent_name, namespace, op)]
    local = _local_service_conf(op)
    if local:
        section["local_service_conf"] = local
    return section


def _local_service_conf(op: Mapping[str, Any]) -> dict[str, Any]:
    """Runtime settings: device, its cards (the GPUs Kubernetes gave the pod), precision, model."""
    local: dict[str, Any] = dict(op.get("options") or {})
    device = spec_mod.device_type(op)
    if op.get("deviceType") is not None or device != "cpu":
        local["device_type"] = device  # the CRD's names are config.yml's names
    gpus = spec_mod.gpu_count(op)
    if gpus:
        # The device plugin exposes the pod's GPUs as cards 0..n-1 whatever their host ids.
        local["devices"] = ",".join(str(card) for card in range(gpus))
    if op.get("precision") is not None:
        local["precision"] = op["precision"]
    if op.get("runtime") is not None:
        local["runtime"] = op["runtime"]
    model = op.get("model") or {}
    if model.get("path"):
        local["model_config"] = model["path"]
    return local


def _copy(source: Mapping[str, Any], target: dict[str, Any], keys: Mapping[str, str]) -> None:
    """Copy the spec keys that are set onto their config.yml names."""
    for spec_key, config_key in keys.items():
        if source.get(spec_key) is not None:
            target[config_key] = source[spec_key]
