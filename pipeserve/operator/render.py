"""A PipelineService in, the Kubernetes objects that run it out: pure functions.

No kopf and no Kubernetes client here (an import-linter contract keeps it so): the
handlers apply what :func:`render_children` returns, ``pipeserve run`` starts the same
components as local processes, and tests check the objects without a cluster. The same
input always gives identical objects, so create-or-patch is idempotent.

What a PipelineService becomes:

- a ConfigMap with config.yml and graph.yml (:mod:`pipeserve.operator.pipeline_config`);
- the gateway: Deployment (rolled on any config change by its config-hash annotation) and
  Service with HTTP and gRPC ports; optional Ingresses or Gateway API routes, autoscaler
  and disruption budget;
- per op with ``placement: service``: a Deployment of ``pipeserve opservice`` (its hash
  annotation covers only its part of config.yml, so changing one op leaves the other op
  services running) and a headless Service, with optional autoscaler and disruption budget;
- with ``payloadStore.store: managed``: a Redis Deployment and Service.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pipeserve.operator import exposure, naming, pipeline_config, workloads
from pipeserve.operator import spec as spec_mod

gateway_name = naming.gateway_name
op_resource_name = naming.op_resource_name
redis_name = naming.redis_name
config_map_name = naming.config_map_name


def render_children(parent: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every child object of ``parent``, in a fixed order.

    Args:
        parent: The whole PipelineService (apiVersion, kind, metadata with name, namespace,
            uid, and spec).

    Raises:
        spec.InvalidSpecError: The spec cannot be rendered; nothing is returned then.
    """
    _validate(parent)
    name = parent["metadata"]["name"]
    spec = parent["spec"]
    gateway = spec.get("gateway") or {}
    config = workloads.config_map(parent)
    config_hash = workloads.config_hash(config)
    children = [
        config,
        workloads.gateway_deployment(parent, config_hash),
        workloads.gateway_service(parent),
        *exposure.ingresses(parent),
        *exposure.routes(parent),
        *exposure.autoscaler(parent, gateway_name(name), "gateway", None, gateway),
        *exposure.disruption_budget(parent, gateway_name(name), "gateway", None, gateway),
    ]
    for op in spec["ops"]:
        if not spec_mod.is_remote(op):
            continue
        op_name, target = str(op["name"]), op_resource_name(name, str(op["name"]))
        children += [
            workloads.op_deployment(parent, op, workloads.op_config_hash(parent, op_name)),
            workloads.op_service(parent, op),
            *exposure.autoscaler(parent, target, "op", op_name, op),
            *exposure.disruption_budget(parent, target, "op", op_name, op),
        ]
    if spec_mod.payload_store(spec) == "managed":
        children += [workloads.redis_deployment(parent), workloads.redis_service(parent)]
    # Children share no nested value with the parent or each other, so callers may edit them.
    return copy.deepcopy(children)


def render_pipeline_config(parent: Mapping[str, Any]) -> dict[str, Any]:
    """The config.yml the gateway and op services run (``pipeserve.pipeline.config.load`` reads it).

    Raises:
        spec.InvalidSpecError: The spec cannot be rendered.
    """
    _validate(parent)
    return pipeline_config.render_pipeline_config(parent)


def render_graph(parent: Mapping[str, Any]) -> dict[str, Any]:
    """The graph.yml the gateway builds its DAG from (request op, ops with inputs, response op).

    Raises:
        spec.InvalidSpecError: The spec cannot be rendered.
    """
    _validate(parent)
    return pipeline_config.render_graph(parent)


def endpoint(parent: Mapping[str, Any]) -> str:
    """What ``status.endpoint`` shows: the gateway Service's DNS name and HTTP port."""
    metadata = parent["metadata"]
    host = naming.service_host(gateway_name(metadata["name"]), metadata.get("namespace") or "default")
    http_port, _ = spec_mod.ports(parent.get("spec") or {})
    return f"{host}:{http_port}"


def _validate(parent: Mapping[str, Any]) -> None:
    metadata = parent.get("metadata") or {}
    spec = parent.get("spec")
    if not isinstance(spec, Mapping):
        raise spec_mod.InvalidSpecError("spec", "required")
    spec_mod.validate(spec)
    spec_mod.validate_names(metadata.get("name"), spec)
