"""The user's building blocks: Op, RequestOp and ResponseOp, with the seeds' signatures.

An Op turns the outputs of its input ops into its own output in three stages:
``preprocess`` (per sample), ``process`` (per batch) and ``postprocess`` (per sample).
Users override any of them in either of the two forms the seeds show:

- short: ``preprocess(input_dicts)`` returns the feed; ``postprocess(input_dicts, fetch_dict)``
  returns the output;
- long: ``preprocess(input_dicts, data_id, log_id)`` returns
  ``(feed, is_skip_process, prod_errcode, prod_errinfo)`` and
  ``postprocess(input_dicts, fetch_dict, data_id, log_id)`` returns
  ``(out, prod_errcode, prod_errinfo)``.

The form is read once from the signature (:func:`hook_form`), never per call.
"""

from __future__ import annotations

import inspect
import itertools
import weakref
from typing import TYPE_CHECKING, Any

from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import errors

if TYPE_CHECKING:
    from pipeserve.pipeline.channel import ChannelData
    from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb
    from pipeserve.runtime import base as runtime_base

#: The name the seeds give both RequestOp and ResponseOp.
DAG_EXECUTOR_NAME = "@DAGExecutor"

#: Every Op created in this process, so the DAG can find ops that were wired to the
#: RequestOp but never reach the ResponseOp.
_ALL_OPS: weakref.WeakSet[Op] = weakref.WeakSet()
_unnamed = itertools.count(1)


