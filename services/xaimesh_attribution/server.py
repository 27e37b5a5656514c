"""gRPC adapter of the attribution-service (protos/xaimesh/v1/attribution.proto).

A thin layer: decode the request once (the method from the registry, its
parameter message into the method's typed `Parameters`, validated once,
the enums into option values), `explainer.prepare` it once, call
`explainer.explain_input` / `evaluate` per item (plain logic over a
`ModelBackend`), encode the events, map errors.

Streams. `Explain` and `EvaluateAttributions` run their items (inputs /
attributions) one after the other in a job thread and stream `progress`
events, then one `result` — or one `item_error` — per item, in item order.
Progress `done / total` is aggregated over the items: `done` counts the
model-server rows (Score sequences, gradient samples, generations) done so
far, `total` adds the rows of the items started so far and an estimate for
the items not yet started (the mean of those started), so it is refined as
the job advances; `message` says which item is running ("input 2/5").

Errors. Problems with the request as a whole (no inputs, unknown method,
n_perturbations < 1, a granularity the method does not support, an unknown
model...) end the call with INVALID_ARGUMENT (or the model-server's code)
and a `google.rpc.BadRequest` naming the field. A problem with one item (its
text, its targets, its attribution) is an `ItemError` for that item, with
the field relative to the request (`inputs[2].targets`), and the other items
proceed. Model-server failures keep their status code (UNAVAILABLE names the
address), except INVALID_ARGUMENT-like ones about one item, which become
that item's `ItemError`.

Cancellation and deadlines. The items run under `xaimesh_runtime.jobs.
stream_job`: the job polls `should_stop()` between model-server batches, and
the upstream calls in flight are cancelled (`backend.cancel`) as soon as the
call ends (client cancel, deadline, server stop). Every upstream call
carries the time the incoming call has left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.unknown_fields import UnknownFieldSet
import numpy as np

from xaimesh_contracts.tensors import TensorError, to_numpy, to_tensor
from xaimesh_contracts.v1 import attribution_pb2, attribution_pb2_grpc, model_pb2, model_pb2_grpc, tensor_pb2
from xaimesh_contracts.channels import CALLER_METADATA
from xaimesh_runtime.client import remaining_timeout
from xaimesh_runtime.replicas import ReplicaPool
from xaimesh_runtime.config import Downstream
from xaimesh_runtime.errors import (
    Cancelled,
    DownstreamError,
    InvalidArgument,
    ServiceError,
    map_errors,
    status_for_item,
)
from xaimesh_runtime.jobs import stream_job

from .backend import ModelBackend, Segment
from .explainer import evaluate, explain_input, prepare
from .methods import REGISTRY, AttributionMethod, list_methods, resolve_method
from .methods.base import as_replacement
from .model_client import DEFAULT_MAX_IN_FLIGHT, UPSTREAM, GrpcModelBackend, concept_encoder_from_proto
from .options import Aggregation, Granularity, InferenceMode, Metric, Task, from_proto, parse, to_proto
from .results import AttributionResult, MetricCurve, MetricResult

__all__ = ["SERVICE_NAME", "AttributionServicer", "BackendFactory"]

log = logging.getLogger("xaimesh_attribution.server")

SERVICE_NAME = "xaimesh.v1.AttributionService"

# Model-server codes that describe one item (its text, targets...) rather than the service.
ITEM_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION}
# Fields of an InvalidArgument that concern one item; any other field is the request's.
_ITEM_FIELDS = {"explain": ("text", "targets", "chat", "chat_template"), "evaluate": ("attribution", "attributions")}

# (model_id, context) -> the backend one call uses.
BackendFactory = Callable[[str, grpc.ServicerContext], ModelBackend]

# --------------------------------------------------------------------------- proto <-> logic


def method_of(number: int, field: str = "method") -> AttributionMethod:
    """The registered method of a proto AttributionMethod value."""
    if not number:
        names = ", ".join(m.enum_name for m in list_methods())
        raise InvalidArgument(f"method is unspecified: use one of {names}", field=field)
    try:
        return resolve_method(int(number))
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message, field=field) from None


def _input_of(item: attribution_pb2.ExplainInput) -> Any:
    """An ExplainInput's text, or its chat as a list of {"role", "content"}."""
    if not item.HasField("chat"):
        return item.text
    if item.text:
        raise InvalidArgument("give a text or a chat to explain, not both", field="chat")
    if item.HasField("chat_template"):
        raise InvalidArgument("chat_template is for a plain text: a chat always uses the template",
                              field="chat_template")
    return [{"role": m.role, "content": m.content} for m in item.chat.messages]


