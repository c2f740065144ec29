"""config.yml loading: the seed's example loads, defaults and rules between keys hold,
and every bad value is refused with a message naming the file and the key path.
"""

from __future__ import annotations

import pathlib
import textwrap
from typing import Any

import pytest

from pipeserve.pipeline import config, errors

SEED_EXAMPLE = """\
rpc_port: 18070
http_port: 18071
worker_num: 4
build_dag_each_worker: False
dag:
    is_thread_op: True
    retry: 1
    use_profile: False
    channel_size: 0
    tracer:
        interval_s: 10
op:
    bow:
        concurrency: 1
        client_type: brpc
        retry: 1
        timeout: 3000
        server_endpoints: ["127.0.0.1:9393"]
        client_config: "imdb_bow_client_conf/serving_client_conf.prototxt"
        fetch_list: ["prediction"]
        batch_size: 2
        auto_batching_timeout: 2000
    cnn:
        concurrency: 1
        client_type: brpc
        retry: 1
        timeout: 3000
        server_endpoints: ["127.0.0.1:9292"]
        client_config: "imdb_cnn_client_conf/serving_client_conf.prototxt"
        fetch_list: ["prediction"]
        batch_size: 2
        auto_batching_timeout: 2000
    combine:
        concurrency: 1
        retry: 1
        timeout: 3000
        batch_size: 2
        auto_batching_timeout: 2000
"""


def write(tmp_path: pathlib.Path, text: str, name: str = "config.yml") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_op(op: dict[str, Any]) -> config.OpConfig:
    return config.load({"http_port": 0, "op": {"bow": op}}).ops["bow"]


def error_of(tmp_path: pathlib.Path, text: str) -> str:
    with pytest.raises(errors.ConfigError) as info:
        config.load(write(tmp_path, text))
    return str(info.value)


# --- The seed's example and defaults -------------------------------------------------


def test_seed_example_config_loads_into_the_right_attributes(tmp_path: pathlib.Path) -> None:
    loaded = config.load(write(tmp_path, SEED_EXAMPLE))

    assert loaded.source == "config.yml"
    assert (loaded.rpc_port, loaded.http_port) == (18070, 18071)
    assert loaded.worker_num == 4
    assert loaded.build_dag_each_worker is False
    assert loaded.dag == config.DagConfig(
        is_thread_op=True, retry=1, use_profile=False, channel_size=0, tracer_interval_s=10.0
    )
    assert list(loaded.ops) == ["bow", "cnn", "combine"]
    assert loaded.ops["bow"] == config.OpConfig(
        name="bow",
        concurrency=1,
        timeout_ms=3000,
        retry=1,
        batch_size=2,
        auto_batching_timeout_ms=2000,
        server_endpoints=("127.0.0.1:9393",),
        fetch_list=("prediction",),
        client_config="imdb_bow_client_conf/serving_client_conf.prototxt",
        client_type="brpc",
    )
    assert loaded.ops["cnn"].server_endpoints == ("127.0.0.1:9292",)
    assert loaded.ops["combine"].client_type is None
    assert loaded.ops["combine"].runtime == config.RuntimeConfig()


def test_defaults_fill_every_key_left_out() -> None:
    loaded = config.load({"rpc_port": 9000})

    assert loaded == config.ServerConfig(source="<dict>", rpc_port=9000)
    assert loaded.http_port is None
    assert loaded.methods == ("prediction",)
    assert loaded.dag.timeout_ms == 30000
    assert loaded.dag.tracer_interval_s is None
    assert loaded.ops == {}


def test_a_key_left_empty_keeps_its_default(tmp_path: pathlib.Path) -> None:
    loaded = config.load(write(tmp_path, "http_port: 8080\nworker_num:\ndag:\nop:\n  bow:\n"))

    assert loaded.worker_num == 1
    assert loaded.dag == config.DagConfig()
    assert loaded.ops["bow"] == config.OpConfig(name="bow")


def test_paddle_only_dag_keys_are_accepted() -> None:
    loaded = config.load(
        {"http_port": 0, "dag": {"channel_recv_frist_arrive": True, "client_type": "brpc"}}
    )

    assert loaded.dag.client_type == "brpc"


# --- Ports ---------------------------------------------------------------------------


def test_rpc_port_defaults_to_http_port_plus_one() -> None:
    assert config.load({"http_port": 18071}).rpc_port == 18072


def test_http_port_stays_empty_when_only_rpc_port_is_set() -> None:
    loaded = config.load({"rpc_port": 18070})

    assert (loaded.rpc_port, loaded.http_port) == (18070, None)


def test_port_zero_picks_a_free_port_for_both_servers() -> None:
    loaded = config.load({"http_port": 0})

    assert (loaded.rpc_port, loaded.http_port) == (0, 0)


