"""The pipeline chart (charts/pipeline): one PipelineService from values.

- with the defaults it is examples/imdb_ensemble/pipelineservice.yaml;
- what it renders is valid against the CRD's schema and passes the operator's own checks;
- values reach the spec; a duplicate op name or an unknown spec key fails, naming it.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml
from helm_harness import CHARTS, ROOT, Helm, Notes, Render, custom_resource_errors, template_args

from pipeserve.operator import spec

EXAMPLE = ROOT / "examples" / "imdb_ensemble" / "pipelineservice.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*/pipelineservice*.yaml"))


def test_default_values_render_the_imdb_example(helm: Helm, render: Render) -> None:
    lint = helm("lint", str(CHARTS / "pipeline"), "--strict")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    (rendered,) = render("pipeline", release="imdb", namespace="ml")
    example = yaml.safe_load(EXAMPLE.read_text())
    assert rendered["apiVersion"] == example["apiVersion"] and rendered["kind"] == example["kind"]
    assert rendered["metadata"]["name"] == example["metadata"]["name"]
    assert rendered["metadata"]["namespace"] == "ml"
    assert rendered["spec"] == example["spec"]
    assert custom_resource_errors(rendered) == []
    spec.validate(rendered["spec"])


def test_it_should_set_the_name_labels_and_spec_values(helm: Helm, tmp_path: pathlib.Path) -> None:
    ops = default_values()["spec"]["ops"]
    ops[0]["replicas"] = 4
    ops[2]["inline"] = False
    overrides = tmp_path / "reviews.yaml"
    overrides.write_text(yaml.safe_dump({"name": "reviews", "labels": {"team": "ml"}, "spec": {"ops": ops}}))
    sets = ("spec.gateway.httpPort=8080", "spec.imagePullPolicy=Always")
    flags = ["-f", str(overrides), *[arg for s in sets for arg in ("--set", s)]]
    lint = helm("lint", str(CHARTS / "pipeline"), "--strict", *flags)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    result = helm(*template_args("pipeline", sets), "-f", str(overrides))
    assert result.returncode == 0, result.stderr
    (rendered,) = result.documents()
    assert rendered["metadata"]["name"] == "reviews"
    assert rendered["metadata"]["labels"]["team"] == "ml"
    assert rendered["spec"]["gateway"]["httpPort"] == 8080
    assert rendered["spec"]["imagePullPolicy"] == "Always"
    assert [op.get("replicas") for op in rendered["spec"]["ops"]] == [4, 2, None]
    assert rendered["spec"]["ops"][2]["inline"] is False
    assert custom_resource_errors(rendered) == []
    spec.validate(rendered["spec"])


def test_a_duplicate_op_name_fails_naming_the_op_and_the_fix(helm: Helm) -> None:
    ops = default_values()["spec"]["ops"]
    ops[1]["name"] = "bow"
    result = helm(*template_args("pipeline", []), "--set-json", f"spec.ops={json.dumps(ops)}")
    assert result.returncode != 0
    assert (
        "ERROR: invalid values for the pipeline chart:\n"
        '  - spec.ops[1].name "bow" is used by an earlier op: give each op its own name in the spec.ops list '
        "of your values file (--set on one list item replaces the whole list)\n"
    ) in result.stderr


def default_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHARTS / "pipeline" / "values.yaml").read_text())
    return values


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("spec.gateway.httpPrt=80", "at '/spec/gateway': additional properties 'httpPrt' not allowed"),
        ("spec.payloadStore.store=memcached", "at '/spec/payloadStore/store'"),
        ("nme=x", "additional properties 'nme' not allowed"),
        ("name=Bad_Name", "at '/name'"),
    ],
)
def test_the_schema_rejects_unknown_keys_and_bad_values(helm: Helm, value: str, message: str) -> None:
    result = helm(*template_args("pipeline", [value]))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_the_notes_show_how_to_reach_the_gateway(notes: Notes) -> None:
    text = notes("pipeline", release="imdb", namespace="ml")
    assert "kubectl port-forward -n ml svc/imdb-gateway 18070" in text
    assert "curl -s http://127.0.0.1:18070/imdb/prediction" in text


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_resource_renders_back_from_values(
    helm: Helm, tmp_path: pathlib.Path, example: pathlib.Path
) -> None:
    resource = yaml.safe_load(example.read_text())
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"name": resource["metadata"]["name"], "spec": resource["spec"]}))
    lint = helm("lint", str(CHARTS / "pipeline"), "--strict", "-f", str(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    result = helm(*template_args("pipeline", []), "-f", str(values))
    assert result.returncode == 0, result.stderr
    (rendered,) = result.documents()
    assert rendered["metadata"]["name"] == resource["metadata"]["name"]
    # Helm merges values over the chart's defaults: maps key by key, lists replaced whole
    assert rendered["spec"] == helm_merge(default_values()["spec"], resource["spec"])
    assert custom_resource_errors(rendered) == []
    spec.validate(rendered["spec"])


def helm_merge(defaults: Any, given: Any) -> Any:
    if not (isinstance(defaults, dict) and isinstance(given, dict)):
        return given
    merged = dict(defaults)
    for key, value in given.items():
        merged[key] = helm_merge(defaults.get(key), value)
    return merged
