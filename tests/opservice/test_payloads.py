"""Large values through a payload store: spilled while encoding, read back exactly.

Arrays go as raw bytes (big-endian and strided arrays too) described by dtype and shape
in the reference; other big values (bytes, str) as a serialized Value. Reading back gives
equal values; a stored array whose bytes do not match its reference is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeserve.opservice import payloads, values
from pipeserve.payload.memory import MemoryStore
from pipeserve.payload.refs import PayloadRef
from pipeserve.pipeline import config, errors
from pipeserve.proto.pipeserve.v1 import op_service_pb2 as pb

THRESHOLD = 1024


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(config.PayloadConfig(threshold_bytes=THRESHOLD), "svc")


async def round_trip(store: MemoryStore, output: dict[str, Any]) -> tuple[dict[str, Any], pb.ValueMap]:
    spill = values.Spill(THRESHOLD)
    message = pb.ValueMap()
    values.fill_map(message, output, "output", spill=spill)
    await payloads.write_spilled(spill, store, "pipeserve:svc:1:", "pipeserve:svc:1:keys", "op")
    refs = values.Refs()
    decoded = values.decode_map(pb.ValueMap.FromString(message.SerializeToString()), "output", refs=refs)
    assert refs.count == len(spill.found)
    return await payloads.resolve(decoded, store, "next"), message


async def test_big_values_travel_as_references_and_come_back_equal(store: MemoryStore) -> None:
    image = np.arange(4096, dtype=">f4").reshape(64, 64)[:, ::2]  # big-endian and strided
    output = {"image": image, "blob": b"x" * 4096, "text": "y" * 4096, "small": np.ones(3)}

    resolved, message = await round_trip(store, output)

    kinds = dict(zip(message.keys, (value.WhichOneof("kind") for value in message.values)))
    assert kinds == {"image": "ref", "blob": "ref", "text": "ref", "small": "tensor"}
    np.testing.assert_array_equal(resolved["image"], image)
    assert resolved["image"].dtype == np.dtype("<f4")
    assert (resolved["blob"], resolved["text"]) == (output["blob"], output["text"])
    np.testing.assert_array_equal(resolved["small"], np.ones(3))


async def test_a_stored_array_that_does_not_match_its_reference_is_refused(store: MemoryStore) -> None:
    await store.put("pipeserve:svc:1:op:x", b"\x00" * 12, "pipeserve:svc:1:keys")
    ref = PayloadRef("pipeserve:svc:1:op:x", 12, "float32", (4,))

    with pytest.raises(errors.OpOutputError) as info:
        await payloads.resolve({"x": ref}, store, "next")

    assert info.value.message == "payload 'pipeserve:svc:1:op:x': 12 bytes do not match float32 x [4]"


async def test_a_reference_without_a_store_names_the_op() -> None:
    with pytest.raises(errors.OpOutputError) as info:
        await payloads.resolve({"x": PayloadRef("k", 1)}, None, "next")

    assert info.value.message.startswith("op 'next': value 'k' is a payload reference, but no payload store")
