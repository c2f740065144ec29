"""The command line checks a config.yml and says exactly what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeserve import cli


def test_check_prints_the_resolved_ops_of_a_good_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yml"
    path.write_text("http_port: 8000\nop:\n  bow:\n    batch_size: 4\n    auto_batching_timeout: 5\n")
    assert cli.main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "http_port 8000, rpc_port 8001" in out
    assert "op bow: concurrency 1, batch_size 4" in out


def test_check_fails_with_the_file_and_key_of_a_bad_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yml"
    path.write_text("http_port: 8000\nop:\n  bow:\n    batch_size: 0\n")
    assert cli.main(["check", str(path)]) == 2
    assert capsys.readouterr().err.strip() == "error: config.yml: op.bow.batch_size: must be an integer >= 1, got 0"
