"""ONNX models through onnxruntime: execution providers chosen from the op's device type.

Named ``onnx_backend`` rather than ``onnx`` so it never stands in for the ``onnx``
package. onnxruntime is imported inside :func:`load`, so ops without an ONNX model never
pay for it (and the package stays optional: ``pip install pipeserve[onnx]``).

``InferenceSession.run`` is thread-safe, so thread workers share one session.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import errors
from pipeserve.runtime import base

_LOGGER = logging.getLogger("pipeserve.runtime")

Device = config_mod.DeviceType

#: onnxruntime's type strings for the inputs pipeserve can feed.
_DTYPES = {
    f"tensor({ort})": np.dtype(name)
    for ort, name in {
        "float": "float32", "double": "float64", "float16": "float16", "bool": "bool",
        "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
        "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    }.items()
}  # fmt: skip


class OnnxRuntime(base.ModelRuntime):
    """An ``onnxruntime.InferenceSession`` behind the :class:`base.ModelRuntime` interface."""

    def __init__(self, op_name: str, session: Any, path: str) -> None:
        self.session = session
        self.path = path
        super().__init__(op_name, _feed_specs(op_name, session), [out.name for out in session.get_outputs()])

    def _run(self, feed: dict[str, base.Array]) -> dict[str, base.Array]:
        outputs = self.session.run(list(self.fetch_names), feed)
        return dict(zip(self.fetch_names, outputs))


def load(op_name: str, runtime: config_mod.RuntimeConfig) -> OnnxRuntime:
    """Open the op's ONNX model in an onnxruntime session.

    ``model_config`` is a ``.onnx`` file, or a directory holding exactly one. Providers
    by ``device_type``: 0 CPU; 1 CUDA (``device_id``) then CPU; 2 TensorRT (fp16/int8
    flags from ``precision``) then CUDA then CPU. ``thread_num`` sets the intra-op threads
    (unset: onnxruntime's default), ``ir_optim: false`` turns graph optimisation off, and
    ``use_mkldnn`` puts oneDNN first where this onnxruntime has it.

    Raises:
        errors.ConfigError: The model is missing or onnxruntime refuses it, or the device
            type or precision asks for what this onnxruntime or machine cannot do; the
            message names the op.
    """
    path = _model_file(op_name, base.model_path(op_name, base.option(runtime, "model_config")))
    import onnxruntime

    providers = _providers(op_name, runtime, onnxruntime.get_available_providers())
    options = onnxruntime.SessionOptions()
    threads = base.option(runtime, "thread_num")
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    if base.option(runtime, "ir_optim") is False:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = onnxruntime.InferenceSession(path, sess_options=options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        raise errors.ConfigError(f"op '{op_name}': onnxruntime cannot load {path!r}: {exc}") from exc
    wanted = _name(providers[0])
    if session.get_providers()[0] != wanted:
        raise errors.ConfigError(
            f"op '{op_name}': onnxruntime could not start {wanted} for device_type "
            f"{base.device_name(runtime.device_type)} and fell back to {session.get_providers()[0]}; "
            "see onnxruntime's warnings above"
        )
    return OnnxRuntime(op_name, session, path)


def _model_file(op_name: str, path: str) -> str:
    if not os.path.isdir(path):
        return path
    found = sorted(name for name in os.listdir(path) if name.endswith(".onnx"))
    if len(found) != 1:
        what = "no .onnx file" if not found else f"{len(found)} .onnx files ({', '.join(found)}); name one"
        raise errors.ConfigError(f"op '{op_name}': local_service_conf.model_config: {what} in {path!r}")
    return os.path.join(path, found[0])


def _providers(op_name: str, runtime: config_mod.RuntimeConfig, available: Sequence[str]) -> list[Any]:
    """The providers for the op's device type and precision, best first, CPU last."""
    device, precision = runtime.device_type, runtime.precision
    where = f"op '{op_name}': device_type {base.device_name(device)}"
    card = base.gpu_ordinal(runtime)
    cpu: list[Any] = ["CPUExecutionProvider"]
    if base.option(runtime, "use_mkldnn"):
        if "DnnlExecutionProvider" in available:
            cpu.insert(0, "DnnlExecutionProvider")
        else:
            _LOGGER.info("op '%s': this onnxruntime has no DnnlExecutionProvider; use_mkldnn is ignored", op_name)
    if device is Device.TENSORRT:
        flags = {"trt_fp16_enable": precision == "fp16", "trt_int8_enable": precision == "int8"}
        trt = ("TensorrtExecutionProvider", {"device_id": card, **flags})
        chain = [trt, ("CUDAExecutionProvider", {"device_id": card}), *cpu]
    elif device is Device.GPU:
        chain = [("CUDAExecutionProvider", {"device_id": card}), *cpu]
    elif device is Device.CPU:
        chain = cpu
    else:
        raise errors.ConfigError(f"{where}: the onnx runtime runs on cpu (0), gpu (1) or tensorrt (2)")
    if precision != "fp32" and device is not Device.TENSORRT:
        raise errors.ConfigError(
            f"{where}: precision {precision}: onnxruntime runs a model in the precision it was "
            "exported in; set precision: fp32 (and export the model in the precision you want), "
            "or use device_type 2 (tensorrt)"
        )
    for provider in chain:
        if _name(provider) not in available:
            raise errors.ConfigError(
                f"{where} needs onnxruntime's {_name(provider)}, but this onnxruntime offers only "
                f"{', '.join(available)}; install onnxruntime-gpu and the CUDA libraries it needs"
            )
    return chain


def _name(provider: Any) -> str:
    return provider[0] if isinstance(provider, tuple) else str(provider)


def _feed_specs(op_name: str, session: Any) -> list[base.TensorSpec]:
    specs = []
    for node in session.get_inputs():
        dtype = _DTYPES.get(node.type)
        if dtype is None:
            raise errors.ConfigError(
                f"op '{op_name}': model input {node.name!r} has type {node.type}, which pipeserve cannot feed"
            )
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape)
        specs.append(base.TensorSpec(node.name, dtype, shape))
    return specs
