"""values.yaml and values.schema.json of both charts agree, and every key is documented.

- every key in values.yaml is a property of the schema, and every property of the schema is
  in values.yaml (set, or commented out as an example), so neither drifts;
- every key line of values.yaml has a comment above it (Kubernetes pass-through maps aside);
- the real Helm, given values.yaml with every value of the wrong type and an unknown key in
  every map, rejects each of them by its path: the schema checks every key.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from helm_harness import CHARTS, Helm, template_args

# Keys whose children are Kubernetes' own objects, documented by their parent.
PASS_THROUGH = re.compile(r"(^|\.)(resources|requests|limits|tolerations|affinity|imagePullSecrets|nodeSelector)$")
KEY_LINE = re.compile(r"^(?P<indent>\s*)(?:- )?(?P<key>[A-Za-z][\w.-]*):(\s|$)")


def schema_paths(schema: dict[str, Any], prefix: str = "", root: dict[str, Any] | None = None) -> Iterator[str]:
    """Dotted paths of every property the schema declares (lists by their item's properties)."""
    root = root or schema
    if "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rpartition("/")[2]]
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        yield path
        if not PASS_THROUGH.search(path):
            yield from schema_paths(sub, f"{path}.", root)
    if isinstance(schema.get("items"), dict):
        yield from schema_paths(schema["items"], prefix, root)


def value_paths(values: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(values, dict):
        for name, sub in values.items():
            yield f"{prefix}{name}"
            if not PASS_THROUGH.search(f"{prefix}{name}"):
                yield from value_paths(sub, f"{prefix}{name}.")
    elif isinstance(values, list):
        for item in values:
            yield from value_paths(item, prefix)


def uncommented_keys(text: str) -> list[str]:
    """Key lines with no comment right above them, outside pass-through maps."""
    missing, parents, previous = [], [], ""
    for number, line in enumerate(text.splitlines(), 1):
        match = KEY_LINE.match(line)
        if match:
            depth = len(match["indent"]) + (2 if line.lstrip().startswith("- ") else 0)
            parents = [(d, k) for d, k in parents if d < depth]
            path = ".".join(k for _, k in parents)
            if not PASS_THROUGH.search(path) and not previous.lstrip().startswith("#") and "#" not in line:
                missing.append(f"line {number}: {line.strip()}")
            parents.append((depth, match["key"]))
        if line.strip():
            previous = line
    return missing


@pytest.mark.parametrize("chart", ["pipeserve", "pipeline"])
def test_values_and_schema_declare_the_same_keys(chart: str) -> None:
    text = (CHARTS / chart / "values.yaml").read_text()
    schema = json.loads((CHARTS / chart / "values.schema.json").read_text())
    declared = set(schema_paths(schema))
    given = set(value_paths(yaml.safe_load(text)))
    assert given - declared == set(), "keys of values.yaml missing from values.schema.json"
    commented_out = {m["key"] for m in re.finditer(r"^\s*#\s*(?P<key>[A-Za-z]\w*):", text, re.M)}
    top_level = {path for path in declared if "." not in path} - {"global"}
    assert top_level - {path.split(".")[0] for path in given} == set(), "schema keys missing from values.yaml"
    if chart == "pipeserve":  # the pipeline chart's schema is the whole CRD: its optional keys are many
        undocumented = {p for p in declared - given if not p.startswith("global")}
        undocumented = {p for p in undocumented if p.rpartition(".")[2] not in commented_out}
        assert undocumented == set(), "schema keys neither in values.yaml nor commented out there"


@pytest.mark.parametrize("chart", ["pipeserve", "pipeline"])
def test_every_key_in_values_yaml_has_a_comment(chart: str) -> None:
    assert uncommented_keys((CHARTS / chart / "values.yaml").read_text()) == []


TYPO = "x-typo"


def wrong_values(values: Any, path: str = "") -> tuple[Any, list[str], list[str]]:
    """``values`` with every leaf of the wrong type and an unknown key in every map of ours.

    Returns the values and the JSON pointers of the leaves and of the maps, which the schema
    must each reject.
    """
    leaves: list[str] = []
    maps: list[str] = []
    if isinstance(values, dict) and values:
        wrong = {}
        for name, sub in values.items():
            pointer = name.replace("~", "~0").replace("/", "~1")
            wrong[name], sub_leaves, sub_maps = wrong_values(sub, f"{path}/{pointer}")
            leaves += sub_leaves
            maps += sub_maps
        if not PASS_THROUGH.search(path.replace("/", ".")):
            wrong[TYPO] = 1
            maps.append(path)
        return wrong, leaves, maps
    if isinstance(values, list) and values and all(isinstance(item, dict) for item in values):
        items = [wrong_values(item, f"{path}/{i}") for i, item in enumerate(values)]
        return [w for w, _, _ in items], [p for _, ls, _ in items for p in ls], [p for _, _, ms in items for p in ms]
    # a scalar, list or empty map: a value of another type
    return ([] if isinstance(values, dict) else {"unexpected": True}), [path], []


@pytest.mark.parametrize("chart", ["pipeserve", "pipeline"])
def test_helm_rejects_a_wrong_type_or_an_unknown_key_anywhere_in_values_yaml(
    helm: Helm, tmp_path: pathlib.Path, chart: str
) -> None:
    values = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())
    wrong, leaves, maps = wrong_values(values)
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(wrong))
    result = helm(*template_args(chart, []), "-f", str(path))
    assert result.returncode != 0
    unchecked = [leaf for leaf in leaves if f"at '{leaf}'" not in result.stderr]
    assert unchecked == [], f"values the schema does not check:\n{result.stderr}"
    loose = [m for m in maps if f"at '{m}': additional properties '{TYPO}' not allowed" not in result.stderr]
    assert loose == [], f"maps that accept unknown keys:\n{result.stderr}"
