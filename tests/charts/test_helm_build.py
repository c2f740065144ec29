"""The Helm that `make helm` builds behaves like a released Helm of the same version.

A plain `go install` leaves Helm's fallback Kubernetes version (1.20) for work without a
cluster, and both charts require 1.25 or later: `helm template` and `helm lint` would refuse
them unless every user passed --kube-version. The build sets the version Helm was made for.
"""

from __future__ import annotations

import re

import pytest
from helm_harness import CHARTS, ROOT, Helm

HELM_VERSION = re.search(r"^HELM_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)  # type: ignore[union-attr]


def test_helm_reports_its_release_version(helm: Helm) -> None:
    result = helm("version", "--template", "{{ .Version }}")
    assert result.returncode == 0 and result.stdout.strip() == HELM_VERSION, result.stdout + result.stderr


@pytest.mark.parametrize("chart", ["pipeserve", "pipeline"])
def test_charts_render_and_lint_without_naming_a_kubernetes_version(helm: Helm, chart: str) -> None:
    template = helm("template", "rel", str(CHARTS / chart))
    assert template.returncode == 0, template.stderr
    lint = helm("lint", str(CHARTS / chart), "--strict")
    assert lint.returncode == 0, lint.stdout + lint.stderr
