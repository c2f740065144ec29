"""Values between ops: every sendable kind survives the wire; anything else gets an exact message.

Aspects:

- round trips of every kind: arrays of each allowed dtype (0-d, empty, big-endian and
  non-contiguous included), numpy scalars (same dtype back), str, bytes, int at the int64
  bounds, float (NaN and -0.0 bit for bit), bool, None, nested lists, tuples (back as
  lists), dicts, and empty containers that stay what they were;
- a hypothesis property over nested structures of all of them;
- encoding errors: an int beyond int64, a set or an arbitrary object, a dict key that is
  not a str, an array of an unsupported dtype, nesting deeper than the limit (a list that
  contains itself included); each names the value's path;
- decoding errors: tensor bytes that do not match dtype x shape, an unsupported dtype, an
  empty Value, a Value of a kind this peer does not know (a field number from the
  future), a payload reference with no store, nesting deeper than the limit;
- the error class is the caller's choice (``err``).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeserve import codec
from pipeserve.opservice import values
from pipeserve.pipeline import errors
from pipeserve.proto.pipeserve.v1 import op_service_pb2 as pb

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
DEPTH_LIMIT = 32
SENDABLE = "numpy arrays and scalars, str, bytes, int, float, bool, None, lists, tuples and dicts with str keys"
ALLOWED = ", ".join(codec.ALLOWED_DTYPES)
KINDS = "tensor, text, blob, integer, real, flag, none, list, map, ref"


def round_trip(value: object) -> Any:
    """Encode, serialize, parse and decode ``value``, as two ops on two machines would."""
    sent = values.encode(value, "x").SerializeToString()
    return values.decode(pb.Value.FromString(sent), "x")


def round_trip_map(value: dict[str, Any]) -> dict[str, Any]:
    """The same through a ``map<string, Value>`` field (a Sample's input_dicts)."""
    sample = pb.Sample()
    values.fill_map(sample.input_dicts, value, "input_dicts")
    return values.decode_map(pb.Sample.FromString(sample.SerializeToString()).input_dicts, "input_dicts")


def nested_lists(depth: int) -> Any:
    """``depth`` lists, one inside the other, around a 1."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def nested_list_message(depth: int) -> pb.Value:
    """A Value of ``depth`` nested lists, built directly as a peer could send it."""
    value = pb.Value(integer=1)
    for _ in range(depth):
        outer = pb.Value()
        outer.list.items.append(value)
        value = outer
    return value


def encode_error(value: object, where: str = "x") -> str:
    with pytest.raises(errors.OpOutputError) as info:
        values.encode(value, where)
    return info.value.message


def decode_error(value: pb.Value, where: str = "x") -> str:
    with pytest.raises(errors.RequestError) as info:
        values.decode(pb.Value.FromString(value.SerializeToString()), where)
    return info.value.message


def expected(value: Any) -> Any:
    """What the receiver gets for ``value``: tuples become lists, bytearrays bytes, a 0-d
    array its numpy scalar, arrays little-endian."""
    if isinstance(value, np.ndarray):
        wire = value.astype(value.dtype.newbyteorder("<"))
        return wire[()] if wire.ndim == 0 else wire
    if isinstance(value, np.generic):
        return value.astype(value.dtype.newbyteorder("<"))
    if isinstance(value, (list, tuple)):
        return [expected(item) for item in value]
    if isinstance(value, dict):
        return {key: expected(item) for key, item in value.items()}
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def assert_same(got: Any, want: Any, path: str = "x") -> None:
    """Equal values of the very same type; arrays and floats bit for bit (NaN, -0.0)."""
    assert type(got) is type(want), f"{path}: got {type(got).__name__}, want {type(want).__name__}"
    if isinstance(want, (np.ndarray, np.generic)):
        assert got.dtype == want.dtype, path
        assert got.shape == want.shape, path
        assert got.tobytes() == want.tobytes(), path
    elif isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want), f"{path}: {got!r} != {want!r}"
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, dict):
        # Key order is checked by its own test below; here only the contents.
        assert sorted(got) == sorted(want), path
        for key in want:
            assert_same(got[key], want[key], f"{path}[{key!r}]")
    else:
        assert got == want, path


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", codec.ALLOWED_DTYPES)
@pytest.mark.parametrize("shape", [(2, 3), (5,), (0,), (0, 4), (3, 0, 2)])
def test_an_array_of_every_allowed_dtype_and_shape_comes_back_the_same(dtype: str, shape: tuple[int, ...]) -> None:
    array = (np.arange(math.prod(shape)) % 3).astype(dtype).reshape(shape)

    got = round_trip(array)

    assert_same(got, array)


@pytest.mark.parametrize("dtype", codec.ALLOWED_DTYPES)
def test_a_numpy_scalar_comes_back_as_a_numpy_scalar_of_its_dtype(dtype: str) -> None:
    scalar = np.dtype(dtype).type(1)

    got = round_trip(scalar)

    assert isinstance(got, np.generic)
    assert_same(got, scalar)


def test_a_0d_array_comes_back_as_the_numpy_scalar_it_holds() -> None:
    got = round_trip(np.array(7, dtype=np.int16))

    assert_same(got, np.int16(7))


def test_a_big_endian_or_strided_array_comes_back_little_endian_and_in_c_order() -> None:
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    strided = np.arange(12, dtype=np.int32).reshape(3, 4).T[::2]

    assert_same(round_trip(big), big.astype("<f4"))
    assert_same(round_trip(strided), np.ascontiguousarray(strided))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "mots clés, 単語",
        b"",
        b"\x00\xff raw",
        0,
        -1,
        INT64_MIN,
        INT64_MAX,
        0.0,
        -0.0,
        1.5,
        math.inf,
        math.nan,
        True,
        False,
        None,
    ],
    ids=repr,
)
def test_a_python_scalar_comes_back_the_same(value: Any) -> None:
    assert_same(round_trip(value), value)


def test_bytearrays_and_memoryviews_come_back_as_bytes() -> None:
    assert_same(round_trip(bytearray(b"ab")), b"ab")
    assert_same(round_trip(memoryview(b"cd")), b"cd")


def test_an_empty_dict_and_an_empty_list_stay_a_dict_and_a_list() -> None:
    assert_same(round_trip({}), {})
    assert_same(round_trip([]), [])
    assert_same(round_trip(()), [])
    assert_same(round_trip({"d": {}, "l": [], "t": ()}), {"d": {}, "l": [], "t": []})


def test_nested_lists_tuples_and_dicts_come_back_with_tuples_as_lists() -> None:
    value = {
        "read": {"words": "great film", "ids": np.array([3, 1, 4], dtype=np.int64)},
        "pairs": [(1, "a"), (2.5, None), [True, b"z"]],
        "deep": {"a": [{"b": ({"c": np.float32(0.5)},)}]},
    }

    assert_same(round_trip(value), expected(value))


def test_a_dict_of_values_survives_a_map_field() -> None:
    value = {"read": {"words": "w"}, "bow": np.ones((2, 2), dtype=np.float32), "n": 3}

    assert_same(round_trip_map(value), value)


def test_a_dict_keeps_the_order_of_its_keys() -> None:
    # Ops iterate input_dicts and build responses from dict order; embedded, the order is
    # the sender's. It must not change because the op moved to another process.
    keys = ["zeta", "alpha", "mid", "beta", "omega", "kappa", "delta", "gamma"]
    value = {key: i for i, key in enumerate(keys)}

    assert list(round_trip(value)) == keys
    assert list(round_trip_map(value)) == keys


def test_a_str_or_bytes_from_numpy_comes_back_as_str_or_bytes() -> None:
    # np.str_ is a str (and np.bytes_ a bytes): an op returning labels[argmax] from a
    # numpy array of labels sends a str, as it does when the op runs embedded.
    assert_same(round_trip(np.array(["neg", "pos"])[1]), "pos")
    assert_same(round_trip(np.array([b"neg", b"pos"])[0]), b"neg")


def test_a_memory_mapped_array_travels_as_an_array(tmp_path: Any) -> None:
    # np.memmap is an ndarray (np.load(..., mmap_mode="r") returns one).
    mapped = np.memmap(tmp_path / "table.bin", dtype=np.float32, mode="w+", shape=(2, 3))
    mapped[:] = 1.5

    assert_same(round_trip(mapped), np.full((2, 3), 1.5, dtype=np.float32))


def test_other_str_int_and_float_subclasses_travel_as_their_base_kind() -> None:
    import enum

    class Color(enum.StrEnum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    class Celsius(float):
        pass

    assert_same(round_trip(Color.RED), "red")
    assert_same(round_trip(Level.HIGH), 3)
    assert_same(round_trip(Celsius(1.25)), 1.25)


# --- property: nested structures -----------------------------------------------------------


arrays = st.sampled_from(codec.ALLOWED_DTYPES).flatmap(
    lambda name: hnp.arrays(
        dtype=st.sampled_from([np.dtype(name), np.dtype(name).newbyteorder()]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
    )
)
numpy_scalars = st.sampled_from(codec.ALLOWED_DTYPES).flatmap(
    lambda name: hnp.arrays(dtype=np.dtype(name), shape=()).map(lambda a: a[()])
)
leaves = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | arrays
    | numpy_scalars
)
trees = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=25,
)


@given(trees)
def test_any_nested_structure_of_sendable_values_comes_back_the_same(value: Any) -> None:
    assert_same(round_trip(value), expected(value))


@given(st.dictionaries(st.text(max_size=6), trees, max_size=4))
def test_any_dict_of_sendable_values_survives_a_map_field(value: dict[str, Any]) -> None:
    assert_same(round_trip_map(value), expected(value))


# --- encoding errors -----------------------------------------------------------------------


class Thing:
    pass


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 10**30], ids=str)
def test_an_int_beyond_int64_is_refused(value: int) -> None:
    assert encode_error(value) == f"x: int {value} does not fit in 64 bits; send it as a str or an array"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ({1, 2}, "set"),
        (frozenset(), "frozenset"),
        (Thing(), "Thing"),
        (1 + 2j, "complex"),
        (print, "builtin_function_or_method"),
    ],
    ids=["set", "frozenset", "object", "complex", "function"],
)
def test_a_value_of_another_kind_is_refused_with_what_can_be_sent(value: object, kind: str) -> None:
    assert encode_error(value) == f"x: a value of type {kind} cannot be sent between ops; use {SENDABLE}"


def test_a_dict_key_that_is_not_a_str_is_refused() -> None:
    assert encode_error({"ok": {1: "one"}}) == "x['ok']: dict keys must be strings, got int 1"


def test_a_dict_key_that_is_not_a_str_is_refused_in_a_map_field() -> None:
    with pytest.raises(errors.OpOutputError) as info:
        values.fill_map(pb.Sample().input_dicts, {("a", "b"): 1}, "input_dicts")

    assert info.value.message == "input_dicts: dict keys must be strings, got tuple ('a', 'b')"


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (np.array([object(), 1], dtype=object), "object"),
        (np.array(["a", "bc"]), "str64"),
        (np.array([b"a"]), "bytes8"),
        (np.array([1 + 1j], dtype=np.complex64), "complex64"),
        (np.array(["2024-01-01"], dtype="datetime64[D]"), "datetime64[D]"),
        (np.complex128(1), "complex128"),
    ],
    ids=["object", "str", "bytes", "complex", "datetime", "complex scalar"],
)
def test_an_array_of_an_unsupported_dtype_is_refused(value: Any, dtype: str) -> None:
    assert encode_error({"out": [value]}) == f"x['out'][0]: unsupported dtype {dtype!r}; use one of {ALLOWED}"


def test_an_error_names_the_path_of_the_value_inside_input_dicts() -> None:
    with pytest.raises(errors.OpOutputError) as info:
        values.fill_map(pb.Sample().input_dicts, {"read": {"words": [1, {2}]}}, "input_dicts")

    assert info.value.message == f"input_dicts['read']['words'][1]: a value of type set cannot be sent between ops; use {SENDABLE}"


def test_the_deepest_value_that_can_be_sent_can_be_read_back() -> None:
    deepest = nested_lists(DEPTH_LIMIT)

    assert_same(round_trip(deepest), deepest)
    assert_same(round_trip_map({"a": nested_lists(DEPTH_LIMIT - 1)}), {"a": nested_lists(DEPTH_LIMIT - 1)})


def test_a_value_nested_deeper_than_the_limit_is_refused() -> None:
    path = "x" + "[0]" * DEPTH_LIMIT

    assert encode_error(nested_lists(DEPTH_LIMIT + 1)) == f"{path}: values nest deeper than {DEPTH_LIMIT} levels"


def test_a_list_that_contains_itself_is_refused_at_the_depth_limit() -> None:
    loop: list[Any] = []
    loop.append(loop)

    assert encode_error(loop).endswith(f"values nest deeper than {DEPTH_LIMIT} levels")


def test_the_caller_chooses_the_error_class() -> None:
    with pytest.raises(errors.RequestError) as info:
        values.encode({1}, "feed", err=errors.RequestError)

    assert info.value.message == f"feed: a value of type set cannot be sent between ops; use {SENDABLE}"


# --- decoding errors -----------------------------------------------------------------------


def tensor_value(dtype: str, shape: list[int], data: bytes) -> pb.Value:
    value = pb.Value()
    value.tensor.dtype = dtype
    value.tensor.shape.extend(shape)
    value.tensor.data = data
    return value


def test_tensor_bytes_that_do_not_match_dtype_and_shape_are_refused() -> None:
    message = decode_error(tensor_value("float32", [2, 2], b"\x00" * 3))

    assert message == "x: 3 bytes do not match float32 x [2, 2] (16 bytes)"


def test_a_tensor_of_an_unsupported_dtype_is_refused() -> None:
    message = decode_error(tensor_value("object", [1], b"\x00" * 8))

    assert message == f"x.dtype: unsupported dtype 'object'; use one of {ALLOWED}"


def test_a_tensor_with_a_negative_dimension_is_refused() -> None:
    message = decode_error(tensor_value("int8", [2, -1], b""))

    assert message == "x.shape[1]: must be an integer >= 0, got -1"


def test_a_bad_tensor_deep_in_input_dicts_is_named_by_its_path() -> None:
    sample = pb.Sample()
    sample.input_dicts.keys.append("read")
    read = sample.input_dicts.values.add().map
    read.keys.append("words")
    words = read.values.add()
    words.CopyFrom(tensor_value("int64", [3], b"\x00" * 8))

    with pytest.raises(errors.RequestError) as info:
        values.decode_map(sample.input_dicts, "samples[1].input_dicts")

    assert info.value.message == "samples[1].input_dicts['read']['words']: 8 bytes do not match int64 x [3] (24 bytes)"


def test_an_empty_value_is_refused() -> None:
    assert decode_error(pb.Value()) == f"x: empty or unknown value kind (this peer understands {KINDS})"


def test_a_value_of_a_kind_from_a_newer_peer_is_refused() -> None:
    # A list (field 8) of one Value whose only field is 15, varint 1: a oneof member
    # this peer's proto does not have yet. It parses, as unknown fields do.
    raw = b"\x42\x04" + b"\x0a\x02" + b"\x78\x01"
    newer = pb.Value.FromString(raw)
    assert newer.list.items[0].WhichOneof("kind") is None

    with pytest.raises(errors.RequestError) as info:
        values.decode(newer, "x")

    assert info.value.message == f"x[0]: empty or unknown value kind (this peer understands {KINDS})"


def test_a_payload_reference_without_a_store_is_refused() -> None:
    value = pb.Value(ref=pb.PayloadRef(key="req-7/bow", nbytes=1 << 20))

    assert decode_error(value) == (
        "x: payload reference 'req-7/bow' cannot be resolved: no payload store is configured for this service"
    )


def test_a_message_nested_deeper_than_the_limit_is_refused() -> None:
    path = "x" + "[0]" * DEPTH_LIMIT

    message = decode_error(nested_list_message(DEPTH_LIMIT + 1))

    assert message == f"{path}: values nest deeper than {DEPTH_LIMIT} levels"


def test_decoding_errors_are_request_errors_unless_the_caller_says_otherwise() -> None:
    with pytest.raises(errors.OpServiceError) as info:
        values.decode(pb.Value(), "output", err=errors.OpServiceError)

    assert info.value.message == f"output: empty or unknown value kind (this peer understands {KINDS})"
