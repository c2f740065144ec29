"""The codec: round trips keep every allowed dtype and shape; bad input gets an exact message.

Aspects: binary round trip, JSON round trip (client → HTTP body → server), decode-time
validation of every field, byte counts checked without allocating, op outputs.
"""

from __future__ import annotations

import base64
import tracemalloc
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeserve import codec
from pipeserve.pipeline import errors
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb

LIMIT = 64 * 1024 * 1024
ALLOWED = ", ".join(codec.ALLOWED_DTYPES)

arrays = st.sampled_from(codec.ALLOWED_DTYPES).flatmap(
    lambda name: hnp.arrays(
        # Both byte orders go in; the wire is always little-endian.
        dtype=st.sampled_from([np.dtype(name), np.dtype(name).newbyteorder()]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
    )
)
keys = st.text(min_size=1, max_size=8)


def assert_same_array(got: Any, want: np.ndarray) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype.newbyteorder("<")
    assert got.shape == want.shape
    assert got.tobytes() == want.astype(got.dtype).tobytes()  # bitwise: NaN, -0.0 included


def body(obj: object) -> bytes:
    return orjson.dumps(obj)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tensor_json(dtype: str = "float32", shape: list[Any] | None = None, data: bytes = b"") -> Any:
    return {"dtype": dtype, "shape": [] if shape is None else shape, "data": b64(data)}


def request_error(raw: bytes) -> str:
    with pytest.raises(errors.RequestError) as info:
        codec.request_from_json(raw, LIMIT)
    return info.value.message


# --- round trips -------------------------------------------------------------------------


@given(arrays)
def test_array_survives_tensor_round_trip(a: np.ndarray) -> None:
    t = codec.tensor_from_array(a, "x")
    assert t.dtype == a.dtype.name
    assert_same_array(codec.array_from_tensor(pb.Tensor.FromString(t.SerializeToString()), "x"), a)


@given(
    tensors=st.dictionaries(keys.map(lambda k: "t" + k), arrays, max_size=3),
    strings=st.dictionaries(keys.map(lambda k: "s" + k), st.text(), max_size=3),
    logid=st.none() | st.integers(-(2**63), 2**63 - 1),
)
def test_feed_survives_json_round_trip(
    tensors: dict[str, np.ndarray], strings: dict[str, str], logid: int | None
) -> None:
    req = codec.request_from_values({**strings, **tensors}, name="imdb", logid=logid)
    back = codec.request_from_json(codec.request_to_json(req), LIMIT)
    assert back == req
    values = codec.values_from_request(back)
    assert values.keys() == {**strings, **tensors}.keys()
    for k, s in strings.items():
        assert values[k] == s
    for k, a in tensors.items():
        assert_same_array(values[k], a)


@given(
    tensors=st.dictionaries(keys.map(lambda k: "t" + k), arrays, max_size=3),
    strings=st.dictionaries(keys.map(lambda k: "s" + k), st.text(), max_size=3),
)
def test_output_survives_response_json_round_trip(
    tensors: dict[str, np.ndarray], strings: dict[str, str]
) -> None:
    resp = codec.response_from_values({**strings, **tensors}, err_no=3, err_msg="partly")
    back = codec.response_from_json(codec.response_to_json(resp))
    assert back == resp
    values = codec.values_from_response(back)
    assert {k: values[k] for k in strings} == strings
    for k, a in tensors.items():
        assert_same_array(values[k], a)


def test_request_json_has_the_seed_layout() -> None:
    req = codec.request_from_values({"words": "hi", "x": np.array([1.5], "<f4")}, logid=7)
    assert orjson.loads(codec.request_to_json(req)) == {
        "key": ["words"],
        "value": ["hi"],
        "logid": 7,
        "tensors": {"x": {"dtype": "float32", "shape": [1], "data": b64(b"\x00\x00\xc0\x3f")}},
    }


def test_response_json_has_the_seed_layout() -> None:
    resp = codec.response_from_values({"label": "pos", "prob": np.float64(0.5)})
    assert orjson.loads(codec.response_to_json(resp)) == {
        "err_no": 0,
        "err_msg": "",
        "key": ["label"],
        "value": ["pos"],
        "tensors": {"prob": {"dtype": "float64", "shape": [], "data": b64(b"\0" * 6 + b"\xe0?")}},
    }


def test_missing_key_and_value_mean_empty_lists() -> None:
    assert codec.values_from_request(codec.request_from_json(b"{}", LIMIT)) == {}


def test_null_fields_count_as_absent() -> None:
    req = codec.request_from_json(body({"name": None, "logid": None, "key": None}), LIMIT)
    assert not req.HasField("name") and not req.HasField("logid") and list(req.key) == []


# --- bad requests: exact messages --------------------------------------------------------


def test_body_over_the_limit_is_refused_before_parsing() -> None:
    with pytest.raises(errors.PayloadTooLargeError) as info:
        codec.request_from_json(b"x" * 101, 100)
    assert info.value.message == "request body: 101 bytes is over the limit of 100"


def test_malformed_json_names_the_reason() -> None:
    assert request_error(b'{"key": [') == (
        "request body: not valid JSON (unexpected end of data: line 1 column 10 (char 9))"
    )


def test_top_level_must_be_an_object() -> None:
    assert request_error(b"[1]") == "request body: must be a JSON object, got array"


def test_unknown_field_is_named_with_the_allowed_ones() -> None:
    assert request_error(body({"key": [], "feed": {}})) == (
        "request body: unknown field 'feed'; "
        "use only key, value, name, method, logid, clientip, tensors, batch, profile"
    )


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"key": "a"}, "key: must be an array of strings, got string"),
        ({"value": ["a", 1]}, "value[1]: must be a string, got int"),
        ({"name": 3}, "name: must be a string, got int"),
        ({"method": []}, "method: must be a string, got array"),
        ({"clientip": 1.5}, "clientip: must be a string, got float"),
        ({"logid": True}, "logid: must be an integer, got bool"),
        ({"logid": "7"}, "logid: must be an integer, got string"),
        (
            {"logid": 2**64 - 1},
            f"logid: must be an integer from {-(2**63)} to {2**63 - 1}, got {2**64 - 1}",
        ),
        ({"batch": 1}, "batch: must be true or false, got int"),
        ({"tensors": []}, "tensors: must be an object of tensors by key, got array"),
        ({"tensors": {"x": 1}}, "tensors.x: must be an object of dtype, shape, data, got int"),
    ],
)
def test_wrong_field_is_named(obj: object, message: str) -> None:
    assert request_error(body(obj)) == message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"data": ...}, ": missing field 'data'"),
        ({"order": "C"}, ": unknown field 'order'; use only dtype, shape, data"),
        ({"dtype": 4}, ".dtype: must be a string, got int"),
        ({"dtype": "complex64"}, f".dtype: unsupported dtype 'complex64'; use one of {ALLOWED}"),
        ({"shape": 2}, ".shape: must be an array of integers, got int"),
        ({"shape": [-1]}, ".shape[0]: must be an integer >= 0, got -1"),
        ({"shape": [1, True]}, ".shape[1]: must be an integer >= 0, got bool"),
        ({"shape": [0, 2**63]}, f".shape[1]: must be an integer below 2**63, got {2**63}"),
        ({"shape": [1] * 65}, ".shape: 65 dimensions is over the limit of 64"),
        ({"data": None}, ".data: must be a string, got null"),
        ({"data": "ab!="}, ".data: not valid base64 (Only base64 data is allowed)"),
        ({"data": "é"}, ".data: not valid base64 (string argument should contain only ASCII "
                        "characters)"),
        ({"shape": [2, 2], "data": b64(bytes(12))},
         ": 12 bytes do not match float32 x [2, 2] (16 bytes)"),
    ],
)  # fmt: skip
def test_wrong_tensor_field_is_named(fields: dict[str, Any], message: str) -> None:
    tensor = {k: v for k, v in {**tensor_json(), **fields}.items() if v is not ...}
    assert request_error(body({"tensors": {"x": tensor}})) == "tensors.x" + message


