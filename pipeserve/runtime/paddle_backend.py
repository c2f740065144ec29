"""Paddle inference models (``paddle.jit.save`` output) through ``paddle.inference``.

Named ``paddle_backend`` rather than ``paddle`` so it never stands in for the package.
paddle is imported inside :func:`load`: the import takes seconds, and ops without a
Paddle model should not pay for it (the package is optional: ``pip install
pipeserve[paddle]``).

A predictor is not thread-safe, so each worker thread runs its own ``clone()`` (clones
share the weights). The predictor tells input names but not shapes or dtypes, so those
are read from the model file: the PIR program (``.json``) or the legacy ProgramDesc
(``.pdmodel``), without loading the weights a second time.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import errors
from pipeserve.runtime import base

Device = config_mod.DeviceType

_MODEL_SUFFIXES = (".json", ".pdmodel")
_GPU_MEMORY_MB = 100
"""Initial GPU memory pool; Paddle grows it as the model needs."""


class PaddleRuntime(base.ModelRuntime):
    """A Paddle Inference predictor behind the :class:`base.ModelRuntime` interface."""

    def __init__(self, op_name: str, predictor: Any, specs: list[base.TensorSpec], path: str) -> None:
        super().__init__(op_name, specs, predictor.get_output_names())
        self.path = path
        self._first: Any = predictor
        self._first_taken = False
        self._lock = threading.Lock()
        self._local = threading.local()

    def _predictor(self) -> Any:
        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            with self._lock:
                taken, self._first_taken = self._first_taken, True
            predictor = self._first.clone() if taken else self._first
            self._local.predictor = predictor
        return predictor

    def _run(self, feed: dict[str, base.Array]) -> dict[str, base.Array]:
        predictor = self._predictor()
        for name, array in feed.items():
            handle = predictor.get_input_handle(name)
            handle.reshape(array.shape)
            handle.copy_from_cpu(np.ascontiguousarray(array))
        predictor.run()
        return {name: predictor.get_output_handle(name).copy_to_cpu() for name in self.fetch_names}


def load(op_name: str, runtime: config_mod.RuntimeConfig) -> PaddleRuntime:
    """Create the op's Paddle Inference predictor.

    ``model_config`` is the ``paddle.jit.save`` prefix (``models/clf`` for
    ``models/clf.json`` or ``.pdmodel`` with ``models/clf.pdiparams``), the model file
    itself, or a directory holding one model. CPU: ``thread_num`` math threads,
    ``use_mkldnn`` (unset: Paddle's default), bf16 through oneDNN. GPU: the card's
    memory pool with fp32 or fp16. TensorRT: fp32, fp16 or int8 (``use_calib`` for int8
    calibration). ``ir_optim`` and ``mem_optim`` switch those passes.

    Raises:
        errors.ConfigError: The model or its parameters are missing or Paddle refuses
            them, or the device type or precision asks for what this paddle build or
            machine cannot do; the message names the op.
    """
    path = base.model_path(op_name, base.option(runtime, "model_config"), _MODEL_SUFFIXES)
    model_file, params_file = _model_files(op_name, path)
    import paddle
    import paddle.inference

    config = paddle.inference.Config(model_file, params_file)
    _configure(op_name, runtime, config, paddle)
    try:
        specs = _feed_specs(op_name, model_file, paddle)
        predictor = paddle.inference.create_predictor(config)
    except errors.ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - paddle raises its own untyped errors
        raise errors.ConfigError(f"op '{op_name}': paddle cannot load {model_file!r}: {exc}") from exc
    names = predictor.get_input_names()
    by_name = {spec.name: spec for spec in specs}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise errors.ConfigError(f"op '{op_name}': {model_file!r} declares no shape for inputs {', '.join(missing)}")
    return PaddleRuntime(op_name, predictor, [by_name[name] for name in names], model_file)


def _model_files(op_name: str, path: str) -> tuple[str, str]:
    """The model file and its parameters file for a prefix, a model file or a directory."""
    where = f"op '{op_name}': local_service_conf.model_config"
    model = path
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        found = [n for n in names if n.endswith(".pdmodel") or n == "__model__"]
        found += [n for n in names if n.endswith(".json") and n[: -len(".json")] + ".pdiparams" in names]
        if len(found) != 1:
            many = f"{len(found)} models ({', '.join(found)}); name one"
            what = many if found else "no model (.json or .pdmodel)"
            raise errors.ConfigError(f"{where}: {what} in {path!r}")
        model = os.path.join(path, found[0])
    elif not path.endswith(_MODEL_SUFFIXES) and os.path.basename(path) != "__model__":
        raise errors.ConfigError(f"{where}: {path!r} is not a Paddle model (.json or .pdmodel)")
    if os.path.basename(model) == "__model__":
        params = os.path.join(os.path.dirname(model), "__params__")
    else:
        params = os.path.splitext(model)[0] + ".pdiparams"
    if not os.path.isfile(params):
        raise errors.ConfigError(f"{where}: no parameters {params!r} next to the model {model!r}")
    return model, params


def _configure(op_name: str, runtime: config_mod.RuntimeConfig, config: Any, paddle: Any) -> None:
    """Apply the op's device, precision and options to a ``paddle.inference.Config``."""
    device, precision = runtime.device_type, runtime.precision
    where = f"op '{op_name}': device_type {base.device_name(device)}"
    precisions = paddle.inference.PrecisionType
    mode = {"fp32": precisions.Float32, "fp16": precisions.Half, "int8": precisions.Int8}
    if device is Device.CPU:
        config.disable_gpu()
        threads = base.option(runtime, "thread_num")
        if threads is not None:
            config.set_cpu_math_library_num_threads(int(threads))
        mkldnn = base.option(runtime, "use_mkldnn")
        if precision == "bf16":
            if mkldnn is False:
                raise errors.ConfigError(f"{where}: precision bf16 runs through oneDNN; remove use_mkldnn: false")
            if not paddle.base.core.supports_bfloat16():
                raise errors.ConfigError(f"{where}: precision bf16: this CPU has no bfloat16 support; use fp32")
            config.enable_mkldnn()
            config.enable_mkldnn_bfloat16()
        elif precision != "fp32":
            raise errors.ConfigError(f"{where}: precision {precision}: paddle on CPU runs fp32, or bf16 with oneDNN")
        elif mkldnn is True:
            config.enable_mkldnn()
        elif mkldnn is False:
            config.disable_mkldnn()
    elif device in (Device.GPU, Device.TENSORRT):
        if not paddle.device.is_compiled_with_cuda():
            raise errors.ConfigError(
                f"{where}: this paddle build has no CUDA; install paddlepaddle-gpu, or set device_type: 0"
            )
        if paddle.device.cuda.device_count() < 1:
            raise errors.ConfigError(f"{where}: no CUDA device is visible to this process")
        ordinal = base.gpu_ordinal(runtime)
        if device is Device.GPU:
            if precision not in ("fp32", "fp16"):
                raise errors.ConfigError(f"{where}: precision {precision} on GPU needs TensorRT (device_type: 2)")
            config.enable_use_gpu(_GPU_MEMORY_MB, ordinal, mode[precision])
        else:
            if tuple(paddle.inference.get_trt_compile_version()) == (0, 0, 0):
                raise errors.ConfigError(f"{where}: this paddle build has no TensorRT; use device_type: 1")
            config.enable_use_gpu(_GPU_MEMORY_MB, ordinal)
            use_calib = bool(base.option(runtime, "use_calib"))
            config.enable_tensorrt_engine(precision_mode=mode[precision], use_calib_mode=use_calib)
    else:
        raise errors.ConfigError(f"{where}: the paddle runtime runs on cpu (0), gpu (1) or tensorrt (2)")
    if base.option(runtime, "ir_optim") is not None:
        config.switch_ir_optim(bool(base.option(runtime, "ir_optim")))
    if base.option(runtime, "mem_optim"):
        config.enable_memory_optim()
    config.disable_glog_info()


def _feed_specs(op_name: str, model_file: str, paddle: Any) -> list[base.TensorSpec]:
    """Every input's name, dtype and shape, read from the model file."""
    found: list[tuple[str, Any, list[int]]] = []
    if model_file.endswith(".json"):
        program = paddle.pir.Program()
        paddle.base.core.deserialize_pir_program(model_file, program)
        for op in program.global_block().ops:
            if op.name() in ("pd_op.data", "pd_op.feed"):
                value = op.result(0)
                found.append((op.attrs()["name"], value.dtype, list(value.shape)))
    else:
        with open(model_file, "rb") as file:
            program_desc = paddle.base.core.ProgramDesc(file.read())
        block = program_desc.block(0)  # a view into program_desc, which must stay alive
        variables = {var.name(): var for var in block.all_vars()}
        for i in range(block.op_size()):
            op = block.op(i)
            if op.type() == "feed":
                (name,) = op.output_arg_names()
                found.append((name, variables[name].dtype(), list(variables[name].shape())))
    return [
        base.TensorSpec(name, _dtype(op_name, name, dtype), tuple(int(d) for d in shape))
        for name, dtype, shape in found
    ]


def _dtype(op_name: str, input_name: str, dtype: Any) -> np.dtype[Any]:
    name = str(dtype).removeprefix("paddle.")
    try:
        result = np.dtype(name)
    except TypeError:
        result = None
    if result is None or result.kind not in "biuf":
        raise errors.ConfigError(
            f"op '{op_name}': model input {input_name!r} has dtype {name}, which pipeserve cannot feed"
        )
    return result
