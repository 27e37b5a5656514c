"""The concept-service's one downstream: the model-server's ``StreamActivations``.

``ActivationPuller`` is what CreateActivationSets needs of the model-server,
in plain values (:mod:`xaimesh_concept.common`'s ``ActivationEvent``s);
:class:`GrpcActivationPuller` implements it over a ModelService channel.
Tests can give the servicer any other implementation.

    puller = GrpcActivationPuller(config.downstream("model-server"))
    stream = puller.stream_activations(query, timeout=remaining_timeout(context))
    for event in stream.events(should_stop):     # header, rows, progress, item failures, summary
        ...
    stream.cancel()                              # from any thread: stops the upstream call

A failed call keeps the model-server's code and names it and its address
(the runtime's ``DownstreamError``); a call that failed because ours was
cancelled (``should_stop()`` true) raises ``Cancelled``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from xaimesh_contracts.tensors import to_numpy
from xaimesh_contracts.v1 import model_pb2, model_pb2_grpc, tensor_pb2
from xaimesh_runtime.client import downstream_stub
from xaimesh_runtime.config import Downstream
from xaimesh_runtime.errors import Cancelled, DownstreamError, FailedPrecondition
from xaimesh_runtime.replicas import ReplicaPool

from .common import ActivationEvent, ActivationRows, ActivationsHeader, ActivationsSummary, ItemFailure, \
    Progress, Provenance

__all__ = ["MODEL_SERVER", "ActivationPuller", "ActivationStream", "ActivationsQuery", "GrpcActivationPuller"]

MODEL_SERVER = "model-server"

log = logging.getLogger(__name__)


@dataclass
class ActivationsQuery:
    """model.proto's StreamActivationsRequest (enums as their proto numbers)."""

    texts: Sequence[str]
    split_points: Sequence[str]
    model: str = ""
    granularity: int = 0
    aggregation: int = 0
    add_special_tokens: bool = False  # deprecated: true = SPECIAL_TOKENS_POLICY_ADD
    max_length: int = 0
    special_tokens: int = 0  # SpecialTokensPolicy (0: the tokenizer's own, docs/models.md, "Token semantics")


class ActivationStream(Protocol):
    def events(self, should_stop: Callable[[], bool]) -> Iterator[ActivationEvent]:
        """The stream's events in order; raises ``Cancelled`` once ``should_stop()``."""
        ...

    def cancel(self) -> None:
        """Stops the upstream call (any thread, more than once)."""
        ...


class ActivationPuller(Protocol):
    def stream_activations(self, query: ActivationsQuery, *, timeout: float | None) -> ActivationStream:
        ...

    def close(self) -> None:
        ...


def _provenance(rows: Sequence[model_pb2.RowProvenance]) -> list[Provenance]:
    return [Provenance(r.sample_index, r.token_start, r.token_end, r.text) for r in rows]


def _event(event: model_pb2.StreamActivationsResponse) -> ActivationEvent | None:
    kind = event.WhichOneof("event")
    if kind == "header":
        h = event.header
        return ActivationsHeader(split_points=list(h.split_points), model=h.model, granularity=h.granularity,
                                 aggregation=h.aggregation, hidden_size=h.hidden_size, num_samples=h.num_samples)
    if kind == "chunk":
        c = event.chunk
        return ActivationRows(c.split_point, to_numpy(c.rows, field="rows", ndim=2),
                              _provenance(c.provenance) if len(c.provenance) else None)
    if kind == "progress":
        p = event.progress
        return Progress(p.stage, p.done, p.total, p.message)
    if kind == "item_error":
        return ItemFailure(int(event.item_error.index), event.item_error.status)
    if kind == "summary":
        return ActivationsSummary(int(event.summary.num_rows), int(event.summary.num_samples))
    return None  # a newer model-server's event: nothing to do with it


# A pull whose model-server replica goes away mid-stream goes on on another one at most this often.
MAX_RESUMES = 3


