"""Feeds against a model's inputs: check one, merge a batch of them, split the answer back.

Kept apart from the runtimes so the rules are the same whatever runs the model. A feed
maps input names to numpy arrays. Each array has the model's rank (it brings that many
rows) or, when the caller allows it, one dimension less (one sample). A merged batch
stacks single samples and concatenates rows along axis 0; :func:`split` hands each feed
back exactly the rows it brought.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pipeserve.pipeline import errors

if TYPE_CHECKING:
    from pipeserve.runtime.base import TensorSpec

Array = npt.NDArray[Any]

Rows = int | None
"""What one feed brought to a merged batch: n rows, or None for one sample without a batch axis."""


def shape_text(shape: Sequence[int]) -> str:
    """``(-1, 3, 8, 8)``; a one-dimensional shape reads ``(5,)`` as Python writes it."""
    return str(tuple(int(d) for d in shape))


def fit(
    op_name: str, specs: Sequence[TensorSpec], feed: Mapping[str, object], *, sample: bool = False
) -> dict[str, Array]:
    """Check ``feed`` against the model's inputs and return its arrays in the model's order.

    Args:
        op_name: The op, named in messages.
        specs: The model's inputs.
        feed: Input name → array (numpy arrays or scalars).
        sample: Also accept each array with one dimension less than the model's (one
            sample, whose batch axis is left out).

    Raises:
        errors.RequestError: A missing or unknown name, a value that is no array, or a
            dtype, rank or fixed dimension that does not fit, naming the tensor and both
            dtypes or shapes.
    """
    known = {spec.name for spec in specs}
    for name in feed:
        if name not in known:
            raise errors.RequestError(
                f"op '{op_name}': feed {name!r} is not an input of the model; its inputs are "
                + ", ".join(spec.name for spec in specs)
            )
    fitted: dict[str, Array] = {}
    for spec in specs:
        if spec.name not in feed:
            raise errors.RequestError(
                f"op '{op_name}': feed {spec.name!r} is missing; the model takes {spec.name} {spec.describe()}"
            )
        fitted[spec.name] = _fit_one(op_name, spec, feed[spec.name], sample)
    return fitted


def _fit_one(op_name: str, spec: TensorSpec, value: object, sample: bool) -> Array:
    where = f"op '{op_name}': feed {spec.name!r}"
    if not isinstance(value, (np.ndarray, np.generic)):
        raise errors.RequestError(f"{where}: a {type(value).__name__} does not fit the model's {spec.describe()}")
    array = np.asarray(value)
    if array.dtype != spec.dtype:
        if array.dtype.name != spec.dtype.name:
            raise errors.RequestError(f"{where}: dtype {array.dtype.name} does not fit the model's {spec.dtype.name}")
        array = array.astype(spec.dtype)  # the same type in the other byte order
    declared = spec.shape[1:] if sample and array.ndim == len(spec.shape) - 1 else spec.shape
    if array.ndim != len(declared) or any(d not in (-1, n) for d, n in zip(declared, array.shape)):
        raise errors.RequestError(
            f"{where}: shape {shape_text(array.shape)} does not fit the model's {shape_text(spec.shape)}"
        )
    return array


def merge(
    op_name: str, specs: Sequence[TensorSpec], fitted: Sequence[dict[str, Array]]
) -> tuple[dict[str, Array], list[Rows]]:
    """Merge checked feeds (from :func:`fit` with ``sample=True``) into one feed.

    Returns:
        The merged feed, and what each feed brought (:data:`Rows`), in order.

    Raises:
        errors.RequestError: The arrays of one feed disagree on their rows (one is a single
            sample and another has rows, or their leading dimensions differ).
    """
    rows = [_rows(op_name, specs, feed) for feed in fitted]
    merged: dict[str, Array] = {}
    for spec in specs:
        parts = [feed[spec.name] if n is not None else feed[spec.name][np.newaxis] for feed, n in zip(fitted, rows)]
        merged[spec.name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return merged, rows


def _rows(op_name: str, specs: Sequence[TensorSpec], feed: dict[str, Array]) -> Rows:
    counts = {spec.name: None if feed[spec.name].ndim < len(spec.shape) else feed[spec.name].shape[0] for spec in specs}
    if len(set(counts.values())) > 1:
        told = ", ".join(f"{name} {'one sample' if n is None else f'{n} rows'}" for name, n in counts.items())
        raise errors.RequestError(f"op '{op_name}': the inputs of one feed must bring the same rows, got {told}")
    return next(iter(counts.values()), None)


def split(op_name: str, outputs: Mapping[str, Array], rows: Sequence[Rows]) -> list[dict[str, Array]]:
    """Hand each feed of a merged batch its own rows of every output.

    A feed that brought n rows gets ``output[start:start + n]``; a single sample gets
    ``output[start]``, without the batch axis, as it came.

    Raises:
        errors.OpOutputError: An output whose first axis does not run over the whole batch.
    """
    total = sum(1 if n is None else n for n in rows)
    for name, value in outputs.items():
        if np.ndim(value) < 1 or len(value) != total:
            raise errors.OpOutputError(
                f"op '{op_name}': model output {name!r} has shape {shape_text(np.shape(value))}, whose "
                f"first axis is not the batch of {total} rows; override process to split it"
            )
    split_up: list[dict[str, Array]] = []
    start = 0
    for n in rows:
        if n is None:
            split_up.append({name: value[start] for name, value in outputs.items()})
            start += 1
        else:
            split_up.append({name: value[start : start + n] for name, value in outputs.items()})
            start += n
    return split_up
