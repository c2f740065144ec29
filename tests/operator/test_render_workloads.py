"""Field by field: the ConfigMap, the gateway's Deployment and Service, each op service's
Deployment and headless Service, and the managed Redis."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from pipeserve import cli
from pipeserve.commands import opservice
from pipeserve.operator import render
from pipeserve.pipeline import config as config_mod


def imdb(**spec_changes: Any) -> dict[str, Any]:
    parent = {
        "apiVersion": "pipeserve.io/v1alpha1",
        "kind": "PipelineService",
        "metadata": {"name": "imdb", "namespace": "ml", "uid": "uid-7", "generation": 2},
        "spec": {
            "image": "registry.example/imdb:1",
            "workingDir": "/app",
            "request": {"class": "ops:ImdbRequestOp"},
            "ops": [
                {"name": "bow", "class": "ops:BowOp", "placement": "service", "replicas": 2, "concurrency": 2,
                 "batchSize": 8, "autoBatchingTimeoutMs": 2, "timeoutMs": 1000, "precision": "fp16",
                 "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi", "nvidia.com/gpu": 2}}},
                {"name": "cnn", "class": "ops:CnnOp", "placement": "service", "port": 9500},
                {"name": "combine", "class": "ops:CombineOp", "inputs": ["bow", "cnn"], "inline": True},
            ],
            "payloadStore": {"store": "managed"},
        },
    }  # fmt: skip
    parent["spec"].update(spec_changes)
    return parent


def child(parent: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    (found,) = [c for c in render.render_children(parent) if c["kind"] == kind and c["metadata"]["name"] == name]
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


# --- ConfigMap -----------------------------------------------------------------------------


def test_config_map_holds_a_loadable_config_and_the_graph() -> None:
    config_map = child(imdb(), "ConfigMap", "imdb-pipeline")
    assert set(config_map["data"]) == {"config.yml", "graph.yml"}
    loaded = config_mod.load(yaml.safe_load(config_map["data"]["config.yml"]))
    assert loaded.ops["bow"].server_endpoints == ("dns:///imdb-bow.ml.svc.cluster.local:9000",)
    assert loaded.ops["cnn"].server_endpoints == ("dns:///imdb-cnn.ml.svc.cluster.local:9500",)
    assert loaded.ops["bow"].runtime.devices == (0, 1)  # the pod's two GPUs
    assert loaded.ops["bow"].runtime.precision == "fp16"
    assert loaded.ops["bow"].concurrency == 2
    assert loaded.log_dir == "/tmp/pipeserve/logs"  # on the writable emptyDir
    assert loaded.payload.redis_url == "redis://imdb-redis.ml.svc.cluster.local:6379/0"
    assert yaml.safe_load(config_map["data"]["graph.yml"]) == {
        "request": {"class": "ops:ImdbRequestOp"},
        "ops": [
            {"name": "bow", "class": "ops:BowOp", "inputs": []},
            {"name": "cnn", "class": "ops:CnnOp", "inputs": []},
            {"name": "combine", "class": "ops:CombineOp", "inputs": ["bow", "cnn"]},
        ],
        "response": {"class": "pipeserve:ResponseOp", "inputs": ["combine"]},
    }


def test_config_maps_every_spec_setting_onto_its_config_key() -> None:
    parent = imdb(
        serviceName="reviews",
        methods=["prediction", "score"],
        dag={"isThreadOp": False, "retry": 2, "channelSize": 64, "timeoutMs": 2500},
        gateway={"workerNum": 16, "buildDagEachWorker": True, "maxRequestBytes": 4096, "maxInFlight": 100,
                 "httpPort": 8000, "grpcPort": 8001},
        observability={"tracer": {"intervalSeconds": 5}, "profile": True, "metrics": False},
        payloadStore={"store": "external", "url": "rediss://cache:6380/1", "passwordSecretRef": {"name": "r", "key": "p"},
                      "thresholdBytes": 2048, "ttlSeconds": 60, "maxValueBytes": 4096, "timeoutMs": 500},
    )  # fmt: skip
    parent["spec"]["ops"][0].update(
        runtime="onnx", model={"path": "/models/bow.onnx"}, deviceType="tensorrt", retry=3, isThreadOp=True,
        options={"thread_num": 4, "ir_optim": True},
    )
    loaded = config_mod.load(render.render_pipeline_config(parent))
    assert (loaded.name, loaded.methods) == ("reviews", ("prediction", "score"))
    assert (loaded.http_port, loaded.rpc_port, loaded.worker_num, loaded.build_dag_each_worker) == (8000, 8001, 16, True)
    assert (loaded.max_request_bytes, loaded.max_in_flight, loaded.metrics) == (4096, 100, False)
    dag = loaded.dag
    assert (dag.is_thread_op, dag.retry, dag.channel_size, dag.timeout_ms) == (False, 2, 64, 2500)
    assert (dag.use_profile, dag.tracer_interval_s) == (True, 5)
    payload = loaded.payload
    assert (payload.store, payload.redis_url, payload.password_env) == ("redis", "rediss://cache:6380/1", "PIPESERVE_REDIS_PASSWORD")
    assert (payload.threshold_bytes, payload.ttl_s, payload.max_value_bytes, payload.timeout_ms) == (2048, 60, 4096, 500)
    bow = loaded.ops["bow"]
    assert (bow.op_class, bow.batch_size, bow.auto_batching_timeout_ms, bow.timeout_ms, bow.retry) == ("ops:BowOp", 8, 2, 1000, 3)
    assert bow.is_thread_op is True
    assert bow.runtime.device_type == config_mod.DeviceType.TENSORRT
    assert bow.runtime.options == {"thread_num": 4, "ir_optim": True, "runtime": "onnx", "model_config": "/models/bow.onnx"}
    assert loaded.ops["combine"].inline is True


def test_without_a_payload_store_values_travel_inline() -> None:
    parent = imdb(payloadStore={"store": "none"})
    assert "payload" not in render.render_pipeline_config(parent)
    assert [c for c in render.render_children(parent) if c["metadata"]["name"] == "imdb-redis"] == []


# --- Op services ---------------------------------------------------------------------------


def test_op_deployment_runs_the_op_service_with_its_port_grace_concurrency_device_and_precision() -> None:
    bow = child(imdb(), "Deployment", "imdb-bow")
    assert bow["spec"]["replicas"] == 2
    c = container(bow)
    assert c["command"] == ["pipeserve"]
    assert c["args"] == [
        "opservice", "--config", "/etc/pipeserve/config.yml", "--op", "bow", "--port", "9000", "--grace", "20",
        "--concurrency", "2", "--device-type", "gpu", "--precision", "fp16", "--metrics-port", "9100",
    ]  # fmt: skip
    args = cli.build_parser().parse_args(c["args"])  # the op service accepts what the pod runs
    assert opservice.op_overrides(args) == {
        "concurrency": 2, "local_service_conf": {"device_type": "gpu", "precision": "fp16"}
    }
    assert c["image"] == "registry.example/imdb:1"
    assert c["workingDir"] == "/app"
    assert c["ports"] == [
        {"name": "grpc", "containerPort": 9000, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9100, "protocol": "TCP"},
    ]
    assert bow["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30  # > --grace 20


def test_op_deployment_requests_and_limits_its_gpus_and_tolerates_the_gpu_taint() -> None:
    bow = child(imdb(), "Deployment", "imdb-bow")
    assert container(bow)["resources"] == {
        "limits": {"memory": "1Gi", "nvidia.com/gpu": 2},
        "requests": {"cpu": "500m", "nvidia.com/gpu": 2},
    }
    assert bow["spec"]["template"]["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    cnn = child(imdb(), "Deployment", "imdb-cnn")
    assert "resources" not in container(cnn)
    assert "tolerations" not in cnn["spec"]["template"]["spec"]


def test_op_deployment_keeps_the_users_placement_and_adds_the_gpu_toleration_once() -> None:
    parent = imdb()
    own = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    parent["spec"]["ops"][0].update(nodeSelector={"gpu": "a10"}, tolerations=[own, gpu])
    pod = child(parent, "Deployment", "imdb-bow")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "a10"}
    assert pod["tolerations"] == [own, gpu]


def test_op_deployment_probes_grpc_health() -> None:
    c = container(child(imdb(), "Deployment", "imdb-cnn"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"] == {"port": 9500}, probe
    # Models may take minutes to load; liveness only applies after startup succeeded.
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 300


@pytest.mark.parametrize("name", ["imdb-gateway", "imdb-bow", "imdb-redis"])
def test_pods_run_locked_down(name: str) -> None:
    deployment = child(imdb(), "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container(deployment)["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    mounts = {m["mountPath"]: m["name"] for m in container(deployment)["volumeMounts"]}
    assert mounts["/tmp"] == "tmp"  # the one writable place: logs and scratch files
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}


@pytest.mark.parametrize("name", ["imdb-gateway", "imdb-bow", "imdb-cnn"])
def test_gateway_and_op_services_mount_the_same_config(name: str) -> None:
    deployment = child(imdb(), "Deployment", name)
    mounts = container(deployment)["volumeMounts"]
    assert {"name": "config", "mountPath": "/etc/pipeserve", "readOnly": True} in mounts
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": "imdb-pipeline"}} in volumes


def test_op_model_claim_is_mounted_read_only() -> None:
    parent = imdb()
    parent["spec"]["ops"][1].update(runtime="onnx", model={"path": "/models/cnn.onnx", "claimName": "models"})
    deployment = child(parent, "Deployment", "imdb-cnn")
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in container(deployment)["volumeMounts"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in (
        deployment["spec"]["template"]["spec"]["volumes"]
    )


def test_op_env_follows_the_defaults_and_the_redis_password_comes_from_its_secret() -> None:
    parent = imdb(payloadStore={"store": "external", "url": "redis://r:6379/0",
                                "passwordSecretRef": {"name": "redis-auth", "key": "password"}})  # fmt: skip
    parent["spec"]["ops"][0]["env"] = [{"name": "OMP_NUM_THREADS", "value": "2"}]
    env = container(child(parent, "Deployment", "imdb-bow"))["env"]
    assert {"name": "PIPESERVE_REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}} in env  # fmt: skip
    assert env[-1] == {"name": "OMP_NUM_THREADS", "value": "2"}
    assert {"name": "HOME", "value": "/tmp"} in env


def test_op_service_is_headless_for_client_side_balancing() -> None:
    service = child(imdb(), "Service", "imdb-cnn")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/instance": "imdb",
        "app.kubernetes.io/component": "op",
        "pipeserve.io/op": "cnn",
    }
    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": 9500, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}
    ]
    deployment = child(imdb(), "Deployment", "imdb-cnn")
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= service["spec"]["selector"].items()


def test_gateway_ops_get_no_deployment() -> None:
    names = [c["metadata"]["name"] for c in render.render_children(imdb())]
    assert "imdb-combine" not in names


# --- Gateway -------------------------------------------------------------------------------


def test_gateway_deployment_serves_the_rendered_config_and_graph() -> None:
    gateway = child(imdb(gateway={"replicas": 3}), "Deployment", "imdb-gateway")
    assert gateway["spec"]["replicas"] == 3
    c = container(gateway)
    assert c["command"] == ["pipeserve"]
    assert c["args"] == ["gateway", "--config", "/etc/pipeserve/config.yml", "--graph", "/etc/pipeserve/graph.yml"]
    assert c["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 5 + 5  # pre-stop + drain
    annotations = gateway["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8080"


def gateway_hash(parent: dict[str, Any]) -> str:
    annotations = child(parent, "Deployment", "imdb-gateway")["spec"]["template"]["metadata"]["annotations"]
    value: str = annotations["pipeserve.io/config-hash"]
    return value


def op_hash(parent: dict[str, Any], op: str) -> str:
    annotations = child(parent, "Deployment", f"imdb-{op}")["spec"]["template"]["metadata"]["annotations"]
    value: str = annotations["pipeserve.io/config-hash"]
    return value


def test_a_dag_change_rolls_the_gateway_and_leaves_the_op_services() -> None:
    before = imdb()
    after = copy.deepcopy(before)
    after["spec"]["ops"][2]["inputs"] = ["cnn", "bow"]
    assert gateway_hash(after) != gateway_hash(before)
    assert len(gateway_hash(before)) == 64
    for op in ("bow", "cnn"):
        assert child(after, "Deployment", f"imdb-{op}") == child(before, "Deployment", f"imdb-{op}")


def test_one_ops_change_changes_only_that_op_service() -> None:
    before = imdb()
    after = copy.deepcopy(before)
    after["spec"]["ops"][0]["batchSize"] = 16
    assert op_hash(after, "bow") != op_hash(before, "bow")
    assert child(after, "Deployment", "imdb-cnn") == child(before, "Deployment", "imdb-cnn")
    image_change = copy.deepcopy(before)
    image_change["spec"]["ops"][1]["image"] = "registry.example/cnn:2"
    changed = [
        c["metadata"]["name"]
        for c, old in zip(render.render_children(image_change), render.render_children(before), strict=True)
        if c != old
    ]
    assert changed == ["imdb-cnn"]
    assert container(child(image_change, "Deployment", "imdb-cnn"))["image"] == "registry.example/cnn:2"


@pytest.mark.parametrize(
    ("setting", "value", "read"),
    [
        ("deviceType", "tensorrt", lambda op: op.runtime.device_type == config_mod.DeviceType.TENSORRT),
        ("precision", "int8", lambda op: op.runtime.precision == "int8"),
        ("concurrency", 6, lambda op: op.concurrency == 6),
    ],
)
def test_device_type_precision_and_concurrency_reach_the_op_service_and_roll_only_its_pods(
    setting: str, value: Any, read: Any
) -> None:
    """The op service reads these from its section of the mounted config.yml (``--op bow``);
    the pod's config-hash annotation is what restarts it when one of them changes."""
    before = imdb()
    after = copy.deepcopy(before)
    after["spec"]["ops"][0][setting] = value

    def bow_config(parent: dict[str, Any]) -> Any:
        config_yml = child(parent, "ConfigMap", "imdb-pipeline")["data"]["config.yml"]
        return config_mod.load(yaml.safe_load(config_yml)).ops["bow"]

    assert read(bow_config(after)) and not read(bow_config(before))
    assert op_hash(after, "bow") != op_hash(before, "bow")
    assert child(after, "Deployment", "imdb-cnn") == child(before, "Deployment", "imdb-cnn")
    assert container(child(after, "Deployment", "imdb-bow"))["args"][:5] == [
        "opservice", "--config", "/etc/pipeserve/config.yml", "--op", "bow"
    ]


