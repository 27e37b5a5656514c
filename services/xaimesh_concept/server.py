"""gRPC adapter of the concept-service: ConceptService over ConceptWorkspace.

A thin layer: decode the request, call :class:`~xaimesh_concept.workspace.
ConceptWorkspace`, encode the answer; ``map_errors`` turns the runtime's
error family into status codes (``InvalidArgument`` -> INVALID_ARGUMENT with
its ``field`` as a ``google.rpc.BadRequest``, ``NotFound``,
``FailedPrecondition``...; anything else is INTERNAL with an error id).

CreateActivationSets pulls activations from the model-server through
:mod:`xaimesh_concept.downstream` (``StreamActivations``, server to server;
a failed call keeps the model-server's code and names it and its address)
and ``ConceptWorkspace.create_activation_sets`` stores them chunk by chunk
while they arrive.

Long calls (CreateActivationSets, FitConceptModel, ComputeConceptMetrics,
GetTopExamples) run in the runtime's ``stream_job``: they stream
``Progress`` events and stop when the caller cancels or its deadline passes.
"""

from __future__ import annotations

import logging
import math

import grpc

from xaimesh_contracts.tensors import iter_chunks, to_numpy, to_tensor
from xaimesh_contracts.v1 import concept_pb2, concept_pb2_grpc, model_pb2, tensor_pb2
from xaimesh_runtime.client import remaining_timeout
from xaimesh_runtime.config import Downstream
from xaimesh_runtime.errors import Cancelled, InvalidArgument, map_errors
from xaimesh_runtime.jobs import stream_job

from . import probes as _probes
from . import tuned_lenses as _lenses
from .common import ItemFailure, LogEntry, Progress, Provenance, enum_key, enum_number
from .downstream import MODEL_SERVER, ActivationPuller, ActivationsQuery, GrpcActivationPuller
from .encoders import closed_form_encoder
from .methods import FIT_OPTION_FIELDS
from .store import ActivationSetInfo, ConceptModelInfo
from .workspace import MAX_MESSAGE_BYTES, ConceptWorkspace, SetRange

__all__ = ["ConceptServicer", "SERVICE_NAME"]

log = logging.getLogger("xaimesh_concept.server")

SERVICE_NAME = concept_pb2.DESCRIPTOR.services_by_name["ConceptService"].full_name


# A limit on the bytes of an imported concept model.
MAX_IMPORT_BYTES = 4 << 30


# ---------------------------------------------------------------------------
# enum and message conversion
# ---------------------------------------------------------------------------
def set_to_proto(info: ActivationSetInfo) -> concept_pb2.ActivationSet:
    return concept_pb2.ActivationSet(
        name=info.name, id=info.id, display_name=info.display_name,
        shape=[int(info.num_rows), int(info.hidden_size)],
        dtype=enum_number(tensor_pb2.DataType, info.dtype or "float32"),
        model=info.model, split_point=info.split_point,
        granularity=enum_number(tensor_pb2.Granularity, info.granularity),
        aggregation=enum_number(tensor_pb2.Aggregation, info.aggregation),
        num_samples=int(info.num_samples), create_time=int(info.create_time),
        has_provenance=bool(info.has_provenance), size_bytes=int(info.size_bytes))


def model_to_proto(info: ConceptModelInfo) -> concept_pb2.ConceptModel:
    loss = info.final_loss
    return concept_pb2.ConceptModel(
        name=info.name, id=info.id, display_name=info.display_name,
        method=enum_number(concept_pb2.ConceptMethod, info.method),
        nb_concepts=int(info.nb_concepts), hidden_size=int(info.hidden_size),
        activation_set=info.activation_set, model=info.model, split_point=info.split_point,
        options_json=info.options_json,
        final_loss=float(loss) if loss is not None else math.nan,
        device=info.device or "", create_time=int(info.create_time),
        fit_seconds=float(info.fit_seconds or 0.0),
        granularity=enum_number(tensor_pb2.Granularity, info.granularity))


def _tuned_lens_proto(info: _lenses.TunedLensInfo) -> concept_pb2.TunedLens:
    fields = {k: v for k, v in vars(info).items() if k in concept_pb2.TunedLens.DESCRIPTOR.fields_by_name}
    return concept_pb2.TunedLens(name=info.name, **fields)


def _provenance_to_proto(p: Provenance) -> model_pb2.RowProvenance:
    return model_pb2.RowProvenance(sample_index=int(p.sample_index), token_start=int(p.token_start),
                                   token_end=int(p.token_end), text=p.text or "")


