"""The benchmark workloads W1 and W2 (shared/bench/WORKLOADS.md), defined once.

Every server under test (the ceilings and the pipelines) and the runner's answer check import
the computation from here, so that a ceiling and a pipeline can never drift apart in the work
they do per request: only the serving machinery around it differs.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

# --- W1: ensemble ---------------------------------------------------------------------------

SENTENCE = "this movie was not good at all and i will never watch it again because the plot was bad"
#: The request's ``words``: the first 20 words of the sentence.
W1_WORDS = " ".join(SENTENCE.split()[:20])
VOCAB = 1000
EMBED_DIM = 64
KERNELS = 16


def read(words: str) -> IdArray:
    """W1 ``read``: word ids by CRC32, modulo the vocabulary."""
    return np.array([zlib.crc32(w.encode()) % VOCAB for w in words.split()], dtype=np.int64)


def sigmoid(z: np.floating[Any] | FloatArray) -> np.float32:
    """The logistic function, on a scalar."""
    return np.float32(1 / (1 + np.exp(-z)))


class BowModel:
    """W1 ``bow``: a bag of words times a fixed random vector."""

    def __init__(self) -> None:
        self.weights: FloatArray = np.random.default_rng(0).standard_normal(VOCAB).astype(
            np.float32
        ) / np.float32(30)

    def __call__(self, ids: IdArray) -> np.float32:
        counts = np.bincount(ids, minlength=VOCAB).astype(np.float32)
        return sigmoid(counts @ self.weights)


class CnnModel:
    """W1 ``cnn``: embedding lookup, one ReLU projection, max over positions."""

    def __init__(self) -> None:
        self.embedding: FloatArray = (
            np.random.default_rng(1).standard_normal((VOCAB, EMBED_DIM)).astype(np.float32)
        )
        self.kernel: FloatArray = (
            np.random.default_rng(2).standard_normal((EMBED_DIM, KERNELS)).astype(np.float32)
        )

    def __call__(self, ids: IdArray) -> np.float32:
        hidden = np.maximum(self.embedding[ids] @ self.kernel, 0).max(axis=0)
        return sigmoid(hidden.mean())


def combine(p_bow: np.float32, p_cnn: np.float32) -> np.float32:
    """W1 ``combine``: the mean of the two predictions."""
    return np.float32((p_bow + p_cnn) / 2)


class W1Model:
    """The whole W1 computation inline, as the ceilings run it: read → {bow, cnn} → combine."""

    def __init__(self) -> None:
        self.bow = BowModel()
        self.cnn = CnnModel()

    def __call__(self, words: str) -> np.float32:
        ids = read(words)
        return combine(self.bow(ids), self.cnn(ids))


# --- W2: auto-batching ----------------------------------------------------------------------

W2_BATCH_SIZE = 32
W2_BATCH_TIMEOUT_S = 0.002
#: The request's ``x``: 8 float32 values.
W2_X: FloatArray = np.linspace(0.5, 4.0, 8, dtype=np.float32)


def w2_model_cost_s(batch_len: int) -> float:
    """Seconds one W2 model call on a batch of ``batch_len`` items waits (an accelerator call)."""
    return 0.002 + 0.0001 * batch_len


# --- W3: large payloads ---------------------------------------------------------------------

#: The request's ``seed``.
W3_SEED = 7
#: The tensor's side per size variant: float32 side x side is 1 MiB or 4 MiB.
W3_SIDES = {"1mib": 512, "4mib": 1024}


def w3_tensor(seed: int, side: int) -> FloatArray:
    """W3 op A: a float32 ``side`` x ``side`` tensor derived from ``seed``.

    Every element depends on the seed, yet it costs one pass over the output (about 1 ms at
    4 MiB here, against 6 ms for ``rng.random((side, side))``), so the op's compute does not
    hide the cost of moving the bytes, which is what W3 measures.
    """
    rng = np.random.default_rng(seed)
    rows, cols = rng.random(side, dtype=np.float32), rng.random(side, dtype=np.float32)
    return np.add.outer(rows, cols)


def w3_sum(tensor: FloatArray) -> np.float32:
    """W3 op B: the tensor's sum."""
    return np.float32(tensor.sum(dtype=np.float32))


# --- The wire: the pipeline's JSON key/value + tensors ------------------------------------------

#: Each workload's prediction route: ``/{name}/{method}`` of its PipelineServer.
HTTP_PATH = {"w1": "/imdb/prediction", "w2": "/w2/prediction"}
#: The response tensor that carries each workload's answer.
ANSWER_TENSOR = {"w1": "prediction", "w2": "y"}


def tensor_to_json(value: np.ndarray[Any, Any]) -> dict[str, Any]:
    """One tensor as the pipeline's JSON carries it: dtype, shape, base64 of the C-order bytes."""
    array = np.asarray(value)
    return {
        "dtype": array.dtype.name,
        "shape": list(array.shape),
        "data": base64.b64encode(array.tobytes(order="C")).decode("ascii"),
    }


def tensor_from_json(tensor: dict[str, Any]) -> np.ndarray[Any, Any]:
    """The inverse of ``tensor_to_json``."""
    data = base64.b64decode(tensor["data"])
    return np.frombuffer(data, dtype=tensor["dtype"]).reshape(tensor["shape"])


def response_json(name: str, value: np.float32) -> dict[str, Any]:
    """A successful pipeline response carrying one float32 scalar tensor ``name``."""
    return {
        "err_no": 0,
        "err_msg": "",
        "key": [],
        "value": [],
        "tensors": {name: tensor_to_json(np.asarray(value, dtype=np.float32))},
    }


def w1_request_json() -> dict[str, Any]:
    """The W1 request body: ``words`` as a key/value pair."""
    return {"key": ["words"], "value": [W1_WORDS]}


def w2_request_json() -> dict[str, Any]:
    """The W2 request body: ``x`` as a tensor."""
    return {"key": [], "value": [], "tensors": {"x": tensor_to_json(W2_X)}}


def w3_request_json(side: int) -> dict[str, Any]:
    """The W3 request body: ``seed`` and the tensor's ``side`` as key/value pairs."""
    return {"key": ["seed", "side"], "value": [str(W3_SEED), str(side)]}


def w3_expected(side: int) -> float:
    """The correct answer to the W3 request for ``side``, computed here."""
    return float(w3_sum(w3_tensor(W3_SEED, side)))


def request_json(workload: str) -> dict[str, Any]:
    """The workload's request body."""
    if workload == "w1":
        return w1_request_json()
    if workload == "w2":
        return w2_request_json()
    raise ValueError(f"unknown workload {workload!r}: expected 'w1' or 'w2'")


def expected(workload: str) -> float:
    """The correct answer to the workload's request, computed here."""
    if workload == "w1":
        return float(W1Model()(W1_WORDS))
    if workload == "w2":
        return float(W2_X.sum())
    raise ValueError(f"unknown workload {workload!r}: expected 'w1' or 'w2'")