def parameters_of(method: AttributionMethod, message: attribution_pb2.MethodParameters,
                  prefix: str = "parameters") -> Any:
    """The request's parameter message as the method's typed Parameters (the
    one decode, which validates them); errors name the message's field
    (`parameters.lime.regularization`)."""
    unknown = sorted({f.field_number for f in UnknownFieldSet(message)})
    if unknown:  # e.g. the flat fields of the contract before each method had its own message
        raise InvalidArgument(
            f"parameters carries fields this service does not know (numbers {', '.join(map(str, unknown))}): "
            "the client was built from an older attribution.proto; regenerate it (docs/CHANGELOG.md says "
            "what changed) rather than have those parameters silently ignored", field=prefix)
    try:
        return method.parameters_from_proto(message)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message, field=_message_field(method, exc.field, prefix)) from None


def _message_field(method: AttributionMethod, field: str | None, prefix: str = "parameters") -> str | None:
    """"parameters.x" of the logic -> "<prefix>.<method>.x" of the request."""
    if field is None or not (field == "parameters" or field.startswith("parameters.")):
        return field
    rest = field[len("parameters."):] if field != "parameters" else ""
    if rest.split(".", 1)[0] in attribution_pb2.MethodParameters.DESCRIPTOR.fields_by_name:
        return f"{prefix}.{rest}"  # already names the oneof field
    return f"{prefix}.{method.name}" + (f".{rest}" if rest else "")


def _replacement_of(message: model_pb2.Replacement) -> Any:
    """A proto Replacement (EvaluateAttributions) as the service's one form."""
    return as_replacement({"policy": int(message.policy) or None, "token_id": int(message.token_id)},
                          "replacement")


def _segment_proto(s: Segment) -> tensor_pb2.Segment:
    return tensor_pb2.Segment(text=s.text, start_char=s.start_char, end_char=s.end_char,
                              start_token=s.start_token, end_token=s.end_token)


def attribution_to_proto(r: AttributionResult) -> attribution_pb2.Attribution:
    method = REGISTRY[r.method]
    return attribution_pb2.Attribution(
        model=r.model,
        task=to_proto(Task, r.task),
        method=method.number,
        parameters=method.parameters_to_proto(method.parameters(r.parameters)),
        granularity=to_proto(Granularity, r.granularity),
        aggregation=to_proto(Aggregation, r.aggregation),
        inference_mode=to_proto(InferenceMode, r.inference_mode),
        input_elements=[_segment_proto(s) for s in r.input_elements],
        num_prompt_elements=r.num_prompt_elements,
        target_elements=list(r.target_elements),
        target_classes=[int(c) for c in r.target_classes],
        target_token_ids=[int(i) for i in r.target_token_ids],
        target_element_token_ends=[int(e) for e in r.target_element_token_ends],
        scores=to_tensor(np.ascontiguousarray(r.scores, dtype=np.float32)),
        target_scores=[float(x) for x in np.asarray(r.target_scores, dtype=np.float32)],
        text=r.text,
        input_ids=[int(i) for i in r.input_ids],
        explains_concepts=r.explains_concepts,
    )