class _GrpcActivationStream:
    """The events of one pull, resumed on another replica when the one
    serving it goes away (UNAVAILABLE) after it began.

    The model-server works through the texts in windows, in input order, and
    ends each window with a progress event (``done`` texts complete). Events
    are held back until that progress event, so a window cut short delivers
    nothing; the pull then starts again at the first text not done
    (``start(offset)`` calls StreamActivations on ``texts[offset:]``) and its
    indices are shifted back: sample indices, item errors, progress, and the
    summary's counts. A failure before anything came was already retried by
    the replica pool.
    """

    def __init__(self, start: Callable[[int], Any], n_texts: int) -> None:
        self._start, self._n_texts = start, n_texts
        self._lock = threading.Lock()
        self._call: Any = None
        self._cancelled = False

    def _open(self, offset: int) -> Any:
        with self._lock:
            if self._cancelled:
                raise Cancelled("the call was cancelled")
            self._call = self._start(offset)
            return self._call

    def events(self, should_stop: Callable[[], bool]) -> Iterator[ActivationEvent]:
        offset = 0  # texts[:offset] are complete and delivered
        rows_before = 0  # rows (of the first split point) delivered by earlier calls
        resumes = 0
        header: ActivationsHeader | None = None
        while True:
            held: list[ActivationEvent] = []
            committed, rows_committed, rows_held = offset, 0, 0
            try:
                for message in self._open(offset):
                    event = _shifted(_event(message), offset, self._n_texts)
                    if event is None:
                        continue
                    if isinstance(event, ActivationsHeader):
                        if header is None:  # a resumed call's header says the same again
                            header = event
                            yield event
                        continue
                    if isinstance(event, ActivationsSummary):
                        yield from held
                        yield ActivationsSummary(event.num_rows + rows_before, event.num_samples + offset)
                        return
                    held.append(event)
                    if isinstance(event, ActivationRows) and header is not None \
                            and event.split_point == header.split_points[0]:
                        rows_held += int(event.rows.shape[0])
                    if isinstance(event, Progress):  # a window is complete: deliver it
                        yield from held
                        held, committed = [], event.done
                        rows_committed, rows_held = rows_committed + rows_held, 0
                yield from held
                return
            except DownstreamError as exc:
                if should_stop():
                    raise Cancelled("the call was cancelled") from None
                if exc.code != grpc.StatusCode.UNAVAILABLE or resumes >= MAX_RESUMES:
                    raise
                resumes += 1
                offset, rows_before = committed, rows_before + rows_committed
                log.warning("activation pull: %s; going on from text %d on another replica", exc.message, offset)

    def cancel(self) -> None:
        with self._lock:  # with _open: a call started after this is never made
            self._cancelled = True
            if self._call is not None:
                self._call.cancel()


def _shifted(event: ActivationEvent | None, offset: int, n_texts: int) -> ActivationEvent | None:
    """An event of a pull of ``texts[offset:]`` as one of the whole pull."""
    if not offset or event is None or isinstance(event, (ActivationsHeader, ActivationsSummary)):
        return event
    if isinstance(event, ActivationRows):
        provenance = None if event.provenance is None else [
            Provenance(p.sample_index + offset, p.token_start, p.token_end, p.text) for p in event.provenance]
        return ActivationRows(event.split_point, event.rows, provenance)
    if isinstance(event, ItemFailure):
        return ItemFailure(event.index + offset, event.status)
    if isinstance(event, Progress):
        return Progress(event.stage, event.done + offset, n_texts, event.message)
    return event


class GrpcActivationPuller:
    """``ActivationPuller`` (and ``tuned_lenses.LensServer``) over a ModelService. ``model_server``: a
    ``Downstream`` (whose address may name several replicas, balanced and
    retried by :mod:`xaimesh_runtime.replicas`), an address, an open channel,
    or None (then every pull is FAILED_PRECONDITION); connections are opened
    on first use."""

    def __init__(self, model_server: Downstream | str | grpc.Channel | None) -> None:
        self._model_server = Downstream(model_server) if isinstance(model_server, str) else model_server
        self._pool: ReplicaPool | None = None
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        ms = self._model_server
        if isinstance(ms, Downstream):
            return ms.address
        return "(channel)" if ms is not None else "(not configured)"

    def _stub(self):
        ms = self._model_server
        if ms is None:
            raise FailedPrecondition("this concept-service has no model-server configured "
                                     "(--model-server-address / XAIMESH_MODEL_SERVER)")
        if isinstance(ms, grpc.Channel):
            return downstream_stub(model_pb2_grpc.ModelServiceStub(ms), MODEL_SERVER, self.address)
        with self._lock:
            if self._pool is None:
                self._pool = ReplicaPool(ms, service=MODEL_SERVER, max_in_flight=ms.max_in_flight,
                                         resolve_interval_s=ms.resolve_interval_s)
            return self._pool.stub(model_pb2_grpc.ModelServiceStub)

    def stream_activations(self, query: ActivationsQuery, *, timeout: float | None) -> ActivationStream:
        stub = self._stub()
        deadline = None if timeout is None else time.monotonic() + timeout

        def start(offset: int) -> Any:  # the pull of texts[offset:], within the caller's deadline
            request = model_pb2.StreamActivationsRequest(
                model=query.model, texts=list(query.texts[offset:]), split_points=list(query.split_points),
                granularity=query.granularity, aggregation=query.aggregation,
                add_special_tokens=query.add_special_tokens, max_length=query.max_length,
                special_tokens=query.special_tokens, dtype=tensor_pb2.DATA_TYPE_FLOAT32)
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            return stub.StreamActivations(request, timeout=left)

        return _GrpcActivationStream(start, len(query.texts))

    def fit_translators(self, request: model_pb2.FitLensTranslatorsRequest, *, timeout: float | None):
        return self._stub().FitLensTranslators(request, timeout=timeout)

    def logit_lens(self, request: model_pb2.LogitLensRequest, *, timeout: float | None):
        return self._stub().LogitLens(request, timeout=timeout)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
