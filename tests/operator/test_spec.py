"""Specs the CRD schema cannot catch are refused before anything is rendered, with a message
that names the op and the field (the InvalidSpec condition and Event show it as is)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipeserve.operator import render, spec
from pipeserve.operator.spec import InvalidSpecError


def imdb_spec() -> dict[str, Any]:
    return {
        "image": "imdb:1",
        "request": {"class": "ops:ImdbRequestOp"},
        "ops": [
            {"name": "bow", "class": "ops:BowOp", "placement": "service",
             "resources": {"limits": {"nvidia.com/gpu": 1}}},
            {"name": "cnn", "class": "ops:CnnOp", "placement": "service",
             "resources": {"limits": {"nvidia.com/gpu": 1}}},
            {"name": "combine", "class": "ops:CombineOp", "inputs": ["bow", "cnn"]},
        ],
        "payloadStore": {"store": "managed"},
    }  # fmt: skip


def refused(changed: dict[str, Any]) -> InvalidSpecError:
    with pytest.raises(InvalidSpecError) as caught:
        spec.validate(changed)
    return caught.value


def test_the_imdb_spec_is_valid() -> None:
    spec.validate(imdb_spec())


def test_unknown_input_names_op_field_and_the_known_ops() -> None:
    bad = imdb_spec()
    bad["ops"][2]["inputs"] = ["bow", "cn"]
    error = refused(bad)
    assert str(error) == "op 'combine': spec.ops[2].inputs: unknown input 'cn' (ops: bow, cnn, combine)"
    assert (error.op, error.field) == ("combine", "spec.ops[2].inputs")


def test_cycle_names_the_ops_on_it() -> None:
    bad = imdb_spec()
    bad["ops"][0]["inputs"] = ["combine"]
    error = refused(bad)
    assert str(error) == "op 'bow': spec.ops[0].inputs: cycle bow -> combine -> bow"
    assert (error.op, error.field) == ("bow", "spec.ops[0].inputs")


def test_an_op_reading_itself_is_refused() -> None:
    bad = imdb_spec()
    bad["ops"][2]["inputs"] = ["combine"]
    assert str(refused(bad)) == "op 'combine': spec.ops[2].inputs[0]: an op cannot take its own output"


def test_duplicate_op_name_points_at_the_first() -> None:
    bad = imdb_spec()
    bad["ops"][1]["name"] = "bow"
    error = refused(bad)
    assert str(error) == "op 'bow': spec.ops[1].name: duplicate op name (also spec.ops[0])"
    assert error.field == "spec.ops[1].name"


@pytest.mark.parametrize("op_class", ["ops.BowOp", "BowOp", "ops:", ":BowOp", "ops:Bow Op", "1ops:BowOp"])
def test_class_must_be_module_colon_class(op_class: str) -> None:
    bad = imdb_spec()
    bad["ops"][0]["class"] = op_class
    error = refused(bad)
    assert str(error) == f"op 'bow': spec.ops[0].class: must be \"module:Class\", e.g. \"ops:BowOp\", got {op_class!r}"
    assert (error.op, error.field) == ("bow", "spec.ops[0].class")


def test_class_may_be_a_dotted_module_and_nested_class() -> None:
    good = imdb_spec()
    good["ops"][0]["class"] = "my_pkg.ops:Models.BowOp"
    spec.validate(good)


def test_gpu_op_with_placement_gateway_is_refused() -> None:
    bad = imdb_spec()
    bad["ops"][0]["placement"] = "gateway"
    error = refused(bad)
    assert str(error) == "op 'bow': spec.ops[0].placement: a GPU op must run as an op service: set placement: service"
    assert (error.op, error.field) == ("bow", "spec.ops[0].placement")


def test_gpu_device_type_in_the_gateway_is_refused_even_without_a_gpu_resource() -> None:
    bad = imdb_spec()
    bad["ops"][2]["deviceType"] = "gpu"
    assert refused(bad).field == "spec.ops[2].placement"


def test_gpu_device_type_needs_a_gpu_resource() -> None:
    bad = imdb_spec()
    del bad["ops"][0]["resources"]
    bad["ops"][0]["deviceType"] = "tensorrt"
    assert str(refused(bad)) == (
        "op 'bow': spec.ops[0].resources: deviceType tensorrt needs a GPU: set resources.limits.nvidia.com/gpu"
    )


def test_gpu_requests_and_limits_must_agree() -> None:
    bad = imdb_spec()
    bad["ops"][0]["resources"] = {"requests": {"nvidia.com/gpu": 2}, "limits": {"nvidia.com/gpu": 1}}
    assert str(refused(bad)) == (
        "op 'bow': spec.ops[0].resources: requests (2) and limits (1) of nvidia.com/gpu must be equal"
    )


def test_gpu_count_must_be_whole() -> None:
    bad = imdb_spec()
    bad["ops"][0]["resources"] = {"limits": {"nvidia.com/gpu": "500m"}}
    assert refused(bad).field == "spec.ops[0].resources.limits.nvidia.com/gpu"


def test_op_service_settings_on_a_gateway_op_are_refused() -> None:
    bad = imdb_spec()
    bad["ops"][2]["replicas"] = 3
    assert str(refused(bad)) == (
        "op 'combine': spec.ops[2].replicas: replicas applies to op services only; "
        "set placement: service or use spec.gateway"
    )


def test_batch_size_above_one_needs_an_auto_batching_timeout() -> None:
    bad = imdb_spec()
    bad["ops"][0]["batchSize"] = 8
    assert str(refused(bad)) == (
        "op 'bow': spec.ops[0].autoBatchingTimeoutMs: required when batchSize > 1 (ms to wait for a full batch)"
    )


def test_precision_must_suit_the_device() -> None:
    bad = imdb_spec()
    bad["ops"][2]["precision"] = "int8"
    assert str(refused(bad)) == "op 'combine': spec.ops[2].precision: deviceType cpu supports fp32, fp16, bf16, got 'int8'"


def test_runtime_needs_a_model_path() -> None:
    bad = imdb_spec()
    bad["ops"][0]["runtime"] = "onnx"
    assert refused(bad).field == "spec.ops[0].model.path"


def test_an_op_whose_output_reaches_no_response_is_refused() -> None:
    bad = imdb_spec()
    bad["ops"].append({"name": "extra", "class": "ops:BowOp"})
    bad["response"] = {"inputs": ["combine"]}
    assert str(refused(bad)) == (
        "op 'extra': spec.ops[3]: its output never reaches the response: "
        "make a later op take it as input, or remove it"
    )


def test_two_ends_need_a_response_that_merges_them() -> None:
    bad = imdb_spec()
    bad["ops"].pop()
    error = refused(bad)
    assert error.field == "spec.response.inputs"
    assert error.op is None
    assert str(error).startswith("spec.response.inputs: the ops bow, cnn all end the DAG")


def test_unknown_response_input_is_refused() -> None:
    bad = imdb_spec()
    bad["response"] = {"inputs": ["combined"]}
    assert str(refused(bad)) == "spec.response.inputs: unknown op 'combined' (ops: bow, cnn, combine)"


@pytest.mark.parametrize("name", ["gateway", "redis"])
def test_names_of_the_pipelines_own_children_are_reserved(name: str) -> None:
    bad = imdb_spec()
    bad["ops"][2]["name"] = name
    bad["ops"][2]["inputs"] = ["bow", "cnn"]
    assert refused(bad).field == "spec.ops[2].name"


def test_op_name_must_be_a_dns_label() -> None:
    bad = imdb_spec()
    bad["ops"][0]["name"] = "Bow_Op"
    assert refused(bad).field == "spec.ops[0].name"


def test_payload_store_rules() -> None:
    external = imdb_spec()
    external["payloadStore"] = {"store": "external"}
    assert str(refused(external)) == (
        "spec.payloadStore.url: required when store is external (e.g. redis://redis:6379/0)"
    )
    with_password = imdb_spec()
    with_password["payloadStore"] = {"store": "external", "url": "redis://:hunter2@redis:6379/0"}
    message = str(refused(with_password))
    assert message == "spec.payloadStore.url: must not hold a password; put it in a Secret (passwordSecretRef)"
    assert "hunter2" not in message
    secret_on_managed = imdb_spec()
    secret_on_managed["payloadStore"]["passwordSecretRef"] = {"name": "s", "key": "k"}
    assert str(refused(secret_on_managed)) == "spec.payloadStore.passwordSecretRef: only with store: external"


def test_gateway_ports_must_differ() -> None:
    bad = imdb_spec()
    bad["gateway"] = {"httpPort": 9000, "grpcPort": 9000}
    assert str(refused(bad)) == "spec.gateway.grpcPort: must differ from httpPort (9000)"


def test_autoscaler_bounds_and_targets() -> None:
    bad = imdb_spec()
    bad["ops"][0]["autoscaling"] = {"minReplicas": 5, "maxReplicas": 2, "targetCPUUtilizationPercentage": 50}
    assert str(refused(bad)) == "op 'bow': spec.ops[0].autoscaling.minReplicas: must be <= maxReplicas (2), got 5"
    no_target = imdb_spec()
    no_target["ops"][0]["autoscaling"] = {"maxReplicas": 2}
    assert refused(no_target).field == "spec.ops[0].autoscaling"


def test_disruption_budget_takes_exactly_one_bound() -> None:
    bad = imdb_spec()
    bad["gateway"] = {"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}
    assert str(refused(bad)) == "spec.gateway.podDisruptionBudget: set exactly one of minAvailable or maxUnavailable"


def test_names_too_long_for_kubernetes_are_refused() -> None:
    parent = {"metadata": {"name": "a" * 56, "namespace": "ml", "uid": "u"}, "spec": imdb_spec()}
    with pytest.raises(InvalidSpecError) as caught:
        render.render_children(parent)
    assert caught.value.field == "metadata.name"
    assert "over 63 characters" in str(caught.value)


def test_pipeline_name_must_be_a_service_name() -> None:
    parent = {"metadata": {"name": "1imdb", "namespace": "ml", "uid": "u"}, "spec": imdb_spec()}
    with pytest.raises(InvalidSpecError) as caught:
        render.render_children(parent)
    assert caught.value.field == "metadata.name"


def test_an_invalid_spec_renders_nothing() -> None:
    bad = imdb_spec()
    bad["ops"][2]["inputs"] = ["nope"]
    parent = {"metadata": {"name": "imdb", "namespace": "ml", "uid": "u"}, "spec": bad}
    for function in (render.render_children, render.render_pipeline_config, render.render_graph):
        with pytest.raises(InvalidSpecError, match=r"^op 'combine': spec.ops\[2\].inputs: unknown input 'nope'"):
            function(parent)


def test_validation_does_not_change_the_spec() -> None:
    good = imdb_spec()
    before = copy.deepcopy(good)
    spec.validate(good)
    assert good == before