def test_huge_declared_shape_fails_fast_without_allocating() -> None:
    raw = body({"tensors": {"x": tensor_json("int8", [2**40, 2**40], bytes(8))}})
    assert request_error(raw) == (
        f"tensors.x: 8 bytes do not match int8 x [{2**40}, {2**40}] ({2**80} bytes)"
    )
    t = pb.Tensor(dtype="float64", shape=[2**62, 2**62], data=bytes(8))
    with pytest.raises(errors.RequestError) as info:
        codec.array_from_tensor(t, "tensors.x")
    assert info.value.message == (
        f"tensors.x: 8 bytes do not match float64 x [{2**62}, {2**62}] ({8 * 2**124} bytes)"
    )


def test_declared_size_is_never_allocated() -> None:
    t = pb.Tensor(dtype="int8", shape=[2**10, 2**17], data=bytes(8))  # 128 MiB declared
    tracemalloc.start()
    try:
        with pytest.raises(errors.RequestError):
            codec.array_from_tensor(t, "t")
        with pytest.raises(errors.RequestError):
            codec.request_from_json(body({"tensors": {"t": tensor_json("int8", [2**27])}}), LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize(
    ("dtype", "shape", "data", "message"),
    [
        ("complex64", [1], bytes(8), 
         f"t.dtype: unsupported dtype 'complex64'; use one of {ALLOWED}"),
        ("object", [1], bytes(8), f"t.dtype: unsupported dtype 'object'; use one of {ALLOWED}"),
        ("", [1], bytes(8), f"t.dtype: unsupported dtype ''; use one of {ALLOWED}"),
        ("int8", [2, -3], b"", "t.shape[1]: must be an integer >= 0, got -3"),
        ("float32", [2, 2], bytes(12), "t: 12 bytes do not match float32 x [2, 2] (16 bytes)"),
        ("float32", [], b"", "t: 0 bytes do not match float32 x [] (4 bytes)"),
    ],
)  # fmt: skip
def test_bad_binary_tensor_is_refused(
    dtype: str, shape: list[int], data: bytes, message: str
) -> None:
    with pytest.raises(errors.RequestError) as info:
        codec.array_from_tensor(pb.Tensor(dtype=dtype, shape=shape, data=data), "t")
    assert info.value.message == message


def test_key_value_length_mismatch_names_both_lengths() -> None:
    req = codec.request_from_json(body({"key": ["a", "b"], "value": ["1"]}), LIMIT)
    with pytest.raises(errors.RequestError) as info:
        codec.values_from_request(req)
    assert info.value.message == "key/value: 2 keys but 1 values"


def test_duplicate_key_is_named() -> None:
    req = pb.Request(key=["a", "b", "a"], value=["1", "2", "3"])
    with pytest.raises(errors.RequestError) as info:
        codec.values_from_request(req)
    assert info.value.message == "key: 'a' appears twice; send each key once"


def test_key_in_both_key_and_tensors_is_named() -> None:
    req = codec.request_from_values({"a": "1", "b": np.zeros(2, np.int8)})
    req.tensors["a"].CopyFrom(req.tensors["b"])
    with pytest.raises(errors.RequestError) as info:
        codec.values_from_request(req)
    assert info.value.message == (
        "tensors.a: 'a' is also in key; send each key once, in key or in tensors"
    )


def test_decoded_array_shares_the_message_bytes_and_is_read_only() -> None:
    a = codec.array_from_tensor(pb.Tensor(dtype="uint16", shape=[2], data=b"\x01\x00\x02\x00"), "t")
    assert a.tolist() == [1, 2] and not a.flags.writeable


# --- op outputs --------------------------------------------------------------------------


def test_to_value_rejects_dict_with_advice() -> None:
    with pytest.raises(errors.OpOutputError) as info:
        codec.to_value({"a": 1}, "prediction")
    assert info.value.message == (
        "prediction: cannot send a value of type dict; return a str or a numpy array"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"raw", "out: cannot send a value of type bytes; return a str or a numpy array"),
        (None, "out: cannot send a value of type NoneType; return a str or a numpy array"),
        (np.zeros(2, np.complex64), f"out: unsupported dtype 'complex64'; use one of {ALLOWED}"),
        (
            ["a", 1],
            "out: numpy reads this list as dtype 'str672', which cannot be sent;"
            " return a str, or numbers of one shape that fit in 64 bits",
        ),
        (
            2**70,
            "out: numpy reads this int as dtype 'object', which cannot be sent;"
            " return a str, or numbers of one shape that fit in 64 bits",
        ),
        (
            [[1], [2, 3]],
            "out: cannot send this list as an array (setting an array element with a sequence."
            " The requested array has an inhomogeneous shape after 1 dimensions. The detected"
            " shape was (2,) + inhomogeneous part.)",
        ),
    ],
)
def test_to_value_rejects_what_cannot_travel(value: object, message: str) -> None:
    with pytest.raises(errors.OpOutputError) as info:
        codec.to_value(value, "out")
    assert info.value.message == message