def test_both_ports_empty_is_refused_naming_both_keys(tmp_path: pathlib.Path) -> None:
    assert error_of(tmp_path, "rpc_port:\nhttp_port:\n") == (
        "config.yml: rpc_port, http_port: cannot both be empty; set rpc_port, or http_port "
        "(rpc_port defaults to it + 1), got None"
    )


def test_an_empty_file_is_refused_because_both_ports_are_missing(tmp_path: pathlib.Path) -> None:
    message = error_of(tmp_path, "")

    assert message.startswith("config.yml: rpc_port, http_port: cannot both be empty")


def test_a_port_out_of_range_is_refused() -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.load({"rpc_port": 70000})

    assert str(info.value) == "<dict>: rpc_port: must be an integer in 0..65535, got 70000"


def test_the_same_port_for_both_servers_is_refused() -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.load({"rpc_port": 9000, "http_port": 9000})

    assert str(info.value) == "<dict>: http_port: must differ from rpc_port (9000), got 9000"


# --- Names, methods, limits --------------------------------------------------------------


def test_name_in_the_file_wins_over_the_default_name() -> None:
    assert config.load({"http_port": 0, "name": "imdb"}, name="other").name == "imdb"
    assert config.load({"http_port": 0}, name="other").name == "other"


def test_method_accepts_one_name_or_a_list() -> None:
    assert config.load({"http_port": 0, "method": "predict"}).methods == ("predict",)
    assert config.load({"http_port": 0, "method": ["a", "b.v2"]}).methods == ("a", "b.v2")


def test_a_method_with_a_slash_is_refused_naming_its_index() -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.load({"http_port": 0, "method": ["ok", "a/b"]})

    assert str(info.value) == (
        "<dict>: method[1]: must match [A-Za-z0-9_.-]+ (letters, digits, '_', '.', '-'), got 'a/b'"
    )


@pytest.mark.parametrize(
    ("settings", "limit"),
    [
        ({}, 1),
        ({"worker_num": 8, "max_in_flight": 5}, 5),
        ({"worker_num": 8, "dag": {"channel_size": 3}}, 3),
        ({"worker_num": 8, "build_dag_each_worker": True}, 1024),
        ({"worker_num": 8, "build_dag_each_worker": True, "dag": {"channel_size": 3}}, 3),
    ],
)
def test_in_flight_limit_is_the_smallest_cap_that_applies(
    settings: dict[str, Any], limit: int
) -> None:
    assert config.in_flight_limit(config.load({"http_port": 0, **settings})) == limit


def test_op_is_thread_op_overrides_the_dag() -> None:
    ops = {"a": {"is_thread_op": True}, "b": {}}
    loaded = config.load({"http_port": 0, "dag": {"is_thread_op": False}, "op": ops})

    assert config.effective_is_thread_op(loaded, "a") is True
    assert config.effective_is_thread_op(loaded, "b") is False
    assert config.effective_is_thread_op(loaded, "not_in_config") is False


# --- DAG section ---------------------------------------------------------------------


def tracer_interval(tracer: object) -> float | None:
    return config.load({"http_port": 0, "dag": {"tracer": tracer}}).dag.tracer_interval_s


def test_tracer_interval_lands_in_seconds_and_an_empty_tracer_means_none() -> None:
    assert tracer_interval({"interval_s": 2.5}) == 2.5
    assert tracer_interval(None) is None
    assert tracer_interval({}) is None
    assert tracer_interval({"interval_s": -1}) is None  # Paddle's default: tracer off


def test_a_zero_tracer_interval_is_refused() -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.load({"http_port": 0, "dag": {"tracer": {"interval_s": 0}}})

    assert str(info.value) == (
        "<dict>: dag.tracer.interval_s: must be a number of seconds > 0, got 0"
    )


def test_a_zero_dag_timeout_is_refused() -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.load({"http_port": 0, "dag": {"timeout": 0}})

    assert str(info.value) == (
        "<dict>: dag.timeout: must be a number of ms > 0, or -1 for no timeout, got 0"
    )


# --- Op section ----------------------------------------------------------------------


def test_any_negative_op_timeout_means_none() -> None:
    assert load_op({"timeout": -5}).timeout_ms == -1


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        ("", ()),
        ("0", (0,)),
        ("0,1,2", (0, 1, 2)),
        (" 1 , 3 ", (1, 3)),
        (2, (2,)),
        ([0, 1], (0, 1)),
    ],
)
def test_devices_are_read_from_strings_ints_and_lists(
    devices: object, expected: tuple[int, ...]
) -> None:
    assert load_op({"devices": devices}).runtime.devices == expected