def attribution_from_proto(a: attribution_pb2.Attribution, index: int) -> AttributionResult:
    """An Attribution message as the logic's AttributionResult (InvalidArgument
    naming `attributions[index].<field>` when it cannot be decoded)."""
    where = f"attributions[{index}]"
    try:
        scores = to_numpy(a.scores, field=f"{where}.scores", ndim=2).astype(np.float32, copy=False)
    except TensorError as exc:
        raise InvalidArgument(str(exc), field=getattr(exc, "field", None) or f"{where}.scores") from None
    method, parameters = "", None
    if a.method:
        m = method_of(int(a.method), field=f"{where}.method")
        method = m.name
        parameters = parameters_of(m, a.parameters, prefix=f"{where}.parameters")
    return AttributionResult(
        model=a.model,
        task=from_proto(Task, a.task),
        method=method,
        parameters=parameters if parameters is not None else {},
        granularity=from_proto(Granularity, a.granularity),
        aggregation=from_proto(Aggregation, a.aggregation),
        inference_mode=from_proto(InferenceMode, a.inference_mode),
        input_elements=[Segment(s.text, s.start_char, s.end_char, s.start_token, s.end_token)
                        for s in a.input_elements],
        num_prompt_elements=int(a.num_prompt_elements),
        target_elements=list(a.target_elements),
        target_classes=[int(c) for c in a.target_classes],
        target_token_ids=[int(i) for i in a.target_token_ids],
        target_element_token_ends=[int(e) for e in a.target_element_token_ends],
        scores=scores,
        target_scores=np.asarray(list(a.target_scores), dtype=np.float32),
        text=a.text,
        input_ids=[int(i) for i in a.input_ids],
        explains_concepts=a.explains_concepts,
    )


def _curve_proto(c: MetricCurve) -> attribution_pb2.MetricCurve:
    return attribution_pb2.MetricCurve(fractions=[float(x) for x in c.fractions],
                                       scores=[float(x) for x in c.scores], auc=float(c.auc))


def metric_result_to_proto(index: int, m: MetricResult) -> attribution_pb2.AttributionMetricResult:
    out = attribution_pb2.AttributionMetricResult(
        input_index=index, metric=to_proto(Metric, m.metric), curve=_curve_proto(m.curve),
        per_target_scores=to_tensor(np.ascontiguousarray(m.per_target_scores, dtype=np.float32)))
    if m.random_curve is not None:
        out.random_curve.CopyFrom(_curve_proto(m.random_curve))
    return out


def _targets(item: attribution_pb2.ExplainInput, index: int, task: str) -> tuple[Any, int | None]:
    """(targets, max_new_tokens) of one input, as `explain` takes them."""
    if not item.HasField("targets"):
        return None, None
    t = item.targets
    kind = t.WhichOneof("targets")
    max_new = int(t.max_new_tokens) or None
    classifier = task == "sequence_classification"
    if kind in ("text", "token_ids") and classifier:
        raise InvalidArgument(f"a classifier's targets are class indices or class names, got {kind}",
                              field="targets")
    if kind in ("class_indices", "class_names") and not classifier:
        raise InvalidArgument(f"a causal LM's targets are a continuation text or token ids "
                              f"(class targets are for classifiers), got {kind}", field="targets")
    if kind == "text":
        return t.text, max_new
    if kind == "token_ids":
        return [int(i) for i in t.token_ids.ids], max_new
    if kind == "class_indices":
        if not t.class_indices.indices:
            raise InvalidArgument("class_indices is empty: give at least one class", field="targets")
        return [int(i) for i in t.class_indices.indices], max_new
    if kind == "class_names":
        if not t.class_names.names:
            raise InvalidArgument("class_names is empty: give at least one class", field="targets")
        return list(t.class_names.names), max_new
    return None, max_new


# --------------------------------------------------------------------------- progress


