"""Run one op over one batch: preprocess each sample, process the batch, postprocess each.

This is plain synchronous code, so the same function serves ops that run on the event
loop, in threads, or in worker processes. Each sample ends as an output or as its own
error: one bad sample never fails the others, except that an exception in ``process``
fails every sample of that call (they shared it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np

from pipeserve.pipeline import errors
from pipeserve.pipeline import op as op_mod

_LOGGER = logging.getLogger("pipeserve.op")

Outcome = Any
"""An op's output for one sample, or the PipelineError that ended it."""

StageTimes = list[tuple[str, int, int, str]]
"""Where a run records its stages when asked: ``(stage, start_ns, end_ns, where)`` each,
in the order they ran; ``where`` is ``""`` here and ``"remote:<endpoint>"`` in an op service."""


@dataclasses.dataclass(slots=True)
class Sample:
    """One sample handed to an op."""

    input_dicts: dict[str, Any]
    data_id: int
    log_id: int
    batch: bool = False
    """The request is a client batch: its arrays carry a leading batch dimension."""
    payload: Any = None
    """Where the sample's large values go on their way to an op service
    (``opservice.payloads.RequestPayload``); None sends them inline."""
    queued_ns: int = 0
    """``time.time_ns()`` when the sample was handed to its op; set only while someone
    observes the engine (the start of its ``in`` stage)."""


