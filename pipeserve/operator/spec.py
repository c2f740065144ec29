"""What a PipelineService spec must satisfy beyond its CRD schema.

The API server checks each field against the CRD's openAPIV3Schema; this module checks
what a schema cannot: the DAG (unknown inputs, cycles, duplicate names, ops that never
reach the response), rules between fields (a GPU op must be an op service, batchSize > 1
needs autoBatchingTimeoutMs, precision fits deviceType) and names that must fit
Kubernetes' limits. It also repeats the few schema checks whose failure would make
rendering meaningless (op names, ``module:Class``), because a spec read from a file by
``pipeserve run`` never went through the API server.

The first problem found raises :class:`InvalidSpecError`, whose message names the op and
the field: ``op 'cnn': spec.ops[1].inputs: unknown input 'bo' (ops: bow, cnn, combine)``.
The small readers at the end (:func:`gpu_count`, :func:`response_inputs`, ...) are the
one place rendering learns the resolved meaning of a field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pipeserve.pipeline import config as config_mod

GPU_RESOURCE = "nvidia.com/gpu"
#: Op names the pipeline's own children use (<pipeline>-gateway, <pipeline>-redis).
RESERVED_OP_NAMES = ("gateway", "redis")
DEFAULT_HTTP_PORT = 8080
DEFAULT_GRPC_PORT = 9090
DEFAULT_OP_PORT = 9000
DEFAULT_GRACE_S = 20.0
DEFAULT_METRICS_PORT = 9100

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_IDENTIFIER_PATH = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_CLASS = re.compile(rf"{_IDENTIFIER_PATH}:{_IDENTIFIER_PATH}")
_GPU_DEVICES = ("gpu", "tensorrt")
_DEVICE_TYPES = {
    "cpu": config_mod.DeviceType.CPU,
    "gpu": config_mod.DeviceType.GPU,
    "tensorrt": config_mod.DeviceType.TENSORRT,
    "arm": config_mod.DeviceType.ARM_CPU,
    "xpu": config_mod.DeviceType.XPU,
}


class InvalidSpecError(ValueError):
    """A PipelineService spec that cannot be rendered.

    Attributes:
        field: Where the problem is, e.g. ``spec.ops[1].inputs``.
        op: The op concerned, or None for a problem outside the ops.
    """

    def __init__(self, field: str, problem: str, op: str | None = None) -> None:
        self.field = field
        self.op = op
        self.problem = problem
        prefix = f"op '{op}': " if op is not None else ""
        super().__init__(f"{prefix}{field}: {problem}")


def validate(spec: Mapping[str, Any]) -> None:
    """Check a PipelineService spec; raise on the first problem.

    Args:
        spec: The ``spec`` of a PipelineService.

    Raises:
        InvalidSpecError: Naming the op (when there is one) and the field.
    """
    if not isinstance(spec, Mapping):
        raise InvalidSpecError("spec", "must be a mapping")
    image = spec.get("image")
    if not isinstance(image, str) or not image:
        raise InvalidSpecError("spec.image", "required: the image holding pipeserve and the op code")
    ops = _ops(spec)
    names = [str(op["name"]) for op in ops]
    for index, op in enumerate(ops):
        _check_op(index, op, names)
    _check_acyclic(ops)
    _check_response(spec, ops)
    _check_gateway(spec)
    _check_payload_store(spec.get("payloadStore") or {})


def validate_names(parent_name: object, spec: Mapping[str, Any]) -> None:
    """Check that every child's name fits Kubernetes' limits (Service names: DNS-1035, 63).

    Raises:
        InvalidSpecError: ``metadata.name`` when the pipeline's own name is the problem,
            else the op's name field.
    """
    if not isinstance(parent_name, str) or not _DNS1035_LABEL.fullmatch(parent_name):
        what = "must start with a letter and hold only a-z, 0-9 and '-' (it names Services)"
        raise InvalidSpecError("metadata.name", f"{what}, got {parent_name!r}")
    longest = max(["gateway", "redis", *(str(op.get("name")) for op in _ops(spec))], key=len)
    if len(f"{parent_name}-{longest}") > 63:
        what = f"with the op name '{longest}' it makes names over 63 characters; shorten one of them"
        raise InvalidSpecError("metadata.name", what)


# --- Readers used by rendering -----------------------------------------------------------


def gpu_count(op: Mapping[str, Any]) -> int:
    """The op's ``nvidia.com/gpu`` count, from its limits or else its requests (0 without)."""
    resources = op.get("resources") or {}
    for section in ("limits", "requests"):
        value = (resources.get(section) or {}).get(GPU_RESOURCE)
        if value is not None:
            return int(value)
    return 0


