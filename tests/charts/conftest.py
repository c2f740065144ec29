"""Fixtures for the chart tests: the real Helm that `make helm` builds.

Helm is built from source with `go install` into .tools/bin by `make helm` (a dependency of
`make test`); these tests never download it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
from helm_harness import CHARTS, HELM, Helm, HelmResult, Notes, Render, template_args


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


@pytest.fixture(scope="session")
def render(helm: Helm) -> Render:
    """`helm template` a chart with --set values; fails the test with helm's error if it fails."""

    def template(chart: str, *sets: str, release: str = "rel", namespace: str = "ops") -> list[dict[str, Any]]:
        result = helm(*template_args(chart, sets, release, namespace))
        assert result.returncode == 0, f"helm template {chart} {sets} failed:\n{result.stderr}"
        return result.documents()

    return template


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
