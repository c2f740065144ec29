"""The charts' copies of operator package files are current (`make crds` refreshes them).

The CRD in the chart is byte-identical to the one the operator package ships, and so are
kopf's peering CRDs; the RBAC rules file and the pipeline chart's values schema are what
charts/sync_operator_files.py generates from the package now.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

import pytest
from helm_harness import CHARTS

from pipeserve.operator import crd, peering


def sync_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_operator_files", CHARTS / "sync_operator_files.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_the_chart_crd_is_byte_identical_to_the_operator_packages() -> None:
    copy = CHARTS / "pipeserve" / "files" / crd.CRD_PATH.name
    assert copy.read_bytes() == crd.CRD_PATH.read_bytes(), "stale CRD copy in the chart: run `make crds`"
    peering_copy = CHARTS / "pipeserve" / "files" / peering.PEERING_CRDS_PATH.name
    assert peering_copy.read_bytes() == peering.PEERING_CRDS_PATH.read_bytes(), "stale copy: run `make crds`"


@pytest.mark.parametrize("name", ["rbac-rules.yaml", "values.schema.json"])
def test_generated_chart_files_are_current(name: str) -> None:
    expected = {path.name: (path, content) for path, content in sync_script().expected_files().items()}
    path, content = expected[name]
    assert isinstance(path, pathlib.Path)
    assert path.read_bytes() == content, f"{path.relative_to(CHARTS.parent)} is stale: run `make crds`"
