"""values.yaml and values.schema.json of both charts agree, and every key is documented.

- every key in values.yaml is a property of the schema, and every property of the schema is
  in values.yaml (set, or commented out as an example), so neither drifts;
- every key line of values.yaml has a comment above it (Kubernetes pass-through maps aside).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from helm_harness import CHARTS

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
