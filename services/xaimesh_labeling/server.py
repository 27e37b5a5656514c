"""gRPC adapter of the labeling-service: decode, call the logic, encode, map errors.

``LabelConcepts``: examples come from the concept-service (``GetTopExamples``
with the request's sampling / k / k_quantile / k_context / seed, the caller's
remaining deadline forwarded); ``labeling.label_concepts`` asks the LLM for
each concept concurrently, and each ``ConceptLabel`` is streamed as soon as it
is ready, followed by a ``Progress`` event. A failure for one concept is that
label's ``error`` (a ``google.rpc.Status``); the others go on. Concepts that
never activate get ``has_label = false`` without an LLM call.

``ScoreLabels``: per label, activating examples are the concept's top rows
(``GetTopExamples`` TOP, ``2 * n_examples`` of them, with context) and
non-activating examples are rows where the concept is quiet (its code at
most a tenth of its top activation: exactly 0 for sparse concepts, the
weakest rows of dense ones such as SemiNMF or PCA codes), with a context
cut short before any token where it is not quiet, found in a
few seeded random windows of contiguous rows of the set (one
``Encode`` and one ``ReadActivationSet`` per window, shared by every label;
the windows' own neighbouring rows give them context too). Scores stream
as ``LabelScore`` events, then one ``LabelScoresSummary``.

Which LLM (``LlmBackend``)
--------------------------

* ``model_server``: the model-server's ``Generate`` RPC with a chat
  conversation (empty model = its default instruct model).
* ``openai``: any OpenAI-compatible endpoint. The API key is the call
  metadata ``x-openai-api-key`` or else the service's own key
  (``--openai-api-key`` / ``XAIMESH_OPENAI_API_KEY`` / ``..._FILE``); an
  empty key counts as no key. ``base_url`` is the request's, else
  ``--openai-base-url``, else the official endpoint. The service's own key
  is only ever sent to the service's own endpoint: a request naming another
  ``base_url`` without a metadata key is sent with no key (as local vLLM /
  Ollama servers expect). **With no key at all and no base URL, the
  model-server backend is used instead** (logged, and visible in the
  ``llm`` field of every label).
* no backend: OpenAI when a key (metadata or configured) or a configured
  base URL is available, otherwise the model-server.

Keys are wrapped in ``Secret`` and registered with the log redactors; they
never appear in a message, a log line, an error text or a metric.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
import numpy as np

from xaimesh_contracts.v1 import concept_pb2, concept_pb2_grpc, labeling_pb2, labeling_pb2_grpc, model_pb2, model_pb2_grpc
from xaimesh_contracts.v1 import tensor_pb2
from xaimesh_runtime import metrics
from xaimesh_runtime.client import connect, downstream_stub, remaining_timeout
from xaimesh_runtime.config import ServerConfig
from xaimesh_runtime.errors import abort_with, map_errors, status_for_item
from xaimesh_runtime.logging_setup import register_secret
from xaimesh_contracts.tensors import to_numpy

from xaimesh_runtime.errors import Cancelled, InvalidArgument, ServiceError
from .examples import ConceptExample, ConceptExamples, ContextToken, ErrorInfo
from .labeling import ConceptLabelResult, label_concepts
from .llm import DEFAULT_OPENAI_BASE_URL, LLM, CallableLLM, OpenAIChatLLM
from .redaction import Secret, register
from .scoring import DETECTION, FUZZING, LabelScoreResult, ScoringInput, score_labels, summarize_scores

__all__ = ["API_KEY_METADATA", "LabelingServiceServicer", "SERVICE_NAME"]

log = logging.getLogger(__name__)

SERVICE_NAME = labeling_pb2.DESCRIPTOR.services_by_name["LabelingService"].full_name
API_KEY_METADATA = "x-openai-api-key"

DEFAULT_OPENAI_MODEL = "gpt-4.1-nano"
DEFAULT_K_EXAMPLES = 20
# Concurrent LLM calls of one request (max_concurrency 0): an endpoint's
# rate limits suit a few; the model-server decodes concurrent calls in one
# batch, so it gets as many as it batches.
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_MODEL_SERVER_CONCURRENCY = 16
DEFAULT_MAX_CONCURRENCY_CAP = 16
DEFAULT_OPENAI_TIMEOUT = 30.0
DEFAULT_OPENAI_RETRIES = 4
# Bounds of a request's OpenAI backend: past them a request could keep the
# service busy for hours (2^31 retries of a refused connection).
MAX_OPENAI_TIMEOUT = 600.0
MAX_OPENAI_RETRIES = 10
# Examples shown to the LLM per concept (every one goes into one prompt) and
# tokens of context each side: larger values are refused up front.
MAX_K_EXAMPLES = 1_000
MAX_K_CONTEXT = 1_000
MAX_BASE_URL_CHARS = 2048
# The most tokens a request may let the LLM write per answer (OpenAI
# max_tokens, model-server max_new_tokens): labels and scores need far fewer.
MAX_GENERATED_TOKENS = 4096
# Model-server generation lengths: a label is at most 5 words; a scoring
# answer is a JSON list of excerpt numbers.
LABEL_MAX_NEW_TOKENS = 16  # a 1-5 word label; more only slows CPU generation


def score_max_new_tokens(n_examples: int) -> int:
    """Enough for the longest answer to a scoring question on ``2 *
    n_examples`` excerpts, "[1, 2, ..., 2n]" at a token a digit, comma and
    space (plus 8 to spare), and no more: small local models ramble to the
    limit."""
    longest = 2 + sum(len(str(i)) + 2 for i in range(1, 2 * n_examples + 1))
    return min(MAX_GENERATED_TOKENS, longest + 8)

# No caller deadline: bound each model-server generation anyway.
GENERATE_TIMEOUT = 600.0
CONTROL_TIMEOUT = 60.0

DEFAULT_SCORING_EXAMPLES = 5
# ScoreLabels k_context 0 = this many tokens each side (fuzzing needs context).
DEFAULT_SCORING_CONTEXT = 4
# Non-activating rows: windows of contiguous rows, searched for rows where
# the concept is quiet: its code at most this fraction of its top activation
# (dense concept codes are rarely exactly 0).
QUIET_FRACTION = 0.1
NEGATIVE_WINDOW_ROWS = 64
NEGATIVE_MAX_WINDOWS = 8
NEGATIVE_MIN_ROWS = 256
NEGATIVE_ROWS_PER_EXAMPLE = 40

_TOKEN_LEVEL = (tensor_pb2.GRANULARITY_TOKEN, tensor_pb2.GRANULARITY_ALL_TOKENS)
_METHODS = {
    labeling_pb2.LABEL_SCORING_METHOD_DETECTION: DETECTION,
    labeling_pb2.LABEL_SCORING_METHOD_FUZZING: FUZZING,
}
_METHOD_ENUM = {v: k for k, v in _METHODS.items()}

LLM_CALLS = metrics.counter("xaimesh_labeling_llm_calls_total",
                            "LLM calls of the labeling-service by backend and outcome (ok or a status code)",
                            ["backend", "outcome"])


class RequestError(InvalidArgument):
    """A request field is wrong: INVALID_ARGUMENT with a BadRequest violation
    (the field first, as the request checks read best that way)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


