"""``pipeserve run`` when something cannot start: the failing process, its code and its log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BROKEN = """\
apiVersion: pipeserve.io/v1alpha1
kind: PipelineService
metadata: {name: broken}
spec:
  image: example/broken:1
  ops:
    - {name: upper, class: "ops:Upper", placement: service}
"""

OPS = """\
from pipeserve import Op


class Uper(Op):  # the spec names Upper
    pass
"""


def test_an_op_service_that_cannot_start_stops_the_run_with_its_error(tmp_path: Path) -> None:
    (tmp_path / "ps.yaml").write_text(BROKEN)
    (tmp_path / "ops.py").write_text(OPS)
    done = subprocess.run(
        [sys.executable, "-m", "pipeserve.cli", "run", str(tmp_path / "ps.yaml"),
         "--http-port", "0", "--grpc-port", "0", "--workdir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: op upper exited with code 2 while starting:" in done.stdout
    assert "op.upper.class: cannot import 'ops:Upper'" in done.stdout
    assert "pipeserve run: stopped" in done.stdout


def test_an_invalid_pipelineservice_is_refused_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "ps.yaml").write_text(BROKEN.replace('placement: service}', 'placement: service, inputs: [lower]}'))
    done = subprocess.run(
        [sys.executable, "-m", "pipeserve.cli", "run", str(tmp_path / "ps.yaml"), "--workdir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: ps.yaml: op 'upper': spec.ops[0].inputs"), done.stderr
    assert not (tmp_path / "run" / "config.yml").exists()