@pytest.mark.parametrize(
    ("value", "dtype", "shape"),
    [(3, "int64", ()), (0.5, "float64", ()), (True, "bool", ()), (np.int16(4), "int16", ()),
     ([[1, 2], [3, 4]], "int64", (2, 2)), ((1.0, 2.0), "float64", (2,))],
)  # fmt: skip
def test_to_value_makes_arrays_of_numbers(
    value: object, dtype: str, shape: tuple[int, ...]
) -> None:
    arr = codec.to_value(value, "out")
    assert isinstance(arr, np.ndarray) and arr.dtype == dtype and arr.shape == shape


def test_to_value_keeps_strings() -> None:
    assert codec.to_value("pos", "out") == "pos"


def test_response_names_the_output_key_that_cannot_travel() -> None:
    with pytest.raises(errors.OpOutputError) as info:
        codec.response_from_values({"label": "pos", "prediction": {"p": 1}})
    assert info.value.message == (
        "prediction: cannot send a value of type dict; return a str or a numpy array"
    )


def test_response_refuses_a_key_that_is_not_a_string() -> None:
    with pytest.raises(errors.OpOutputError) as info:
        codec.response_from_values({1: "one"})  # type: ignore[dict-item]
    assert info.value.message == "1: output keys must be str, got int"