# --------------------------------------------------------------------------
# helpers


def _progress(stage: str, done: int, total: int, message: str = "") -> Any:
    return tensor_pb2.Progress(stage=stage, done=int(done), total=int(total), message=message)


def _status(info: ErrorInfo):
    try:
        code = grpc.StatusCode[info.code]
    except KeyError:
        code = grpc.StatusCode.UNKNOWN
    return status_for_item(code, info.message)


def _to_plain(c: concept_pb2.ConceptExamples) -> ConceptExamples:
    return ConceptExamples(
        concept_index=int(c.concept_index),
        num_active_rows=int(c.num_active_rows),
        max_activation=float(c.max_activation),
        examples=[_example(e) for e in c.examples],
    )


def _example(e: concept_pb2.ConceptExample) -> ConceptExample:
    p = e.provenance
    return ConceptExample(
        text=p.text,
        activation=float(e.activation),
        normalized_activation=float(e.normalized_activation),
        context=tuple(ContextToken(t.text, bool(t.highlighted), float(t.activation)) for t in e.context),
        sample_index=int(p.sample_index),
        token_start=int(p.token_start),
        token_end=int(p.token_end),
    )


def _norm_url(url: str | None) -> str:
    return (url or "").strip().rstrip("/").lower()


class _CountedLLM:
    """Counts calls in ``xaimesh_labeling_llm_calls_total``; delegates the rest."""

    def __init__(self, llm: LLM, backend: str) -> None:
        self._llm = llm
        self._backend = backend

    @property
    def backend(self) -> str:
        """"openai" or "model-server"."""
        return self._backend

    def describe(self) -> str:
        return self._llm.describe()

    def complete(self, messages: Sequence[dict]) -> str:
        try:
            out = self._llm.complete(messages)
        except ServiceError as exc:
            LLM_CALLS.labels(self._backend, exc.code.name).inc()
            raise
        except Exception:
            LLM_CALLS.labels(self._backend, "UNKNOWN").inc()
            raise
        LLM_CALLS.labels(self._backend, "ok").inc()
        return out

    def close(self) -> None:
        close = getattr(self._llm, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return f"_CountedLLM({self._llm!r})"


# --------------------------------------------------------------------------
# the servicer


class LabelingServiceServicer(labeling_pb2_grpc.LabelingServiceServicer):
    """The labeling-service. ``config.options`` may carry ``openai_api_key``,
    ``openai_base_url``, ``openai_model`` and ``max_concurrency``;
    ``config.downstreams`` must name ``model-server`` and ``concept-service``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        opts = config.options
        key = (getattr(opts, "openai_api_key", None) or "").strip()
        self._api_key = Secret(key)  # empty = no key
        if key:
            register(self._api_key)
            register_secret(key)
        self._base_url = (getattr(opts, "openai_base_url", None) or "").strip() or None
        self._openai_model = (getattr(opts, "openai_model", None) or "").strip() or DEFAULT_OPENAI_MODEL
        cap = getattr(opts, "max_concurrency", None)
        self._max_concurrency = int(cap) if cap else DEFAULT_MAX_CONCURRENCY_CAP
        if self._max_concurrency < 1:
            raise ValueError("--max-concurrency must be at least 1")
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"LabelingServiceServicer(openai_base_url={self._base_url!r}, "
                f"openai_api_key={'***' if self._api_key else None}, max_concurrency={self._max_concurrency})")

    # -- lifecycle ----------------------------------------------------------

    def register(self, server: grpc.Server) -> list[str]:
        labeling_pb2_grpc.add_LabelingServiceServicer_to_server(self, server)
        return [SERVICE_NAME]

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    def _channel(self, name: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(name)
            if channel is None:
                channel = connect(self.config.downstream(name), max_message_mb=self.config.max_message_mb)
                self._channels[name] = channel
            return channel

    def _stub(self, stub_class: Any, service: str) -> Any:
        """A stub whose errors name the service and its address."""
        return downstream_stub(stub_class(self._channel(service)), service, self.config.downstream(service).address)

    def _concepts(self) -> concept_pb2_grpc.ConceptServiceStub:
        return self._stub(concept_pb2_grpc.ConceptServiceStub, "concept-service")

    def _models(self) -> model_pb2_grpc.ModelServiceStub:
        return self._stub(model_pb2_grpc.ModelServiceStub, "model-server")

    # -- LLM backends ---------------------------------------------------------

    @staticmethod
    def _metadata_key(context: grpc.ServicerContext) -> Secret:
        for key, value in context.invocation_metadata() or ():
            if key.lower() == API_KEY_METADATA:
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                secret = Secret(text.strip())
                if secret:
                    register(secret)
                    register_secret(secret.get())
                return secret
        return Secret("")

    def build_llm(self, backend: labeling_pb2.LlmBackend | None, context: grpc.ServicerContext, *,
                  max_new_tokens: int, seed: int = 0) -> Any:
        """The LLM a request asks for (see the module docstring)."""
        kind = backend.WhichOneof("backend") if backend is not None else None
        meta_key = self._metadata_key(context)
        if kind == "model_server":
            return self._model_server_llm(backend.model_server, context, max_new_tokens, seed)
        if kind == "openai":
            oa = backend.openai
            _check_base_url(oa.base_url, "llm.openai.base_url")
            key, base_url = self._openai_target(oa.base_url, meta_key)
            if not key and _norm_url(base_url) in ("", _norm_url(DEFAULT_OPENAI_BASE_URL)):
                log.info("OpenAI backend requested without an API key (x-openai-api-key metadata or "
                         "--openai-api-key) nor a base_url: using the model-server's own model instead")
                return self._model_server_llm(labeling_pb2.ModelServerBackend(), context, max_new_tokens, seed)
            return self._openai_llm(oa, key, base_url)
        key, base_url = self._openai_target("", meta_key)
        if key or self._base_url:
            return self._openai_llm(labeling_pb2.OpenAIBackend(), key, base_url)
        return self._model_server_llm(labeling_pb2.ModelServerBackend(), context, max_new_tokens, seed)

    def _openai_target(self, requested_base_url: str, meta_key: Secret) -> tuple[Secret, str | None]:
        """(key, base_url): the caller's key goes wherever the caller says;
        the service's key only to the service's own endpoint."""
        requested = (requested_base_url or "").strip() or None
        if meta_key:
            return meta_key, requested or self._base_url
        own = self._base_url or DEFAULT_OPENAI_BASE_URL
        if requested is None or _norm_url(requested) == _norm_url(own):
            return self._api_key, self._base_url or requested
        return Secret(""), requested

    def _openai_llm(self, oa: labeling_pb2.OpenAIBackend, key: Secret, base_url: str | None) -> Any:
        if oa.timeout_seconds < 0 or not math.isfinite(oa.timeout_seconds) or oa.timeout_seconds > MAX_OPENAI_TIMEOUT:
            raise RequestError("llm.openai.timeout_seconds",
                               f"timeout_seconds must be between 0 and {MAX_OPENAI_TIMEOUT:g} (0 = 30 s), "
                               f"got {oa.timeout_seconds:g}")
        if oa.max_retries > MAX_OPENAI_RETRIES:
            raise RequestError("llm.openai.max_retries",
                               f"max_retries must be at most {MAX_OPENAI_RETRIES} (0 = {DEFAULT_OPENAI_RETRIES}, "
                               f"negative = none), got {oa.max_retries}")
        if not 0 <= oa.max_tokens <= MAX_GENERATED_TOKENS:
            raise RequestError("llm.openai.max_tokens",
                               f"max_tokens must be between 0 and {MAX_GENERATED_TOKENS} (0 = the endpoint's "
                               f"default; a label is a few words), got {oa.max_tokens}")
        if not math.isfinite(oa.temperature) or oa.temperature < 0:
            raise RequestError("llm.openai.temperature", "temperature must be >= 0")
        # 0 = the default (4); a negative value = no retries.
        retries = DEFAULT_OPENAI_RETRIES if oa.max_retries == 0 else max(0, int(oa.max_retries))
        llm = OpenAIChatLLM(
            model=oa.model.strip() or self._openai_model,
            api_key=key,
            base_url=base_url,
            temperature=float(oa.temperature),
            max_tokens=int(oa.max_tokens) or None,
            timeout_seconds=float(oa.timeout_seconds) or DEFAULT_OPENAI_TIMEOUT,
            max_retries=retries,
        )
        return _CountedLLM(llm, "openai")

    def _model_server_llm(self, ms: labeling_pb2.ModelServerBackend, context: grpc.ServicerContext,
                          default_max_new_tokens: int, seed: int) -> Any:
        if not 0 <= ms.max_new_tokens <= MAX_GENERATED_TOKENS:
            raise RequestError("llm.model_server.max_new_tokens",
                               f"max_new_tokens must be between 0 and {MAX_GENERATED_TOKENS} (0 = "
                               f"{default_max_new_tokens}; a label is a few words), got {ms.max_new_tokens}")
        if not math.isfinite(ms.temperature) or ms.temperature < 0:
            raise RequestError("llm.model_server.temperature", "temperature must be >= 0")
        stub = self._models()
        info = stub.GetModel(model_pb2.GetModelRequest(model=ms.model),
                             timeout=remaining_timeout(context, CONTROL_TIMEOUT)).model
        model_id = info.model_id
        max_new = int(ms.max_new_tokens) or default_max_new_tokens
        temperature = float(ms.temperature)

        def generate(messages: list[dict[str, str]]) -> str:
            request = model_pb2.GenerateRequest(
                model=model_id,
                chat=model_pb2.ChatConversation(
                    messages=[model_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in messages]),
                max_new_tokens=max_new,
                do_sample=temperature > 0,
                temperature=temperature,
                seed=int(seed),
            )
            reply = stub.Generate(request, timeout=remaining_timeout(context, GENERATE_TIMEOUT))
            return reply.text

        return _CountedLLM(CallableLLM(generate, f"model-server:{model_id}"), "model-server")

    # -- concept-service ------------------------------------------------------

    def _check_activation_set(self, name: str, context: grpc.ServicerContext) -> concept_pb2.ActivationSet:
        reply = self._concepts().GetActivationSet(concept_pb2.GetActivationSetRequest(name=name),
                                                  timeout=remaining_timeout(context, CONTROL_TIMEOUT))
        aset = reply.set
        if not aset.has_provenance:
            raise ServiceError(
                f"{aset.name or name} has no provenance (no texts: an upload without provenance rows); "
                "concepts can only be labelled from sets made by CreateActivationSets or uploaded with "
                "provenance", code="FAILED_PRECONDITION")
        return aset

    def _top_examples(self, request: concept_pb2.GetTopExamplesRequest, context: grpc.ServicerContext,
                      stage: str) -> Iterator[Any]:
        """Yields Progress messages (re-staged) and ConceptExamples."""
        call = self._concepts().GetTopExamples(request, timeout=remaining_timeout(context))
        try:
            for event in call:
                if not context.is_active():
                    raise Cancelled("the call was cancelled")
                kind = event.WhichOneof("event")
                if kind == "progress":
                    p = event.progress
                    yield _progress(stage, p.done, p.total, p.stage)
                elif kind == "concept":
                    yield event.concept
        finally:
            call.cancel()

    def _encode_rows(self, concept_model: str, name: str, lo: int, hi: int,
                     context: grpc.ServicerContext) -> np.ndarray:
        request = concept_pb2.EncodeRequest(
            concept_model=concept_model,
            source=concept_pb2.ActivationSource(
                activation_set=concept_pb2.ActivationSetRange(name=name, row_start=lo, row_end=hi)))
        parts = []
        call = self._concepts().Encode(request, timeout=remaining_timeout(context))
        try:
            for reply in call:
                parts.append(to_numpy(reply.codes, field="codes"))
        finally:
            call.cancel()
        if not parts:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(parts, axis=0)

    def _read_provenance(self, name: str, lo: int, hi: int, context: grpc.ServicerContext) -> list:
        request = concept_pb2.ReadActivationSetRequest(name=name, row_start=lo, row_end=hi,
                                                       include_provenance=True)
        out: list = []
        call = self._concepts().ReadActivationSet(request, timeout=remaining_timeout(context))
        try:
            for reply in call:
                out.extend(reply.provenance)
        finally:
            call.cancel()
        return out

    def _non_activating(self, concept_model: str, aset: concept_pb2.ActivationSet, quiet: dict[int, float],
                        n_examples: int, k_context: int, seed: int, context: grpc.ServicerContext
                        ) -> dict[int, list[ConceptExample]]:
        """Per concept of ``quiet`` (concept -> the code at or below which it
        is quiet), up to ``2 * n_examples`` distinct rows where it is quiet
        (on the row and on every context token shown with it), from seeded
        random windows of the set."""
        concepts = sorted(quiet)
        n_rows = int(aset.shape[0]) if aset.shape else 0
        name = aset.name
        target = min(n_rows, max(NEGATIVE_MIN_ROWS, NEGATIVE_ROWS_PER_EXAMPLE * n_examples))
        if n_rows <= target:
            windows = [(0, n_rows)] if n_rows else []
        else:
            segments = n_rows // NEGATIVE_WINDOW_ROWS
            count = min(segments, NEGATIVE_MAX_WINDOWS, math.ceil(target / NEGATIVE_WINDOW_ROWS))
            picked = sorted(random.Random(f"xaimesh-negatives:{seed}").sample(range(segments), count))
            windows = [(s * NEGATIVE_WINDOW_ROWS, (s + 1) * NEGATIVE_WINDOW_ROWS) for s in picked]
        token_level = aset.granularity in _TOKEN_LEVEL
        want = 2 * n_examples
        out: dict[int, list[ConceptExample]] = {c: [] for c in concepts}
        seen: dict[int, set[str]] = {c: set() for c in concepts}
        rng = random.Random(f"xaimesh-negatives-order:{seed}")
        for lo, hi in windows:
            if not context.is_active():
                raise Cancelled("the call was cancelled")
            if all(len(out[c]) >= want for c in concepts):
                break
            codes = self._encode_rows(concept_model, name, lo, hi, context)
            prov = self._read_provenance(name, lo, hi, context)
            if codes.shape[0] != len(prov):
                raise ServiceError(f"concept-service returned {codes.shape[0]} codes but {len(prov)} "
                                    f"provenance rows for rows {lo}..{hi}", code="INTERNAL")
            for c in concepts:
                if len(out[c]) >= want or c >= codes.shape[1]:
                    continue
                rows = [int(i) for i in np.flatnonzero(codes[:, c] <= quiet[c])]
                rng.shuffle(rows)
                for r in rows:
                    ex = _negative_example(prov, codes[:, c], r, k_context, token_level, quiet[c])
                    if any(t.activation > quiet[c] for t in ex.context):
                        continue  # the concept fires next to it: not a clean negative
                    key = "".join(t.text for t in ex.context) if ex.context else ex.text
                    if not key.strip() or key in seen[c]:
                        continue
                    seen[c].add(key)
                    out[c].append(ex)
                    if len(out[c]) >= want:
                        break
        return out

    # -- RPCs -----------------------------------------------------------------

    @staticmethod
    def _check_concurrency(requested: int, field: str) -> None:
        if requested < 0:
            raise RequestError(field, f"max_concurrency must be >= 0 (0 = {DEFAULT_MAX_CONCURRENCY} for an OpenAI "
                                      f"endpoint, {DEFAULT_MODEL_SERVER_CONCURRENCY} for the model-server)")

    def _concurrency(self, requested: int, llm: Any) -> int:
        default = (DEFAULT_MODEL_SERVER_CONCURRENCY if getattr(llm, "backend", "") == "model-server"
                   else DEFAULT_MAX_CONCURRENCY)
        return min(requested or default, self._max_concurrency)

    @map_errors()
    def LabelConcepts(self, request: labeling_pb2.LabelConceptsRequest, context: grpc.ServicerContext):
        if not request.concept_model:
            raise RequestError("concept_model", "concept_model is required (\"conceptModels/{id}\")")
        if not request.activation_set:
            raise RequestError("activation_set", "activation_set is required (\"activationSets/{id}\")")
        if not 0 <= request.k_examples <= MAX_K_EXAMPLES:
            raise RequestError("k_examples", f"k_examples must be between 0 and {MAX_K_EXAMPLES} (0 = 20)")
        if not 0 <= request.k_quantile <= MAX_K_EXAMPLES:
            raise RequestError("k_quantile", f"k_quantile must be between 0 and {MAX_K_EXAMPLES}")
        if not 0 <= request.k_context <= MAX_K_CONTEXT:
            raise RequestError("k_context", f"k_context must be between 0 and {MAX_K_CONTEXT}")
        if any(c < 0 for c in request.concept_indices):
            raise RequestError("concept_indices", "concept indices must be >= 0")
        self._check_concurrency(request.max_concurrency, "max_concurrency")
        llm = self.build_llm(request.llm if request.HasField("llm") else None, context,
                             max_new_tokens=LABEL_MAX_NEW_TOKENS, seed=request.seed)
        concurrency = self._concurrency(request.max_concurrency, llm)
        try:
            description = llm.describe()
            self._check_activation_set(request.activation_set, context)
            top = concept_pb2.GetTopExamplesRequest(
                concept_model=request.concept_model, activation_set=request.activation_set,
                concept_indices=list(request.concept_indices), k=request.k_examples or DEFAULT_K_EXAMPLES,
                sampling=request.sampling, k_quantile=request.k_quantile, k_context=request.k_context,
                seed=request.seed)
            protos: dict[int, concept_pb2.ConceptExamples] = {}
            for item in self._top_examples(top, context, "examples"):
                if isinstance(item, tensor_pb2.Progress):
                    yield labeling_pb2.LabelConceptsResponse(progress=item)
                else:
                    protos[item.concept_index] = item
            total = len(protos)
            log.info("LabelConcepts: %d concepts of %s with %s", total, request.concept_model, description)
            yield labeling_pb2.LabelConceptsResponse(progress=_progress("labeling", 0, total))
            done = 0
            results = label_concepts([_to_plain(c) for c in protos.values()], llm,
                                     system_prompt=request.system_prompt or None,
                                     max_concurrency=concurrency,
                                     should_stop=lambda: not context.is_active())
            for result in results:
                done += 1
                yield labeling_pb2.LabelConceptsResponse(label=_label_message(result, protos[result.concept_index]))
                yield labeling_pb2.LabelConceptsResponse(progress=_progress("labeling", done, total))
        finally:
            llm.close()

    @map_errors()
    def ScoreLabels(self, request: labeling_pb2.ScoreLabelsRequest, context: grpc.ServicerContext):
        if not request.concept_model:
            raise RequestError("concept_model", "concept_model is required (\"conceptModels/{id}\")")
        if not request.activation_set:
            raise RequestError("activation_set", "activation_set is required (\"activationSets/{id}\")")
        if not request.labels:
            raise RequestError("labels", "no labels to score")
        for i, item in enumerate(request.labels):
            if item.concept_index < 0:
                raise RequestError(f"labels[{i}].concept_index", "concept indices must be >= 0")
        methods = []
        for i, m in enumerate(request.methods):
            if m not in _METHODS:
                raise RequestError(f"methods[{i}]", "unknown scoring method: use DETECTION or FUZZING")
            methods.append(_METHODS[m])
        methods = list(dict.fromkeys(methods)) or [DETECTION, FUZZING]
        if not 0 <= request.n_examples <= MAX_K_EXAMPLES:
            raise RequestError("n_examples", f"n_examples must be between 0 and {MAX_K_EXAMPLES} (0 = 5)")
        if not 0 <= request.k_context <= MAX_K_CONTEXT:
            raise RequestError("k_context", f"k_context must be between 0 and {MAX_K_CONTEXT} (0 = 4)")
        n_examples = request.n_examples or DEFAULT_SCORING_EXAMPLES
        k_context = request.k_context or DEFAULT_SCORING_CONTEXT
        self._check_concurrency(request.max_concurrency, "max_concurrency")
        scorer = self.build_llm(request.scorer if request.HasField("scorer") else None, context,
                                max_new_tokens=score_max_new_tokens(n_examples), seed=request.seed)
        concurrency = self._concurrency(request.max_concurrency, scorer)
        try:
            description = scorer.describe()
            aset = self._check_activation_set(request.activation_set, context)
            concepts = sorted({int(item.concept_index) for item in request.labels})
            top = concept_pb2.GetTopExamplesRequest(
                concept_model=request.concept_model, activation_set=request.activation_set,
                concept_indices=concepts, k=2 * n_examples, sampling=concept_pb2.EXAMPLE_SAMPLING_TOP,
                k_context=k_context, seed=request.seed)
            activating: dict[int, list[ConceptExample]] = {}
            for item in self._top_examples(top, context, "examples"):
                if isinstance(item, tensor_pb2.Progress):
                    yield labeling_pb2.ScoreLabelsResponse(progress=item)
                else:
                    activating[item.concept_index] = [_example(e) for e in item.examples]
            yield labeling_pb2.ScoreLabelsResponse(progress=_progress("non-activating examples", 0, 1))
            quiet = {c: QUIET_FRACTION * max([e.activation for e in activating.get(c, [])] + [0.0])
                     for c in concepts}
            negatives = self._non_activating(request.concept_model, aset, quiet, n_examples, k_context,
                                             request.seed, context)
            yield labeling_pb2.ScoreLabelsResponse(progress=_progress("non-activating examples", 1, 1))
            inputs = [ScoringInput(int(item.concept_index), item.label,
                                   activating.get(item.concept_index, []), negatives.get(item.concept_index, []))
                      for item in request.labels]
            total = len(inputs) * len(methods)
            log.info("ScoreLabels: %d labels x %s of %s with %s", len(inputs), "+".join(methods),
                     request.concept_model, description)
            yield labeling_pb2.ScoreLabelsResponse(progress=_progress("scoring", 0, total))
            results: list[LabelScoreResult] = []
            for result in score_labels(inputs, scorer, methods, n_examples, request.seed, concurrency,
                                       should_stop=lambda: not context.is_active()):
                results.append(result)
                yield labeling_pb2.ScoreLabelsResponse(score=_score_message(result))
                yield labeling_pb2.ScoreLabelsResponse(progress=_progress("scoring", len(results), total))
            summary = summarize_scores(results, description, request.labeller)
            yield labeling_pb2.ScoreLabelsResponse(summary=labeling_pb2.LabelScoresSummary(
                mean_detection=math.nan if summary.mean_detection is None else summary.mean_detection,
                mean_fuzzing=math.nan if summary.mean_fuzzing is None else summary.mean_fuzzing,
                scorer=summary.scorer,
                scorer_is_labeller=summary.scorer_is_labeller,
            ))
        finally:
            scorer.close()


# --------------------------------------------------------------------------
# encoding


def _check_base_url(url: str, field: str) -> None:
    """A request's base_url is an http(s) URL of a sane length (empty = the default)."""
    url = (url or "").strip()
    if not url:
        return
    if len(url) > MAX_BASE_URL_CHARS:
        raise RequestError(field, f"base_url is {len(url)} characters long; at most {MAX_BASE_URL_CHARS}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise RequestError(field, f"base_url is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestError(field, "base_url must be an http(s) URL such as http://localhost:8000/v1")


def _label_message(result: ConceptLabelResult, examples: concept_pb2.ConceptExamples) -> labeling_pb2.ConceptLabel:
    msg = labeling_pb2.ConceptLabel(
        concept_index=result.concept_index,
        label=result.label or "",
        has_label=result.label is not None,
        llm=result.llm,
        examples=list(examples.examples),
        prompt=result.prompt,
    )
    if result.error is not None:
        msg.error.CopyFrom(_status(result.error))
    return msg


def _score_message(result: LabelScoreResult) -> labeling_pb2.LabelScore:
    msg = labeling_pb2.LabelScore(
        concept_index=result.concept_index,
        label=result.label,
        method=_METHOD_ENUM[result.method],
        balanced_accuracy=math.nan if result.balanced_accuracy is None else float(result.balanced_accuracy),
        n_examples=int(result.n_examples),
    )
    if result.error is not None:
        msg.error.CopyFrom(_status(result.error))
    return msg


def _negative_example(prov: Sequence[Any], codes: np.ndarray, r: int, k_context: int,
                      token_level: bool, threshold: float) -> ConceptExample:
    """Row ``r`` of a window as an example, with up to ``k_context``
    neighbouring rows of the same sample on each side (inside the window) as
    context, as the concept-service builds them, except that the context
    stops before any token where the concept's code is above ``threshold``: a
    non-activating excerpt must not contain the concept."""
    p = prov[r]
    context: tuple[ContextToken, ...] = ()
    if k_context > 0:
        if token_level:
            def quiet(j: int) -> bool:
                return prov[j].sample_index == p.sample_index and codes[j] <= threshold

            lo = r
            while lo > 0 and r - lo < k_context and quiet(lo - 1):
                lo -= 1
            hi = r
            while hi + 1 < len(prov) and hi - r < k_context and quiet(hi + 1):
                hi += 1
            context = tuple(ContextToken(prov[j].text, j == r, float(codes[j])) for j in range(lo, hi + 1))
        else:
            context = (ContextToken(p.text, True, float(codes[r])),)
    return ConceptExample(text=p.text, activation=float(codes[r]), normalized_activation=0.0, context=context,
                          sample_index=int(p.sample_index), token_start=int(p.token_start),
                          token_end=int(p.token_end))
