"""gRPC adapter of the labeling-service: decode, call the logic, encode, map errors.

``LabelConcepts``: examples come from the concept-service (``GetTopExamples``
with the request's sampling / k / k_quantile / k_context / seed, the caller's
remaining deadline forwarded); ``labeling.label_concepts`` asks the LLM for
each concept concurrently, and each ``ConceptLabel`` is streamed as soon as it
is ready, followed by a ``Progress`` event. A failure for one concept is that
label's ``error`` (a ``google.rpc.Status``); the others go on. Concepts that
never activate get ``has_label = false`` without an LLM call.

``ScoreSimulatability`` (ConSim): everything shown to the simulator is in
the request; :mod:`xaimesh_labeling.simulatability` builds the prompt and
scores the one reply.

``ScoreLabels``: per label, activating examples are the concept's top rows
(``GetTopExamples`` TOP, ``2 * n_examples`` of them, with context) and
non-activating examples are rows where the concept is quiet
(:mod:`xaimesh_labeling.sampling`). Scores stream as ``LabelScore`` events,
then one ``LabelScoresSummary``.

Which LLM, with which key: :mod:`xaimesh_labeling.llm_policy`. The other
services: :mod:`xaimesh_labeling.downstream`.
"""

from __future__ import annotations

import functools
import logging
import math
import queue
import threading
from typing import Any

import grpc

from xaimesh_contracts.enums import EnumValueError, to_name, to_number
from xaimesh_contracts.v1 import concept_pb2, concept_pb2_grpc, labeling_pb2, labeling_pb2_grpc, model_pb2, model_pb2_grpc, tensor_pb2
from xaimesh_runtime.replicas import ReplicaPool
from xaimesh_runtime.config import ServerConfig
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument, map_errors, status_for_item

from .caller_llm import DEFAULT_MAX_RETRIES as DEFAULT_CALLER_RETRIES
from .caller_llm import DEFAULT_TIMEOUT_SECONDS as DEFAULT_CALLER_TIMEOUT_SECONDS
from .caller_llm import Call, CallerLLM, Reply
from .downstream import (ConceptSource, GrpcConceptSource, GrpcModelGenerator, ModelGenerator, Progress,
                         TopExamplesQuery, example_to_proto)
from .examples import ConceptExample, ConceptExamples, ErrorInfo
from .labeling import ConceptLabelResult, label_concepts
from .llm import CallableLLM
from .llm_policy import LABEL_MAX_NEW_TOKENS, LlmPolicy, ModelServerSpec, OpenAISpec, caller_key, \
    score_max_new_tokens, simulation_max_new_tokens
from .redaction import Secret
from .sampling import non_activating_examples, quiet_thresholds
from .simulatability import DEFAULT_IMPORTANCE_THRESHOLD, DEFAULT_PROMPT_TYPE, SimulatabilityInput, \
    build_messages, check_input, score_simulatability
from .scoring import DETECTION, FUZZING, LabelScoreResult, ScoringInput, score_labels, summarize_scores

__all__ = ["API_KEY_METADATA", "LabelingServiceServicer", "SERVICE_NAME"]

log = logging.getLogger(__name__)

SERVICE_NAME = labeling_pb2.DESCRIPTOR.services_by_name["LabelingService"].full_name
API_KEY_METADATA = "x-openai-api-key"

DEFAULT_K_EXAMPLES = 20
# Examples shown to the LLM per concept (every one goes into one prompt) and
# tokens of context each side: larger values are refused up front.
MAX_K_EXAMPLES = 1_000
MAX_K_CONTEXT = 1_000
MAX_CALLER_RETRIES = 10
MAX_CALLER_TIMEOUT_SECONDS = 3600.0
DEFAULT_SCORING_EXAMPLES = 5
# ScoreLabels k_context 0 = this many tokens each side (fuzzing needs context).
DEFAULT_SCORING_CONTEXT = 4
_TOKEN_LEVEL = ("token", "all_tokens")
# ScoreSimulatability's `llm` when the caller's own simulator wrote the reply.
CALLER_SIMULATOR = "caller"


# --------------------------------------------------------------------------
# decoding and encoding


def _progress(stage: str, done: int, total: int, message: str = "") -> tensor_pb2.Progress:
    return tensor_pb2.Progress(stage=stage, done=int(done), total=int(total), message=message)