class Op:
    """One stage of the pipeline (seed §2.2).

    Constructor arguments that are left as None take their value from the ``op.<name>``
    section of config.yml, and then from the defaults; a value given here wins over the
    config, as in the seeds.
    """

    def __init__(
        self,
        name: str | None = None,
        input_ops: list[Op] | None = None,
        server_endpoints: list[str] | None = None,
        fetch_list: list[str] | None = None,
        client_config: str | None = None,
        client_type: str | None = None,
        concurrency: int | None = None,
        timeout: float | None = None,
        retry: int | None = None,
        batch_size: int | None = None,
        auto_batching_timeout: float | None = None,
        local_service_handler: Any = None,
        inline: bool | None = None,
    ) -> None:
        self.name: str = name if name is not None else f"{type(self).__name__.lower()}_{next(_unnamed)}"
        self._input_ops: list[Any] = list(input_ops or [])
        self._overrides: dict[str, Any] = {
            key: value
            for key, value in {
                "server_endpoints": server_endpoints,
                "fetch_list": fetch_list,
                "client_config": client_config,
                "client_type": client_type,
                "concurrency": concurrency,
                "timeout": timeout,
                "retry": retry,
                "batch_size": batch_size,
                "auto_batching_timeout": auto_batching_timeout,
                "inline": inline,
            }.items()
            if value is not None
        }
        self.local_service_handler = local_service_handler
        self.concurrency_idx: int | None = None
        """Index of this worker among the op's process workers (None for thread ops)."""
        self.runtime_config = config_mod.RuntimeConfig()
        """Device type, devices, precision and the bound device of this worker."""
        self.local_predictor: runtime_base.ModelRuntime | None = None
        """The model of ``local_service_conf`` (``runtime``, ``model_config``), loaded by the
        worker before ``init_op``; None when the op configures none."""
        _ALL_OPS.add(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # Wiring -----------------------------------------------------------------------------

    def get_input_ops(self) -> list[Op]:
        """The ops whose outputs this op reads."""
        return list(self._input_ops)

    def set_input_ops(self, ops: list[Op]) -> None:
        """Replace the input ops (the DAG is validated when the server is prepared)."""
        self._input_ops = list(ops)

    def constructor_settings(self) -> dict[str, Any]:
        """The config.yml keys given to the constructor, which win over the config."""
        return dict(self._overrides)

    # Hooks users override ------------------------------------------------------------

    def init_op(self) -> None:
        """Load resources once per worker (once per op for thread ops: keep them thread-safe)."""

    def preprocess(
        self, input_dicts: dict[str, Any], data_id: int, log_id: int
    ) -> tuple[Any, bool, errors.ProductErrCode | None, str]:
        """Build the feed of one sample from its inputs (default: the single input as is).

        With a local model run by the default ``process``, the default also checks that
        the input fits the model, so a bad request fails alone here instead of failing its
        whole batch in ``process``.
        """
        if len(input_dicts) != 1:
            raise errors.DagError(
                f"op '{self.name}' has {len(input_dicts)} inputs but uses the default "
                "preprocess, which takes one; override preprocess to merge them"
            )
        ((_, input_dict),) = input_dicts.items()
        if self.local_predictor is not None and type(self).process is Op.process:
            self.local_predictor.check_sample(input_dict)
        return input_dict, False, None, ""

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        """Run the model on a batch of feeds.

        Return a list with one output dict per feed, or one dict of arrays whose first
        axis runs over the batch (split back per sample).

        The default runs the op's local model (``op.local_predictor``) once over the whole
        batch: each feed's arrays are stacked when they hold one sample (one dimension
        less than the model's input) or concatenated when they bring rows of their own,
        and each feed gets back exactly its rows of every output. Ops with neither an
        override nor a model skip this stage: the feed becomes the fetch_dict.
        """
        if self.local_predictor is not None:
            return self.local_predictor.run_batch(feed_list)
        return feed_list

    def postprocess(
        self, input_dicts: dict[str, Any], fetch_dict: Any, data_id: int, log_id: int
    ) -> tuple[Any, errors.ProductErrCode | None, str]:
        """Turn one sample's fetch_dict into this op's output (default: as is)."""
        return fetch_dict, None, ""


class RequestOp(Op):
    """Turns a gateway Request into the first dict of the DAG (seed §2.4)."""

    def __init__(self) -> None:
        super().__init__(name=DAG_EXECUTOR_NAME, input_ops=[])
        self.init_op()

    def unpack_request_package(self, request: pb.Request) -> Any:
        """Return the request's values by key (strings stay strings, tensors become arrays).

        Overrides may return just the dict, or ``(dict, log_id, prod_errcode, prod_errinfo)``.
        """
        from pipeserve import codec  # the codec imports this package's errors

        return codec.values_from_request(request)


class ResponseOp(Op):
    """Turns the DAG's result into the gateway Response (seed §2.5)."""

    def __init__(self, input_ops: list[Op]) -> None:
        super().__init__(name=DAG_EXECUTOR_NAME, input_ops=input_ops)
        self.init_op()

    def pack_response_package(self, channeldata: ChannelData) -> pb.Response:
        """Return the Response: the error, or the output of the single input op as key/value
        strings and tensors."""
        from pipeserve import codec

        if channeldata.error_code != errors.ErrCode.OK:
            return codec.response_from_values({}, channeldata.error_code, channeldata.error_info)
        return codec.response_from_values(channeldata.single_output())


def hook_form(method: Any, short_arity: int) -> str:
    """Tell whether a bound hook takes the short or the long form of arguments."""
    params = [
        p
        for p in inspect.signature(method).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(method).parameters.values())
    return "short" if len(params) <= short_arity and not has_varargs else "long"


def overrides(op: Op, hook: str) -> bool:
    """True when the op's class replaces the base implementation of ``hook``.

    An op with a local model counts as overriding ``process``: its default runs the model.
    The config's ``runtime`` key is read, not ``local_predictor``, because the stage runner
    asks before the worker has loaded the model.
    """
    if hook == "process" and (op.local_predictor is not None or "runtime" in op.runtime_config.options):
        return True
    base = ResponseOp if isinstance(op, ResponseOp) else RequestOp if isinstance(op, RequestOp) else Op
    return getattr(type(op), hook) is not getattr(base, hook)