class ProgressAggregator:
    """Aggregates the per-item progress callbacks of the logic (each a series
    of phases `(0..total, stage)`) into one `done / total` over the items."""

    def __init__(self, n_items: int) -> None:
        self.n = n_items
        self.item = 0
        self.finished_totals: list[int] = []
        self.completed = 0  # rows of the current item's finished phases
        self.phase_done = 0
        self.phase_total = 0
        self.stage = ""

    def start_item(self, index: int) -> None:
        self.item = index
        self.completed = self.phase_done = self.phase_total = 0

    def finish_item(self) -> None:
        self.finished_totals.append(self.completed + self.phase_done)
        self.completed = self.phase_done = self.phase_total = 0

    def update(self, done: int, total: int, stage: str) -> tuple[int, int]:
        if done == 0 and (self.phase_total or self.phase_done):  # a new phase begins
            self.completed += self.phase_done
        self.phase_done, self.phase_total, self.stage = int(done), int(total), stage
        return self.counts()

    def counts(self) -> tuple[int, int]:
        finished = sum(self.finished_totals)
        current_total = self.completed + self.phase_total
        started = self.finished_totals + [current_total]
        estimate = sum(started) / len(started)
        remaining = max(self.n - len(self.finished_totals) - 1, 0)
        done = finished + self.completed + self.phase_done
        total = finished + current_total + int(round(remaining * estimate))
        return done, max(total, done)

    def message(self) -> str:
        return f"input {self.item + 1}/{self.n}"


# --------------------------------------------------------------------------- servicer


