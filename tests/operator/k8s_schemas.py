"""Offline schema checks for rendered objects and PipelineService resources.

- :func:`upstream_errors`: every error of an object against the upstream Kubernetes JSON
  schema bundled with kubernetes-validate (strict: unknown fields are errors).
  ``kubernetes_validate.validate`` stops at the first error; this lists them all.
- :func:`crd_errors`: every error of a PipelineService against the CRD's own
  openAPIV3Schema, translated to JSON Schema draft 4 (OpenAPI 3.0's boolean
  ``exclusiveMinimum``): ``x-kubernetes-int-or-string`` becomes integer-or-string,
  ``nullable`` a null type, and an object with ``properties`` rejects unknown fields unless
  it has ``x-kubernetes-preserve-unknown-fields`` (the API server would prune or reject
  them). Defaults and CEL rules are not applied.
- :func:`gateway_route_errors`: Gateway API routes are not in the upstream schema; this
  checks the parts of HTTPRoute/GRPCRoute the renderer writes against the Gateway API v1
  field rules.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import kubernetes_validate.utils as kvu
from referencing import Registry, Resource

from pipeserve.operator import crd

KUBERNETES_VERSION = "1.37.0"


@functools.cache
def _upstream_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"v{KUBERNETES_VERSION}-local-strict"
    schema = kvu.schema_contents(f"kubernetes-json-schema/{folder}/{kind.lower()}-{api}.json", KUBERNETES_VERSION)
    definitions = kvu.schema_contents(f"kubernetes-json-schema/{folder}/_definitions.json", KUBERNETES_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def upstream_errors(obj: Mapping[str, Any]) -> list[str]:
    """``path: message`` for every schema error of ``obj`` (empty when it is valid)."""
    validator = _upstream_validator(obj["apiVersion"], obj["kind"])
    found = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]


@functools.cache
def _crd_validator() -> jsonschema.Draft7Validator:
    (version,) = [v for v in crd.load_crd()["spec"]["versions"] if v["name"] == crd.VERSION]
    schema = crd.json_schema(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def crd_errors(resource: Mapping[str, Any]) -> list[str]:
    """``path: message`` for every error of a PipelineService against the CRD's schema."""
    found = sorted(_crd_validator().iter_errors(resource), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]


_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def gateway_route_errors(route: Mapping[str, Any]) -> Iterator[str]:
    """Problems of a rendered HTTPRoute or GRPCRoute against the Gateway API v1 rules it uses."""
    if route.get("apiVersion") != "gateway.networking.k8s.io/v1":
        yield f"apiVersion: {route.get('apiVersion')!r} is not gateway.networking.k8s.io/v1"
    if route.get("kind") not in ("HTTPRoute", "GRPCRoute"):
        yield f"kind: {route.get('kind')!r}"
    metadata = route.get("metadata", {})
    if not _DNS1123_SUBDOMAIN.fullmatch(str(metadata.get("name", ""))) or len(metadata["name"]) > 253:
        yield f"metadata.name: {metadata.get('name')!r} is not a DNS-1123 subdomain"
    spec = route.get("spec", {})
    allowed = {"parentRefs", "hostnames", "rules"}
    for key in set(spec) - allowed:
        yield f"spec.{key}: not a field the renderer should write"
    refs = spec.get("parentRefs", [])
    if not 1 <= len(refs) <= 32:
        yield "spec.parentRefs: 1 to 32 entries"
    for i, ref in enumerate(refs):
        for key in set(ref) - {"group", "kind", "namespace", "name", "sectionName", "port"}:
            yield f"spec.parentRefs[{i}].{key}: unknown field"
        if not ref.get("name"):
            yield f"spec.parentRefs[{i}].name: required"
    for i, host in enumerate(spec.get("hostnames", [])):
        if not _HOSTNAME.fullmatch(host) or len(host) > 253:
            yield f"spec.hostnames[{i}]: {host!r} is not a hostname"
    rules = spec.get("rules", [])
    if not 1 <= len(rules) <= 16:
        yield "spec.rules: 1 to 16 entries"
    for i, rule in enumerate(rules):
        for j, backend in enumerate(rule.get("backendRefs", [])):
            for key in set(backend) - {"group", "kind", "name", "namespace", "port", "weight"}:
                yield f"spec.rules[{i}].backendRefs[{j}].{key}: unknown field"
            port = backend.get("port")
            if not isinstance(port, int) or not 1 <= port <= 65535:
                yield f"spec.rules[{i}].backendRefs[{j}].port: {port!r} is not a port"


def with_crd_defaults(resource: Mapping[str, Any]) -> dict[str, Any]:
    """``resource`` as the API server stores it: each schema ``default`` filled in where a field
    is absent and its enclosing object is present (list items included)."""
    (version,) = [v for v in crd.load_crd()["spec"]["versions"] if v["name"] == crd.VERSION]
    result = copy.deepcopy(dict(resource))
    _fill_defaults(result, version["schema"]["openAPIV3Schema"])
    return result


def _fill_defaults(value: Any, schema: Mapping[str, Any]) -> None:
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                _fill_defaults(value[name], child)
        if isinstance(schema.get("additionalProperties"), dict):
            for key in value:
                _fill_defaults(value[key], schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill_defaults(item, schema["items"])