def test_tensor_from_array_names_where_for_unsupported_dtype() -> None:
    with pytest.raises(errors.OpOutputError) as info:
        codec.tensor_from_array(np.array(["a"]), "out")
    assert info.value.message == f"out: unsupported dtype 'str32'; use one of {ALLOWED}"


def test_tensor_from_array_writes_c_order_little_endian() -> None:
    a = np.arange(6, dtype=">i4").reshape(2, 3).T
    t = codec.tensor_from_array(a, "x")
    assert (t.dtype, list(t.shape)) == ("int32", [3, 2])
    assert t.data == np.ascontiguousarray(a, dtype="<i4").tobytes()


# --- client side -------------------------------------------------------------------------


def test_client_refuses_a_value_it_cannot_send() -> None:
    with pytest.raises(TypeError) as info:
        codec.request_from_values({"x": {}})
    assert str(info.value) == (
        "feed['x']: cannot send a value of type dict; use a str or a numpy array"
    )


def test_client_batch_needs_one_leading_dimension() -> None:
    with pytest.raises(ValueError) as info:
        codec.request_from_values({"a": np.zeros((2, 3)), "b": np.zeros(3)}, batch=True)
    assert str(info.value) == (
        "feed: batch=True needs one leading dimension for all, got 'a': 2, 'b': 3"
    )
    with pytest.raises(ValueError) as info:
        codec.request_from_values({"a": np.float32(1)}, batch=True)
    assert str(info.value) == "feed['a']: batch=True needs a leading batch dimension, got 0-d"


def test_client_batch_request_is_marked() -> None:
    feed = {"a": np.zeros((2, 3)), "b": [1, 2], "s": "x"}
    req = codec.request_from_values(feed, batch=True, method="prediction")
    assert req.batch and req.method == "prediction" and not req.HasField("name")


def test_client_reads_a_bad_response_as_value_error() -> None:
    with pytest.raises(ValueError, match=r"^response body: not valid JSON"):
        codec.response_from_json(b"<html>")
    resp = pb.Response(key=["a"], tensors={"t": pb.Tensor(dtype="int8", shape=[3], data=b"")})
    with pytest.raises(ValueError) as info:
        codec.values_from_response(resp)
    assert str(info.value) == "response.key/value: 1 keys but 0 values"


