"""The committed generated code under ``pipeserve/proto/`` matches ``protos/``.

It regenerates every ``*.proto`` as the Makefile's ``protos`` target does (``grpc_tools.protoc``,
then the import rewrite that the target applies with sed, here in Python) and compares bytes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
COMMITTED = ROOT / "pipeserve" / "proto"
STALE = "generated code is stale: run `make protos`"
# The Makefile's `sed -E 's/^from pipeserve\.v1 import /from pipeserve.proto.pipeserve.v1 import /'`
# on every generated file: generated code imports other protos' modules by proto package path.
IMPORT = re.compile(r"^from pipeserve\.v1 import ", re.MULTILINE)
IMPORT_FIXED = "from pipeserve.proto.pipeserve.v1 import "
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, bytes]:
    """Every file protoc writes, by path relative to the output root, post-processed."""
    out = tmp_path_factory.mktemp("proto")
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    assert sources, f"no .proto files under {PROTOS}"
    protoc = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(PROTOS), f"--python_out={out}",
         f"--pyi_out={out}", f"--grpc_python_out={out}", *sources],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert protoc.returncode == 0, f"protoc failed:\n{protoc.stderr}"
    generated: dict[Path, bytes] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        data = IMPORT.sub(IMPORT_FIXED, data.decode()).encode()
        generated[path.relative_to(out)] = data
    return generated


def test_generated_code_is_up_to_date(generated: dict[Path, bytes]) -> None:
    assert generated, "protoc generated nothing"
    for rel, data in generated.items():
        committed = COMMITTED / rel
        assert committed.is_file(), f"{STALE} ({committed.relative_to(ROOT)} is missing)"
        assert committed.read_bytes() == data, f"{STALE} ({committed.relative_to(ROOT)} differs)"


def test_no_generated_file_outlives_its_proto(generated: dict[Path, bytes]) -> None:
    committed = (p for p in COMMITTED.rglob("*") if p.name.endswith(GENERATED_SUFFIXES))
    for path in sorted(committed):
        rel = path.relative_to(COMMITTED)
        assert rel in generated, f"{STALE} ({path.relative_to(ROOT)} has no .proto in protos/)"