def _provenance_from_proto(rows) -> list[Provenance]:
    return [Provenance(r.sample_index, r.token_start, r.token_end, r.text) for r in rows]


def _progress_to_proto(p: Progress) -> tensor_pb2.Progress:
    return tensor_pb2.Progress(stage=p.stage, done=int(p.done), total=int(p.total), message=p.message or "")


def _fit_events(entry: LogEntry, response_class):
    """The Progress event of a training log entry, then its TrainingLogEntry
    (none for progress-only entries), as messages of ``response_class``."""
    loss = float(entry.loss) if entry.loss is not None else math.nan
    message = entry.message or (f"loss={loss:.6g}" if math.isfinite(loss) else "")
    yield response_class(progress=tensor_pb2.Progress(
        stage=entry.stage or "fitting", done=int(entry.done), total=int(entry.total), message=message))
    if not entry.progress_only:
        values = {str(k): float(v) for k, v in (entry.values or {}).items() if v is not None}
        yield response_class(log=concept_pb2.TrainingLogEntry(
            step=int(entry.step), epoch=int(entry.epoch), loss=loss, values=values,
            kind=enum_number(concept_pb2.TrainingLogKind, entry.kind), learning_rate=float(entry.learning_rate)))


def _enum_choice(enum, value, field: str, default: str) -> str:
    """The short name of an enum value (UNSPECIFIED = ``default``); unknown numbers are INVALID_ARGUMENT."""
    key = enum_key(enum, value, field, what=field.replace("_", " "))
    return default if key == "UNSPECIFIED" else key


def _fit_options(options: concept_pb2.ConceptFitOptions) -> dict:
    # repeated fields (matryoshka_prefixes) as plain lists
    return {name: (value if isinstance(value, (bool, int, float, str)) else list(value))
            for name, value in ((name, getattr(options, name)) for name in FIT_OPTION_FIELDS)}


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