class StageRunner:
    """Calls an op's hooks in the form the op declares, decided once at construction."""

    def __init__(self, op: op_mod.Op) -> None:
        self.op = op
        self.name = op.name
        self._long_pre = op_mod.hook_form(op.preprocess, 1) == "long"
        self._long_post = op_mod.hook_form(op.postprocess, 2) == "long"
        self._has_process = op_mod.overrides(op, "process")
        # The base hooks pass a single input, and a fetch_dict, through unchanged: calling
        # them costs more than what they do. The default preprocess also checks samples
        # against a local model, so it is skipped only while the op has none.
        self._plain_pre = "preprocess" not in vars(op) and type(op).preprocess is op_mod.Op.preprocess
        self._plain_post = "postprocess" not in vars(op) and type(op).postprocess is op_mod.Op.postprocess

    def run(self, samples: list[Sample], times: StageTimes | None = None) -> list[Outcome]:
        """Run the three stages over ``samples`` and return one outcome per sample.

        With ``times``, the ``prep``, ``midp`` and ``postp`` stages of the batch are
        appended to it (``midp`` even when every sample skipped process, as an empty span).
        """
        if len(samples) == 1:
            if times is None:
                return [self._run_one(samples[0])]
            return [self._run_one_timed(samples[0], times)]
        clock = time.time_ns if times is not None else None
        started = clock() if clock else 0
        outcomes: list[Outcome] = [None] * len(samples)
        fetches: dict[int, Any] = {}
        batched: list[tuple[int, dict[str, Any]]] = []
        chunked: list[tuple[int, list[Any]]] = []
        for i, sample in enumerate(samples):
            try:
                feed, skip = self._preprocess(sample)
            except Exception as exc:  # noqa: BLE001 - user code: any failure is per sample
                outcomes[i] = self._fail(exc, "preprocess", [sample])
                continue
            if skip or not self._has_process:
                fetches[i] = feed
            elif isinstance(feed, list):
                chunked.append((i, feed))  # mini-batch: each chunk is processed alone
            elif isinstance(feed, dict):
                batched.append((i, feed))
            else:
                outcomes[i] = self._bad_feed(feed)
        if clock:
            prepped = clock()
            assert times is not None
            times.append(("prep", started, prepped, ""))
        if batched:
            self._process_into(fetches, outcomes, samples, batched)
        for i, chunks in chunked:
            try:
                fetches[i] = self._process_chunks(samples[i], chunks)
            except Exception as exc:  # noqa: BLE001
                outcomes[i] = self._fail(exc, "process", [samples[i]])
        if clock:
            processed = clock()
            assert times is not None
            times.append(("midp", prepped, processed, ""))
        for i, fetch in fetches.items():
            try:
                outcomes[i] = self._postprocess(samples[i], fetch)
            except Exception as exc:  # noqa: BLE001
                outcomes[i] = self._fail(exc, "postprocess", [samples[i]])
        if clock:
            assert times is not None
            times.append(("postp", processed, clock(), ""))
        return outcomes

    def _run_one_timed(self, sample: Sample, times: StageTimes) -> Outcome:
        """:meth:`_run_one` recording its stages; a stage that failed ends the record."""
        clock = time.time_ns
        started = clock()
        try:
            fetch, skip = self._preprocess(sample)
        except Exception as exc:  # noqa: BLE001 - user code
            times.append(("prep", started, clock(), ""))
            return self._fail(exc, "preprocess", [sample])
        prepped = clock()
        times.append(("prep", started, prepped, ""))
        if not skip and self._has_process:
            if not isinstance(fetch, (dict, list)):
                return self._bad_feed(fetch)
            try:
                fetch = self._process_one(sample, fetch)
            except Exception as exc:  # noqa: BLE001
                times.append(("midp", prepped, clock(), ""))
                return self._fail(exc, "process", [sample])
        processed = clock()
        times.append(("midp", prepped, processed, ""))
        try:
            outcome = self._postprocess(sample, fetch)
        except Exception as exc:  # noqa: BLE001
            outcome = self._fail(exc, "postprocess", [sample])
        times.append(("postp", processed, clock(), ""))
        return outcome

    def _process_one(self, sample: Sample, fetch: dict[str, Any] | list[Any]) -> Any:
        if isinstance(fetch, dict):
            result = self.op.process([fetch], sample.log_id)
            return split_batch(self.name, result, [fetch], [sample.batch])[0]
        return self._process_chunks(sample, fetch)

    def _run_one(self, sample: Sample) -> Outcome:
        """:meth:`run` for a single sample (as inline ops get), without the batch bookkeeping."""
        try:
            fetch, skip = self._preprocess(sample)
        except Exception as exc:  # noqa: BLE001 - user code
            return self._fail(exc, "preprocess", [sample])
        if not skip and self._has_process:
            if not isinstance(fetch, (dict, list)):
                return self._bad_feed(fetch)
            try:
                if isinstance(fetch, dict):
                    result = self.op.process([fetch], sample.log_id)
                    fetch = split_batch(self.name, result, [fetch], [sample.batch])[0]
                else:
                    fetch = self._process_chunks(sample, fetch)
            except Exception as exc:  # noqa: BLE001
                return self._fail(exc, "process", [sample])
        try:
            return self._postprocess(sample, fetch)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc, "postprocess", [sample])

    # Stages ------------------------------------------------------------------------------

    def _preprocess(self, sample: Sample) -> tuple[Any, bool]:
        op = self.op
        if self._plain_pre and op.local_predictor is None and len(sample.input_dicts) == 1:
            for only_input in sample.input_dicts.values():
                return only_input, False
        if not self._long_pre:
            return op.preprocess(sample.input_dicts), False  # type: ignore[call-arg]
        result = op.preprocess(sample.input_dicts, sample.data_id, sample.log_id)
        if not (isinstance(result, tuple) and len(result) == 4):
            raise errors.OpOutputError(
                f"op '{self.name}': preprocess(input_dicts, data_id, log_id) must return "
                f"(feed, is_skip_process, prod_errcode, prod_errinfo), got {_describe(result)}"
            )
        feed, skip, prod_errcode, prod_errinfo = result
        if prod_errcode is not None:
            raise _product_error(self.name, "preprocess", prod_errcode, prod_errinfo)
        return feed, bool(skip)

    def _postprocess(self, sample: Sample, fetch: Any) -> Any:
        if self._plain_post:
            return fetch
        op = self.op
        if not self._long_post:
            return op.postprocess(sample.input_dicts, fetch)  # type: ignore[call-arg]
        result = op.postprocess(sample.input_dicts, fetch, sample.data_id, sample.log_id)
        if not (isinstance(result, tuple) and len(result) == 3):
            raise errors.OpOutputError(
                f"op '{self.name}': postprocess(input_dicts, fetch_dict, data_id, log_id) must "
                f"return (out, prod_errcode, prod_errinfo), got {_describe(result)}"
            )
        out, prod_errcode, prod_errinfo = result
        if prod_errcode is not None:
            raise _product_error(self.name, "postprocess", prod_errcode, prod_errinfo)
        return out

    def _process_into(
        self,
        fetches: dict[int, Any],
        outcomes: list[Outcome],
        samples: list[Sample],
        batched: list[tuple[int, dict[str, Any]]],
    ) -> None:
        members = [samples[i] for i, _ in batched]
        feeds = [feed for _, feed in batched]
        try:
            result = self.op.process(feeds, members[0].log_id)
            per_feed = split_batch(self.name, result, feeds, [s.batch for s in members])
        except Exception as exc:  # noqa: BLE001
            error = self._fail(exc, "process", members)
            for i, _ in batched:
                outcomes[i] = error
            return
        for (i, _), fetch in zip(batched, per_feed):
            fetches[i] = fetch

    def _process_chunks(self, sample: Sample, chunks: list[Any]) -> list[Any]:
        """A mini-batch: each chunk is processed alone; their fetches, in order."""
        results = []
        for chunk in chunks:
            result = self.op.process([chunk], sample.log_id)
            results.append(split_batch(self.name, result, [chunk], [sample.batch])[0])
        return results

    def _bad_feed(self, feed: Any) -> errors.PipelineError:
        return errors.OpOutputError(
            f"op '{self.name}': preprocess must return a dict (or a list of dicts "
            f"for mini-batches), got {type(feed).__name__}"
        )

    def _fail(self, exc: Exception, stage: str, samples: list[Sample]) -> errors.PipelineError:
        error = errors.to_err(exc, self.name)
        ids = " ".join(f"data_id={s.data_id} log_id={s.log_id}" for s in samples)
        if isinstance(error, errors.ProductError):
            _LOGGER.info("[%s] op '%s' %s: product error %s: %s", ids, self.name, stage, error.code, error.message)
        elif error is exc:
            _LOGGER.warning("[%s] op '%s' %s failed: %s", ids, self.name, stage, error.message, exc_info=exc)
        else:
            _LOGGER.error("[%s] op '%s' %s raised", ids, self.name, stage, exc_info=exc)
        return error