def test_devices_without_device_type_mean_gpu_and_none_mean_cpu() -> None:
    assert load_op({"devices": "0,1"}).runtime.device_type is config.DeviceType.GPU
    assert load_op({"devices": ""}).runtime.device_type is config.DeviceType.CPU


@pytest.mark.parametrize(
    ("device_type", "expected"),
    [
        (0, config.DeviceType.CPU),
        ("CPU", config.DeviceType.CPU),
        ("tensorrt", config.DeviceType.TENSORRT),
        ("TRT", config.DeviceType.TENSORRT),
        (3, config.DeviceType.ARM_CPU),
        ("arm", config.DeviceType.ARM_CPU),
        ("xpu", config.DeviceType.XPU),
    ],
)
def test_device_type_accepts_seed_numbers_and_names(
    device_type: object, expected: config.DeviceType
) -> None:
    assert load_op({"device_type": device_type, "devices": "0"}).runtime.device_type is expected


def test_device_type_wins_over_devices_and_cpu_drops_card_ids() -> None:
    runtime = load_op({"device_type": "cpu", "devices": "0,1"}).runtime

    assert runtime.device_type is config.DeviceType.CPU
    assert (runtime.devices, runtime.device_id) == ((), None)


def test_precision_aliases_are_normalised() -> None:
    assert load_op({"precision": "FLOAT16"}).runtime.precision == "fp16"
    assert load_op({"precision": "bfloat16"}).runtime.precision == "bf16"


def test_local_service_conf_fills_runtime_and_keeps_other_keys_as_options() -> None:
    op = load_op(
        {
            "local_service_conf": {
                "model_config": "imdb_bow_model",
                "device_type": 1,
                "devices": "0,1",
                "precision": "fp16",
                "fetch_list": ["prediction"],
                "client_type": "local_predictor",
                "use_mkldnn": False,
                "ir_optim": True,
                "some_future_option": [1, 2],
            }
        }
    )

    assert op.runtime == config.RuntimeConfig(
        device_type=config.DeviceType.GPU,
        devices=(0, 1),
        precision="fp16",
        options={
            "model_config": "imdb_bow_model",
            "use_mkldnn": False,
            "ir_optim": True,
            "some_future_option": [1, 2],
        },
    )
    assert (op.fetch_list, op.client_type) == (("prediction",), "local_predictor")


def test_the_same_value_in_both_places_is_accepted() -> None:
    op = load_op({"devices": "0", "local_service_conf": {"devices": 0}})

    assert op.runtime.devices == (0,)


# --- Error messages ------------------------------------------------------------------


def test_a_bad_value_names_the_file_and_key_path(tmp_path: pathlib.Path) -> None:
    text = "http_port: 0\nop:\n  bow:\n    batch_size: 0\n"

    assert error_of(tmp_path, text) == (
        "config.yml: op.bow.batch_size: must be an integer >= 1, got 0"
    )


def test_a_bool_is_not_an_integer(tmp_path: pathlib.Path) -> None:
    text = "http_port: 0\nop:\n  bow:\n    batch_size: true\n"

    assert error_of(tmp_path, text) == (
        "config.yml: op.bow.batch_size: must be an integer >= 1, got True"
    )


def test_a_string_where_a_bool_belongs_is_refused(tmp_path: pathlib.Path) -> None:
    text = "http_port: 0\ndag:\n  is_thread_op: 'yes'\n"

    assert error_of(tmp_path, text) == (
        "config.yml: dag.is_thread_op: must be true or false, got 'yes'"
    )


def test_an_unknown_key_suggests_the_closest_known_one(tmp_path: pathlib.Path) -> None:
    text = "http_port: 0\nop:\n  bow:\n    batchsize: 2\n"

    assert error_of(tmp_path, text) == (
        "config.yml: op.bow.batchsize: unknown key; did you mean 'batch_size'? (allowed: "
        "auto_batching_timeout, batch_size, class, client_config, client_type, concurrency, "
        "device_type, devices, fetch_list, inline, is_thread_op, local_service_conf, "
        "precision, retry, server_endpoints, timeout), got 2"
    )


def test_an_unknown_top_level_key_without_a_close_match_lists_the_allowed_keys() -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.load({"http_port": 0, "zzz": 1})

    assert str(info.value) == (
        "<dict>: zzz: unknown key (allowed: build_dag_each_worker, dag, host, http_port, log, log_dir, "
        "max_in_flight, max_request_bytes, method, metrics, name, op, payload, rpc_port, worker_num), got 1"
    )


def test_batch_size_above_one_requires_auto_batching_timeout(tmp_path: pathlib.Path) -> None:
    text = "http_port: 0\nop:\n  bow:\n    batch_size: 4\n"

    assert error_of(tmp_path, text) == (
        "config.yml: op.bow.auto_batching_timeout: required when batch_size > 1 "
        "(ms to wait for a full batch), got None"
    )