# ---------------------------------------------------------------------------
# the servicer
# ---------------------------------------------------------------------------
class ConceptServicer(concept_pb2_grpc.ConceptServiceServicer):
    """ConceptService over a :class:`ConceptWorkspace`.

    ``model_server``: how to reach the model-server (a ``Downstream``, an
    address, an open channel, or any :class:`~xaimesh_concept.downstream.
    ActivationPuller`); the channel is opened on first use.
    """

    def __init__(self, workspace: ConceptWorkspace | str,
                 model_server: Downstream | str | grpc.Channel | ActivationPuller | None = None,
                 *, default_device: str | None = None):
        if not isinstance(workspace, ConceptWorkspace):
            workspace = ConceptWorkspace(str(workspace), default_device=default_device)
        self.ws = workspace
        if not hasattr(model_server, "stream_activations"):
            model_server = GrpcActivationPuller(model_server)
        self._model_server: ActivationPuller = model_server
        self._lenses = _lenses.TunedLensStore(self.ws.store)

    @classmethod
    def from_config(cls, config) -> ConceptServicer:
        """From a ServerConfig of ``xaimesh serve concept``."""
        data_dir = config.data_path()
        data_dir.mkdir(parents=True, exist_ok=True)
        device = getattr(config.options, "device", None) or None
        cache = getattr(config.options, "model_cache_size", None) or 8
        ws = ConceptWorkspace(str(data_dir), default_device=device, model_cache_size=int(cache),
                              memory_budget_bytes=getattr(config.options, "memory_budget_bytes", None),
                              storage_dtype=getattr(config.options, "activation_storage_dtype", None))
        return cls(ws, config.downstream(MODEL_SERVER))

    def register(self, server: grpc.Server) -> list[str]:
        concept_pb2_grpc.add_ConceptServiceServicer_to_server(self, server)
        return [SERVICE_NAME]

    def close(self) -> None:
        self._model_server.close()

    @property
    def model_server_address(self) -> str:
        return getattr(self._model_server, "address", "")

    # =====================================================================
    # activation sets
    # =====================================================================
    @map_errors()
    def CreateActivationSets(self, request, context):
        texts = list(request.texts)
        if not texts:
            raise InvalidArgument("texts is empty: give at least one text", field="texts")
        if not request.split_points:
            raise InvalidArgument("split_points is empty: give at least one layer index or module path",
                                  field="split_points")
        query = ActivationsQuery(texts=texts, split_points=list(request.split_points), model=request.model,
                                 granularity=request.granularity, aggregation=request.aggregation,
                                 add_special_tokens=request.add_special_tokens, max_length=request.max_length,
                                 special_tokens=request.special_tokens)
        stream = self._model_server.stream_activations(query, timeout=remaining_timeout(context))

        def work(emit, should_stop):
            return self.ws.create_activation_sets(
                stream.events(should_stop), n_texts=len(texts), display_name=request.display_name,
                model=request.model, granularity=request.granularity, aggregation=request.aggregation,
                emit=emit, should_stop=should_stop)

        for kind, value in stream_job(work, context, "creating the activation sets", on_stop=stream.cancel):
            if kind == "result":
                yield concept_pb2.CreateActivationSetsResponse(
                    sets=concept_pb2.ActivationSets(sets=[set_to_proto(i) for i in value]))
            elif isinstance(value, ItemFailure):
                yield concept_pb2.CreateActivationSetsResponse(
                    item_error=model_pb2.ItemError(index=value.index, status=value.status))
            else:
                yield concept_pb2.CreateActivationSetsResponse(progress=_progress_to_proto(value))

    @map_errors()
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
                                    "dtype": c.dtype or None,  # a DataType number
                                    "shape": list(c.shape) if len(c.shape) else None}
                elif kind == "provenance":
                    yield "provenance", _provenance_from_proto(msg.provenance.rows)
                else:
                    raise InvalidArgument("an upload message has no part set", field="part")

        info = self.ws.upload_activation_set(parts(), should_stop=lambda: not context.is_active())
        return concept_pb2.UploadActivationSetResponse(set=set_to_proto(info))

    @map_errors()
    def GetActivationSet(self, request, context):
        return concept_pb2.GetActivationSetResponse(set=set_to_proto(self.ws.get_activation_set(request.name)))

    @map_errors()
    def ListActivationSets(self, request, context):
        infos, token = self.ws.list_activation_sets(request.page_size, request.page_token)
        return concept_pb2.ListActivationSetsResponse(sets=[set_to_proto(i) for i in infos],
                                                      next_page_token=token or "")

    @map_errors()
    def DeleteActivationSet(self, request, context):
        self.ws.delete_activation_set(request.name)
        return concept_pb2.DeleteActivationSetResponse()

    @map_errors()
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
    @map_errors()
    def FitConceptModel(self, request, context):
        if not request.activation_set:
            raise InvalidArgument("activation_set is empty: give the set to fit on", field="activation_set")
        method = enum_key(concept_pb2.ConceptMethod, request.method, "method", what="concept method")
        options = _fit_options(request.options)

        def work(emit, should_stop):
            return self.ws.fit(request.activation_set, method, request.nb_concepts, options,
                               request.display_name, progress=emit, should_stop=should_stop)

        for kind, value in stream_job(work, context, "the fit"):
            if kind == "result":
                yield concept_pb2.FitConceptModelResponse(model=model_to_proto(value))
                return
            yield from _fit_events(value, concept_pb2.FitConceptModelResponse)

    @map_errors()
    def FitProbe(self, request, context):
        if not request.activation_set:
            raise InvalidArgument("activation_set is empty: give the set whose rows are labelled",
                                  field="activation_set")
        if not request.HasField("labels"):
            raise InvalidArgument("labels are missing: give one 0 / 1 label per row ([rows] or [rows, concepts])",
                                  field="labels")
        labels = to_numpy(request.labels, field="labels", ndim=(1, 2))
        settings = _probes.ProbeSettings(
            method=_enum_choice(concept_pb2.ProbeMethod, request.method, "method", "LOGISTIC_REGRESSION"),
            normalization=_enum_choice(concept_pb2.ProbeNormalization, request.normalization, "normalization", ""),
            bias_calibration=_enum_choice(concept_pb2.BiasCalibration, request.bias_calibration,
                                          "bias_calibration", ""),
            l2=request.l2, learning_rate=request.learning_rate, max_iterations=request.max_iterations,
            test_fraction=(request.test_fraction if request.HasField("test_fraction")
                           else _probes.DEFAULT_TEST_FRACTION),
            seed=request.seed, shrinkage=request.shrinkage if request.HasField("shrinkage") else 1.0,
            svdd_c=request.svdd_c if request.HasField("svdd_c") else 1.0)

        def work(emit, should_stop):
            return self.ws.fit_probe(request.activation_set, labels, settings, request.display_name,
                                     list(request.concept_names), progress=emit, should_stop=should_stop)

        for kind, value in stream_job(work, context, "the probe fit"):
            if kind == "result":
                stored, fit, names = value
                yield concept_pb2.FitProbeResponse(result=concept_pb2.ProbeResult(
                    model=model_to_proto(stored), train_rows=fit.train_rows, test_rows=fit.test_rows,
                    metrics=[concept_pb2.ProbeMetrics(
                        concept_name=name, concept_index=j, test_accuracy=test.accuracy,
                        test_balanced_accuracy=test.balanced_accuracy, test_auc=test.auc,
                        test_positives=test.positives, test_negatives=test.negatives,
                        train_accuracy=train.accuracy, train_balanced_accuracy=train.balanced_accuracy,
                        train_auc=train.auc)
                        for j, (name, train, test) in enumerate(zip(names, fit.train, fit.test, strict=True))]))
                return
            yield from _fit_events(value, concept_pb2.FitProbeResponse)

    # -- tuned lenses (tuned_lenses.py) ---------------------------------------
    @map_errors()
    def FitTunedLens(self, request, context):
        if not request.model:
            raise InvalidArgument("model is empty: give the causal LM the lens is fitted on", field="model")
        fit = model_pb2.FitLensTranslatorsRequest(model=request.model, texts=request.texts,
                                                  held_out_texts=request.held_out_texts)
        for name in ("epochs", "learning_rate", "weight_decay"):
            if request.HasField(name):
                setattr(fit, name, getattr(request, name))

        def work(emit, should_stop):
            return _lenses.fit_tuned_lens(self._lenses, self._model_server, fit, request.display_name,
                                          progress=emit, should_stop=should_stop,
                                          timeout=remaining_timeout(context))

        for kind, value in stream_job(work, context, "the tuned lens fit"):
            if kind == "result":
                yield concept_pb2.FitTunedLensResponse(result=_tuned_lens_proto(value))
            else:
                yield concept_pb2.FitTunedLensResponse(progress=_progress_to_proto(value))

    @map_errors()
    def GetTunedLens(self, request, context):
        return concept_pb2.GetTunedLensResponse(lens=_tuned_lens_proto(self._lenses.get(request.name)))

    @map_errors()
    def ListTunedLenses(self, request, context):
        infos, token = self._lenses.list(request.page_size, request.page_token)
        return concept_pb2.ListTunedLensesResponse(lenses=[_tuned_lens_proto(i) for i in infos],
                                                   next_page_token=token or "")

    @map_errors()
    def DeleteTunedLens(self, request, context):
        self._lenses.delete(request.name)
        return concept_pb2.DeleteTunedLensResponse()

    @map_errors()
    def ApplyTunedLens(self, request, context):
        return concept_pb2.ApplyTunedLensResponse(lens=_lenses.apply_tuned_lens(
            self._lenses, self._model_server, request.tuned_lens, request.input_ids, request.top_k,
            timeout=remaining_timeout(context)))

    @map_errors()
    def GetConceptModel(self, request, context):
        return concept_pb2.GetConceptModelResponse(model=model_to_proto(self.ws.get_concept_model(request.name)))

    @map_errors()
    def ListConceptModels(self, request, context):
        infos, token = self.ws.list_concept_models(request.page_size, request.page_token)
        return concept_pb2.ListConceptModelsResponse(models=[model_to_proto(i) for i in infos],
                                                     next_page_token=token or "")

    @map_errors()
    def DeleteConceptModel(self, request, context):
        self.ws.delete_concept_model(request.name)
        return concept_pb2.DeleteConceptModelResponse()

    @map_errors()
    def Encode(self, request, context):
        source = _source(request.source)
        should_stop = lambda: not context.is_active()  # noqa: E731
        for chunk in self.ws.encode(request.concept_model, source, request.chunk_bytes,
                                    should_stop=should_stop):
            yield concept_pb2.EncodeResponse(row_start=int(chunk.row_start), codes=to_tensor(chunk.rows))

    @map_errors()
    def Decode(self, request, context):
        if not request.HasField("codes"):
            raise InvalidArgument("codes is not set: give a float32 tensor [rows, nb_concepts]", field="codes")
        codes = to_numpy(request.codes, field="codes", ndim=(1, 2))
        should_stop = lambda: not context.is_active()  # noqa: E731
        for chunk in self.ws.decode(request.concept_model, codes, request.chunk_bytes,
                                    should_stop=should_stop):
            yield concept_pb2.DecodeResponse(row_start=int(chunk.row_start), reconstructions=to_tensor(chunk.rows))

    @map_errors()
    def GetConceptEncoder(self, request, context):
        info, method = self.ws.load_model(request.name)
        concepts = [int(c) for c in request.concepts]
        bad = [c for c in concepts if not 0 <= c < method.nb_concepts]
        if bad:
            raise InvalidArgument(f"concept index {bad[0]} is out of range: {info.name} has {method.nb_concepts} "
                                  f"concepts (0..{method.nb_concepts - 1})", field="concepts")
        form = closed_form_encoder(method)
        encoder = model_pb2.ConceptEncoder(
            split_point=info.split_point, weight=to_tensor(form.weight), bias=to_tensor(form.bias),
            activation=enum_number(model_pb2.ConceptActivation, form.activation.upper()), top_k=form.top_k,
            pooling=request.pooling or tensor_pb2.AGGREGATION_MAX, concepts=concepts)
        if form.thresholds is not None:
            encoder.thresholds.CopyFrom(to_tensor(form.thresholds))
        return concept_pb2.GetConceptEncoderResponse(encoder=encoder, model=model_to_proto(info))

    @map_errors()
    def GetDictionary(self, request, context):
        dictionary = self.ws.get_dictionary(request.concept_model)
        for chunk in iter_chunks(dictionary, 1 << 20):
            yield concept_pb2.GetDictionaryResponse(chunk=chunk)

    @map_errors()
    def ComputeConceptMetrics(self, request, context):
        models = list(request.concept_models)
        source = _source(request.source, required=False)
        metrics = [enum_key(concept_pb2.ConceptMetric, m, "metrics", what="concept metric") for m in request.metrics]
        if "UNSPECIFIED" in metrics:
            raise InvalidArgument("CONCEPT_METRIC_UNSPECIFIED is not a metric; leave metrics empty for "
                                  "every metric", field="metrics")

        def work(emit, should_stop):
            return self.ws.compute_metrics(models, source, metrics, progress=emit, should_stop=should_stop,
                                           lp_p=request.lp_p, epsilon=request.activation_epsilon)

        for kind, value in stream_job(work, context, "computing metrics"):
            if kind == "result":
                yield concept_pb2.ComputeConceptMetricsResponse(result=concept_pb2.ConceptMetricsResult(values=[
                    concept_pb2.ConceptMetricValue(
                        metric=enum_number(concept_pb2.ConceptMetric, v.metric),
                        value=float(v.value), concept_model=v.concept_model)
                    for v in value]))
                return
            yield concept_pb2.ComputeConceptMetricsResponse(progress=_progress_to_proto(value))

    @map_errors()
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

        for kind, value in stream_job(work, context, "finding examples"):
            if kind == "result":
                for ce in value:
                    yield concept_pb2.GetTopExamplesResponse(concept=_examples_to_proto(ce))
                return
            if isinstance(value, Progress):
                yield concept_pb2.GetTopExamplesResponse(progress=_progress_to_proto(value))

    @map_errors()
    def ExtractLabels(self, request, context):
        if not request.concept_model:
            raise InvalidArgument("concept_model is empty", field="concept_model")
        if not request.activation_set:
            raise InvalidArgument("activation_set is empty: give the set whose texts name the concepts",
                                  field="activation_set")

        def work(emit, should_stop):
            return self.ws.extract_labels(
                request.concept_model, request.activation_set, list(request.concept_indices) or None,
                k_examples=request.k_examples, max_terms=request.max_terms, max_ngram=request.max_ngram,
                min_count=request.min_count, progress=emit, should_stop=should_stop)

        for kind, value in stream_job(work, context, "extracting labels"):
            if kind == "result":
                for lab in value:
                    yield concept_pb2.ExtractLabelsResponse(label=concept_pb2.ExtractiveLabel(
                        concept_index=lab.concept_index, label=lab.label or "", has_label=lab.label is not None,
                        terms=[concept_pb2.LabelTerm(text=t.text, score=t.score, concept_count=t.concept_count,
                                                     corpus_count=t.corpus_count) for t in lab.terms],
                        num_active_rows=lab.num_active_rows, num_examples=lab.num_examples))
                return
            if isinstance(value, Progress):
                yield concept_pb2.ExtractLabelsResponse(progress=_progress_to_proto(value))

    @map_errors()
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

    @map_errors()
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
