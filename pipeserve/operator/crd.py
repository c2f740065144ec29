"""The PipelineService CustomResourceDefinition shipped with the package.

The YAML file is the one source of truth: the operator reads it from here, the Helm chart
carries a byte-identical copy, and tests validate example resources against its schema.
"""

from __future__ import annotations

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