def device_type(op: Mapping[str, Any]) -> str:
    """The op's device type: as set, else gpu when it has a GPU resource, else cpu."""
    explicit = op.get("deviceType")
    if isinstance(explicit, str):
        return explicit
    return "gpu" if gpu_count(op) > 0 else "cpu"


def is_remote(op: Mapping[str, Any]) -> bool:
    """Whether the op runs in its own op service Deployment."""
    return bool(op.get("placement", "gateway") == "service")


def response_inputs(spec: Mapping[str, Any]) -> list[str]:
    """The ops the response takes: as set, else the ops no other op takes as input."""
    response = spec.get("response") or {}
    if response.get("inputs"):
        return [str(name) for name in response["inputs"]]
    consumed = {str(i) for op in _ops(spec) for i in op.get("inputs") or ()}
    return [str(op["name"]) for op in _ops(spec) if str(op["name"]) not in consumed]


def op_port(op: Mapping[str, Any]) -> int:
    """The op service's gRPC port."""
    return int(op.get("port") or DEFAULT_OP_PORT)


def grace_s(op: Mapping[str, Any]) -> float:
    """Seconds calls in flight may take to finish when the op service stops."""
    return float(op.get("graceSeconds") or DEFAULT_GRACE_S)


def ports(spec: Mapping[str, Any]) -> tuple[int, int]:
    """The gateway's (HTTP, gRPC) ports."""
    gateway = spec.get("gateway") or {}
    return int(gateway.get("httpPort") or DEFAULT_HTTP_PORT), int(gateway.get("grpcPort") or DEFAULT_GRPC_PORT)


def metrics_enabled(spec: Mapping[str, Any]) -> bool:
    """Whether the gateway and op services serve Prometheus metrics (default on)."""
    return bool((spec.get("observability") or {}).get("metrics", True))


def metrics_port(spec: Mapping[str, Any]) -> int:
    """The op services' metrics port."""
    return int((spec.get("observability") or {}).get("metricsPort") or DEFAULT_METRICS_PORT)


def payload_store(spec: Mapping[str, Any]) -> str:
    """none, external or managed."""
    return str((spec.get("payloadStore") or {}).get("store") or "none")


# --- Checks ------------------------------------------------------------------------------