# --- the HTTP front door's direct path (default RequestOp and ResponseOp) ---------------------


@given(
    tensors=st.dictionaries(keys.map(lambda k: "t" + k), arrays, max_size=3),
    strings=st.dictionaries(keys.map(lambda k: "s" + k), st.text(), max_size=3),
    logid=st.none() | st.integers(-(2**63), 2**63 - 1),
)
def test_fields_give_the_values_the_request_gives(
    tensors: dict[str, np.ndarray], strings: dict[str, str], logid: int | None
) -> None:
    raw = codec.request_to_json(codec.request_from_values({**strings, **tensors}, logid=logid))
    fields = codec.fields_from_json(raw, LIMIT)
    want = codec.values_from_request(codec.request_from_json(raw, LIMIT))
    got = codec.values_from_fields(fields)
    assert fields.logid == logid
    assert got.keys() == want.keys()
    for k, v in want.items():
        if isinstance(v, str):
            assert got[k] == v
        else:
            assert_same_array(got[k], v)
            assert not got[k].flags.writeable


def test_fields_leave_absent_fields_none_as_proto2_leaves_them_unset() -> None:
    fields = codec.fields_from_json(body({"batch": True, "name": None}), LIMIT)
    assert fields.batch is True
    assert fields.name is fields.method is fields.logid is fields.clientip is None


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"key": ["a", "b"], "value": ["1"]}, "key/value: 2 keys but 1 values"),
        ({"key": ["a", "b", "a"], "value": ["1", "2", "3"]}, "key: 'a' appears twice; send each key once"),
        (
            {"key": ["a"], "value": ["1"], "tensors": {"a": tensor_json("int8", [1], b"\x01")}},
            "tensors.a: 'a' is also in key; send each key once, in key or in tensors",
        ),
    ],
)
def test_fields_refuse_what_the_request_refuses_with_the_same_message(obj: Any, message: str) -> None:
    with pytest.raises(errors.RequestError) as via_request:
        codec.values_from_request(codec.request_from_json(body(obj), LIMIT))
    with pytest.raises(errors.RequestError) as via_fields:
        codec.values_from_fields(codec.fields_from_json(body(obj), LIMIT))
    assert via_fields.value.message == via_request.value.message == message


@given(
    tensor=st.none() | arrays,
    strings=st.dictionaries(keys.map(lambda k: "s" + k), st.text(), max_size=3),
)
def test_response_json_from_values_is_the_bytes_of_the_protobuf_path(
    tensor: np.ndarray | None, strings: dict[str, str]
) -> None:
    # One tensor at most: a protobuf map orders several its own way, the direct path keeps
    # the op's order.
    values: dict[str, object] = {**strings, **({} if tensor is None else {"t": tensor})}
    want = codec.response_to_json(codec.response_from_values(values))
    assert codec.response_json_from_values(values) == want


def test_response_json_from_values_keeps_the_op_order_of_tensors() -> None:
    values = {"zeta": np.int8(1), "alpha": np.int8(2), "label": "pos"}
    got = orjson.loads(codec.response_json_from_values(values))
    assert list(got["tensors"]) == ["zeta", "alpha"]
    assert got == orjson.loads(codec.response_to_json(codec.response_from_values(values)))


@pytest.mark.parametrize(
    "values",
    [{"label": "pos", "prediction": {"p": 1}}, {1: "one"}, {"s": "\ud800"}, {"\ud800": np.int8(1)}],
    ids=["a dict value", "an int key", "a lone surrogate", "a lone surrogate key"],
)
def test_response_json_from_values_fails_as_the_protobuf_path(values: Any) -> None:
    with pytest.raises(Exception) as via_protobuf:
        codec.response_to_json(codec.response_from_values(values))
    with pytest.raises(Exception) as direct:
        codec.response_json_from_values(values)
    assert type(direct.value) is type(via_protobuf.value)
    assert str(direct.value) == str(via_protobuf.value)
