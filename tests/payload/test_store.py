"""What both payload stores do alike (each test runs on memory and on a real Redis):
round trips, request cleanup, missing references and the size limit.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeserve import payload
from pipeserve.payload import errors as payload_errors
from pipeserve.pipeline import config
from pipeserve.pipeline import errors as pipeline_errors


async def test_a_value_put_is_read_back_unchanged(store: payload.PayloadStore) -> None:
    key, request = store.keys.value_key(1, "bow", "out"), store.keys.request_set(1)
    data = bytes(range(256)) * 40

    await store.put(key, data, request)

    assert await store.get(key) == data


async def test_an_array_buffer_is_stored_as_its_raw_bytes(store: payload.PayloadStore) -> None:
    array = np.arange(3 * 500, dtype=np.float32).reshape(3, 500)
    key, request = store.keys.value_key(1, "cnn", "embedding"), store.keys.request_set(1)

    await store.put(key, memoryview(array), request)

    assert await store.get(key) == array.tobytes()


async def test_a_bytearray_changed_after_put_does_not_change_the_value(
    store: payload.PayloadStore,
) -> None:
    key, request = store.keys.value_key(1, "bow", "out"), store.keys.request_set(1)
    data = bytearray(b"x" * 5000)

    await store.put(key, data, request)
    data[:] = b"y" * 5000

    assert await store.get(key) == b"x" * 5000


async def test_a_key_written_again_holds_the_last_value(store: payload.PayloadStore) -> None:
    key, request = store.keys.value_key(1, "bow", "out"), store.keys.request_set(1)

    await store.put(key, b"first", request)
    await store.put(key, b"second", request)

    assert await store.get(key) == b"second"
    assert await store.delete_request(request) == 1


async def test_delete_request_removes_every_key_of_that_request_only(
    store: payload.PayloadStore,
) -> None:
    mine = [store.keys.value_key(1, op, "out") for op in ("bow", "cnn", "combine")]
    other = store.keys.value_key(2, "bow", "out")
    for key in mine:
        await store.put(key, b"v" * 5000, store.keys.request_set(1))
    await store.put(other, b"w", store.keys.request_set(2))

    assert await store.delete_request(store.keys.request_set(1)) == 3

    for key in mine:
        with pytest.raises(payload_errors.PayloadExpiredError):
            await store.get(key)
    assert await store.get(other) == b"w"
    assert await store.delete_request(store.keys.request_set(1)) == 0


async def test_delete_request_of_an_unknown_request_deletes_nothing(
    store: payload.PayloadStore,
) -> None:
    assert await store.delete_request(store.keys.request_set(404)) == 0


async def test_a_missing_reference_fails_naming_op_value_and_key(
    store: payload.PayloadStore,
) -> None:
    key = store.keys.value_key(9, "bow", "out['image']")

    with pytest.raises(payload_errors.PayloadExpiredError) as info:
        await store.get(key, op="bow", value="out['image']")

    assert str(info.value) == (
        f"payload value \"out['image']\" of op 'bow' is no longer in payload store {store.name} "
        "(key 'pipeserve:imdb:9:bow:out%5B%27image%27%5D'): it expired or its request already "
        "finished; requests must finish within payload.ttl_s (300 s)"
    )
    assert (info.value.key, info.value.op, info.value.value) == (key, "bow", "out['image']")
    assert pipeline_errors.to_err(info.value) is info.value


async def test_a_missing_reference_without_context_still_names_the_key(
    store: payload.PayloadStore,
) -> None:
    with pytest.raises(payload_errors.PayloadExpiredError) as info:
        await store.get("pipeserve:imdb:1:bow:out")

    assert str(info.value).startswith(
        f"payload value is no longer in payload store {store.name} (key 'pipeserve:imdb:1:bow:out')"
    )


async def test_a_value_over_max_value_bytes_is_refused_and_nothing_is_written(
    store: payload.PayloadStore,
) -> None:
    key, request = store.keys.value_key(1, "bow", "out"), store.keys.request_set(1)

    with pytest.raises(payload_errors.PayloadValueTooLargeError) as info:
        await store.put(key, b"x" * 65537, request)

    assert str(info.value) == (
        f"payload value 'pipeserve:imdb:1:bow:out' is 65537 bytes, over payload.max_value_bytes "
        f"(65536) of payload store {store.name}; send smaller values or raise the limit"
    )
    with pytest.raises(payload_errors.PayloadExpiredError):
        await store.get(key)
    assert await store.delete_request(request) == 0


async def test_the_size_limit_counts_bytes_not_array_items(store: payload.PayloadStore) -> None:
    array = np.zeros((2, 8193), dtype=np.float32)  # 16386 items, 65544 bytes

    with pytest.raises(payload_errors.PayloadValueTooLargeError, match="is 65544 bytes"):
        await store.put(store.keys.value_key(1, "a", "b"), memoryview(array), "s")


async def test_ping_answers_when_the_store_is_up(store: payload.PayloadStore) -> None:
    await store.ping()


def test_open_store_defaults_to_memory() -> None:
    opened = payload.open_store(config.PayloadConfig(), "imdb")

    assert opened.name == "memory (in process)"
    assert isinstance(opened, payload.PayloadStore)
    assert opened.keys.request_set(3) == "pipeserve:imdb:3:keys"


@pytest.mark.parametrize(
    ("error", "err_no", "http", "grpc_name"),
    [
        (payload.PayloadStoreError("m"), 5, 503, "UNAVAILABLE"),
        (payload.PayloadExpiredError("m", key="k"), 1, 504, "DEADLINE_EXCEEDED"),
        (payload.PayloadValueTooLargeError("m"), 9, 413, "RESOURCE_EXHAUSTED"),
    ],
)
def test_each_error_carries_its_codes_across_both_front_doors(
    error: pipeline_errors.PipelineError, err_no: int, http: int, grpc_name: str
) -> None:
    assert (error.code, error.http_status, error.grpc_status.name) == (err_no, http, grpc_name)
    assert pipeline_errors.to_err(error) is error


def test_an_expired_error_rebuilt_from_its_code_keeps_class_and_message() -> None:
    # How process workers send errors back: PipelineError.__reduce__ → (rebuild, args).
    error = payload.PayloadExpiredError("gone", key="k", op="bow")
    rebuild, args = error.__reduce__()
    rebuilt = rebuild(*args)  # type: ignore[operator]

    assert type(rebuilt) is payload.PayloadExpiredError
    assert (rebuilt.message, rebuilt.key, rebuilt.op) == ("gone", None, None)
