"""The pods of a PipelineService: gateway, op services and the managed Redis.

Every pod runs locked down (non-root, read-only root filesystem with an emptyDir at /tmp
for logs and scratch files, no privilege escalation, no capabilities, seccomp
RuntimeDefault, no service account token: the pipeline never talks to the API server).
The gateway and the op services mount the same ConfigMap at /etc/pipeserve, so every
process reads one config.yml. Op services answer ``grpc.health.v1`` only once their
models are warm, so Kubernetes' native gRPC probes gate readiness; a startup probe gives
slow model loads room before liveness applies.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import yaml

from pipeserve.operator import naming, pipeline_config
from pipeserve.operator import spec as spec_mod

DEFAULT_RUN_AS_USER = 10001
DEFAULT_REDIS_IMAGE = "valkey/valkey:8.1"
DEFAULT_MODEL_MOUNT = "/models"
GATEWAY_GRACE_S = 30
GATEWAY_PRE_STOP_S = 5
#: Seconds the kubelet waits beyond the op service's own drain before killing it.
TERMINATION_MARGIN_S = 10
_GPU_TOLERATION = {"key": spec_mod.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def config_map(parent: Mapping[str, Any]) -> dict[str, Any]:
    """The ConfigMap with config.yml and graph.yml."""
    name = parent["metadata"]["name"]
    data = {
        naming.CONFIG_FILE: _yaml(pipeline_config.render_pipeline_config(parent)),
        naming.GRAPH_FILE: _yaml(pipeline_config.render_graph(parent)),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": naming.metadata(parent, naming.config_map_name(name), "gateway"),
        "data": data,
    }


def config_hash(config_map_object: Mapping[str, Any]) -> str:
    """sha256 of the ConfigMap's data: the gateway's pod annotation, so any change rolls it."""
    return digest(config_map_object["data"])


def op_config_hash(parent: Mapping[str, Any], op_name: str) -> str:
    """sha256 of the config an op service uses, so only changes that concern it roll its pods."""
    config = pipeline_config.render_pipeline_config(parent)
    return digest(pipeline_config.op_service_view(config, op_name))


def digest(data: Mapping[str, Any]) -> str:
    """sha256 of ``data`` in a canonical JSON form."""
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def gateway_deployment(parent: Mapping[str, Any], hash_value: str) -> dict[str, Any]:
    """The gateway: runs the DAG and the ops placed in it, serves HTTP and gRPC."""
    spec, name = parent["spec"], parent["metadata"]["name"]
    gateway = spec.get("gateway") or {}
    http_port, grpc_port = spec_mod.ports(spec)
    config_path = f"{naming.CONFIG_DIR}/{naming.CONFIG_FILE}"
    graph_path = f"{naming.CONFIG_DIR}/{naming.GRAPH_FILE}"
    container = _container(spec, "gateway", gateway.get("image"), gateway.get("env"), gateway.get("resources"))
    container["args"] = ["gateway", "--config", config_path, "--graph", graph_path]
    container["ports"] = [
        {"name": "http", "containerPort": http_port, "protocol": "TCP"},
        {"name": "grpc", "containerPort": grpc_port, "protocol": "TCP"},
    ]
    container["startupProbe"] = _http_probe("/healthz", period_s=2, failures=150)
    container["livenessProbe"] = _http_probe("/healthz", period_s=10, failures=3)
    container["readinessProbe"] = _http_probe("/readyz", period_s=5, failures=2)
    # Endpoints drop a terminating pod a moment after SIGTERM would stop it taking requests;
    # waiting first lets clients and load balancers move on (the pod drains 5 s after).
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": GATEWAY_PRE_STOP_S}}}
    annotations = {naming.CONFIG_HASH_ANNOTATION: hash_value}
    if spec_mod.metrics_enabled(spec):
        annotations.update(_scrape_annotations(http_port))
    pod = _pod_spec(name, spec, container, gateway.get("nodeSelector"), gateway.get("tolerations"), GATEWAY_GRACE_S)
    return _deployment(parent, naming.gateway_name(name), "gateway", None, gateway, pod, annotations)


def gateway_service(parent: Mapping[str, Any]) -> dict[str, Any]:
    """The gateway's Service: HTTP and gRPC, of the type the spec asks for."""
    spec, name = parent["spec"], parent["metadata"]["name"]
    service = (spec.get("gateway") or {}).get("service") or {}
    http_port, grpc_port = spec_mod.ports(spec)
    ports = [
        {"name": "http", "port": http_port, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"},
        {"name": "grpc", "port": grpc_port, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
    ]
    for port, key in zip(ports, ("httpNodePort", "grpcNodePort"), strict=True):
        if service.get(key) is not None:
            port["nodePort"] = service[key]
    metadata = naming.metadata(parent, naming.gateway_name(name), "gateway")
    if service.get("annotations"):
        metadata["annotations"] = dict(service["annotations"])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": service.get("type", "ClusterIP"),
            "selector": naming.selector_labels(name, "gateway"),
            "ports": ports,
        },
    }


