"""The example's two tiny text models, in numpy (shared/bench W1): deterministic weights,
nothing downloaded. ``predict_inline`` is the whole pipeline in one function, which the
tests compare the served answers with."""

from __future__ import annotations

import zlib

import numpy as np

VOCAB = 1000


def word_ids(words: str) -> np.ndarray:
    """The read op: hash each word into the vocabulary."""
    return np.array([zlib.crc32(w.encode()) % VOCAB for w in words.split()], dtype=np.int64)


class Bow:
    """Bag of words: word counts times a weight vector, through a sigmoid."""

    def __init__(self) -> None:
        self.weights = np.random.default_rng(0).standard_normal(VOCAB).astype(np.float32) / 30

    def __call__(self, ids: np.ndarray) -> np.float32:
        counts = np.bincount(ids, minlength=VOCAB).astype(np.float32)
        return np.float32(1 / (1 + np.exp(-(counts @ self.weights))))


class Cnn:
    """Embedding, a 1-wide convolution with ReLU, max over time, mean, sigmoid."""

    def __init__(self) -> None:
        self.embedding = np.random.default_rng(1).standard_normal((VOCAB, 64)).astype(np.float32)
        self.kernel = np.random.default_rng(2).standard_normal((64, 16)).astype(np.float32)

    def __call__(self, ids: np.ndarray) -> np.float32:
        hidden = np.maximum(self.embedding[ids] @ self.kernel, 0).max(axis=0)
        return np.float32(1 / (1 + np.exp(-hidden.mean())))


def predict_inline(words: str) -> np.float32:
    """The pipeline's answer, computed in one place."""
    ids = word_ids(words)
    return np.float32((Bow()(ids) + Cnn()(ids)) / 2)


SAMPLE_WORDS = " ".join(
    "this movie was not good at all and i will never watch it again because the plot was bad".split()[:20]
)
EXPECTED = {"prediction": predict_inline(SAMPLE_WORDS)}
"""The answer to the sample request, which the example's test checks."""