def test_gateway_service_has_http_and_grpc_ports_and_the_asked_type() -> None:
    parent = imdb(gateway={"service": {"type": "NodePort", "httpNodePort": 30080, "annotations": {"a": "b"}}})
    service = child(parent, "Service", "imdb-gateway")
    assert service["spec"]["type"] == "NodePort"
    assert service["metadata"]["annotations"] == {"a": "b"}
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP", "appProtocol": "http", "nodePort": 30080},
        {"name": "grpc", "port": 9090, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
    ]
    assert service["spec"]["selector"] == {"app.kubernetes.io/instance": "imdb", "app.kubernetes.io/component": "gateway"}
    assert child(imdb(), "Service", "imdb-gateway")["spec"]["type"] == "ClusterIP"


def test_gateway_settings_and_pull_settings_reach_the_pod() -> None:
    parent = imdb(
        imagePullPolicy="Always",
        imagePullSecrets=[{"name": "regcred"}],
        serviceAccountName="pipelines",
        runAsUser=2000,
        gateway={"image": "registry.example/gateway:3", "resources": {"limits": {"cpu": 2}},
                 "nodeSelector": {"pool": "cpu"}, "env": [{"name": "X", "value": "1"}]},
    )  # fmt: skip
    gateway = child(parent, "Deployment", "imdb-gateway")
    pod = gateway["spec"]["template"]["spec"]
    c = container(gateway)
    assert (c["image"], c["imagePullPolicy"]) == ("registry.example/gateway:3", "Always")
    assert c["resources"] == {"limits": {"cpu": 2}}
    assert c["env"][-1] == {"name": "X", "value": "1"}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "pipelines"
    assert pod["nodeSelector"] == {"pool": "cpu"}
    assert pod["securityContext"]["runAsUser"] == 2000