def op_deployment(parent: Mapping[str, Any], op: Mapping[str, Any], hash_value: str) -> dict[str, Any]:
    """An op service: ``pipeserve opservice`` serving one op, GPUs and all."""
    spec, name, op_name = parent["spec"], parent["metadata"]["name"], str(op["name"])
    port, grace = spec_mod.op_port(op), spec_mod.grace_s(op)
    container = _container(spec, "opservice", op.get("image"), op.get("env"), _op_resources(op))
    container["args"] = [
        "opservice", "--config", f"{naming.CONFIG_DIR}/{naming.CONFIG_FILE}", "--op", op_name,
        "--port", str(port), "--grace", _number(grace), *_runtime_args(op),
    ]  # fmt: skip
    container["ports"] = [{"name": "grpc", "containerPort": port, "protocol": "TCP"}]
    # The pods read config.yml at start: a change to their part of it must restart them.
    annotations = {naming.CONFIG_HASH_ANNOTATION: hash_value}
    if spec_mod.metrics_enabled(spec):
        metrics_port = spec_mod.metrics_port(spec)
        container["args"] += ["--metrics-port", str(metrics_port)]
        container["ports"].append({"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"})
        annotations.update(_scrape_annotations(metrics_port))
    container["startupProbe"] = _grpc_probe(port, period_s=5, failures=120)
    container["livenessProbe"] = _grpc_probe(port, period_s=10, failures=3)
    container["readinessProbe"] = _grpc_probe(port, period_s=5, failures=2)
    tolerations = list(op.get("tolerations") or [])
    if spec_mod.gpu_count(op) and _GPU_TOLERATION not in tolerations:
        tolerations.append(dict(_GPU_TOLERATION))
    grace_period = math.ceil(grace) + TERMINATION_MARGIN_S
    pod = _pod_spec(name, spec, container, op.get("nodeSelector"), tolerations, grace_period)
    model = op.get("model") or {}
    if model.get("claimName"):
        mount = model.get("mountPath") or DEFAULT_MODEL_MOUNT
        container["volumeMounts"].append({"name": "models", "mountPath": mount, "readOnly": True})
        pod["volumes"].append(
            {"name": "models", "persistentVolumeClaim": {"claimName": model["claimName"], "readOnly": True}}
        )
    return _deployment(parent, naming.op_resource_name(name, op_name), "op", op_name, op, pod, annotations)


def op_service(parent: Mapping[str, Any], op: Mapping[str, Any]) -> dict[str, Any]:
    """The op service's headless Service: DNS returns every ready pod for client-side balancing."""
    name, op_name = parent["metadata"]["name"], str(op["name"])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": naming.metadata(parent, naming.op_resource_name(name, op_name), "op", op_name),
        "spec": {
            "clusterIP": "None",
            "selector": naming.selector_labels(name, "op", op_name),
            "ports": [{"name": "grpc", "port": spec_mod.op_port(op), "targetPort": "grpc", "protocol": "TCP",
                       "appProtocol": "kubernetes.io/h2c"}],
        },
    }