def _backend_spec(backend: labeling_pb2.LlmBackend | None) -> OpenAISpec | ModelServerSpec | None:
    kind = backend.WhichOneof("backend") if backend is not None else None
    if kind == "openai":
        oa = backend.openai
        return OpenAISpec(model=oa.model, base_url=oa.base_url, temperature=oa.temperature, max_tokens=oa.max_tokens,
                          timeout_seconds=oa.timeout_seconds, max_retries=oa.max_retries)
    if kind == "model_server":
        ms = backend.model_server
        return ModelServerSpec(model=ms.model, max_new_tokens=ms.max_new_tokens, temperature=ms.temperature)
    return None


def _metadata_key(context: grpc.ServicerContext) -> Secret:
    for key, value in context.invocation_metadata() or ():
        if key.lower() == API_KEY_METADATA:
            return caller_key(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
    return Secret("")


def _scoring_methods(numbers: Any) -> list[str]:
    """Request methods -> scoring's names, in order, once each (none = both)."""
    methods = []
    for i, number in enumerate(numbers):
        try:
            name = to_name(labeling_pb2.LabelScoringMethod, number)
        except EnumValueError:
            name = ""
        if not name:
            raise InvalidArgument("unknown scoring method: use DETECTION or FUZZING", field=f"methods[{i}]")
        methods.append(name)
    return list(dict.fromkeys(methods)) or [DETECTION, FUZZING]


def _status(info: ErrorInfo):
    try:
        code = grpc.StatusCode[info.code]
    except KeyError:
        code = grpc.StatusCode.UNKNOWN
    return status_for_item(code, info.message)


def _label_message(result: ConceptLabelResult, examples: ConceptExamples) -> labeling_pb2.ConceptLabel:
    msg = labeling_pb2.ConceptLabel(
        concept_index=result.concept_index,
        label=result.label or "",
        has_label=result.label is not None,
        llm=result.llm,
        examples=[example_to_proto(e) for e in examples.examples],
        prompt=result.prompt,
    )
    if result.error is not None:
        msg.error.CopyFrom(_status(result.error))
    return msg


def _score_message(result: LabelScoreResult) -> labeling_pb2.LabelScore:
    msg = labeling_pb2.LabelScore(
        concept_index=result.concept_index,
        label=result.label,
        method=to_number(labeling_pb2.LabelScoringMethod, result.method),
        balanced_accuracy=math.nan if result.balanced_accuracy is None else float(result.balanced_accuracy),
        n_examples=int(result.n_examples),
    )
    if result.error is not None:
        msg.error.CopyFrom(_status(result.error))
    return msg


def _caller_reply(reply: labeling_pb2.GenerateReply) -> Reply:
    if reply.HasField("error") and reply.error.code:
        return Reply(reply.id, error=reply.error.message or "the caller's LLM failed",
                     code=grpc.StatusCode(_STATUS_BY_NUMBER.get(reply.error.code, grpc.StatusCode.UNKNOWN.value)).name)
    return Reply(reply.id, text=reply.text if reply.HasField("text") else None)


_STATUS_BY_NUMBER = {code.value[0]: code.value for code in grpc.StatusCode}


def _chat(messages: list[dict[str, str]]) -> list[model_pb2.ChatMessage]:
    return [model_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in messages]


def _simulatability_input(request: labeling_pb2.ScoreSimulatabilityRequest) -> SimulatabilityInput:
    try:
        prompt_type = to_name(labeling_pb2.SimulatabilityPrompt, request.prompt_type) or DEFAULT_PROMPT_TYPE
    except EnumValueError as exc:
        raise InvalidArgument(str(exc), field="prompt_type") from None
    return SimulatabilityInput(
        samples=list(request.samples), predictions=list(request.predictions), classes=list(request.classes),
        concept_labels=list(request.concept_labels),
        class_importances=[list(row.values) for row in request.class_importances],
        sample_contributions=[list(row.values) for row in request.sample_contributions],
        prompt_type=prompt_type, anonymize_classes=request.anonymize_classes,
        importance_threshold=request.importance_threshold or DEFAULT_IMPORTANCE_THRESHOLD)


def _check_target(request: Any) -> None:
    if not request.concept_model:
        raise InvalidArgument("concept_model is required (\"conceptModels/{id}\")", field="concept_model")
    if not request.activation_set:
        raise InvalidArgument("activation_set is required (\"activationSets/{id}\")", field="activation_set")


def _check_range(value: int, high: int, field: str, default: str = "") -> None:
    if not 0 <= value <= high:
        raise InvalidArgument(f"{field} must be between 0 and {high}{default}", field=field)


# --------------------------------------------------------------------------
# the servicer


class LabelingServiceServicer(labeling_pb2_grpc.LabelingServiceServicer):
    """The labeling-service. ``config.options`` may carry ``openai_api_key``,
    ``openai_base_url``, ``openai_model`` and ``max_concurrency``;
    ``config.downstreams`` must name ``model-server`` and ``concept-service``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        opts = config.options
        self.policy = LlmPolicy(api_key=getattr(opts, "openai_api_key", None) or "",
                                base_url=getattr(opts, "openai_base_url", None) or "",
                                openai_model=getattr(opts, "openai_model", None) or "",
                                max_concurrency=getattr(opts, "max_concurrency", None))
        self._pools: dict[str, ReplicaPool] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LabelingServiceServicer({self.policy!r})"

    # -- lifecycle ----------------------------------------------------------

    def register(self, server: grpc.Server) -> list[str]:
        labeling_pb2_grpc.add_LabelingServiceServicer_to_server(self, server)
        return [SERVICE_NAME]

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

    # -- the other services (one client per call: deadlines are the caller's) --

    def _stub(self, stub_class: Any, service: str) -> Any:
        """A stub over the service's replicas (one, or several behind one
        address: xaimesh_runtime.replicas) whose errors name the replica."""
        with self._lock:
            pool = self._pools.get(service)
            if pool is None:
                downstream = self.config.downstream(service)
                pool = ReplicaPool(downstream, service=service, max_in_flight=downstream.max_in_flight,
                                   resolve_interval_s=downstream.resolve_interval_s,
                                   max_message_mb=self.config.max_message_mb)
                self._pools[service] = pool
        return pool.stub(stub_class)

    def concept_source(self, context: grpc.ServicerContext) -> ConceptSource:
        return GrpcConceptSource(self._stub(concept_pb2_grpc.ConceptServiceStub, "concept-service"), context)

    def model_generator(self, context: grpc.ServicerContext) -> ModelGenerator:
        return GrpcModelGenerator(self._stub(model_pb2_grpc.ModelServiceStub, "model-server"), context)

    def _llm(self, backend: labeling_pb2.LlmBackend | None, context: grpc.ServicerContext, *, field: str,
             max_new_tokens: int, seed: int) -> Any:
        return self.policy.build(_backend_spec(backend), _metadata_key(context),
                                 lambda: self.model_generator(context), max_new_tokens=max_new_tokens,
                                 seed=seed, field=field)

    @staticmethod
    def _labelable_set(concepts: ConceptSource, name: str):
        aset = concepts.activation_set(name)
        if not aset.has_provenance:
            raise FailedPrecondition(
                f"{aset.name or name} has no provenance (no texts: an upload without provenance rows); "
                "concepts can only be labelled from sets made by CreateActivationSets or uploaded with "
                "provenance")
        return aset

    @staticmethod
    def _top_examples(concepts: ConceptSource, query: TopExamplesQuery):
        """Yields Progress messages (re-staged "examples") and ConceptExamples."""
        for item in concepts.top_examples(query):
            if isinstance(item, Progress):
                yield _progress("examples", item.done, item.total, item.stage)
            else:
                yield item

    # -- RPCs -----------------------------------------------------------------

    def _check_label_request(self, request: labeling_pb2.LabelConceptsRequest) -> None:
        _check_target(request)
        _check_range(request.k_examples, MAX_K_EXAMPLES, "k_examples", " (0 = 20)")
        _check_range(request.k_quantile, MAX_K_EXAMPLES, "k_quantile")
        _check_range(request.k_context, MAX_K_CONTEXT, "k_context")
        if any(c < 0 for c in request.concept_indices):
            raise InvalidArgument("concept indices must be >= 0", field="concept_indices")
        try:
            to_name(concept_pb2.ExampleSampling, request.sampling)
        except EnumValueError:
            raise InvalidArgument(f"unknown sampling {request.sampling}: use TOP, QUANTILE or RANDOM",
                                  field="sampling") from None
        self.policy.check_concurrency(request.max_concurrency, "max_concurrency")

    def _label_events(self, request: labeling_pb2.LabelConceptsRequest, llm: Any, context: grpc.ServicerContext):
        """The LabelConcepts responses (progress, labels) of a checked request with ``llm``."""
        concurrency = self.policy.concurrency(request.max_concurrency, llm)
        description = llm.describe()
        concepts = self.concept_source(context)
        self._labelable_set(concepts, request.activation_set)
        query = TopExamplesQuery(
            concept_model=request.concept_model, activation_set=request.activation_set,
            concept_indices=list(request.concept_indices), k=request.k_examples or DEFAULT_K_EXAMPLES,
            sampling=request.sampling, k_quantile=request.k_quantile, k_context=request.k_context,
            seed=request.seed)
        found: dict[int, ConceptExamples] = {}
        for item in self._top_examples(concepts, query):
            if isinstance(item, tensor_pb2.Progress):
                yield labeling_pb2.LabelConceptsResponse(progress=item)
            else:
                found[item.concept_index] = item
        total = len(found)
        log.info("LabelConcepts: %d concepts of %s with %s", total, request.concept_model, description)
        yield labeling_pb2.LabelConceptsResponse(progress=_progress("labeling", 0, total))
        done = 0
        results = label_concepts(list(found.values()), llm, system_prompt=request.system_prompt or None,
                                 max_concurrency=concurrency, should_stop=lambda: not context.is_active())
        for result in results:
            done += 1
            yield labeling_pb2.LabelConceptsResponse(label=_label_message(result, found[result.concept_index]))
            yield labeling_pb2.LabelConceptsResponse(progress=_progress("labeling", done, total))

    @map_errors()
    def LabelConcepts(self, request: labeling_pb2.LabelConceptsRequest, context: grpc.ServicerContext):
        self._check_label_request(request)
        llm = self._llm(request.llm if request.HasField("llm") else None, context, field="llm",
                        max_new_tokens=LABEL_MAX_NEW_TOKENS, seed=request.seed)
        try:
            yield from self._label_events(request, llm, context)
        finally:
            llm.close()

    @map_errors()
    def LabelConceptsWithCallerLlm(self, request_iterator: Any, context: grpc.ServicerContext):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("message") != "start":
            raise InvalidArgument("the first message must be `start`: the LabelConceptsRequest and the name of "
                                  "the caller's LLM", field="start")
        start = first.start
        self._check_label_request(start.request)
        max_retries = start.max_retries if start.HasField("max_retries") else DEFAULT_CALLER_RETRIES
        _check_range(max_retries, MAX_CALLER_RETRIES, "start.max_retries")
        timeout = start.timeout_seconds if start.HasField("timeout_seconds") else DEFAULT_CALLER_TIMEOUT_SECONDS
        if not 0 < timeout <= MAX_CALLER_TIMEOUT_SECONDS:
            raise InvalidArgument(f"timeout_seconds must be in (0, {MAX_CALLER_TIMEOUT_SECONDS:g}], got {timeout}",
                                  field="start.timeout_seconds")
        events: queue.Queue[Any] = queue.Queue()
        llm = CallerLLM(start.description, max_retries=max_retries, timeout_seconds=timeout, outbox=events)
        finished = object()

        def read_replies() -> None:
            try:
                for message in request_iterator:
                    if message.WhichOneof("message") == "reply":
                        llm.deliver(_caller_reply(message.reply))
            except grpc.RpcError:
                pass  # the caller went away: close() below fails what waits
            finally:
                llm.close()

        def label() -> None:
            try:
                for response in self._label_events(start.request, llm, context):
                    events.put(response)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the RPC's thread below
                events.put(exc)
            finally:
                events.put(finished)

        threading.Thread(target=read_replies, name="caller-llm-replies", daemon=True).start()
        threading.Thread(target=label, name="caller-llm-labels", daemon=True).start()
        while True:
            item = events.get()
            if item is finished:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, Call):
                yield labeling_pb2.LabelConceptsWithCallerLlmResponse(generate=labeling_pb2.GenerateCall(
                    id=item.id, messages=_chat(item.messages)))
            elif item.HasField("label"):
                yield labeling_pb2.LabelConceptsWithCallerLlmResponse(label=item.label)
            else:
                yield labeling_pb2.LabelConceptsWithCallerLlmResponse(progress=item.progress)

    @map_errors()
    def ScoreLabels(self, request: labeling_pb2.ScoreLabelsRequest, context: grpc.ServicerContext):
        _check_target(request)
        if not request.labels:
            raise InvalidArgument("no labels to score", field="labels")
        for i, item in enumerate(request.labels):
            if item.concept_index < 0:
                raise InvalidArgument("concept indices must be >= 0", field=f"labels[{i}].concept_index")
        methods = _scoring_methods(request.methods)
        _check_range(request.n_examples, MAX_K_EXAMPLES, "n_examples", " (0 = 5)")
        _check_range(request.k_context, MAX_K_CONTEXT, "k_context", " (0 = 4)")
        n_examples = request.n_examples or DEFAULT_SCORING_EXAMPLES
        k_context = request.k_context or DEFAULT_SCORING_CONTEXT
        self.policy.check_concurrency(request.max_concurrency, "max_concurrency")
        scorer = self._llm(request.scorer if request.HasField("scorer") else None, context, field="scorer",
                           max_new_tokens=score_max_new_tokens(n_examples), seed=request.seed)
        concurrency = self.policy.concurrency(request.max_concurrency, scorer)
        try:
            description = scorer.describe()
            concepts = self.concept_source(context)
            aset = self._labelable_set(concepts, request.activation_set)
            indices = sorted({int(item.concept_index) for item in request.labels})
            query = TopExamplesQuery(
                concept_model=request.concept_model, activation_set=request.activation_set,
                concept_indices=indices, k=2 * n_examples, sampling=concept_pb2.EXAMPLE_SAMPLING_TOP,
                k_context=k_context, seed=request.seed)
            activating: dict[int, list[ConceptExample]] = {}
            for item in self._top_examples(concepts, query):
                if isinstance(item, tensor_pb2.Progress):
                    yield labeling_pb2.ScoreLabelsResponse(progress=item)
                else:
                    activating[item.concept_index] = list(item.examples)
            yield labeling_pb2.ScoreLabelsResponse(progress=_progress("non-activating examples", 0, 1))
            negatives = non_activating_examples(
                functools.partial(concepts.read_window, request.concept_model, aset.name), aset.num_rows,
                quiet_thresholds(indices, activating), n_examples, k_context, request.seed,
                token_level=aset.granularity in _TOKEN_LEVEL, should_stop=lambda: not context.is_active())
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

    @map_errors()
    def ScoreSimulatability(self, request: labeling_pb2.ScoreSimulatabilityRequest,
                            context: grpc.ServicerContext) -> labeling_pb2.ScoreSimulatabilityResponse:
        data = _simulatability_input(request)
        if request.prompt_only and request.HasField("reply"):
            raise InvalidArgument("prompt_only asks for the prompt, reply scores an answer to it: set one",
                                  field="prompt_only")
        if request.prompt_only:
            messages, model_predictions = build_messages(data)
            return labeling_pb2.ScoreSimulatabilityResponse(
                score=math.nan, n_evaluated=len(model_predictions), model_predictions=model_predictions,
                prompt=_chat(messages))
        check_input(data)  # before any LLM is built: a bad request costs no model-server call
        if request.HasField("reply"):
            simulator = CallableLLM(lambda messages: request.reply, CALLER_SIMULATOR)
            result = score_simulatability(data, simulator)
        else:
            llm = self._llm(request.llm if request.HasField("llm") else None, context, field="llm",
                            max_new_tokens=simulation_max_new_tokens(len(data.samples) // 2), seed=request.seed)
            try:
                result = score_simulatability(data, llm)
            finally:
                llm.close()
        log.info("ScoreSimulatability: %s on %d samples with %s: %.3f", data.prompt_type, len(data.samples),
                 result.llm, result.score)
        return labeling_pb2.ScoreSimulatabilityResponse(
            score=result.score, n_evaluated=len(result.model_predictions), n_answered=result.n_answered,
            model_predictions=result.model_predictions, simulator_predictions=result.simulator_predictions,
            prompt=_chat(result.messages), reply=result.reply, llm=result.llm)
