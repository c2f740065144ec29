"""How the operator is started and what it may do: options, kopf arguments, RBAC, peering."""

from __future__ import annotations

import pytest

from pipeserve import cli
from pipeserve.commands import operator as operator_command
from pipeserve.operator import crd, main, peering, rbac, resources


def test_the_cli_has_an_operator_command() -> None:
    assert operator_command in cli.COMMANDS


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no namespace to watch: pass --namespace NS (repeatable) or --all-namespaces"),
        (["-n", "ml", "--priority", "5"], "--priority only matters with --peering NAME"),
        (["-n", "ml", "--metrics-host", "127.0.0.1"], "--metrics-host only matters with --metrics-port PORT"),
        (["-n", "ml", "--metrics-port", "70000"], "--metrics-port must be a port number from 0 to 65535, got 70000"),
    ],
)
def test_options_that_do_not_fit_are_refused_with_what_to_pass(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["operator", *argv]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_namespaces_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        cli.main(["operator", "-n", "ml", "--all-namespaces"])
    with pytest.raises(main.OptionsError, match="exclude each other"):
        main.Options(namespaces=("ml",), all_namespaces=True)


def test_one_replica_runs_standalone_in_its_namespaces() -> None:
    arguments = main.kopf_arguments(main.Options(namespaces=("ml", "prod"), liveness="http://0.0.0.0:8080/healthz"))
    assert arguments["standalone"] is True and "peering_name" not in arguments
    assert arguments["namespaces"] == ["ml", "prod"] and arguments["clusterwide"] is False
    assert arguments["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"
    assert arguments["settings"].scanning.disabled  # nothing cluster-scoped to list or watch


def test_replicas_peer_with_distinct_priorities() -> None:
    first = main.kopf_arguments(main.Options(all_namespaces=True, peering="pipeserve"))
    second = main.kopf_arguments(main.Options(all_namespaces=True, peering="pipeserve"))
    assert first["peering_name"] == "pipeserve" and "standalone" not in first
    assert first["priority"] != second["priority"]
    assert main.kopf_arguments(main.Options(all_namespaces=True, peering="p", priority=7))["priority"] == 7
    assert not first["settings"].scanning.disabled


def test_rbac_grants_every_child_kind_and_the_status_subresource() -> None:
    rules = rbac.namespaced_rules()
    granted = {(group, plural): set(rule["verbs"]) for rule in rules for group in rule["apiGroups"]
               for plural in rule["resources"]}  # fmt: skip
    for child in resources.CHILDREN:
        assert {"get", "list", "create", "patch", "delete"} <= granted[(child.group, child.plural)]
    assert "watch" in granted[("apps", "deployments")]
    assert "watch" not in granted[("", "services")]
    assert granted[(crd.GROUP, crd.PLURAL)] == {"get", "list", "watch", "patch"}
    assert granted[(crd.GROUP, f"{crd.PLURAL}/status")] == {"patch"}
    assert granted[("", "events")] == {"create"}
    assert ("events.k8s.io", "events") not in granted  # kopf posts core v1 events only
    assert all("*" not in rule["verbs"] and "*" not in rule["resources"] for rule in rules)
    assert (peering.GROUP, peering.NAMESPACED_PLURAL) not in granted


def test_cluster_rules_add_crd_reads_and_cluster_peering() -> None:
    rules = rbac.cluster_role("pipeserve-operator", with_peering=True)["rules"]
    granted = {(group, plural): set(rule["verbs"]) for rule in rules for group in rule["apiGroups"]
               for plural in rule["resources"]}  # fmt: skip
    assert granted[("apiextensions.k8s.io", "customresourcedefinitions")] == {"get", "list", "watch"}
    assert granted[(peering.GROUP, peering.CLUSTER_PLURAL)] == {"get", "list", "watch", "patch"}
    role = rbac.role("pipeserve-operator", "ml", with_peering=True)
    assert role["metadata"] == {"name": "pipeserve-operator", "namespace": "ml"}
    assert any(peering.NAMESPACED_PLURAL in rule["resources"] for rule in role["rules"])


def test_peering_crds_are_shipped_for_both_scopes() -> None:
    crds = {doc["metadata"]["name"]: doc for doc in peering.load_peering_crds()}
    assert set(crds) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    assert crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
    assert peering.peering_object("p", "ml")["kind"] == "KopfPeering"
    assert peering.peering_object("p")["kind"] == "ClusterKopfPeering"