def _ops(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    ops = spec.get("ops")
    if not isinstance(ops, Sequence) or isinstance(ops, str) or not ops:
        raise InvalidSpecError("spec.ops", "required: a list of at least one op")
    for index, op in enumerate(ops):
        if not isinstance(op, Mapping):
            raise InvalidSpecError(f"spec.ops[{index}]", "must be a mapping with name and class")
    return list(ops)


def _check_op(index: int, op: Mapping[str, Any], names: list[str]) -> None:
    at = f"spec.ops[{index}]"
    name = op.get("name")
    if not isinstance(name, str) or not _DNS1123_LABEL.fullmatch(name) or len(name) > 40:
        what = "must be a DNS-1123 label of at most 40 characters (a-z, 0-9, '-')"
        raise InvalidSpecError(f"{at}.name", f"{what}, got {name!r}", op=str(name))
    if name in RESERVED_OP_NAMES:
        what = f"'{name}' is reserved (the pipeline's own {name} uses it); rename the op"
        raise InvalidSpecError(f"{at}.name", what, op=name)
    first = names.index(name)
    if first != index:
        raise InvalidSpecError(f"{at}.name", f"duplicate op name (also spec.ops[{first}])", op=name)
    op_class = op.get("class")
    if not isinstance(op_class, str) or not _CLASS.fullmatch(op_class):
        what = f'must be "module:Class", e.g. "ops:BowOp", got {op_class!r}'
        raise InvalidSpecError(f"{at}.class", what, op=name)
    inputs = op.get("inputs") or []
    if not isinstance(inputs, Sequence) or isinstance(inputs, str):
        raise InvalidSpecError(f"{at}.inputs", "must be a list of op names", op=name)
    for position, source in enumerate(inputs):
        if source == name:
            raise InvalidSpecError(f"{at}.inputs[{position}]", "an op cannot take its own output", op=name)
        if source not in names:
            what = f"unknown input {source!r} (ops: {', '.join(names)})"
            raise InvalidSpecError(f"{at}.inputs", what, op=name)
    if len(set(inputs)) != len(inputs):
        raise InvalidSpecError(f"{at}.inputs", "lists an op twice", op=name)
    _check_placement(at, name, op)
    _check_runtime(at, name, op)


def _check_placement(at: str, name: str, op: Mapping[str, Any]) -> None:
    placement = op.get("placement", "gateway")
    if placement not in ("gateway", "service"):
        raise InvalidSpecError(f"{at}.placement", f"must be gateway or service, got {placement!r}", op=name)
    gpus = _gpu_resource(at, name, op)
    device = device_type(op)
    if placement == "gateway":
        if gpus or device in _GPU_DEVICES:
            what = "a GPU op must run as an op service: set placement: service"
            raise InvalidSpecError(f"{at}.placement", what, op=name)
        for key in ("replicas", "port", "image", "resources", "nodeSelector", "tolerations", "autoscaling",
                    "podDisruptionBudget", "env", "graceSeconds"):
            if op.get(key) is not None:
                what = f"{key} applies to op services only; set placement: service or use spec.gateway"
                raise InvalidSpecError(f"{at}.{key}", what, op=name)
    else:
        if op.get("inline"):
            raise InvalidSpecError(f"{at}.inline", "only ops with placement gateway run inline", op=name)
        if device in _GPU_DEVICES and not gpus:
            what = f"deviceType {device} needs a GPU: set resources.limits.{GPU_RESOURCE}"
            raise InvalidSpecError(f"{at}.resources", what, op=name)
        _check_autoscaling(f"{at}.autoscaling", op.get("autoscaling"), name)
        _check_disruption_budget(f"{at}.podDisruptionBudget", op.get("podDisruptionBudget"), name)


def _gpu_resource(at: str, name: str, op: Mapping[str, Any]) -> int:
    resources = op.get("resources") or {}
    found = {}
    for section in ("limits", "requests"):
        value = (resources.get(section) or {}).get(GPU_RESOURCE)
        if value is None:
            continue
        text = str(value)
        if not text.isdigit():
            what = f"must be a whole number of GPUs, got {value!r}"
            raise InvalidSpecError(f"{at}.resources.{section}.{GPU_RESOURCE}", what, op=name)
        found[section] = int(text)
    if len(set(found.values())) > 1:
        what = f"requests ({found['requests']}) and limits ({found['limits']}) of {GPU_RESOURCE} must be equal"
        raise InvalidSpecError(f"{at}.resources", what, op=name)
    return next(iter(found.values()), 0)


def _check_runtime(at: str, name: str, op: Mapping[str, Any]) -> None:
    batch_size = op.get("batchSize", 1)
    if isinstance(batch_size, int) and batch_size > 1 and op.get("autoBatchingTimeoutMs") is None:
        what = "required when batchSize > 1 (ms to wait for a full batch)"
        raise InvalidSpecError(f"{at}.autoBatchingTimeoutMs", what, op=name)
    if op.get("runtime") is not None and not (op.get("model") or {}).get("path"):
        what = f"required with runtime {op['runtime']} (the model's path in the container)"
        raise InvalidSpecError(f"{at}.model.path", what, op=name)
    device = device_type(op)
    if device not in _DEVICE_TYPES:
        what = f"must be one of {', '.join(_DEVICE_TYPES)}, got {device!r}"
        raise InvalidSpecError(f"{at}.deviceType", what, op=name)
    precision = op.get("precision")
    allowed = config_mod.SUPPORTED_PRECISIONS[_DEVICE_TYPES[device]]
    if precision is not None and precision not in allowed:
        what = f"deviceType {device} supports {', '.join(allowed)}, got {precision!r}"
        raise InvalidSpecError(f"{at}.precision", what, op=name)


def _check_acyclic(ops: list[Mapping[str, Any]]) -> None:
    inputs = {str(op["name"]): [str(i) for i in op.get("inputs") or ()] for op in ops}
    index = {str(op["name"]): i for i, op in enumerate(ops)}
    state: dict[str, str] = {}  # "visiting" while on the current path, "done" after

    def visit(name: str, path: list[str]) -> None:
        state[name] = "visiting"
        for source in inputs[name]:
            if state.get(source) == "visiting":
                cycle = [*path[path.index(source):], source] if source in path else [name, source]
                what = f"cycle {' -> '.join(reversed(cycle))}"
                raise InvalidSpecError(f"spec.ops[{index[source]}].inputs", what, op=source)
            if source not in state:
                visit(source, [*path, source])
        state[name] = "done"

    for name in inputs:
        if name not in state:
            visit(name, [name])


def _check_response(spec: Mapping[str, Any], ops: list[Mapping[str, Any]]) -> None:
    response = spec.get("response") or {}
    response_class = response.get("class")
    if response_class is not None and not (isinstance(response_class, str) and _CLASS.fullmatch(response_class)):
        raise InvalidSpecError("spec.response.class", f'must be "module:Class", got {response_class!r}')
    request_class = (spec.get("request") or {}).get("class")
    if request_class is not None and not (isinstance(request_class, str) and _CLASS.fullmatch(request_class)):
        raise InvalidSpecError("spec.request.class", f'must be "module:Class", got {request_class!r}')
    names = [str(op["name"]) for op in ops]
    for name in response.get("inputs") or ():
        if name not in names:
            raise InvalidSpecError("spec.response.inputs", f"unknown op {name!r} (ops: {', '.join(names)})")
    sinks = response_inputs(spec)
    if len(sinks) > 1 and response_class is None:
        what = (f"the ops {', '.join(sinks)} all end the DAG but the default ResponseOp takes one input; "
                "add an op that merges them, or set response.class")
        raise InvalidSpecError("spec.response.inputs", what)
    inputs = {str(op["name"]): [str(i) for i in op.get("inputs") or ()] for op in ops}
    reaching: set[str] = set()
    pending = list(sinks)
    while pending:
        name = pending.pop()
        if name not in reaching:
            reaching.add(name)
            pending.extend(inputs[name])
    for index, name in enumerate(names):
        if name not in reaching:
            what = "its output never reaches the response: make a later op take it as input, or remove it"
            raise InvalidSpecError(f"spec.ops[{index}]", what, op=name)


def _check_gateway(spec: Mapping[str, Any]) -> None:
    gateway = spec.get("gateway") or {}
    http_port = gateway.get("httpPort") or DEFAULT_HTTP_PORT
    grpc_port = gateway.get("grpcPort") or DEFAULT_GRPC_PORT
    if http_port == grpc_port:
        raise InvalidSpecError("spec.gateway.grpcPort", f"must differ from httpPort ({http_port})")
    metrics = metrics_port(spec)
    if metrics_enabled(spec):
        for op in _ops(spec):
            if is_remote(op) and op_port(op) == metrics:
                what = f"must differ from observability.metricsPort ({metrics})"
                raise InvalidSpecError(f"spec.ops[{_ops(spec).index(op)}].port", what, op=str(op["name"]))
    service = gateway.get("service") or {}
    if service.get("type", "ClusterIP") == "ClusterIP":
        for key in ("httpNodePort", "grpcNodePort"):
            if service.get(key) is not None:
                raise InvalidSpecError(f"spec.gateway.service.{key}", "needs type NodePort or LoadBalancer")
    ingress = gateway.get("ingress")
    if ingress is not None and not (ingress.get("http") or ingress.get("grpc")):
        raise InvalidSpecError("spec.gateway.ingress", "set http, grpc or both (each with its host)")
    _check_autoscaling("spec.gateway.autoscaling", gateway.get("autoscaling"), None)
    _check_disruption_budget("spec.gateway.podDisruptionBudget", gateway.get("podDisruptionBudget"), None)


def _check_autoscaling(at: str, autoscaling: Mapping[str, Any] | None, op: str | None) -> None:
    if autoscaling is None:
        return
    low, high = autoscaling.get("minReplicas", 1), autoscaling.get("maxReplicas")
    if not isinstance(high, int):
        raise InvalidSpecError(f"{at}.maxReplicas", "required: the most replicas", op=op)
    if low > high:
        raise InvalidSpecError(f"{at}.minReplicas", f"must be <= maxReplicas ({high}), got {low}", op=op)
    targets = ("targetCPUUtilizationPercentage", "targetMemoryUtilizationPercentage", "metrics")
    if not any(autoscaling.get(key) for key in targets):
        raise InvalidSpecError(at, f"set at least one of {', '.join(targets)}", op=op)


def _check_disruption_budget(at: str, budget: Mapping[str, Any] | None, op: str | None) -> None:
    if budget is None:
        return
    given = [key for key in ("minAvailable", "maxUnavailable") if budget.get(key) is not None]
    if len(given) != 1:
        raise InvalidSpecError(at, "set exactly one of minAvailable or maxUnavailable", op=op)


def _check_payload_store(store: Mapping[str, Any]) -> None:
    kind = store.get("store", "none")
    at = "spec.payloadStore"
    if kind not in ("none", "external", "managed"):
        raise InvalidSpecError(f"{at}.store", f"must be none, external or managed, got {kind!r}")
    url = store.get("url")
    if kind == "external" and not url:
        raise InvalidSpecError(f"{at}.url", "required when store is external (e.g. redis://redis:6379/0)")
    if kind != "external":
        for key in ("url", "passwordSecretRef"):
            if store.get(key) is not None:
                raise InvalidSpecError(f"{at}.{key}", "only with store: external")
    if kind != "managed" and store.get("redis") is not None:
        raise InvalidSpecError(f"{at}.redis", "only with store: managed")
    if url and "@" in str(url).partition("://")[2].partition("/")[0]:
        # Never echo the URL: it holds a password.
        raise InvalidSpecError(f"{at}.url", "must not hold a password; put it in a Secret (passwordSecretRef)")
