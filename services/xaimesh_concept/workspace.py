"""The service-facing facade: store + methods + metrics + examples.

Every ConceptService RPC maps to one method of :class:`ConceptWorkspace`;
the gRPC adapter only converts messages (Tensor <-> numpy, enums <->
strings); the runtime's ``map_errors`` turns the errors this module
raises (``xaimesh_runtime.errors``) into status codes.

Names: "activationSets/{id}" / "conceptModels/{id}" or the bare id.
Enums are passed as their suffix strings ("SEMI_NMF", "TOKEN", "MSE",
"TOP"); the full enum names ("CONCEPT_METHOD_SEMI_NMF") and the enum
numbers are accepted too.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
from xaimesh_runtime.errors import Cancelled, InvalidArgument, ServiceError, check_cancelled

from . import examples as _examples
from . import extractive as _extractive
from . import metrics as _metrics
from . import probes as _probes

from .common import (ActivationEvent, ActivationRows, ActivationsHeader, ActivationsSummary, ItemFailure, LogEntry,
                     Progress, Provenance)
from .data import ArraySource, RangeSource, check_finite, rows_per_chunk
from .methods import ConceptMethod, build_method, method_class, resolve_device
from .store import (MODELS_COLLECTION, SETS_COLLECTION, ActivationSetInfo, ActivationSetReader,
                    ActivationSetWriter, ConceptModelInfo, Store, normalize_storage_dtype, parse_name)

log = logging.getLogger("xaimesh_concept.workspace")

#: Default size of one streamed message (proto: 1 MiB pieces, never more than 4 MiB).
DEFAULT_MESSAGE_BYTES = 1 << 20
MAX_MESSAGE_BYTES = 4 << 20
#: Training log entries kept in a model's record.
MAX_STORED_LOG = 1000


@dataclass
class SetRange:
    """Rows [row_start, row_end) of a stored set (row_end 0 = to the end)."""

    name: str
    row_start: int = 0
    row_end: int = 0


@dataclass
class RowChunk:
    """One streamed piece of rows: rows [row_start, row_start + len(rows))."""

    row_start: int
    rows: np.ndarray
    provenance: list[Provenance] | None = None


@dataclass
class MetricValue:
    metric: str
    value: float
    #: "conceptModels/{id}" ("" for STABILITY).
    concept_model: str


def _message_rows(width: int, chunk_bytes: int | None) -> int:
    cb = int(chunk_bytes or 0)
    if cb < 0:
        raise InvalidArgument(f"chunk_bytes must be >= 0, got {cb}", field="chunk_bytes")
    cb = min(cb or DEFAULT_MESSAGE_BYTES, MAX_MESSAGE_BYTES)
    return max(1, cb // max(1, width * 4))


class ConceptWorkspace:
    """Activation sets, concept models, metrics and examples under ``data_dir``.

    ``default_device``: where fits and loaded models run when a request
    does not say ("" / None = cuda when present, else cpu).
    ``memory_budget_bytes``: working memory of one fit or metric computation
    (None = no limit: the exact in-memory algorithms always run); a method
    whose in-memory fit needs more runs its streaming variant.
    ``storage_dtype``: float32 (default), float16 or bfloat16 for new sets.
    """

    def __init__(self, data_dir: str, *, default_device: str | None = None,
                 model_cache_size: int = 8, memory_budget_bytes: int | None = None,
                 storage_dtype: str | None = None):
        self.store = Store(data_dir)
        self.memory_budget_bytes = int(memory_budget_bytes) if memory_budget_bytes else None
        self.storage_dtype = normalize_storage_dtype(storage_dtype)
        self.default_device = default_device or None
        if self.default_device:
            resolve_device(self.default_device)
        self._cache: collections.OrderedDict[str, tuple[ConceptModelInfo, ConceptMethod]] = \
            collections.OrderedDict()
        self._cache_size = int(model_cache_size)
        self._lock = threading.Lock()

    # =====================================================================
    # activation sets
    # =====================================================================
    def begin_activation_set(self, *, display_name: str = "", model: str = "",
                             split_point: str = "", granularity="UNSPECIFIED",
                             aggregation="UNSPECIFIED", hidden_size: int | None = None,
                             num_samples: int | None = None, expected_rows: int | None = None,
                             metadata: dict | None = None) -> ActivationSetWriter:
        """A writer for a new set: ``append(rows, provenance)`` /
        ``append_rows`` / ``append_provenance`` / ``append_tensor_chunk``, then
        ``commit()`` (atomic) or ``abort()``. Used by CreateActivationSets (one
        writer per split point, all committed once every one is complete)."""
        return self.store.new_activation_set(
            display_name=display_name, model=model, split_point=split_point,
            granularity=granularity, aggregation=aggregation, hidden_size=hidden_size,
            num_samples=num_samples, expected_rows=expected_rows, metadata=metadata,
            storage_dtype=self.storage_dtype)

    def create_activation_set(self, chunks: Iterable, *, progress=None, should_stop=None,
                              total_rows: int | None = None, **header) -> ActivationSetInfo:
        """Store a set from an iterable of ``(rows, provenance or None)``
        (or bare row arrays). ``header``: see begin_activation_set."""
        with self.begin_activation_set(**header) as w:
            for item in chunks:
                if should_stop is not None and should_stop():
                    raise Cancelled("creating the activation set was cancelled")
                if isinstance(item, tuple):
                    rows, prov = item
                else:
                    rows, prov = item, None
                w.append(rows, prov)
                if progress is not None:
                    progress(Progress("storing", w.n_rows, int(total_rows or 0)))
            return w.commit()

    def create_activation_sets(self, events: Iterable[ActivationEvent], *, n_texts: int,
                               display_name: str = "", model: str = "", granularity="UNSPECIFIED",
                               aggregation="UNSPECIFIED", emit=None, should_stop=None
                               ) -> list[ActivationSetInfo]:
        """CreateActivationSets: store what the model-server streams
        (``events``, see :mod:`xaimesh_concept.common`) as one set per split
        point its header announces, all or nothing. ``emit`` gets
        ``Progress("pulling", ...)`` and every ``ItemFailure`` as they arrive,
        then ``Progress("storing", i, n)``; the header's model, granularity and
        aggregation win over the request's (``model``, ...)."""
        emit = emit or (lambda _event: None)
        writers: dict[str, ActivationSetWriter] = {}
        order: list[str] = []
        committed: list[ActivationSetInfo] = []
        summary: ActivationsSummary | None = None
        total = n_texts
        try:
            for event in events:
                check_cancelled(should_stop, "creating the activation sets")
                if isinstance(event, ActivationsHeader):
                    for sp in event.split_points:
                        if sp in writers:
                            continue
                        writers[sp] = self.begin_activation_set(
                            display_name=display_name, model=event.model or model, split_point=sp,
                            granularity=event.granularity or granularity,
                            aggregation=event.aggregation or aggregation, hidden_size=event.hidden_size or None)
                        order.append(sp)
                    total = int(event.num_samples or total)
                elif isinstance(event, ActivationRows):
                    w = writers.get(event.split_point)
                    if w is None:
                        raise ServiceError(f"the model-server sent rows of split point {event.split_point!r}, "
                                           "which its header did not announce", code="INTERNAL")
                    w.append(event.rows, event.provenance)
                elif isinstance(event, Progress):
                    emit(Progress("pulling", event.done, event.total or total, event.message))
                elif isinstance(event, ItemFailure):
                    emit(event)
                elif isinstance(event, ActivationsSummary):
                    summary = event
            if not writers:
                raise ServiceError("the model-server sent no activations header", code="INTERNAL")
            for sp in order:
                w = writers[sp]
                if w.n_rows == 0:
                    raise InvalidArgument(
                        f"none of the {n_texts} texts produced activation rows at split point {sp} "
                        "(see the item errors)", field="texts")
                if summary is not None and summary.num_samples:
                    w.num_samples = int(summary.num_samples)
            for i, sp in enumerate(order):
                check_cancelled(should_stop, "creating the activation sets")
                committed.append(writers[sp].commit())
                emit(Progress("storing", i + 1, len(order)))
            return committed
        except BaseException:
            for w in writers.values():
                if not w.done:
                    w.abort()
            for info in committed:  # all or nothing
                try:
                    self.delete_activation_set(info.id)
                except Exception:  # noqa: BLE001
                    log.warning("could not remove activation set %s", info.id, exc_info=True)
            raise

    def upload_activation_set(self, parts: Iterable, *, should_stop=None) -> ActivationSetInfo:
        """UploadActivationSet: ``parts`` yields ``(kind, payload)`` in stream
        order: first ``("header", {display_name, model, split_point,
        granularity})``, then ``("chunk", {data, byte_offset, total_bytes,
        dtype, shape})`` (a TensorChunk) and optionally ``("provenance",
        [Provenance | dict | RowProvenance, ...])``."""
        it = iter(parts)
        try:
            kind, header = next(it)
        except StopIteration:
            raise InvalidArgument("the upload stream is empty; send a header first",
                                  field="header") from None
        if kind != "header":
            raise InvalidArgument(f"the first upload message must be the header, got {kind!r}",
                                  field="header")
        header = dict(header or {})
        allowed = {"display_name", "model", "split_point", "granularity"}
        with self.begin_activation_set(**{k: v for k, v in header.items() if k in allowed}) as w:
            for kind, payload in it:
                if should_stop is not None and should_stop():
                    raise Cancelled("the upload was cancelled")
                if kind == "chunk":
                    p = dict(payload)
                    w.append_tensor_chunk(p.get("data", b""), byte_offset=p.get("byte_offset"),
                                          total_bytes=p.get("total_bytes"), dtype=p.get("dtype"),
                                          shape=p.get("shape"))
                elif kind == "provenance":
                    w.append_provenance(payload)
                elif kind == "header":
                    raise InvalidArgument("the header must be sent once, first", field="header")
                else:
                    raise InvalidArgument(f"unknown upload part {kind!r}", field="part")
            return w.commit()

    def get_activation_set(self, name: str) -> ActivationSetInfo:
        return self.store.get_activation_set(parse_name(name, SETS_COLLECTION))

    def open_activation_set(self, name: str) -> ActivationSetReader:
        return self.store.open_activation_set(parse_name(name, SETS_COLLECTION))

    def list_activation_sets(self, page_size: int = 0, page_token: str = ""):
        """(list of ActivationSetInfo sorted by create_time, next_page_token)."""
        return self.store.list_activation_sets(page_size, page_token)

    def delete_activation_set(self, name: str) -> None:
        self.store.delete_activation_set(parse_name(name, SETS_COLLECTION))

    def read_activation_set(self, name: str, row_start: int = 0, row_end: int = 0,
                            include_provenance: bool = False, chunk_bytes: int = 0
                            ) -> Iterator[RowChunk]:
        """Rows [row_start, row_end) (row_end 0 = to the end) in messages of
        about ``chunk_bytes`` (default 1 MiB, at most 4 MiB)."""
        reader = self.open_activation_set(name)
        src = self._range(reader, row_start, row_end, "row_start")
        step = _message_rows(reader.n_features, chunk_bytes)
        return self._read_iter(reader, src, step, include_provenance)

    @staticmethod
    def _read_iter(reader, src, step, include_provenance):
        for s, rows in src.iter_chunks(step):
            prov = None
            if include_provenance and reader.has_provenance:
                prov = reader.read_provenance(src.start + s, src.start + s + rows.shape[0])
            yield RowChunk(s + src.start, rows, prov)

    @staticmethod
    def _range(reader, row_start, row_end, field="row_start") -> RangeSource:
        row_start, row_end = int(row_start or 0), int(row_end or 0)
        end = reader.n_rows if row_end == 0 else row_end
        if row_start < 0 or end > reader.n_rows or row_start >= end:
            raise InvalidArgument(
                f"row range [{row_start}, {end}) is invalid for activation set {reader.info.id} with "
                f"{reader.n_rows} rows (row_end 0 means to the end)", field=field)
        return RangeSource(reader, row_start, end)

    # =====================================================================
    # concept models
    # =====================================================================
    def fit(self, activation_set, method: str, nb_concepts: int, options: dict | None = None,
            display_name: str = "", *, progress=None, should_stop=None) -> ConceptModelInfo:
        """FitConceptModel. ``activation_set``: a name or a SetRange;
        ``options``: ConceptFitOptions fields as a dict (zero = default);
        ``progress(LogEntry)`` gets every training log entry (entries with
        ``progress_only`` are progress, not log). Returns the stored model."""
        klass = method_class(method)
        rng = activation_set if isinstance(activation_set, SetRange) else SetRange(str(activation_set))
        reader = self.open_activation_set(rng.name)
        source = self._range(reader, rng.row_start, rng.row_end)
        options = dict(options or {})
        if klass.uses_device and not options.get("device") and self.default_device:
            options["device"] = self.default_device
        m = build_method(klass.method_name, nb_concepts, options)
        m.validate_fit_shape(source.n_rows, source.n_features)
        log, on_log = _log_collector(progress)
        t0 = time.perf_counter()
        m.fit(source, progress=on_log, should_stop=should_stop, memory_budget_bytes=self.memory_budget_bytes,
              tmp_dir=self.store.tmp_dir)
        params = m.get_params()
        params.pop("nb_concepts", None)
        return self._save_fitted(m, reader.info, display_name, params, time.perf_counter() - t0, log, should_stop)

    def fit_probe(self, activation_set: str, labels, settings: _probes.ProbeSettings, display_name: str = "",
                  concept_names=(), *, progress=None, should_stop=None
                  ) -> tuple[ConceptModelInfo, _probes.ProbeFit, list[str]]:
        """FitProbe: (the stored LINEAR_PROBE / CENTROID_PROBE model, the fit with its metrics, the concept names)."""
        reader = self.open_activation_set(activation_set)
        y = _probes.check_labels(labels, reader.n_rows)
        _probes.check_fits(reader.n_rows, reader.n_features)
        names = [str(n) for n in concept_names] or [f"probe_{j}" for j in range(y.shape[1])]
        if len(names) != y.shape[1]:
            raise InvalidArgument(f"{len(names)} concept_names for {y.shape[1]} label columns: give one name per "
                                  "column, or none", field="concept_names")
        log, on_log = _log_collector(progress)
        t0 = time.perf_counter()
        fit = _probes.fit_probe(reader.read(0, reader.n_rows), y, settings, log=on_log, should_stop=should_stop)
        m = fit.concept_model
        options = {**dataclasses.asdict(settings), "concept_names": names, "train_rows": fit.train_rows,
                   "test_rows": fit.test_rows,
                   "metrics": [{"train": dataclasses.asdict(a), "test": dataclasses.asdict(b)}
                               for a, b in zip(fit.train, fit.test, strict=True)]}
        stored = self._save_fitted(m, reader.info, display_name, _json_safe(options), time.perf_counter() - t0,
                                   log, should_stop)
        return stored, fit, names

    def _save_fitted(self, m: ConceptMethod, info: ActivationSetInfo, display_name: str, options: dict,
                     fit_seconds: float, log: list[dict], should_stop) -> ConceptModelInfo:
        record = ConceptModelInfo(
            id="pending", display_name=str(display_name or ""), method=m.method_name,
            nb_concepts=m.nb_concepts, hidden_size=int(m.hidden_size_),
            activation_set=info.name, model=info.model, split_point=info.split_point,
            options=options, final_loss=(float(m.final_loss_) if math.isfinite(m.final_loss_) else None),
            device=m.device_, fit_seconds=fit_seconds, granularity=info.granularity,
            training_log=_jsonable_log(log))
        if should_stop is not None and should_stop():
            raise Cancelled("the fit was cancelled")
        stored = self.store.save_concept_model(record, m.state_dict())
        self._cache_put(stored, m)
        return stored

    def get_concept_model(self, name: str) -> ConceptModelInfo:
        return self.store.get_concept_model(parse_name(name, MODELS_COLLECTION, "concept_model"))

    def list_concept_models(self, page_size: int = 0, page_token: str = ""):
        return self.store.list_concept_models(page_size, page_token)

    def delete_concept_model(self, name: str) -> None:
        id_ = parse_name(name, MODELS_COLLECTION)
        self.store.delete_concept_model(id_)
        with self._lock:
            self._cache.pop(id_, None)

    def load_model(self, name: str) -> tuple[ConceptModelInfo, ConceptMethod]:
        """(info, fitted method) of a stored model (cached, LRU)."""
        id_ = parse_name(name, MODELS_COLLECTION, "concept_model")
        with self._lock:
            hit = self._cache.get(id_)
            if hit is not None:
                self._cache.move_to_end(id_)
                return hit
        info, state = self.store.load_concept_model(id_)
        m = ConceptMethod.from_state(state, device=self.default_device)
        self._cache_put(info, m)
        return info, m

    def _cache_put(self, info, m):
        with self._lock:
            self._cache[info.id] = (info, m)
            self._cache.move_to_end(info.id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    # ---- sources ----------------------------------------------------------
    def _source(self, source, info: ConceptModelInfo, field="source"):
        """A row source for a SetRange / set name / array, hidden size checked."""
        if isinstance(source, SetRange) or isinstance(source, str):
            rng = source if isinstance(source, SetRange) else SetRange(source)
            reader = self.open_activation_set(rng.name)
            if reader.n_features != info.hidden_size:
                raise InvalidArgument(
                    f"activation set {reader.info.id} has hidden size {reader.n_features} but concept "
                    f"model {info.id} was fitted on hidden size {info.hidden_size}", field=field)
            return self._range(reader, rng.row_start, rng.row_end, field), reader
        if source is None:
            raise InvalidArgument("no activations given: pass an activation set range or a tensor",
                                  field=field)
        arr = source.detach().cpu().numpy() if hasattr(source, "detach") else np.asarray(source)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise InvalidArgument(f"the activations tensor must be 2-D [rows, hidden]; got shape "
                                  f"{list(arr.shape)}", field=field)
        if arr.shape[1] != info.hidden_size:
            raise InvalidArgument(
                f"the activations tensor has hidden size {arr.shape[1]} but concept model {info.id} "
                f"was fitted on hidden size {info.hidden_size}", field=field)
        if arr.shape[0] == 0:
            raise InvalidArgument("the activations tensor has no rows", field=field)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        check_finite(arr, what="activations")
        return ArraySource(arr), None

    # ---- encode / decode / dictionary ------------------------------------
    def encode(self, model: str, source, chunk_bytes: int = 0, *, should_stop=None
               ) -> Iterator[RowChunk]:
        """Codes [n, nb_concepts] float32 of a SetRange / set name / array, in
        messages of about ``chunk_bytes``; ``row_start`` is the row index in
        the set (for a SetRange) or in the tensor."""
        info, m = self.load_model(model)
        src, _ = self._source(source, info)
        msg_rows = _message_rows(info.nb_concepts, chunk_bytes)
        work_rows = max(msg_rows, rows_per_chunk(max(info.hidden_size, info.nb_concepts)))
        work_rows = (work_rows // msg_rows) * msg_rows or msg_rows
        offset = src.start if isinstance(src, RangeSource) else 0
        return self._encode_iter(m, src, msg_rows, work_rows, offset, should_stop)

    @staticmethod
    def _encode_iter(m, src, msg_rows, work_rows, offset, should_stop):
        for s, rows in src.iter_chunks(work_rows):
            if should_stop is not None and should_stop():
                raise Cancelled("encoding was cancelled")
            codes = m.encode(rows)
            for i in range(0, codes.shape[0], msg_rows):
                yield RowChunk(offset + s + i, codes[i:i + msg_rows])

    def encode_all(self, model: str, source) -> np.ndarray:
        return np.concatenate([c.rows for c in self.encode(model, source, MAX_MESSAGE_BYTES)], 0)

    def decode(self, model: str, codes, chunk_bytes: int = 0, *, should_stop=None
               ) -> Iterator[RowChunk]:
        """Reconstructions [n, hidden] float32 of codes [n, nb_concepts]."""
        info, m = self.load_model(model)
        codes = codes.detach().cpu().numpy() if hasattr(codes, "detach") else np.asarray(codes)
        if codes.ndim == 1:
            codes = codes[None, :]
        if codes.ndim != 2 or codes.shape[1] != info.nb_concepts:
            raise InvalidArgument(
                f"codes must be [rows, {info.nb_concepts}] for concept model {info.id}; got shape "
                f"{list(codes.shape)}", field="codes")
        codes = np.ascontiguousarray(codes, dtype=np.float32)
        check_finite(codes, what="codes")
        msg_rows = _message_rows(info.hidden_size, chunk_bytes)
        return self._decode_iter(m, codes, msg_rows, should_stop)

    @staticmethod
    def _decode_iter(m, codes, msg_rows, should_stop):
        for s in range(0, codes.shape[0], msg_rows):
            if should_stop is not None and should_stop():
                raise Cancelled("decoding was cancelled")
            yield RowChunk(s, m.decode(codes[s:s + msg_rows]))

    def get_dictionary(self, model: str) -> np.ndarray:
        """The dictionary [nb_concepts, hidden] float32 (the adapter streams it
        as TensorChunks)."""
        return self.load_model(model)[1].dictionary_

    # ---- metrics ----------------------------------------------------------
    def compute_metrics(self, models, source=None, metrics=None, *, progress=None,
                        should_stop=None, lp_p: float = 2.0, epsilon: float = 0.0) -> list[MetricValue]:
        """ComputeConceptMetrics. ``models``: one name or several; ``metrics``:
        names (empty = every per-model metric, plus STABILITY when several
        models are given). STABILITY / STABILITY_MAX alone need no source.
        ``lp_p`` / ``epsilon``: the request's lp_p / activation_epsilon."""
        lp_p, epsilon = _metrics.check_metric_parameters(lp_p, epsilon)
        if isinstance(models, str):
            models = [models]
        models = list(models or [])
        if not models:
            raise InvalidArgument("give at least one concept model", field="concept_models")
        names = [_metrics.normalize_metric_name(x) for x in (metrics or [])]
        if not names:
            names = list(_metrics.PER_MODEL_METRICS) + (["STABILITY"] if len(models) > 1 else [])
        names = list(dict.fromkeys(names))
        loaded = [self.load_model(x) for x in models]
        out: list[MetricValue] = []
        per_model = [x for x in names if x not in _metrics.DICTIONARY_METRICS]
        if per_model:
            if source is None:
                raise InvalidArgument(f"metrics {per_model} need activations: pass an activation "
                                      "set range or a tensor", field="source")
            total = len(loaded)
            for i, (info, m) in enumerate(loaded):
                src, _ = self._source(source, info)

                def prog(p, i=i):
                    if progress is not None:
                        progress(Progress("metrics", i * src.n_rows + p.done, total * src.n_rows,
                                          f"model {i + 1}/{total}"))

                vals = _metrics.compute_metrics(m, src, per_model, progress=prog,
                                                should_stop=should_stop, tmp_dir=self.store.tmp_dir,
                                                lp_p=lp_p, epsilon=epsilon, **self._metric_memory())
                out.extend(MetricValue(k, float(vals[k]), info.name) for k in per_model)
        for name in (x for x in names if x in _metrics.DICTIONARY_METRICS):
            if len(loaded) < 2:
                raise InvalidArgument(f"{name} needs at least 2 concept models in the request",
                                      field="concept_models")
            value = _metrics.stability([m.dictionary_ for _, m in loaded], progress=progress,
                                       matching=_metrics.DICTIONARY_METRICS[name])
            out.append(MetricValue(name, value, ""))
        return out

    def _metric_memory(self) -> dict:
        """The metric accumulator's share of the memory budget (FID's columns)."""
        return {} if self.memory_budget_bytes is None else {"fid_memory_bytes": self.memory_budget_bytes // 4}

    # ---- examples ---------------------------------------------------------
    def _model_and_set(self, model: str, activation_set: str):
        """(the loaded concept model, a reader of the set), refused when their widths differ."""
        info, m = self.load_model(model)
        reader = self.open_activation_set(activation_set)
        if reader.n_features != info.hidden_size:
            raise InvalidArgument(
                f"activation set {reader.info.id} has hidden size {reader.n_features} but concept "
                f"model {info.id} was fitted on hidden size {info.hidden_size}",
                field="activation_set")
        return m, reader

    def top_examples(self, model: str, activation_set: str, concept_indices=None, k: int = 0,
                     sampling="TOP", k_quantile: int = 0, k_context: int = 0, seed: int = 0,
                     keep_duplicates: bool = False, *, progress=None, should_stop=None
                     ) -> list[_examples.ConceptExamples]:
        """GetTopExamples: one ConceptExamples per requested concept, in
        request order (default: every concept)."""
        m, reader = self._model_and_set(model, activation_set)
        return _examples.top_examples(m, reader, concept_indices, k=k, sampling=sampling,
                                      k_quantile=k_quantile, k_context=k_context, seed=seed,
                                      keep_duplicates=keep_duplicates, progress=progress,
                                      should_stop=should_stop)

    def extract_labels(self, model: str, activation_set: str, concept_indices=None, *, k_examples: int = 0,
                       max_terms: int = 0, max_ngram: int = 0, min_count: int = 0, progress=None,
                       should_stop=None) -> list[_extractive.ExtractiveLabel]:
        """ExtractLabels: one ExtractiveLabel per requested concept (default: every concept)."""
        m, reader = self._model_and_set(model, activation_set)
        return _extractive.extract_labels(m, reader, concept_indices, k_examples=k_examples, max_terms=max_terms,
                                          max_ngram=max_ngram, min_count=min_count, progress=progress,
                                          should_stop=should_stop)

    # ---- export / import --------------------------------------------------
    def export_concept_model(self, name: str) -> tuple[ConceptModelInfo, bytes]:
        """(info, bytes of one safetensors file whose metadata holds the model JSON)."""
        id_ = parse_name(name, MODELS_COLLECTION)
        info = self.store.get_concept_model(id_)
        return info, self.store.export_concept_model(id_)

    def iter_export(self, name: str, chunk_bytes: int = 0) -> tuple[ConceptModelInfo, Iterator[bytes]]:
        info, data = self.export_concept_model(name)
        step = min(int(chunk_bytes or DEFAULT_MESSAGE_BYTES), MAX_MESSAGE_BYTES)
        return info, (data[i:i + step] for i in range(0, max(len(data), 1), step))

    def import_concept_model(self, data, display_name: str = "") -> ConceptModelInfo:
        """ImportConceptModel: ``data`` is the bytes or an iterable of byte
        pieces; the file is validated (the method is rebuilt from it) and
        stored under a fresh id."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = b"".join(bytes(x) for x in data)

        def validate(info, state):
            m = ConceptMethod.from_state(state, device="cpu")
            if m.nb_concepts != info.nb_concepts or m.hidden_size_ != info.hidden_size:
                raise InvalidArgument(
                    f"the model metadata says {info.nb_concepts} concepts x {info.hidden_size} but "
                    f"its tensors are {m.nb_concepts} x {m.hidden_size_}", field="data")

        stored, _ = self.store.import_concept_model(bytes(data), display_name, validate=validate)
        return stored


def _log_collector(progress):
    """(the stored training log, the callback a fit reports to): keeps up to
    MAX_STORED_LOG entries (and an SAE's FINAL entry) and passes every entry
    on to ``progress``, after a first "starting" progress event."""
    log: list[dict] = []

    def on_log(entry: LogEntry):
        if not entry.progress_only and (len(log) < MAX_STORED_LOG or entry.kind == "FINAL"):  # STEP entries may be many
            log.append(entry.to_dict())
        if progress is not None:
            progress(entry)

    if progress is not None:
        progress(LogEntry(step=0, epoch=0, loss=float("nan"), done=0, total=1, stage="starting",
                          progress_only=True))
    return log, on_log


def _json_safe(value):
    """NaN / infinity (undefined metrics) as None, so the options are valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _jsonable_log(log: list[dict]) -> list[dict]:
    out = []
    for e in log:
        e = dict(e)
        e["loss"] = e["loss"] if isinstance(e["loss"], (int, float)) and math.isfinite(e["loss"]) else None
        e["values"] = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in e["values"].items()}
        out.append(e)
    return out
