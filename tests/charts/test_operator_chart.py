"""The operator chart (charts/pipeserve), rendered by the real Helm.

- it lints and renders with the defaults and with other values, and every object is valid;
- the operator container's command line is one `pipeserve` accepts, whatever the values;
- the operator's arguments carry the watched namespaces, its probe, its metrics port and its
  peering;
- the operator's metrics get a container port and a ClusterIP Service (with Prometheus' scrape
  annotations), both gone with operator.metrics.enabled=false;
- RBAC is the operator package's least-privilege rules: one ClusterRole, or a Role and a
  RoleBinding in each watched namespace and nothing cluster-scoped;
- the CRD is the operator package's, kept on uninstall, left out when disabled;
- bad values fail once, listing every problem with its --set fix; unknown keys are rejected.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from typing import Any

import pytest
from helm_harness import CHARTS, Helm, Notes, Render, template_args, validate_manifest

from pipeserve import cli
from pipeserve.operator import crd, peering, rbac

NAMESPACED = ("operator.watchAllNamespaces=false", "operator.watchNamespaces={ml-prod,ml-staging}")
PEERING = ("operator.peering.enabled=true", "operator.replicas=2")

VALUE_SETS = {
    "defaults": (),
    "namespaced": NAMESPACED,
    "namespaced with peering": (*NAMESPACED, *PEERING),
    "cluster-wide with peering": PEERING,
    "no crds, no service, no metrics, no rbac, existing account": (
        "crds.enabled=false", "service.enabled=false", "operator.metrics.enabled=false", "serviceAccount.create=false",
        "serviceAccount.name=ops-admin", "rbac.create=false",
    ),
    "metrics elsewhere": (
        "operator.metrics.port=9402", "operator.metrics.service.port=80",
        "operator.metrics.service.scrapeAnnotations=false",
        "operator.metrics.service.annotations.example\\.com/team=ml",
    ),
    "scheduling and image": (
        "image.digest=sha256:" + "a" * 64, "operator.nodeSelector.kubernetes\\.io/os=linux",
        "operator.tolerations[0].key=dedicated", "operator.tolerations[0].operator=Exists",
        "operator.priorityClassName=system-cluster-critical", "operator.runAsUser=null",
        "imagePullSecrets[0].name=registry", "operator.verbose=true", "service.type=NodePort",
    ),
}  # fmt: skip


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def the(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = kinds(docs, kind)
    return doc


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("sets", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_chart_lints_and_every_rendered_object_is_valid(helm: Helm, render: Render, sets: tuple[str, ...]) -> None:
    lint = helm("lint", str(CHARTS / "pipeserve"), "--strict", *[arg for s in sets for arg in ("--set", s)])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render("pipeserve", *sets)
    assert kinds(docs, "Deployment")
    for doc in docs:
        validate_manifest(doc)


@pytest.mark.parametrize("sets", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_the_operator_container_runs_a_command_line_the_cli_accepts(render: Render, sets: tuple[str, ...]) -> None:
    container = operator_container(render("pipeserve", *sets))
    assert container["command"] == ["pipeserve"]
    parser = argparse.ArgumentParser(prog="pipeserve", exit_on_error=False)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in cli.COMMANDS:
        command.add_arguments(subparsers.add_parser(command.NAME))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            args = parser.parse_args(container["args"])
        except (SystemExit, argparse.ArgumentError) as exc:
            pytest.fail(f"pipeserve {' '.join(container['args'])}: {exc} {stderr.getvalue()}")
    assert args.command == "operator"


def test_it_should_watch_every_namespace_by_default_with_one_cluster_role(render: Render) -> None:
    docs = render("pipeserve", release="pipeserve", namespace="pipeserve-system")
    assert operator_container(docs)["args"] == [
        "operator", "--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz", "--metrics-port", "9090",
        "--standalone",
    ]  # fmt: skip
    assert the(docs, "ClusterRole")["rules"] == rbac.cluster_rules()
    binding = the(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pipeserve"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeserve", "namespace": "pipeserve-system"}]
    assert the(docs, "ServiceAccount")["metadata"]["name"] == "pipeserve"
    assert not kinds(docs, "Role") and not kinds(docs, "RoleBinding")


def test_it_should_set_the_operators_watched_namespaces(render: Render) -> None:
    args = operator_container(render("pipeserve", *NAMESPACED))["args"]
    assert args[:5] == ["operator", "--namespace", "ml-prod", "--namespace", "ml-staging"]
    assert "--all-namespaces" not in args


def test_it_should_render_a_role_and_binding_per_watched_namespace_and_nothing_cluster_wide(render: Render) -> None:
    docs = render("pipeserve", *NAMESPACED, release="rel", namespace="ops")
    roles, bindings = kinds(docs, "Role"), kinds(docs, "RoleBinding")
    assert [role["metadata"]["namespace"] for role in roles] == ["ml-prod", "ml-staging"]
    assert [binding["metadata"]["namespace"] for binding in bindings] == ["ml-prod", "ml-staging"]
    for role in roles:
        assert role["rules"] == rbac.namespaced_rules()
    for binding in bindings:
        assert binding["roleRef"]["name"] == "rel-pipeserve"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-pipeserve", "namespace": "ops"}]
    assert not [doc for doc in docs if doc["kind"].startswith("Cluster")]


def test_it_should_run_as_an_existing_account_and_leave_rbac_to_the_admin_when_asked(render: Render) -> None:
    docs = render("pipeserve", "serviceAccount.create=false", "serviceAccount.name=ops-admin", "rbac.create=false")
    assert the(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-admin"
    assert not kinds(docs, "ServiceAccount")
    assert not [doc for doc in docs if doc["apiVersion"].startswith("rbac.authorization.k8s.io/")]
    named = render("pipeserve", "serviceAccount.name=pipeserve-operator", *NAMESPACED)
    assert the(named, "ServiceAccount")["metadata"]["name"] == "pipeserve-operator"
    assert {b["subjects"][0]["name"] for b in kinds(named, "RoleBinding")} == {"pipeserve-operator"}


def test_it_should_run_replicas_with_peering_rules_crds_and_objects(render: Render) -> None:
    docs = render("pipeserve", *NAMESPACED, *PEERING)
    args = operator_container(docs)["args"]
    assert args[args.index("--peering") + 1] == "pipeserve-operator" and "--standalone" not in args
    assert the(docs, "Deployment")["spec"]["replicas"] == 2
    assert "strategy" not in the(docs, "Deployment")["spec"]
    assert [role["rules"] for role in kinds(docs, "Role")] == [rbac.namespaced_rules(with_peering=True)] * 2
    crds = {doc["metadata"]["name"] for doc in kinds(docs, "CustomResourceDefinition")}
    assert crds == {f"{crd.PLURAL}.{crd.GROUP}", *(d["metadata"]["name"] for d in peering.load_peering_crds())}
    objects = kinds(docs, "KopfPeering")
    assert [(o["metadata"]["name"], o["metadata"]["namespace"]) for o in objects] == [
        ("pipeserve-operator", "ml-prod"), ("pipeserve-operator", "ml-staging"),
    ]  # fmt: skip
    assert objects[0]["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    cluster_wide = render("pipeserve", *PEERING)
    assert the(cluster_wide, "ClusterRole")["rules"] == rbac.cluster_rules(with_peering=True)
    assert the(cluster_wide, "ClusterKopfPeering")["metadata"]["name"] == "pipeserve-operator"


def test_it_should_install_the_operator_packages_crd_and_keep_it_on_uninstall(render: Render) -> None:
    rendered = the(render("pipeserve"), "CustomResourceDefinition")
    metadata = rendered.pop("metadata")
    assert metadata["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert metadata["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    expected = crd.load_crd()
    assert metadata["name"] == expected.pop("metadata")["name"]
    assert rendered == expected
    # and with the same types: Helm's YAML round trip must not turn 1 into 1.0
    assert json.dumps(rendered, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_it_should_leave_the_crd_out_or_unkept_when_asked(render: Render) -> None:
    assert not kinds(render("pipeserve", "crds.enabled=false"), "CustomResourceDefinition")
    unkept = the(render("pipeserve", "crds.keep=false"), "CustomResourceDefinition")
    assert "annotations" not in unkept["metadata"]


def test_the_operator_pod_should_be_locked_down_and_probed(render: Render) -> None:
    docs = render("pipeserve", "operator.healthPort=9090", "operator.metrics.port=9402")
    pod = the(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    container = operator_container(docs)
    assert container["command"] == ["pipeserve"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert container["ports"][0] == {"name": "http", "containerPort": 9090, "protocol": "TCP"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "http://0.0.0.0:9090/healthz" in container["args"]
    assert the(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    service = service_named(docs, "rel-pipeserve")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == the(docs, "Deployment")["spec"]["selector"]["matchLabels"]


def service_named(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (service,) = [doc for doc in kinds(docs, "Service") if doc["metadata"]["name"] == name]
    return service


def test_it_should_serve_the_operators_metrics_behind_a_cluster_ip_service(render: Render) -> None:
    docs = render("pipeserve", release="pipeserve", namespace="pipeserve-system")
    container = operator_container(docs)
    assert container["args"][container["args"].index("--metrics-port") + 1] == "9090"
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    service = service_named(docs, "pipeserve-metrics")
    assert service["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics",
    }  # fmt: skip
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == the(docs, "Deployment")["spec"]["selector"]["matchLabels"]


def test_it_should_set_the_metrics_ports_and_annotations_from_values(render: Render) -> None:
    docs = render("pipeserve", *VALUE_SETS["metrics elsewhere"])
    container = operator_container(docs)
    assert container["args"][container["args"].index("--metrics-port") + 1] == "9402"
    assert {"name": "metrics", "containerPort": 9402, "protocol": "TCP"} in container["ports"]
    service = service_named(docs, "rel-pipeserve-metrics")
    assert service["metadata"]["annotations"] == {"example.com/team": "ml"}
    assert service["spec"]["ports"][0]["port"] == 80
    scraped = service_named(render("pipeserve", "operator.metrics.port=9402"), "rel-pipeserve-metrics")
    # the pod's port: Prometheus scrapes the endpoints behind the Service
    assert scraped["metadata"]["annotations"]["prometheus.io/port"] == "9402"


def test_it_should_serve_no_metrics_when_disabled(render: Render) -> None:
    docs = render("pipeserve", "operator.metrics.enabled=false")
    container = operator_container(docs)
    assert not [arg for arg in container["args"] if arg.startswith("--metrics")]
    assert [port["name"] for port in container["ports"]] == ["http"]
    assert [service["metadata"]["name"] for service in kinds(docs, "Service")] == ["rel-pipeserve"]


def test_the_metrics_service_name_fits_in_63_characters(render: Render) -> None:
    docs = render("pipeserve", "fullnameOverride=" + "a" * 63)
    assert service_named(docs, "a" * 55 + "-metrics")


def test_a_metrics_port_equal_to_the_health_port_fails_naming_the_fix(helm: Helm) -> None:
    result = helm(*template_args("pipeserve", ["operator.metrics.port=8080"]))
    assert result.returncode != 0
    assert (
        "  - operator.metrics.port 8080 is operator.healthPort too, and one port serves one endpoint: "
        "--set operator.metrics.port=<another port> or --set operator.metrics.enabled=false\n"
    ) in result.stderr


def test_bad_values_fail_once_naming_every_problem_and_its_fix(helm: Helm) -> None:
    sets = ["operator.watchAllNamespaces=false", "operator.replicas=3", "serviceAccount.create=false"]
    result = helm(*template_args("pipeserve", sets))
    assert result.returncode != 0
    assert result.stderr.count("ERROR:") == 1
    assert (
        "ERROR: invalid values for the pipeserve chart:\n"
        "  - operator.watchNamespaces is empty and operator.watchAllNamespaces is false, so the operator would watch "
        "nothing: --set operator.watchNamespaces={my-namespace} or --set operator.watchAllNamespaces=true\n"
        "  - operator.replicas is 3 but operator.peering.enabled is false, so every replica would handle every "
        "PipelineService: --set operator.peering.enabled=true or --set operator.replicas=1\n"
        "  - serviceAccount.create is false but serviceAccount.name is empty: "
        "--set serviceAccount.name=<existing account> or --set serviceAccount.create=true\n"
    ) in result.stderr


def test_namespaces_named_twice_or_with_all_namespaces_fail(helm: Helm, render: Render) -> None:
    result = helm(*template_args("pipeserve", ["operator.watchNamespaces={a,a}"]))
    assert result.returncode != 0
    assert (
        "operator.watchNamespaces [a a] is set while operator.watchAllNamespaces is true: pick one, "
        "--set operator.watchAllNamespaces=false to watch only those namespaces, "
        "or --set operator.watchNamespaces=null to watch all"
    ) in result.stderr
    assert "operator.watchNamespaces [a a] names a namespace twice: list each once" in result.stderr
    # the fix it suggests works
    fixed = render("pipeserve", "operator.watchNamespaces={a}", "operator.watchNamespaces=null")
    assert "--all-namespaces" in operator_container(fixed)["args"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("operator.watchNamespce=a", "at '/operator': additional properties 'watchNamespce' not allowed"),
        ("crds.upgrade=true", "at '/crds': additional properties 'upgrade' not allowed"),
        ("operator.replicas=two", "at '/operator/replicas': got string, want integer"),
        ("operator.watchNamespaces={Bad_NS}", "at '/operator/watchNamespaces/0'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
    ],
)
def test_the_schema_rejects_unknown_keys_and_bad_types(helm: Helm, value: str, message: str) -> None:
    result = helm(*template_args("pipeserve", [value]))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_the_notes_say_what_is_watched_how_to_apply_a_pipeline_and_reach_its_gateway(notes: Notes) -> None:
    text = notes("pipeserve", *NAMESPACED, release="pipeserve", namespace="pipeserve-system")
    assert "installed as pipeserve in namespace pipeserve-system, watching ml-prod, ml-staging." in text
    assert "kubectl apply -n ml-prod -f pipelineservice.yaml" in text
    assert "kubectl port-forward -n <namespace> svc/<name>-gateway" in text
    assert "WARNING" not in text
    assert "http://pipeserve-metrics.pipeserve-system.svc:9090/metrics" in text
    assert "metrics" not in notes("pipeserve", "operator.metrics.enabled=false")
    assert notes("pipeserve", "crds.enabled=false").startswith(
        "WARNING: crds.enabled is false; the PipelineService CRD must already be installed in this cluster."
    )