def test_metrics_off_means_no_scrape_annotations_and_no_metrics_port() -> None:
    parent = imdb(observability={"metrics": False})
    annotations = child(parent, "Deployment", "imdb-gateway")["spec"]["template"]["metadata"]["annotations"]
    assert list(annotations) == ["pipeserve.io/config-hash"]
    assert "--metrics-port" not in container(child(parent, "Deployment", "imdb-bow"))["args"]


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler() -> None:
    parent = imdb()
    parent["spec"]["ops"][0]["autoscaling"] = {"maxReplicas": 4, "targetCPUUtilizationPercentage": 80}
    assert "replicas" not in child(parent, "Deployment", "imdb-bow")["spec"]
    assert child(parent, "Deployment", "imdb-cnn")["spec"]["replicas"] == 1


def test_replicas_zero_is_kept() -> None:
    parent = imdb()
    parent["spec"]["ops"][1]["replicas"] = 0
    assert child(parent, "Deployment", "imdb-cnn")["spec"]["replicas"] == 0


# --- Redis ---------------------------------------------------------------------------------


def test_managed_redis_deployment_and_service() -> None:
    parent = imdb(payloadStore={"store": "managed", "redis": {"image": "redis:7.4", "resources": {"limits": {"memory": "256Mi"}}}})
    redis = child(parent, "Deployment", "imdb-redis")
    c = container(redis)
    assert c["image"] == "redis:7.4"
    assert c["args"] == ["--port", "6379", "--save", "", "--appendonly", "no", "--dir", "/tmp"]
    assert c["resources"] == {"limits": {"memory": "256Mi"}}
    assert redis["spec"]["replicas"] == 1
    service = child(parent, "Service", "imdb-redis")
    assert service["spec"]["ports"] == [{"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}]
    assert service["spec"]["selector"] == {"app.kubernetes.io/instance": "imdb", "app.kubernetes.io/component": "redis"}
    assert redis["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"
