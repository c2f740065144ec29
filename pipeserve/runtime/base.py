"""What every model runtime offers an op: its inputs and outputs, read from the model, and
a checked ``run``.

Backends (Paddle Inference, onnxruntime) only describe their model and run a feed that is
already known to fit; checking feeds and batching them live here, once, so both backends
refuse a bad feed with the same message and split a batch back the same way.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import errors
from pipeserve.runtime import feeds

Array = npt.NDArray[Any]


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One input of a model, as the model file declares it."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    """Declared dimensions; -1 where the model leaves a dimension dynamic."""

    def describe(self) -> str:
        """``float32 (-1, 3, 8, 8)``, for messages."""
        return f"{self.dtype.name} {feeds.shape_text(self.shape)}"


class ModelRuntime(abc.ABC):
    """A loaded model that an op runs in its default ``process``.

    Args:
        op_name: The op that owns the model, named in every message.
        feed_specs: The model's inputs, in the model's order.
        fetch_names: The model's outputs, in the model's order.
    """

    def __init__(self, op_name: str, feed_specs: Sequence[TensorSpec], fetch_names: Sequence[str]) -> None:
        self.op_name = op_name
        self.feed_specs: tuple[TensorSpec, ...] = tuple(feed_specs)
        self.fetch_names: tuple[str, ...] = tuple(fetch_names)

    def __repr__(self) -> str:
        inputs = ", ".join(f"{s.name}: {s.describe()}" for s in self.feed_specs)
        return f"<{type(self).__name__} of op {self.op_name!r} ({inputs}) -> {', '.join(self.fetch_names)}>"

    @property
    def batchable(self) -> bool:
        """Whether feeds can be merged along axis 0: every input's first dimension is dynamic."""
        return all(len(s.shape) >= 1 and s.shape[0] == -1 for s in self.feed_specs)

    def run(self, feed: Mapping[str, object]) -> dict[str, Array]:
        """Run the model on one feed holding every input at the model's full rank.

        Raises:
            errors.RequestError: A missing or unknown name, or a dtype, rank or fixed
                dimension that does not fit the model; the message names the tensor and
                both dtypes or shapes.
        """
        return self._run(feeds.fit(self.op_name, self.feed_specs, feed))

    def check_sample(self, feed: Mapping[str, object]) -> None:
        """Check one sample's feed: each array at the model's rank, or one less (one row).

        Raises:
            errors.RequestError: As :meth:`run`.
        """
        feeds.fit(self.op_name, self.feed_specs, feed, sample=self.batchable)

    def run_batch(self, feed_list: Sequence[Mapping[str, object]]) -> list[dict[str, Array]]:
        """Run the model once over a batch of feeds and return one fetch dict per feed.

        A feed's arrays either have the model's rank (the feed brings that many rows, and
        gets back as many) or one dimension less (one sample: stacked, and answered
        without the leading axis). A model whose first dimensions are not all dynamic
        cannot take merged feeds: it runs once per feed.

        Raises:
            errors.RequestError: A feed that does not fit the model.
            errors.OpOutputError: An output whose first axis does not run over the batch.
        """
        if not self.batchable:
            return [self.run(feed) for feed in feed_list]
        fitted = [feeds.fit(self.op_name, self.feed_specs, feed, sample=True) for feed in feed_list]
        merged, rows = feeds.merge(self.op_name, self.feed_specs, fitted)
        outputs = self._run(merged)
        if len(rows) == 1 and rows[0] is not None:
            return [outputs]  # one feed with its own rows: nothing to split
        return feeds.split(self.op_name, outputs, rows)

    @abc.abstractmethod
    def _run(self, feed: dict[str, Array]) -> dict[str, Array]:
        """Run a feed already checked by :func:`feeds.fit`; return every output by name."""


def model_path(op_name: str, model_config: object, suffixes: Sequence[str] = ()) -> str:
    """The absolute path named by ``model_config``: itself, else with one of ``suffixes``.

    Relative paths are taken from the server's working directory, as the seeds do. Files
    are checked here, when the runtime loads, never when the config is read: the config
    is also rendered for other machines.

    Raises:
        errors.ConfigError: Nothing at that path; the message names the op and the path.
    """
    if not isinstance(model_config, str) or not model_config:
        raise errors.ConfigError(
            f"op '{op_name}': local_service_conf.model_config: must be a non-empty path, got {model_config!r}"
        )
    path = os.path.abspath(os.path.expanduser(model_config))
    for candidate in (path, *(path + suffix for suffix in suffixes)):
        if os.path.exists(candidate):
            return candidate
    tried = f" (nor {', '.join(repr(path + s) for s in suffixes)})" if suffixes else ""
    relative = "" if os.path.isabs(model_config) else f", from {model_config!r} in {os.getcwd()!r}"
    raise errors.ConfigError(f"op '{op_name}': local_service_conf.model_config: no model at {path!r}{tried}{relative}")


def option(runtime: config_mod.RuntimeConfig, key: str) -> Any:
    """A ``local_service_conf`` value, or None when it is not set."""
    return runtime.options.get(key)


def gpu_ordinal(runtime: config_mod.RuntimeConfig) -> int:
    """The CUDA device index the runtime should use inside this process.

    A process worker is bound to one card through ``CUDA_VISIBLE_DEVICES`` (its
    ``device_id`` is then set), so the card it sees is index 0. Thread and inline workers
    see every card and use the first of ``devices``.
    """
    if runtime.device_id is not None:
        return 0
    return runtime.devices[0] if runtime.devices else 0


def device_name(device_type: config_mod.DeviceType) -> str:
    """``1 (gpu)``, as device types are named in messages."""
    return f"{int(device_type)} ({device_type.name.lower()})"