def test_a_precision_the_device_type_lacks_is_refused(tmp_path: pathlib.Path) -> None:
    text = "http_port: 0\nop:\n  bow:\n    device_type: cpu\n    precision: int8\n"

    assert error_of(tmp_path, text) == (
        "config.yml: op.bow.precision: device_type cpu supports fp32, fp16, bf16, got 'int8'"
    )


def test_a_precision_set_in_local_service_conf_is_reported_there() -> None:
    with pytest.raises(errors.ConfigError) as info:
        load_op({"local_service_conf": {"devices": "0", "precision": "bf16"}})

    assert str(info.value) == (
        "<dict>: op.bow.local_service_conf.precision: device_type gpu supports fp32, fp16, int8, "
        "got 'bf16'"
    )


def test_gpu_without_devices_is_refused(tmp_path: pathlib.Path) -> None:
    text = "http_port: 0\nop:\n  bow:\n    device_type: 1\n"

    assert error_of(tmp_path, text) == (
        'config.yml: op.bow.devices: device_type gpu needs devices, e.g. "0", got None'
    )


def test_a_bad_device_id_is_refused() -> None:
    with pytest.raises(errors.ConfigError) as info:
        load_op({"devices": "0,x"})

    assert str(info.value) == (
        '<dict>: op.bow.devices: must be card ids like "0" or "0,1,2", or "" for CPU, got \'0,x\''
    )


def test_local_service_conf_conflicting_with_a_flat_key_is_refused(tmp_path: pathlib.Path) -> None:
    text = """\
        http_port: 0
        op:
          bow:
            devices: "0"
            local_service_conf:
              devices: "1"
    """

    assert error_of(tmp_path, text) == (
        "config.yml: op.bow.local_service_conf.devices: conflicts with devices: '0' set on the op; "
        "set it in one place, got '1'"
    )


def test_a_wrong_section_type_is_refused(tmp_path: pathlib.Path) -> None:
    assert error_of(tmp_path, "http_port: 0\nop: [1, 2]\n") == (
        "config.yml: op: must be a mapping of keys to values, got [1, 2]"
    )
    assert error_of(tmp_path, "http_port: 0\ndag: 5\n") == (
        "config.yml: dag: must be a mapping of keys to values, got 5"
    )


def test_a_top_level_list_is_refused(tmp_path: pathlib.Path) -> None:
    assert error_of(tmp_path, "- 1\n") == (
        "config.yml: (top level): must be a mapping of keys to values, got [1]"
    )


def test_a_bad_endpoint_is_refused_naming_its_index() -> None:
    with pytest.raises(errors.ConfigError) as info:
        load_op({"server_endpoints": ["127.0.0.1:9393", "localhost"]})

    assert str(info.value) == (
        '<dict>: op.bow.server_endpoints[1]: must be "host:port" or a gRPC target such as '
        '"dns:///name:port", got \'localhost\''
    )


def test_an_unknown_client_type_is_refused() -> None:
    with pytest.raises(errors.ConfigError) as info:
        load_op({"client_type": "http"})

    assert str(info.value) == (
        "<dict>: op.bow.client_type: must be one of brpc, grpc, local_predictor, got 'http'"
    )


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: pathlib.Path) -> None:
    assert error_of(tmp_path, "http_port: 0\nop: a: b\n") == (
        "config.yml: line 2, column 6: invalid YAML: mapping values are not allowed here"
    )


def test_a_missing_file_is_refused_naming_its_path(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nowhere" / "config.yml"

    with pytest.raises(errors.ConfigError) as info:
        config.load(path)

    assert str(info.value) == (
        f"config.yml: cannot read the config file {str(path)!r}: No such file or directory"
    )


def test_op_overrides_set_keys_over_the_ops_section_and_are_checked_like_it(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        "http_port: 8000\nop:\n  bow:\n    concurrency: 1\n"
        "    local_service_conf: {device_type: gpu, devices: '0', precision: fp32, model_config: m}\n"
    )
    overrides = {"bow": {"concurrency": 3, "local_service_conf": {"precision": "fp16"}}}
    bow = config.load(path, op_overrides=overrides).ops["bow"]
    assert bow.concurrency == 3
    assert (bow.runtime.device_type, bow.runtime.precision, bow.runtime.devices) == (config.DeviceType.GPU, "fp16", (0,))
    assert bow.runtime.options == {"model_config": "m"}  # the rest of local_service_conf stays
    with pytest.raises(errors.ConfigError, match=r"^config\.yml: op\.bow\.local_service_conf\.precision: .*bf16"):
        config.load(path, op_overrides={"bow": {"local_service_conf": {"precision": "bf16"}}})
