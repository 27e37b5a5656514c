"""gRPC adapter of the model-server: decode, call the engine, encode, map errors."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import grpc
import numpy as np
import torch

from xaimesh_contracts.channels import CALLER_METADATA
from xaimesh_contracts.tensors import data_type, to_numpy, to_tensor
from xaimesh_contracts.v1 import model_pb2, model_pb2_grpc, tensor_pb2
from xaimesh_runtime import metrics
from xaimesh_runtime.errors import InvalidArgument, Unavailable, map_errors, status_for_item

from . import engine
from .batching import Caller
from .engine import EmbeddingSamples, Replacement
from .engine.concept_readout import check_concept_targets
from .loading import LoadedModel, ModelOptions, ModelRegistry
from .tokenization import detokenize, tokenize, tokenize_ids

log = logging.getLogger("xaimesh_model_server")

SERVICE_NAME = "xaimesh.v1.ModelService"
MAX_CHUNK_BYTES = 4 << 20
DEFAULT_CHUNK_BYTES = 1 << 20
WIRE_DTYPES = {
    tensor_pb2.DATA_TYPE_UNSPECIFIED: torch.float32,
    tensor_pb2.DATA_TYPE_FLOAT32: torch.float32,
    tensor_pb2.DATA_TYPE_FLOAT16: torch.float16,
    tensor_pb2.DATA_TYPE_BFLOAT16: torch.bfloat16,
}

BATCH_ROWS = metrics.histogram("xaimesh_model_batch_rows", "Rows per coalesced forward pass", ["kind"],
                               buckets=metrics.SIZE_BUCKETS)
BATCH_CALLERS = metrics.histogram("xaimesh_model_batch_callers", "Distinct requests merged in one forward pass",
                                  ["kind"], buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64))


def _on_batch(stats) -> None:
    kind = stats.kind  # the work kind's label: "score", "grad", "act", "gen"
    metrics.BATCH_SIZE.labels(queue=kind).observe(stats.items)
    BATCH_ROWS.labels(kind=kind).observe(stats.items)
    BATCH_CALLERS.labels(kind=kind).observe(stats.callers)


def _on_queue_wait(seconds: float) -> None:
    metrics.QUEUE_WAIT.labels(queue="model").observe(seconds)


class ModelServicer(model_pb2_grpc.ModelServiceServicer):
    """Serves the models of a registry. `warm_up()` loads them (health waits for it)."""

    def __init__(self, specs: list[str | ModelOptions | None], *, device: str | None = None, dtype: str | None = None,
                 cache_dir=None, batcher_options: dict | None = None, limits: engine.Limits | None = None):
        self.specs = specs or [None]
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir
        self.batcher_options = batcher_options or {}
        self.limits = limits or engine.DEFAULT_LIMITS
        self.registry = ModelRegistry()
        self._ready = threading.Event()

    # -- start-up --------------------------------------------------------
    def warm_up(self) -> None:
        for spec in self.specs:
            started = time.perf_counter()
            # A ModelOptions' own settings win over the server-wide device / dtype.
            options = spec if isinstance(spec, ModelOptions) else ModelOptions(spec=spec)
            kwargs = {"device": self.device, "dtype": self.dtype, "cache_dir": self.cache_dir,
                      **options.load_kwargs()}
            loaded = self.registry.load(options.spec, **kwargs)
            engine.attach_dynamic_batcher(loaded, limits=self.limits, on_batch=_on_batch,
                                          on_queue_wait=_on_queue_wait, **self.batcher_options)
            self._warm_forward(loaded)
            log.info("loaded model %s from %s on %s (%s) in %.1f s", loaded.model_id, loaded.source,
                     loaded.device, loaded.dtype, time.perf_counter() - started)
        metrics.QUEUE_DEPTH.labels(queue="model").set_function(self.queue_depth)
        self._ready.set()

    def queue_depth(self) -> int:
        """Sequences waiting for a forward pass, over all models."""
        return sum(self.registry.get(model_id).executor.queue_depth() for model_id in self.registry.ids())

    def _warm_forward(self, loaded: LoadedModel) -> None:
        """One tiny forward so the first real request does not pay for lazy init."""
        ids = tokenize(loaded, "Hello world.").token_ids
        if loaded.task == "causal_lm":
            engine.score(loaded, ids, target_positions=[len(ids) - 1], limits=self.limits)
        elif loaded.is_seq2seq:  # the text as source and as target
            engine.score(loaded, ids + ids, target_positions=[len(ids)], source_length=len(ids), limits=self.limits)
        else:
            engine.score(loaded, ids, limits=self.limits)

    def register(self, server: grpc.Server) -> list[str]:
        model_pb2_grpc.add_ModelServiceServicer_to_server(self, server)
        return [SERVICE_NAME]

    def close(self) -> None:
        self.registry.close()

    def _model(self, name: str) -> LoadedModel:
        if not self._ready.is_set():
            raise Unavailable("the model-server is still loading its models; retry shortly")
        return self.registry.get(name)

    # -- models ----------------------------------------------------------
    @map_errors()
    def ListModels(self, request, context):
        self._model("")
        return model_pb2.ListModelsResponse(models=[_model_info(info) for info in self.registry.list_info()])

    @map_errors()
    def GetModel(self, request, context):
        loaded = self._model(request.model)
        return model_pb2.GetModelResponse(
            model=_model_info(loaded.info(is_default=loaded.model_id == self.registry.default_id)))

    # -- tokens ----------------------------------------------------------
    @map_errors()
    def Tokenize(self, request, context):
        loaded = self._model(request.model)
        if request.texts and request.sequences:
            raise InvalidArgument("give texts or sequences to tokenize, not both", field="sequences")
        if request.chats and (request.texts or request.sequences):
            raise InvalidArgument("give texts, sequences or chats to tokenize, one kind", field="chats")
        if request.chats:
            from .tokenization import tokenize_chat_at  # (import here: this edit stays inside Tokenize)

            return model_pb2.TokenizeResponse(results=[
                model_pb2.TokenizedText(**_tokenized_fields(tokenize_chat_at(loaded, i, chat)))
                for i, chat in enumerate(request.chats)])
        if not request.texts and not request.sequences:
            raise InvalidArgument("texts and sequences are empty: give texts (or token id sequences) to tokenize",
                                  field="texts")
        results = []
        for i, text in enumerate(request.texts):
            try:
                tokenized = tokenize(loaded, text, request.add_special_tokens)
            except InvalidArgument as error:
                raise InvalidArgument(f"texts[{i}]: {error.message}", field=f"texts[{i}]") from None
            results.append(model_pb2.TokenizedText(**_tokenized_fields(tokenized)))
        for i, seq in enumerate(request.sequences):
            tokenized = tokenize_ids(loaded, list(seq.ids), field=f"sequences[{i}].ids")
            results.append(model_pb2.TokenizedText(**_tokenized_fields(tokenized)))
        return model_pb2.TokenizeResponse(results=results)

    @map_errors()
    def Detokenize(self, request, context):
        loaded = self._model(request.model)
        texts = []
        for i, seq in enumerate(request.sequences):
            ids = engine.check_input_ids(loaded, list(seq.ids), field=f"sequences[{i}].ids") if seq.ids else []
            texts.append(detokenize(loaded, [int(t) for t in ids], request.skip_special_tokens))
        return model_pb2.DetokenizeResponse(texts=texts)

    # -- scores and gradients -------------------------------------------
    @map_errors()
    def Score(self, request, context):
        loaded = self._model(request.model)
        keep_mask = None
        if request.HasField("keep_mask"):
            keep_mask = to_numpy(request.keep_mask, field="keep_mask", ndim=2,
                                 dtype=["bool", "uint8", "int32", "int64"])
        replacement = Replacement(request.replacement.policy, request.replacement.token_id)
        if request.HasField("concept_encoder"):
            check_concept_targets(request.target_positions, request.target_classes, request.inference_mode)
            scores = engine.concept_scores(loaded, list(request.input_ids), keep_mask, replacement,
                                           _readout(loaded, request.concept_encoder),
                                           is_active=_caller(context), limits=self.limits)
        else:
            scores = engine.score(
                loaded, list(request.input_ids), keep_mask, replacement,
                target_positions=list(request.target_positions), target_classes=list(request.target_classes),
                inference_mode=request.inference_mode, source_length=request.source_length,
                is_active=_caller(context), limits=self.limits)
        return model_pb2.ScoreResponse(scores=to_tensor(np.asarray(scores, dtype=np.float32)),
                                       model=loaded.model_id)

    @map_errors()
    def ComputeGradients(self, request, context):
        loaded = self._model(request.model)
        samples, embeddings = None, None
        points = request.WhichOneof("points")
        if points == "embeddings":
            embeddings = to_numpy(request.embeddings, field="embeddings", ndim=3, dtype=["float32", "float16",
                                  "bfloat16", "float64"], finite=True).astype(np.float32, copy=False)
        elif points == "samples":
            s = request.samples
            for name in ("noise_stddev", "baseline_noise_stddev"):
                value = getattr(s, name)
                if not math.isfinite(value) or value < 0:
                    raise InvalidArgument(f"samples.{name} must be a finite number >= 0, got {value}",
                                          field=f"samples.{name}")
            if not all(math.isfinite(a) for a in s.alphas):
                raise InvalidArgument("samples.alphas must be finite numbers", field="samples.alphas")
            samples = EmbeddingSamples(baseline=s.baseline.kind, baseline_token_id=s.baseline.token_id,
                                       alphas=list(s.alphas), noise_stddev=s.noise_stddev,
                                       baseline_noise_stddev=s.baseline_noise_stddev, seed=s.seed,
                                       position_mask=list(s.position_mask))
        result = engine.gradients(
            loaded, list(request.input_ids), target_positions=list(request.target_positions),
            target_classes=list(request.target_classes), inference_mode=request.inference_mode,
            samples=samples, embeddings=embeddings, outputs=list(request.outputs),
            source_length=request.source_length,
            concept_readout=_concept_gradient_readout(loaded, request),
            is_active=_caller(context), limits=self.limits)
        response = model_pb2.ComputeGradientsResponse(model=loaded.model_id)
        for key, value in result.items():
            getattr(response, key).CopyFrom(to_tensor(np.asarray(value, dtype=np.float32)))
        return response

    # -- generation ------------------------------------------------------
    @map_errors()
    def Generate(self, request, context):
        loaded = self._model(request.model)
        prompt = request.WhichOneof("prompt")
        if prompt is None:
            raise InvalidArgument("no prompt: set text, token_ids or chat", field="prompt")
        kwargs = {}
        if prompt == "text":
            kwargs["text"] = request.text
        elif prompt == "token_ids":
            kwargs["token_ids"] = list(request.token_ids.ids)
        else:
            kwargs["messages"] = [{"role": m.role, "content": m.content} for m in request.chat.messages]
        for name in ("temperature", "top_p"):
            if not math.isfinite(getattr(request, name)):
                raise InvalidArgument(f"{name} must be a finite number", field=name)
        result = engine.generate(
            loaded, **kwargs, max_new_tokens=request.max_new_tokens or None, do_sample=request.do_sample,
            temperature=request.temperature or 1.0, top_p=request.top_p or 1.0, top_k=request.top_k,
            seed=request.seed, is_active=_caller(context), limits=self.limits)
        return model_pb2.GenerateResponse(text=result.text, token_ids=list(result.token_ids),
                                          prompt_token_ids=list(result.prompt_token_ids),
                                          finish_reason=result.finish_reason, model=loaded.model_id)

    # -- lenses ----------------------------------------------------------
    @map_errors()
    def LogitLens(self, request, context):
        loaded = self._model(request.model)
        translators = None
        if request.HasField("translator_weights") or request.HasField("translator_biases"):
            if not (request.HasField("translator_weights") and request.HasField("translator_biases")):
                missing = "translator_biases" if request.HasField("translator_weights") else "translator_weights"
                raise InvalidArgument(f"{missing} is missing: a tuned lens needs both translator tensors", field=missing)
            translators = engine.check_translators(
                loaded, to_numpy(request.translator_weights, field="translator_weights", ndim=3, dtype=["float32"]),
                to_numpy(request.translator_biases, field="translator_biases", ndim=2, dtype=["float32"]))
        lens = engine.logit_lens(loaded, list(request.input_ids), top_k=request.top_k, translators=translators,
                                 is_active=context.is_active, limits=self.limits)
        return model_pb2.LogitLensResponse(
            layers=lens.layers, top_token_ids=to_tensor(lens.top_token_ids),
            top_probabilities=to_tensor(lens.top_probabilities), top_tokens=lens.top_tokens,
            next_token_probabilities=to_tensor(lens.next_token_probabilities),
            input_tokens=lens.input_tokens, model=loaded.model_id)

    @map_errors()
    def FitLensTranslators(self, request, context):
        loaded = self._model(request.model)
        events = engine.fit_lens_translators(
            loaded, list(request.texts), list(request.held_out_texts),
            epochs=request.epochs if request.HasField("epochs") else None,
            learning_rate=request.learning_rate if request.HasField("learning_rate") else None,
            weight_decay=request.weight_decay if request.HasField("weight_decay") else None,
            is_active=context.is_active, limits=self.limits)
        for event in events:
            if isinstance(event, engine.FittedTranslators):
                yield model_pb2.FitLensTranslatorsResponse(result=model_pb2.LensTranslators(
                    layers=event.layers, weights=to_tensor(event.weight), biases=to_tensor(event.bias),
                    epoch_losses=event.epoch_losses, train_kl_logit_lens=event.train_kl_logit_lens.tolist(),
                    train_kl_tuned_lens=event.train_kl_tuned_lens.tolist(),
                    held_out_kl_logit_lens=event.held_out_kl_logit_lens.tolist(),
                    held_out_kl_tuned_lens=event.held_out_kl_tuned_lens.tolist(),
                    train_tokens=event.train_tokens, held_out_tokens=event.held_out_tokens, model=loaded.model_id,
                    epochs=event.epochs, learning_rate=event.learning_rate, weight_decay=event.weight_decay))
            else:
                yield model_pb2.FitLensTranslatorsResponse(progress=tensor_pb2.Progress(
                    stage=event.stage, done=event.done, total=event.total, message=event.message))

    @map_errors()
    def UnembedDirections(self, request, context):
        loaded = self._model(request.model)
        if not request.HasField("directions"):
            raise InvalidArgument("directions are missing: give a [directions, hidden_size] tensor", field="directions")
        out = engine.unembed_directions(
            loaded, to_numpy(request.directions, field="directions", ndim=2,
                             dtype=["float32", "float16", "bfloat16", "float64"], finite=True),
            top_k=request.top_k)
        return model_pb2.UnembedDirectionsResponse(
            promoted_ids=to_tensor(out.promoted_ids), promoted_values=to_tensor(out.promoted_values),
            suppressed_ids=to_tensor(out.suppressed_ids), suppressed_values=to_tensor(out.suppressed_values),
            promoted_tokens=out.promoted_tokens, suppressed_tokens=out.suppressed_tokens, model=loaded.model_id)

    @map_errors()
    def VocabularyConcepts(self, request, context):
        loaded = self._model(request.model)
        if not request.HasField("concept_encoder"):
            raise InvalidArgument("concept_encoder is missing: take it from the concept-service's GetConceptEncoder",
                                  field="concept_encoder")
        out = engine.vocabulary_concepts(loaded, _readout(loaded, request.concept_encoder), request.k,
                                         add_special_tokens=request.add_special_tokens, is_active=_caller(context),
                                         limits=self.limits)
        response = model_pb2.VocabularyConceptsResponse(model=loaded.model_id, num_tokens=out.num_tokens)
        for concept, ids, values in zip(out.concepts, out.token_ids, out.activations):
            response.concepts.add(concept=concept, token_ids=ids.tolist(), activations=values.tolist(),
                                  tokens=[detokenize(loaded, [i]) for i in ids.tolist()])
        return response

    @map_errors()
    def ConceptGradients(self, request, context):
        loaded = self._model(request.model)
        floats = ["float32", "float16", "bfloat16", "float64"]
        result = engine.concept_gradients(
            loaded, list(request.input_ids), request.split_point,
            to_numpy(request.codes, field="codes", ndim=2, dtype=floats, finite=True),
            to_numpy(request.decoder, field="decoder", ndim=2, dtype=floats, finite=True),
            to_numpy(request.offset, field="offset", ndim=1, dtype=floats, finite=True)
            if request.HasField("offset") else None,
            target_positions=list(request.target_positions), target_classes=list(request.target_classes),
            inference_mode=request.inference_mode, is_active=context.is_active, limits=self.limits)
        return model_pb2.ConceptGradientsResponse(gradients=to_tensor(result["gradients"]),
                                                  scores=to_tensor(result["scores"]), model=loaded.model_id)

    # -- activations -----------------------------------------------------
    @map_errors()
    def StreamActivations(self, request, context):
        loaded = self._model(request.model)
        chunk_bytes = request.chunk_bytes or DEFAULT_CHUNK_BYTES
        if chunk_bytes < 0 or chunk_bytes > MAX_CHUNK_BYTES:
            raise InvalidArgument(f"chunk_bytes must be between 1 and {MAX_CHUNK_BYTES} (4 MiB), got "
                                  f"{request.chunk_bytes}", field="chunk_bytes")
        out_dtype = WIRE_DTYPES.get(request.dtype)
        if out_dtype is None:
            raise InvalidArgument("dtype must be FLOAT32, FLOAT16 or BFLOAT16", field="dtype")
        if request.max_length < 0:
            raise InvalidArgument("max_length must be >= 0 (0 = no truncation)", field="max_length")
        job = engine.activations(
            loaded, list(request.texts), list(request.split_points), request.granularity, request.aggregation,
            request.add_special_tokens or None, request.max_length, special_tokens=request.special_tokens,
            is_active=_caller(context), limits=self.limits, out_dtype=out_dtype)
        yield model_pb2.StreamActivationsResponse(header=model_pb2.ActivationsHeader(
            split_points=job.split_points, hidden_size=job.hidden_size, num_samples=job.num_samples,
            dtype=data_type(out_dtype), granularity=int(job.granularity), aggregation=int(job.aggregation),
            model=loaded.model_id))
        num_rows = 0
        for batch in job:
            for item in batch.errors:
                yield model_pb2.StreamActivationsResponse(item_error=model_pb2.ItemError(
                    index=item.index, status=status_for_item(item.error.code, f"texts[{item.index}]: {item.error.message}")))
            for split, rows in batch.rows.items():
                yield from _row_chunks(split, rows, batch.provenance, chunk_bytes)
            num_rows += len(batch.provenance)
            yield model_pb2.StreamActivationsResponse(progress=tensor_pb2.Progress(
                stage="activations", done=batch.samples_done, total=batch.total_samples))
            if not context.is_active():
                return
        yield model_pb2.StreamActivationsResponse(summary=model_pb2.ActivationsSummary(
            num_rows=num_rows, num_samples=job.num_samples, truncated_samples=sorted(job.truncated_samples)))




def _readout(loaded: LoadedModel, encoder: model_pb2.ConceptEncoder) -> engine.ConceptReadout:
    """A request's ConceptEncoder, validated against the model."""

    def tensor(name: str, ndim: int):
        if not encoder.HasField(name):
            return None
        return to_numpy(getattr(encoder, name), field=f"concept_encoder.{name}", ndim=ndim,
                        dtype=["float32", "float16", "bfloat16", "float64"], finite=True)

    weight = tensor("weight", 2)
    if weight is None:
        raise InvalidArgument("concept_encoder.weight is missing: send the encoder's [width, concepts] matrix "
                              "(the concept-service's GetConceptEncoder gives it)", field="concept_encoder.weight")
    return engine.concept_readout(
        loaded, encoder.split_point, weight, tensor("bias", 1), activation=encoder.activation,
        top_k=encoder.top_k, thresholds=tensor("thresholds", 1), pooling=encoder.pooling,
        concepts=list(encoder.concepts))