def redis_deployment(parent: Mapping[str, Any]) -> dict[str, Any]:
    """The managed payload store: one Redis-compatible pod, nothing persisted (values live seconds)."""
    spec, name = parent["spec"], parent["metadata"]["name"]
    redis = (spec.get("payloadStore") or {}).get("redis") or {}
    port = pipeline_config.REDIS_PORT
    container: dict[str, Any] = {
        "name": "redis",
        "image": redis.get("image") or DEFAULT_REDIS_IMAGE,
        "args": ["--port", str(port), "--save", "", "--appendonly", "no", "--dir", "/tmp"],
        "ports": [{"name": "redis", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10, "failureThreshold": 3},
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if spec.get("imagePullPolicy"):
        container["imagePullPolicy"] = spec["imagePullPolicy"]
    if redis.get("resources"):
        container["resources"] = _resources(redis["resources"])
    pod = _pod_spec(name, spec, container, redis.get("nodeSelector"), redis.get("tolerations"), GATEWAY_GRACE_S)
    pod["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    return _deployment(parent, naming.redis_name(name), "redis", None, {"replicas": 1}, pod, {})


def redis_service(parent: Mapping[str, Any]) -> dict[str, Any]:
    """The managed Redis' Service."""
    name = parent["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": naming.metadata(parent, naming.redis_name(name), "redis"),
        "spec": {
            "selector": naming.selector_labels(name, "redis"),
            "ports": [{"name": "redis", "port": pipeline_config.REDIS_PORT, "targetPort": "redis",
                       "protocol": "TCP"}],
        },
    }


# --- Pieces ------------------------------------------------------------------------------


def _deployment(
    parent: Mapping[str, Any],
    name: str,
    component: str,
    op_name: str | None,
    settings: Mapping[str, Any],
    pod: dict[str, Any],
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    parent_name = parent["metadata"]["name"]
    template_metadata: dict[str, Any] = {"labels": naming.labels(parent_name, component, op_name)}
    if annotations:
        template_metadata["annotations"] = dict(annotations)
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": naming.selector_labels(parent_name, component, op_name)},
        "template": {"metadata": template_metadata, "spec": pod},
    }
    if not settings.get("autoscaling"):
        # With an autoscaler the replica count is its to set; rendering one would fight it.
        deployment_spec = {"replicas": settings.get("replicas", 1), **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": naming.metadata(parent, name, component, op_name),
        "spec": deployment_spec,
    }


def _container(
    spec: Mapping[str, Any],
    name: str,
    image: str | None,
    env: list[Mapping[str, Any]] | None,
    resources: Mapping[str, Any] | None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image or spec["image"], "command": ["pipeserve"]}
    if spec.get("imagePullPolicy"):
        container["imagePullPolicy"] = spec["imagePullPolicy"]
    if spec.get("workingDir"):
        container["workingDir"] = spec["workingDir"]
    container["env"] = [*_base_env(spec), *(dict(variable) for variable in env or ())]
    if resources:
        container["resources"] = _resources(resources)
    container["securityContext"] = _container_security()
    container["volumeMounts"] = [
        {"name": "config", "mountPath": naming.CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    return container


def _base_env(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},  # libraries that cache under ~ need a writable home
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    secret = (spec.get("payloadStore") or {}).get("passwordSecretRef")
    if secret:
        env.append({
            "name": pipeline_config.REDIS_PASSWORD_ENV,
            "valueFrom": {"secretKeyRef": {"name": secret["name"], "key": secret["key"]}},
        })
    return env


def _pod_spec(
    parent_name: str,
    spec: Mapping[str, Any],
    container: dict[str, Any],
    node_selector: Mapping[str, str] | None,
    tolerations: list[Mapping[str, Any]] | None,
    grace_period_s: int,
) -> dict[str, Any]:
    uid = spec.get("runAsUser", DEFAULT_RUN_AS_USER)
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": grace_period_s,
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": naming.config_map_name(parent_name)}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if spec.get("serviceAccountName"):
        pod["serviceAccountName"] = spec["serviceAccountName"]
    if spec.get("imagePullSecrets"):
        pod["imagePullSecrets"] = [{"name": secret["name"]} for secret in spec["imagePullSecrets"]]
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod["tolerations"] = [dict(toleration) for toleration in tolerations]
    return pod


def _scrape_annotations(port: int) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _op_resources(op: Mapping[str, Any]) -> dict[str, Any]:
    """The op's resources, with its GPU count in both requests and limits (Kubernetes wants them equal)."""
    resources = {key: dict(value) for key, value in (op.get("resources") or {}).items() if value}
    gpus = spec_mod.gpu_count(op)
    if gpus:
        for section in ("requests", "limits"):
            resources.setdefault(section, {})[spec_mod.GPU_RESOURCE] = gpus
    return resources


def _resources(resources: Mapping[str, Any]) -> dict[str, Any]:
    return {section: dict(values) for section, values in sorted(resources.items()) if values}


def _grpc_probe(port: int, *, period_s: int, failures: int) -> dict[str, Any]:
    return {"grpc": {"port": port}, "periodSeconds": period_s, "failureThreshold": failures, "timeoutSeconds": 2}


def _http_probe(path: str, *, period_s: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period_s, "failureThreshold": failures,
            "timeoutSeconds": 2}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _yaml(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False)


def _runtime_args(op: Mapping[str, Any]) -> list[str]:
    """How the op runs, on its command line too (config.yml has the same): what the pod shows."""
    args = []
    if op.get("concurrency") is not None:
        args += ["--concurrency", str(op["concurrency"])]
    args += ["--device-type", spec_mod.device_type(op)]
    if op.get("precision") is not None:
        args += ["--precision", str(op["precision"])]
    return args
