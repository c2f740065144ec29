"""The PipelineService CustomResourceDefinition shipped with the package.

The YAML file is the one source of truth: the operator reads it from here, the Helm chart
carries a byte-identical copy, and tests validate example resources against its schema.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import yaml

GROUP = "pipeserve.io"
VERSION = "v1alpha1"
PLURAL = "pipelineservices"
KIND = "PipelineService"

CRD_PATH: pathlib.Path = pathlib.Path(__file__).parent / "crds" / f"{PLURAL}.{GROUP}.yaml"


def load_crd() -> dict[str, Any]:
    """The CRD as a mapping (apiextensions.k8s.io/v1 CustomResourceDefinition)."""
    with CRD_PATH.open(encoding="utf-8") as file:
        loaded: dict[str, Any] = yaml.safe_load(file)
    return loaded


def json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A structural OpenAPI v3 schema (or part of one) as JSON Schema draft 7, as the API server
    applies it: nullable, int-or-string, exclusive bounds as numbers, and no unknown fields
    unless ``x-kubernetes-preserve-unknown-fields``.

    Other ``x-kubernetes-*`` keys are dropped (CEL rules are the API server's to evaluate).
    Used for the pipeline chart's values schema and by the tests that validate resources.
    """
    node = copy.deepcopy(node)
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), bool):  # OpenAPI 3.0's boolean flag -> draft 7's number
            if node.pop(bound):
                node[bound] = node.pop(limit)
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    for key in [k for k in node if k.startswith("x-kubernetes-")]:
        del node[key]
    if "properties" in node and not preserve and "additionalProperties" not in node:
        node["additionalProperties"] = False
    for key in ("properties", "patternProperties"):
        if key in node:
            node[key] = {name: json_schema(sub) for name, sub in node[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            node[key] = json_schema(node[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            node[key] = [json_schema(sub) for sub in node[key]]
    return node