def split_batch(op_name: str, result: Any, feeds: list[Any], is_batch: list[bool]) -> list[Any]:
    """Split what ``process`` returned for ``feeds`` back into one fetch_dict per feed.

    A list (or tuple) must hold one entry per feed. A dict holds arrays whose first axis
    runs over the batch: each ordinary request owns one row (``value[i]``), and a client
    batch owns as many rows as its feed's leading dimension (``value[start:end]``).
    """
    if isinstance(result, (list, tuple)):
        if len(result) != len(feeds):
            raise errors.OpOutputError(
                f"op '{op_name}': process returned {len(result)} results for {len(feeds)} feeds"
            )
        return list(result)
    if not isinstance(result, dict):
        raise errors.OpOutputError(
            f"op '{op_name}': process must return a list with one dict per feed, or a dict "
            f"of batched arrays, got {_describe(result)}"
        )
    rows = [_rows(feed) if batch else 1 for feed, batch in zip(feeds, is_batch)]
    total = sum(rows)
    for key, value in result.items():
        length = len(value) if hasattr(value, "__len__") else None
        if length != total:
            raise errors.OpOutputError(
                f"op '{op_name}': process output '{key}' has {length} rows for a batch of "
                f"{total}; return a list with one dict per feed instead"
            )
    split: list[Any] = []
    start = 0
    for n, batch in zip(rows, is_batch):
        if batch:
            split.append({key: value[start : start + n] for key, value in result.items()})
        else:
            split.append({key: value[start] for key, value in result.items()})
        start += n
    return split


def _rows(feed: Any) -> int:
    """Rows a client-batch feed contributes: the leading dimension of its first array."""
    if isinstance(feed, dict):
        for value in feed.values():
            if isinstance(value, np.ndarray) and value.ndim >= 1:
                return int(value.shape[0])
    return 1


def _product_error(op_name: str, stage: str, code: Any, info: Any) -> errors.ProductError:
    message = str(info) if info else f"op '{op_name}' {stage} returned product error {code!r}"
    try:
        return errors.ProductError(code, message)
    except TypeError as exc:
        raise errors.OpOutputError(
            f"op '{op_name}': {stage} returned prod_errcode {code!r}; use a ProductErrCode "
            "member with an integer value"
        ) from exc


def _describe(value: Any) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return type(value).__name__
