"""What the chart tests share: where Helm and the charts are, and offline manifest validation.

Built-in kinds are validated with kubernetes-validate's bundled schemas (strict: unknown
fields fail); custom resources with the openAPIV3Schema of their CRD, translated to JSON
Schema the way the API server reads it.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from pipeserve.operator import crd, peering

ROOT = pathlib.Path(__file__).resolve().parents[2]
HELM = ROOT / ".tools" / "bin" / "helm"
CHARTS = ROOT / "charts"
#: The Kubernetes version the charts are rendered and validated for (the oldest the charts
#: support is in their Chart.yaml kubeVersion).
KUBE_VERSION = "1.33.0"


@dataclasses.dataclass(frozen=True)
class HelmResult:
    """What one helm command printed."""

    returncode: int
    stdout: str
    stderr: str

    def documents(self) -> list[dict[str, Any]]:
        """The rendered objects (after `helm template`)."""
        return [doc for doc in yaml.safe_load_all(self.stdout) if doc]


Helm = Callable[..., HelmResult]
Render = Callable[..., list[dict[str, Any]]]
Notes = Callable[..., str]


def template_args(chart: str, sets: Iterable[str], release: str = "rel", namespace: str = "ops") -> list[str]:
    """Arguments of `helm template` for a chart under charts/ with --set values."""
    args = ["template", release, str(CHARTS / chart), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for value in sets:
        args += ["--set", value]
    return args


def validate_manifest(doc: dict[str, Any]) -> None:
    """Raise when the object is not valid for its kind: built-in kinds, our CRD's, kopf's."""
    group = doc["apiVersion"].rpartition("/")[0]
    if group in (crd.GROUP, peering.GROUP):
        errors = sorted(custom_resource_errors(doc))
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors}"
        return
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def custom_resource_errors(doc: dict[str, Any]) -> list[str]:
    """Errors of a custom resource against its CRD's openAPIV3Schema ("path: message")."""
    definitions = [crd.load_crd(), *peering.load_peering_crds()]
    (definition,) = [d for d in definitions if d["spec"]["names"]["kind"] == doc["kind"]]
    version = doc["apiVersion"].rpartition("/")[2]
    (served,) = [v for v in definition["spec"]["versions"] if v["name"] == version]
    schema = crd.json_schema(served["schema"]["openAPIV3Schema"])
    for key in ("apiVersion", "kind", "metadata"):  # checked by the API server, not the CRD
        schema.setdefault("properties", {})[key] = {}
    validator = jsonschema.Draft7Validator(schema)
    return [".".join(map(str, e.absolute_path)) + f": {e.message}" for e in validator.iter_errors(doc)]


