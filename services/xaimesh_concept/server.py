"""gRPC adapter of the concept-service: ConceptService over ConceptWorkspace.

A thin layer: decode the request, call :class:`~xaimesh_concept.workspace.
ConceptWorkspace`, encode the answer, map errors to status codes. The only
logic of its own is CreateActivationSets, which pulls activations from the
model-server (``StreamActivations``, server to server) and writes them into
the store chunk by chunk while they arrive.

Errors (see :mod:`xaimesh_concept.errors`):

* ``InvalidArgument`` -> INVALID_ARGUMENT (``field`` -> ``google.rpc.BadRequest``)
* ``NotFound`` -> NOT_FOUND, ``FailedPrecondition`` -> FAILED_PRECONDITION
* ``Cancelled`` -> CANCELLED
* a model-server call that fails -> its own code and message prefixed with
  "model-server: " (UNAVAILABLE says where the model-server was expected);
  our credentials being refused there -> INTERNAL.

Long calls (CreateActivationSets, FitConceptModel, ComputeConceptMetrics,
GetTopExamples) stream ``Progress`` events and stop when the caller cancels
or its deadline passes (``should_stop = not context.is_active()``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from xaimesh_contracts.v1 import concept_pb2, concept_pb2_grpc, model_pb2, model_pb2_grpc, tensor_pb2
from xaimesh_runtime.client import connect, remaining_timeout
from xaimesh_runtime.config import Downstream
from xaimesh_runtime.errors import downstream_error, map_errors
from xaimesh_contracts.tensors import TensorError, iter_chunks, to_numpy, to_tensor

from .common import LogEntry, Progress, Provenance
from xaimesh_runtime.errors import Cancelled, FailedPrecondition, InvalidArgument, NotFound
from .methods import FIT_OPTION_FIELDS
from .store import ActivationSetInfo, ConceptModelInfo
from .workspace import MAX_MESSAGE_BYTES, ConceptWorkspace, SetRange

__all__ = ["ConceptServicer", "SERVICE_NAME"]

log = logging.getLogger("xaimesh_concept.server")

SERVICE_NAME = concept_pb2.DESCRIPTOR.services_by_name["ConceptService"].full_name
MODEL_SERVER = "model-server"


# A limit on the bytes of an imported concept model.
MAX_IMPORT_BYTES = 4 << 30


# ---------------------------------------------------------------------------
# enum and message conversion
# ---------------------------------------------------------------------------
def _enum_suffix(enum_type, value: int, prefix: str, field: str) -> str:
    try:
        name = enum_type.Name(value)
    except ValueError:
        raise InvalidArgument(f"unknown {field} value {value}; known: {list(enum_type.keys())}",
                              field=field) from None
    return name[len(prefix):] if name.startswith(prefix) else name


def _enum_value(enum_type, suffix: str, prefix: str) -> int:
    try:
        return enum_type.Value(prefix + str(suffix or "UNSPECIFIED"))
    except ValueError:
        return 0


_DTYPE_CODES = {"float32": tensor_pb2.DATA_TYPE_FLOAT32, "float16": tensor_pb2.DATA_TYPE_FLOAT16,
                "bfloat16": tensor_pb2.DATA_TYPE_BFLOAT16, "float64": tensor_pb2.DATA_TYPE_FLOAT64}


def set_to_proto(info: ActivationSetInfo) -> concept_pb2.ActivationSet:
    return concept_pb2.ActivationSet(
        name=info.name, id=info.id, display_name=info.display_name,
        shape=[int(info.num_rows), int(info.hidden_size)],
        dtype=_DTYPE_CODES.get(info.dtype, tensor_pb2.DATA_TYPE_FLOAT32),
        model=info.model, split_point=info.split_point,
        granularity=_enum_value(tensor_pb2.Granularity, info.granularity, "GRANULARITY_"),
        aggregation=_enum_value(tensor_pb2.Aggregation, info.aggregation, "AGGREGATION_"),
        num_samples=int(info.num_samples), create_time=int(info.create_time),
        has_provenance=bool(info.has_provenance), size_bytes=int(info.size_bytes))


def model_to_proto(info: ConceptModelInfo) -> concept_pb2.ConceptModel:
    loss = info.final_loss
    return concept_pb2.ConceptModel(
        name=info.name, id=info.id, display_name=info.display_name,
        method=_enum_value(concept_pb2.ConceptMethod, info.method, "CONCEPT_METHOD_"),
        nb_concepts=int(info.nb_concepts), hidden_size=int(info.hidden_size),
        activation_set=info.activation_set, model=info.model, split_point=info.split_point,
        options_json=info.options_json,
        final_loss=float(loss) if loss is not None else math.nan,
        device=info.device or "", create_time=int(info.create_time),
        fit_seconds=float(info.fit_seconds or 0.0),
        granularity=_enum_value(tensor_pb2.Granularity, info.granularity, "GRANULARITY_"))


def _provenance_to_proto(p: Provenance) -> model_pb2.RowProvenance:
    return model_pb2.RowProvenance(sample_index=int(p.sample_index), token_start=int(p.token_start),
                                   token_end=int(p.token_end), text=p.text or "")


def _provenance_from_proto(rows) -> list[Provenance]:
    return [Provenance(r.sample_index, r.token_start, r.token_end, r.text) for r in rows]


def _progress_to_proto(p: Progress) -> tensor_pb2.Progress:
    return tensor_pb2.Progress(stage=p.stage, done=int(p.done), total=int(p.total), message=p.message or "")


def _fit_options(options: concept_pb2.ConceptFitOptions) -> dict:
    return {name: getattr(options, name) for name in FIT_OPTION_FIELDS}


def _source(request_source: concept_pb2.ActivationSource, *, required: bool = True,
            field: str = "source"):
    """A SetRange or a numpy array (None when not set and not required)."""
    kind = request_source.WhichOneof("source")
    if kind == "activation_set":
        r = request_source.activation_set
        return SetRange(r.name, r.row_start, r.row_end)
    if kind == "tensor":
        return to_numpy(request_source.tensor, field=f"{field}.tensor", ndim=(1, 2))
    if required:
        raise InvalidArgument("source is not set: give an activation set range or a tensor", field=field)
    return None


def _rpc(fn):
    """map_errors(), and for streams: once the caller is gone
    (cancelled, deadline passed) end quietly instead of logging a traceback."""
    mapped = map_errors()(fn)
    if not inspect.isgeneratorfunction(fn):
        return mapped

    @functools.wraps(fn)
    def stream(*args, **kwargs):
        context = args[-1]
        try:
            yield from mapped(*args, **kwargs)
        except Exception:
            if context.is_active() or context.code() not in (None, grpc.StatusCode.OK):
                raise
            log.info("%s: the caller went away; stopped", fn.__name__)

    return stream


# ---------------------------------------------------------------------------
# running work in a thread while streaming its progress
# ---------------------------------------------------------------------------
_DONE = object()


def _pump(work: Callable[[Callable[[Any], None], Callable[[], bool]], Any],
          context: grpc.ServicerContext, name: str) -> Iterator[tuple[str, Any]]:
    """Run ``work(emit, should_stop)`` in a thread; yield ``("event", x)`` for
    every ``emit(x)`` as it happens, then ``("result", value)``. Exceptions of
    the work are raised here. When the consumer stops (the call was
    cancelled), ``should_stop`` turns true and the thread ends on its own."""
    events: queue.Queue = queue.Queue()
    stop = threading.Event()

    def should_stop() -> bool:
        return stop.is_set() or not context.is_active()

    def run() -> None:
        try:
            result = work(events.put, should_stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            events.put((_DONE, exc, None))
        else:
            events.put((_DONE, None, result))

    thread = threading.Thread(target=run, name=f"concept-{name}", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = events.get(timeout=0.5)
            except queue.Empty:
                if not context.is_active():
                    stop.set()
                    thread.join(30)  # it notices should_stop at its next check
                    raise Cancelled(f"{name} was cancelled") from None
                continue
            if isinstance(item, tuple) and len(item) == 3 and item[0] is _DONE:
                if item[1] is not None:
                    raise item[1]
                yield "result", item[2]
                return
            yield "event", item
    finally:
        stop.set()


# ---------------------------------------------------------------------------
# the servicer
# ---------------------------------------------------------------------------
class ConceptServicer(concept_pb2_grpc.ConceptServiceServicer):
    """ConceptService over a :class:`ConceptWorkspace`.

    ``model_server``: how to reach the model-server (a ``Downstream``, an
    address, or an open channel); the channel is opened on first use.
    """

    def __init__(self, workspace: ConceptWorkspace | str, model_server: Downstream | str | grpc.Channel | None = None,
                 *, default_device: str | None = None):
        if not isinstance(workspace, ConceptWorkspace):
            workspace = ConceptWorkspace(str(workspace), default_device=default_device)
        self.ws = workspace
        if isinstance(model_server, str):
            model_server = Downstream(model_server)
        self._model_server = model_server
        self._channel: grpc.Channel | None = None
        self._channel_lock = threading.Lock()

    @classmethod
    def from_config(cls, config) -> ConceptServicer:
        """From a ServerConfig of ``xaimesh serve concept``."""
        data_dir = config.data_path()
        data_dir.mkdir(parents=True, exist_ok=True)
        device = getattr(config.options, "device", None) or None
        cache = getattr(config.options, "model_cache_size", None) or 8
        ws = ConceptWorkspace(str(data_dir), default_device=device, model_cache_size=int(cache))
        return cls(ws, config.downstream(MODEL_SERVER))

    def register(self, server: grpc.Server) -> list[str]:
        concept_pb2_grpc.add_ConceptServiceServicer_to_server(self, server)
        return [SERVICE_NAME]

    def close(self) -> None:
        with self._channel_lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None

    # -- the model-server -----------------------------------------------
    @property
    def model_server_address(self) -> str:
        ms = self._model_server
        if isinstance(ms, Downstream):
            return ms.address
        return "(channel)" if ms is not None else "(not configured)"

    def _model_stub(self) -> model_pb2_grpc.ModelServiceStub:
        with self._channel_lock:
            if self._channel is None:
                ms = self._model_server
                if ms is None:
                    raise FailedPrecondition("this concept-service has no model-server configured "
                                             "(--model-server-address / XAIMESH_MODEL_SERVER)")
                if isinstance(ms, grpc.Channel):
                    self._channel = ms
                else:
                    self._channel = connect(ms)
            return model_pb2_grpc.ModelServiceStub(self._channel)

    # =====================================================================
    # activation sets
    # =====================================================================
    @_rpc
    def CreateActivationSets(self, request, context):
        texts = list(request.texts)
        if not texts:
            raise InvalidArgument("texts is empty: give at least one text", field="texts")
        if not request.split_points:
            raise InvalidArgument("split_points is empty: give at least one layer index or module path",
                                  field="split_points")
        upstream = model_pb2.StreamActivationsRequest(
            model=request.model, texts=texts, split_points=list(request.split_points),
            granularity=request.granularity, aggregation=request.aggregation,
            add_special_tokens=request.add_special_tokens, max_length=request.max_length,
            dtype=tensor_pb2.DATA_TYPE_FLOAT32)
        stub = self._model_stub()
        call = stub.StreamActivations(upstream, timeout=remaining_timeout(context))
        context.add_callback(call.cancel)  # the caller went away: stop pulling
        writers: dict[str, Any] = {}
        order: list[str] = []
        committed: list[ActivationSetInfo] = []
        summary = None
        total = len(texts)
        try:
            try:
                for event in call:
                    if not context.is_active():
                        raise Cancelled("creating the activation sets was cancelled")
                    kind = event.WhichOneof("event")
                    if kind == "header":
                        h = event.header
                        for sp in h.split_points:
                            if sp in writers:
                                continue
                            writers[sp] = self.ws.begin_activation_set(
                                display_name=request.display_name, model=h.model or request.model,
                                split_point=sp, granularity=h.granularity or request.granularity,
                                aggregation=h.aggregation or request.aggregation,
                                hidden_size=h.hidden_size or None)
                            order.append(sp)
                        total = int(h.num_samples or total)
                    elif kind == "chunk":
                        c = event.chunk
                        w = writers.get(c.split_point)
                        if w is None:
                            raise InvalidArgument(f"the model-server sent rows of split point "
                                                  f"{c.split_point!r}, which its header did not announce")
                        rows = to_numpy(c.rows, field="rows", ndim=2)
                        prov = _provenance_from_proto(c.provenance) if len(c.provenance) else None
                        w.append(rows, prov)
                    elif kind == "progress":
                        p = event.progress
                        yield concept_pb2.CreateActivationSetsResponse(progress=tensor_pb2.Progress(
                            stage="pulling", done=p.done, total=p.total or total, message=p.message))
                    elif kind == "item_error":
                        yield concept_pb2.CreateActivationSetsResponse(item_error=event.item_error)
                    elif kind == "summary":
                        summary = event.summary
            except grpc.RpcError as exc:
                if not context.is_active():
                    raise Cancelled("the call was cancelled") from None
                raise downstream_error(exc, "model-server", self.model_server_address, "StreamActivations") from None
            if not writers:
                raise InvalidArgument("the model-server sent no activations header", field="split_points")
            for i, sp in enumerate(order):
                w = writers[sp]
                if w.n_rows == 0:
                    raise InvalidArgument(
                        f"none of the {len(texts)} texts produced activation rows at split point {sp} "
                        "(see the item errors)", field="texts")
                if summary is not None and summary.num_samples:
                    w.num_samples = int(summary.num_samples)
            for i, sp in enumerate(order):
                if not context.is_active():
                    raise Cancelled("creating the activation sets was cancelled")
                committed.append(writers[sp].commit())
                yield concept_pb2.CreateActivationSetsResponse(progress=tensor_pb2.Progress(
                    stage="storing", done=i + 1, total=len(order)))
            yield concept_pb2.CreateActivationSetsResponse(
                sets=concept_pb2.ActivationSets(sets=[set_to_proto(i) for i in committed]))
        except BaseException:
            for w in writers.values():
                if not getattr(w, "_done", False):
                    w.abort()
            for info in committed:  # all or nothing
                try:
                    self.ws.delete_activation_set(info.id)
                except Exception:  # noqa: BLE001
                    log.warning("could not remove activation set %s", info.id, exc_info=True)
            raise
        finally:
            call.cancel()

    @_rpc
    def UploadActivationSet(self, request_iterator, context):
        def parts():
            for msg in request_iterator:
                kind = msg.WhichOneof("part")
                if kind == "header":
                    h = msg.header
                    yield "header", {"display_name": h.display_name, "model": h.model,
                                     "split_point": h.split_point, "granularity": h.granularity}
                elif kind == "chunk":
                    c = msg.chunk
                    yield "chunk", {"data": c.data, "byte_offset": c.byte_offset,
                                    "total_bytes": c.total_bytes or None,
                                    "dtype": (tensor_pb2.DataType.Name(c.dtype) if c.dtype else None),
                                    "shape": list(c.shape) if len(c.shape) else None}
                elif kind == "provenance":
                    yield "provenance", _provenance_from_proto(msg.provenance.rows)
                else:
                    raise InvalidArgument("an upload message has no part set", field="part")

        info = self.ws.upload_activation_set(parts(), should_stop=lambda: not context.is_active())
        return concept_pb2.UploadActivationSetResponse(set=set_to_proto(info))

    @_rpc
    def GetActivationSet(self, request, context):
        return concept_pb2.GetActivationSetResponse(set=set_to_proto(self.ws.get_activation_set(request.name)))

    @_rpc
    def ListActivationSets(self, request, context):
        infos, token = self.ws.list_activation_sets(request.page_size, request.page_token)
        return concept_pb2.ListActivationSetsResponse(sets=[set_to_proto(i) for i in infos],
                                                      next_page_token=token or "")

    @_rpc
    def DeleteActivationSet(self, request, context):
        self.ws.delete_activation_set(request.name)
        return concept_pb2.DeleteActivationSetResponse()

    @_rpc
    def ReadActivationSet(self, request, context):
        chunks = self.ws.read_activation_set(request.name, request.row_start, request.row_end,
                                             request.include_provenance, request.chunk_bytes)
        for chunk in chunks:
            if not context.is_active():
                raise Cancelled("reading the activation set was cancelled")
            msg = concept_pb2.ReadActivationSetResponse(row_start=int(chunk.row_start), rows=to_tensor(chunk.rows))
            if chunk.provenance:
                msg.provenance.extend(_provenance_to_proto(p) for p in chunk.provenance)
            yield msg

    # =====================================================================
    # concept models
    # =====================================================================
    @_rpc
    def FitConceptModel(self, request, context):
        if not request.activation_set:
            raise InvalidArgument("activation_set is empty: give the set to fit on", field="activation_set")
        method = _enum_suffix(concept_pb2.ConceptMethod, request.method, "CONCEPT_METHOD_", "method")
        options = _fit_options(request.options)

        def work(emit, should_stop):
            return self.ws.fit(request.activation_set, method, request.nb_concepts, options,
                               request.display_name, progress=emit, should_stop=should_stop)

        for kind, value in _pump(work, context, "the fit"):
            if kind == "result":
                yield concept_pb2.FitConceptModelResponse(model=model_to_proto(value))
                return
            entry: LogEntry = value
            loss = float(entry.loss) if entry.loss is not None else math.nan
            message = f"loss={loss:.6g}" if math.isfinite(loss) else ""
            yield concept_pb2.FitConceptModelResponse(progress=tensor_pb2.Progress(
                stage=entry.stage or "fitting", done=int(entry.done), total=int(entry.total), message=message))
            if not entry.progress_only:
                values = {str(k): float(v) for k, v in (entry.values or {}).items() if v is not None}
                yield concept_pb2.FitConceptModelResponse(log=concept_pb2.TrainingLogEntry(
                    step=int(entry.step), epoch=int(entry.epoch), loss=loss, values=values))

    @_rpc
    def GetConceptModel(self, request, context):
        return concept_pb2.GetConceptModelResponse(model=model_to_proto(self.ws.get_concept_model(request.name)))

    @_rpc
    def ListConceptModels(self, request, context):
        infos, token = self.ws.list_concept_models(request.page_size, request.page_token)
        return concept_pb2.ListConceptModelsResponse(models=[model_to_proto(i) for i in infos],
                                                     next_page_token=token or "")

    @_rpc
    def DeleteConceptModel(self, request, context):
        self.ws.delete_concept_model(request.name)
        return concept_pb2.DeleteConceptModelResponse()

    @_rpc
    def Encode(self, request, context):
        source = _source(request.source)
        should_stop = lambda: not context.is_active()  # noqa: E731
        for chunk in self.ws.encode(request.concept_model, source, request.chunk_bytes,
                                    should_stop=should_stop):
            yield concept_pb2.EncodeResponse(row_start=int(chunk.row_start), codes=to_tensor(chunk.rows))

    @_rpc
    def Decode(self, request, context):
        if not request.HasField("codes"):
            raise InvalidArgument("codes is not set: give a float32 tensor [rows, nb_concepts]", field="codes")
        codes = to_numpy(request.codes, field="codes", ndim=(1, 2))
        should_stop = lambda: not context.is_active()  # noqa: E731
        for chunk in self.ws.decode(request.concept_model, codes, request.chunk_bytes,
                                    should_stop=should_stop):
            yield concept_pb2.DecodeResponse(row_start=int(chunk.row_start), reconstructions=to_tensor(chunk.rows))

    @_rpc
    def GetDictionary(self, request, context):
        dictionary = self.ws.get_dictionary(request.concept_model)
        for chunk in iter_chunks(dictionary, 1 << 20):
            yield concept_pb2.GetDictionaryResponse(chunk=chunk)

    @_rpc
    def ComputeConceptMetrics(self, request, context):
        models = list(request.concept_models)
        source = _source(request.source, required=False)
        metrics = [_enum_suffix(concept_pb2.ConceptMetric, m, "CONCEPT_METRIC_", "metrics") for m in request.metrics]
        if "UNSPECIFIED" in metrics:
            raise InvalidArgument("CONCEPT_METRIC_UNSPECIFIED is not a metric; leave metrics empty for "
                                  "every metric", field="metrics")

        def work(emit, should_stop):
            return self.ws.compute_metrics(models, source, metrics, progress=emit, should_stop=should_stop)

        for kind, value in _pump(work, context, "computing metrics"):
            if kind == "result":
                yield concept_pb2.ComputeConceptMetricsResponse(result=concept_pb2.ConceptMetricsResult(values=[
                    concept_pb2.ConceptMetricValue(
                        metric=_enum_value(concept_pb2.ConceptMetric, v.metric, "CONCEPT_METRIC_"),
                        value=float(v.value), concept_model=v.concept_model)
                    for v in value]))
                return
            yield concept_pb2.ComputeConceptMetricsResponse(progress=_progress_to_proto(value))

    @_rpc
    def GetTopExamples(self, request, context):
        if not request.concept_model:
            raise InvalidArgument("concept_model is empty", field="concept_model")
        if not request.activation_set:
            raise InvalidArgument("activation_set is empty: give the set to search", field="activation_set")

        def work(emit, should_stop):
            return self.ws.top_examples(
                request.concept_model, request.activation_set, list(request.concept_indices) or None,
                k=request.k, sampling=request.sampling, k_quantile=request.k_quantile,
                k_context=request.k_context, seed=request.seed, keep_duplicates=request.keep_duplicates,
                progress=emit, should_stop=should_stop)

        for kind, value in _pump(work, context, "finding examples"):
            if kind == "result":
                for ce in value:
                    yield concept_pb2.GetTopExamplesResponse(concept=_examples_to_proto(ce))
                return
            if isinstance(value, Progress):
                yield concept_pb2.GetTopExamplesResponse(progress=_progress_to_proto(value))

    @_rpc
    def ExportConceptModel(self, request, context):
        info, pieces = self.ws.iter_export(request.name, MAX_MESSAGE_BYTES // 4)
        first = True
        for piece in pieces:
            if not context.is_active():
                raise Cancelled("the export was cancelled")
            msg = concept_pb2.ExportConceptModelResponse(data=piece)
            if first:
                msg.model.CopyFrom(model_to_proto(info))
                first = False
            yield msg

    @_rpc
    def ImportConceptModel(self, request_iterator, context):
        pieces: list[bytes] = []
        size = 0
        display_name = ""
        for msg in request_iterator:
            if msg.display_name and not display_name:
                display_name = msg.display_name
            size += len(msg.data)
            if size > MAX_IMPORT_BYTES:
                raise InvalidArgument(f"the imported file exceeds {MAX_IMPORT_BYTES} bytes", field="data")
            pieces.append(msg.data)
        if size == 0:
            raise InvalidArgument("no bytes received: send the exported safetensors file in data", field="data")
        info = self.ws.import_concept_model(b"".join(pieces), display_name)
        return concept_pb2.ImportConceptModelResponse(model=model_to_proto(info))


def _examples_to_proto(ce) -> concept_pb2.ConceptExamples:
    out = concept_pb2.ConceptExamples(concept_index=int(ce.concept_index),
                                      num_active_rows=int(ce.num_active_rows),
                                      max_activation=float(ce.max_activation))
    for ex in ce.examples:
        msg = out.examples.add(activation=float(ex.activation),
                               normalized_activation=float(ex.normalized_activation))
        if ex.provenance is not None:
            msg.provenance.CopyFrom(_provenance_to_proto(ex.provenance))
        for t in ex.context:
            msg.context.add(text=t.text, highlighted=bool(t.highlighted),
                            activation=float(t.activation if t.activation is not None else 0.0))
    return out