class AttributionServicer(attribution_pb2_grpc.AttributionServiceServicer):
    """The AttributionService. `model_server`: where the model-server is
    (`config.downstream("model-server")`); `backend_factory` replaces the
    gRPC backend (tests run the logic over an in-process engine)."""

    def __init__(self, model_server: Downstream | None = None, *, backend_factory: BackendFactory | None = None,
                 progress_interval: float = 0.1, poll_interval: float = 0.1,
                 score_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        if model_server is None and backend_factory is None:
            raise ValueError("give the model-server downstream or a backend factory")
        self.model_server = model_server
        # One name may stand for several model-server replicas: calls are balanced over them and a call
        # to a replica that went away is sent to another (xaimesh_runtime.replicas).
        self.pool = ReplicaPool(model_server, service=UPSTREAM, max_in_flight=model_server.max_in_flight,
                                resolve_interval_s=model_server.resolve_interval_s) \
            if model_server is not None else None
        self.stub = self.pool.stub(model_pb2_grpc.ModelServiceStub) if self.pool is not None else None
        self.backend_factory = backend_factory or self._grpc_backend
        self.progress_interval = progress_interval
        self.poll_interval = poll_interval
        self.score_in_flight = score_in_flight

    def _grpc_backend(self, model_id: str, context: grpc.ServicerContext) -> ModelBackend:
        # The explanation's calls share one turn in the model-server's batcher: the incoming
        # call's own caller key when it has one (several explanations of one user), else a new one.
        caller = dict(context.invocation_metadata() or ()).get(CALLER_METADATA, "")
        return GrpcModelBackend(self.stub, model_id, lambda: remaining_timeout(context),
                                address=self.model_server.address if self.model_server else "",
                                max_in_flight=self.score_in_flight, caller=caller)

    def register(self, server: grpc.Server) -> list[str]:
        attribution_pb2_grpc.add_AttributionServiceServicer_to_server(self, server)
        return [SERVICE_NAME]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    # ------------------------------------------------------------ warm-up

    def wait_for_model_server(self, ready: threading.Event, stop: threading.Event | None = None,
                              interval: float = 1.0, log_every: float = 30.0) -> None:
        """Polls the model-server's health until it is SERVING, then sets
        `ready`. Never gives up (the service stays NOT_SERVING meanwhile and
        logs what it last saw); returns early when `stop` is set."""
        if self.pool is None:
            ready.set()
            return
        address = self.model_server.address if self.model_server else "?"
        started = last_log = time.monotonic()
        while not (stop is not None and stop.is_set()):
            try:
                serving = self.pool.wait_for_health(timeout=max(interval, 0.2))
                log.info("model-server at %s is serving", serving)
                ready.set()
                return
            except TimeoutError as exc:
                now = time.monotonic()
                if now - last_log >= log_every:
                    log.warning("waiting for the model-server at %s (%.0f s so far): %s", address,
                                now - started, exc)
                    last_log = now

    # ------------------------------------------------------------ ListMethods

    @map_errors()
    def ListMethods(self, request: attribution_pb2.ListMethodsRequest,
                    context: grpc.ServicerContext) -> attribution_pb2.ListMethodsResponse:
        methods = [
            attribution_pb2.MethodInfo(
                method=m.number, family=m.family, description=m.doc,
                defaults=m.parameters_to_proto(m.defaults),
                granularities=[to_proto(Granularity, g) for g in m.granularities])
            for m in list_methods()
        ]
        return attribution_pb2.ListMethodsResponse(methods=methods)

    # ------------------------------------------------------------ Explain

    @map_errors()
    def Explain(self, request: attribution_pb2.ExplainRequest,
                context: grpc.ServicerContext) -> Iterator[attribution_pb2.ExplainResponse]:
        if not request.inputs:
            raise InvalidArgument("inputs is empty: give at least one input to explain", field="inputs")
        method = method_of(int(request.method))
        params = parameters_of(method, request.parameters)
        granularity = parse(Granularity, int(request.granularity), field="granularity")
        aggregation = parse(Aggregation, int(request.aggregation), field="aggregation")
        inference_mode = parse(InferenceMode, int(request.inference_mode), field="inference_mode")
        backend = self.backend_factory(request.model, context)
        desc = backend.describe()
        try:  # request-level checks, once, before any work
            encoder = concept_encoder_from_proto(request.concept_encoder) if request.HasField("concept_encoder") \
                else None
            plan = prepare(backend, method, params, granularity, aggregation, inference_mode, desc=desc,
                           concept_encoder=encoder)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, field=_message_field(method, exc.field)) from None

        def work(index: int, progress: Callable, should_stop: Callable) -> attribution_pb2.ExplainResponse:
            item = request.inputs[index]
            targets, max_new = _targets(item, index, desc.task)
            result = explain_input(backend, plan, _input_of(item), targets, max_new_tokens=max_new,
                                   chat_template=item.chat_template if item.HasField("chat_template") else None,
                                   progress=progress, should_stop=should_stop)
            return attribution_pb2.ExplainResponse(result=attribution_pb2.AttributionResult(
                input_index=index, attribution=attribution_to_proto(result)))

        def item_error(index: int, status: Any) -> attribution_pb2.ExplainResponse:
            return attribution_pb2.ExplainResponse(item_error=model_pb2.ItemError(index=index, status=status))

        def progress(p: tensor_pb2.Progress) -> attribution_pb2.ExplainResponse:
            return attribution_pb2.ExplainResponse(progress=p)

        log.info("Explain: %s, %d input(s), model %s", method.name, len(request.inputs), desc.model_id)
        yield from self._stream(context, backend, len(request.inputs), "explain", "inputs", work, item_error,
                                progress, method)

    # ------------------------------------------------------------ EvaluateAttributions

    @map_errors()
    def EvaluateAttributions(self, request: attribution_pb2.EvaluateAttributionsRequest,
                             context: grpc.ServicerContext) -> Iterator[attribution_pb2.EvaluateAttributionsResponse]:
        metric = parse(Metric, int(request.metric), field="metric")
        if metric is None:
            raise InvalidArgument("metric is unspecified: use ATTRIBUTION_METRIC_DELETION or "
                                  "ATTRIBUTION_METRIC_INSERTION", field="metric")
        if not request.attributions:
            raise InvalidArgument("attributions is empty: give at least one attribution to evaluate",
                                  field="attributions")
        if request.n_steps < 0:
            raise InvalidArgument(f"n_steps must be >= 0 (0 = one element per step), got {request.n_steps}",
                                  field="n_steps")
        if request.batch_size < 0:
            raise InvalidArgument(f"batch_size must be >= 1 (0 = the default), got {request.batch_size}",
                                  field="batch_size")
        inference_mode = parse(InferenceMode, int(request.inference_mode), field="inference_mode")
        replacement = _replacement_of(request.replacement) if request.HasField("replacement") else None
        backend = self.backend_factory(request.model, context)
        desc = backend.describe()

        def work(index: int, progress: Callable, should_stop: Callable) -> attribution_pb2.EvaluateAttributionsResponse:
            attribution = attribution_from_proto(request.attributions[index], index)
            result = evaluate(backend, metric, attribution, n_steps=int(request.n_steps), replacement=replacement,
                              inference_mode=inference_mode,
                              n_random_orders=int(request.n_random_orders), seed=int(request.seed),
                              batch_size=int(request.batch_size) or None, progress=progress,
                              should_stop=should_stop)
            return attribution_pb2.EvaluateAttributionsResponse(result=metric_result_to_proto(index, result))

        def item_error(index: int, status: Any) -> attribution_pb2.EvaluateAttributionsResponse:
            return attribution_pb2.EvaluateAttributionsResponse(item_error=model_pb2.ItemError(index=index,
                                                                                               status=status))

        def progress(p: tensor_pb2.Progress) -> attribution_pb2.EvaluateAttributionsResponse:
            return attribution_pb2.EvaluateAttributionsResponse(progress=p)

        log.info("EvaluateAttributions: %s, %d attribution(s), model %s", metric.value, len(request.attributions),
                 desc.model_id)
        yield from self._stream(context, backend, len(request.attributions), "evaluate", "attributions", work,
                                item_error, progress)

    # ------------------------------------------------------------ job machinery

    def _item_field(self, kind: str, list_name: str, index: int, field: str | None) -> str | None:
        """The request-relative field of an item problem, or None when the
        field is the request's (then the whole call fails)."""
        if not field:
            return f"{list_name}[{index}]"
        head = field.split(".", 1)[0].split("[", 1)[0]
        if head not in _ITEM_FIELDS[kind]:
            return None
        if kind == "explain":
            return f"{list_name}[{index}].{field}"
        rest = field.split(".", 1)[1] if "." in field else ""
        if field.startswith(f"{list_name}[{index}]"):
            return field
        return f"{list_name}[{index}]" + (f".{rest}" if rest else "")

    def _stream(self, context: grpc.ServicerContext, backend: ModelBackend, n_items: int, kind: str,
                list_name: str, work_item: Callable, item_error: Callable, progress_event: Callable,
                method: AttributionMethod | None = None) -> Iterator[Any]:
        """Runs the items one after the other under `stream_job` and yields
        progress events and one result or item error per item. An item's own
        problem (a ServiceError naming one of its fields, an INVALID_ARGUMENT-
        like model-server code) becomes its ItemError; anything else ends the
        call (map_errors)."""
        aggregator = ProgressAggregator(n_items)

        def work(emit: Callable[[Any], None], should_stop: Callable[[], bool]) -> None:
            last_sent = [0.0]

            def send_progress(force: bool = False) -> None:
                now = time.monotonic()
                if not force and now - last_sent[0] < self.progress_interval:
                    return
                last_sent[0] = now
                done, total = aggregator.counts()
                emit(progress_event(tensor_pb2.Progress(stage=aggregator.stage or "scoring", done=done,
                                                        total=total, message=aggregator.message())))

            def on_progress(done: int, total: int, stage: str) -> None:
                aggregator.update(done, total, stage)
                send_progress()

            for index in range(n_items):
                if should_stop():
                    raise Cancelled(f"the {kind} call was cancelled")
                aggregator.start_item(index)
                try:
                    response = work_item(index, on_progress, should_stop)
                except Cancelled:
                    raise
                except ServiceError as exc:
                    field = self._item_field(kind, list_name, index, exc.field)
                    if field is None:
                        if method is not None:  # "parameters.x" of the logic: the request's "parameters.<method>.x"
                            field = _message_field(method, exc.field)
                            raise type(exc)(exc.message, field=field, code=exc.code) from None
                        raise
                    response = item_error(index, status_for_item(exc.code, exc.message, [(field, exc.message)]))
                except DownstreamError as exc:
                    if exc.code not in ITEM_CODES:
                        raise
                    violations = [(f"{list_name}[{index}]" + (f".{f}" if f else ""), d)
                                  for f, d in exc.field_violations] or [(f"{list_name}[{index}]", exc.message)]
                    response = item_error(index, status_for_item(exc.code, exc.message, violations))
                aggregator.finish_item()
                send_progress(force=True)
                emit(response)

        for what, value in stream_job(work, context, f"the {kind} call", on_stop=getattr(backend, "cancel", None),
                                      poll_interval=self.poll_interval):
            if what == "event":
                yield value