def _concept_gradient_readout(loaded: LoadedModel, request: model_pb2.ComputeGradientsRequest):
    if not request.HasField("concept_encoder"):
        return None
    check_concept_targets(request.target_positions, request.target_classes, request.inference_mode)
    return _readout(loaded, request.concept_encoder)


def _caller(context: grpc.ServicerContext) -> Callable[[], bool]:
    """The engine's ``is_active`` for a call, which also names whose turn its
    work takes in the batcher: the ``xaimesh-caller`` metadata when set (one
    turn for every call with that value), else the call itself."""
    for key, value in context.invocation_metadata() or ():
        if key == CALLER_METADATA and value:
            return Caller((CALLER_METADATA, value), context.is_active)
    return context.is_active


def _row_chunks(split: str, rows: torch.Tensor, provenance, chunk_bytes: int):
    """Splits [n, d] rows into messages of about chunk_bytes, provenance alongside."""
    n = rows.shape[0]
    row_bytes = max(1, rows[0].numel() * rows.element_size()) if n else 1
    step = max(1, chunk_bytes // row_bytes)
    for start in range(0, n, step):
        part = rows[start:start + step]
        yield model_pb2.StreamActivationsResponse(chunk=model_pb2.ActivationsChunk(
            split_point=split, rows=to_tensor(part),
            provenance=[model_pb2.RowProvenance(sample_index=p.sample_index, token_start=p.token_start,
                                                token_end=p.token_end, text=p.text)
                        for p in provenance[start:start + step]]))


def _tokenized_fields(tokenized) -> dict:
    fields = tokenized.to_dict()
    for key in ("words", "sentences", "part_sentences"):
        fields[key] = [tensor_pb2.Segment(**(s if isinstance(s, dict) else vars(s))) for s in fields[key]]
    return fields


def _model_info(info: dict) -> model_pb2.ModelInfo:
    info = dict(info)
    special = info.pop("special_tokens", {}) or {}
    task = info.pop("task", "")
    message = model_pb2.ModelInfo(**{k: v for k, v in info.items() if k in model_pb2.ModelInfo.DESCRIPTOR.fields_by_name})
    message.task = {"sequence_classification": model_pb2.MODEL_TASK_SEQUENCE_CLASSIFICATION,
                    "seq2seq_lm": model_pb2.MODEL_TASK_SEQ2SEQ_LM}.get(str(task), model_pb2.MODEL_TASK_CAUSAL_LM)
    message.special_tokens.CopyFrom(model_pb2.SpecialTokens(**special))
    return message
