"""Fixtures for the chart tests: the real Helm that `make helm` builds, and manifest validation.

Helm is built from source with `go install` into .tools/bin by `make helm` (a dependency of
`make test`); these tests never download it. Manifests are checked offline: built-in kinds
with kubernetes-validate's bundled schemas (strict: unknown fields fail), custom resources
with the openAPIV3Schema of their CRD, translated to JSON Schema the way the API server reads it.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
import shutil
import subprocess
from collections.abc import Callable, Iterable
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
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


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """Run the project's helm with its caches and config in a temporary home."""
    if not os.access(HELM, os.X_OK):
        pytest.fail(f"helm is not built: {HELM} is missing; run `make helm` (or `make test`, which does)")
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str) -> HelmResult:
        done = subprocess.run([str(HELM), *args], env=env, capture_output=True, text=True, timeout=60)
        return HelmResult(done.returncode, done.stdout, done.stderr)

    return run


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def render(helm: Helm) -> Render:
    """`helm template` a chart with --set values; fails the test with helm's error if it fails."""

    def template(chart: str, *sets: str, release: str = "rel", namespace: str = "ops") -> list[dict[str, Any]]:
        result = helm(*template_args(chart, sets, release, namespace))
        assert result.returncode == 0, f"helm template {chart} {sets} failed:\n{result.stderr}"
        return result.documents()

    return template


Notes = Callable[..., str]


@pytest.fixture(scope="session")
def notes(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Notes:
    """The chart's NOTES.txt as `helm install` would print it (`helm template` never renders it).

    Renders a copy of the chart in which one extra template passes NOTES.txt through ``tpl``.
    """

    def render_notes(chart: str, *sets: str, release: str = "rel", namespace: str = "ops") -> str:
        copy = tmp_path_factory.mktemp("chart") / chart
        shutil.copytree(CHARTS / chart, copy)
        (copy / "files").mkdir(exist_ok=True)
        shutil.copy(copy / "templates" / "NOTES.txt", copy / "files" / "notes-under-test.txt")
        (copy / "templates" / "notes-under-test.yaml").write_text(
            'notes: {{ tpl (.Files.Get "files/notes-under-test.txt") . | toJson }}\n'
        )
        args = template_args(chart, sets, release, namespace)
        args[2] = str(copy)
        result = helm(*args, "--show-only", "templates/notes-under-test.yaml")
        assert result.returncode == 0, result.stderr
        (doc,) = result.documents()
        text: str = doc["notes"]
        return text

    return render_notes


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
    schema = _openapi_to_jsonschema(served["schema"]["openAPIV3Schema"])
    for key in ("apiVersion", "kind", "metadata"):  # checked by the API server, not the CRD
        schema.setdefault("properties", {})[key] = {}
    validator = jsonschema.Draft4Validator(schema)
    return [".".join(map(str, e.absolute_path)) + f": {e.message}" for e in validator.iter_errors(doc)]


def _openapi_to_jsonschema(node: Any) -> Any:
    """nullable, int-or-string and the API server's rejection of unknown fields, in JSON Schema."""
    if not isinstance(node, dict):
        return node
    node = copy.deepcopy(node)
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and not preserve and "additionalProperties" not in node:
        node["additionalProperties"] = False
    for key in ("properties", "patternProperties"):
        if key in node:
            node[key] = {name: _openapi_to_jsonschema(sub) for name, sub in node[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            node[key] = _openapi_to_jsonschema(node[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            node[key] = [_openapi_to_jsonschema(sub) for sub in node[key]]
    return node
