"""Model runtimes: the model an op's config names, loaded where the op's worker runs.

An op whose ``local_service_conf`` sets ``runtime: paddle`` or ``runtime: onnx`` with a
``model_config`` gets a :class:`ModelRuntime` as ``op.local_predictor`` before its
``init_op``, and the default ``Op.process`` runs it (seed semantics: an op with a local
model runs it in its default process). Workers call :func:`init_op` wherever they would
call ``op.init_op()``: once per op for thread and inline workers, once per process (after
the device is bound) for process workers.

The backends import paddle or onnxruntime only when a model of theirs is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import errors
from pipeserve.runtime.base import ModelRuntime, TensorSpec

if TYPE_CHECKING:
    from pipeserve.pipeline import op as op_mod

__all__ = ["ModelRuntime", "TensorSpec", "attach", "init_op", "load"]

def load(op_name: str, runtime: config_mod.RuntimeConfig) -> ModelRuntime | None:
    """Load the model that ``runtime.options["runtime"]`` and ``["model_config"]`` name.

    Args:
        op_name: The op that owns the model, named in every message.
        runtime: The op's resolved runtime config (device, precision, options).

    Returns:
        The loaded model, or None when the op configures no runtime.

    Raises:
        errors.ConfigError: The model is missing or cannot be loaded as configured on this
            machine; the message names the op and what to change.
    """
    kind = runtime.options.get("runtime")
    if kind is None:
        return None
    if kind == "paddle":
        from pipeserve.runtime import paddle_backend

        return paddle_backend.load(op_name, runtime)
    if kind == "onnx":
        from pipeserve.runtime import onnx_backend

        return onnx_backend.load(op_name, runtime)
    raise errors.ConfigError(
        f"op '{op_name}': local_service_conf.runtime: must be one of {', '.join(config_mod.RUNTIMES)}, got {kind!r}"
    )


def attach(op: op_mod.Op) -> None:
    """Load the op's model, if it configures one, as ``op.local_predictor``."""
    op.local_predictor = load(op.name, op.runtime_config)


def init_op(op: op_mod.Op) -> None:
    """What a worker runs in place of ``op.init_op()``: :func:`attach`, then ``init_op``.

    The model is there first, so ``init_op`` may warm it up through ``op.local_predictor``.
    """
    attach(op)
    op.init_op()
