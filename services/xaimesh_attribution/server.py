"""gRPC adapter of the attribution-service (protos/xaimesh/v1/attribution.proto).

A thin layer: decode the request, call `explainer.explain` / `evaluate`
(plain logic over a `ModelBackend`), encode the events, map errors.

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

Cancellation and deadlines. The job polls `context.is_active()` between
model-server batches, and the upstream call in flight is cancelled as soon
as the call ends (client cancel, deadline, server stop). Every upstream call
carries the time the incoming call has left.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np

from xaimesh_contracts.v1 import attribution_pb2, attribution_pb2_grpc, model_pb2, model_pb2_grpc, tensor_pb2
from xaimesh_runtime.client import connect, remaining_timeout, wait_for_health
from xaimesh_runtime.config import Downstream
from xaimesh_runtime.errors import DownstreamError, map_errors, status_for_item
from xaimesh_contracts.tensors import TensorError, to_numpy, to_tensor

from .backend import ModelBackend, Segment
from xaimesh_runtime.errors import ServiceError, Cancelled, FailedPrecondition, InvalidArgument
from .explainer import ATTRIBUTION_GRANULARITIES, evaluate, explain, list_methods, resolve_method, resolve_parameters
from .model_client import GrpcModelBackend
from .options import Aggregation, Granularity, InferenceMode, Metric, Task, from_proto, parse, to_proto
from .results import AttributionResult, MetricCurve, MetricResult

__all__ = ["SERVICE_NAME", "AttributionServicer", "BackendFactory"]

log = logging.getLogger("xaimesh_attribution.server")

SERVICE_NAME = "xaimesh.v1.AttributionService"

# Model-server codes that describe one item (its text, targets...) rather than the service.
ITEM_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION}
# Fields of an InvalidArgument that concern one item; any other field is the request's.
_ITEM_FIELDS = {"explain": ("text", "targets"), "evaluate": ("attribution", "attributions")}

# (model_id, context) -> the backend one call uses.
BackendFactory = Callable[[str, grpc.ServicerContext], ModelBackend]

# --------------------------------------------------------------------------- proto <-> logic


def _scalar(fd: Any, value: Any) -> Any:
    if fd.type == fd.TYPE_FLOAT:  # float32 on the wire: its shortest decimal form (0.1, not 0.100000001)
        return float(str(np.float32(value)))
    if fd.type in (fd.TYPE_INT32, fd.TYPE_INT64, fd.TYPE_ENUM):
        return int(value)
    return value


def parameters_dict(message: Any) -> dict[str, Any]:
    """The fields of a MethodParameters that are set (proto3: non-zero), as
    the plain dict `explain` takes (enums as proto numbers, messages as dicts)."""
    out: dict[str, Any] = {}
    for fd, value in message.ListFields():
        if fd.type == fd.TYPE_MESSAGE:
            out[fd.name] = {sub.name: _scalar(sub, v) for sub, v in value.ListFields()}
        else:
            out[fd.name] = _scalar(fd, value)
    return out


def _segment_proto(s: Segment) -> tensor_pb2.Segment:
    return tensor_pb2.Segment(text=s.text, start_char=s.start_char, end_char=s.end_char,
                              start_token=s.start_token, end_token=s.end_token)


def attribution_to_proto(r: AttributionResult) -> attribution_pb2.Attribution:
    info = resolve_method(r.method)
    return attribution_pb2.Attribution(
        model=r.model,
        task=to_proto(Task, r.task),
        method=info.proto_number,
        parameters_json=r.parameters_json,
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
    )


def attribution_from_proto(a: attribution_pb2.Attribution, index: int) -> AttributionResult:
    """An Attribution message as the logic's AttributionResult (InvalidArgument
    naming `attributions[index].<field>` when it cannot be decoded)."""
    where = f"attributions[{index}]"
    try:
        parameters = json.loads(a.parameters_json) if a.parameters_json else {}
    except ValueError as exc:
        raise InvalidArgument(f"parameters_json is not JSON: {exc}", field=f"{where}.parameters_json") from None
    try:
        scores = to_numpy(a.scores, field=f"{where}.scores", ndim=2).astype(np.float32, copy=False)
    except TensorError as exc:
        raise InvalidArgument(str(exc), field=getattr(exc, "field", None) or f"{where}.scores") from None
    method = ""
    if a.method:
        try:
            method = resolve_method(int(a.method)).name
        except InvalidArgument:
            raise InvalidArgument(f"unknown attribution method {a.method}", field=f"{where}.method") from None
    return AttributionResult(
        model=a.model,
        task=from_proto(Task, a.task),
        method=method,
        parameters=parameters if isinstance(parameters, dict) else {},
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


class _Fatal:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class AttributionServicer(attribution_pb2_grpc.AttributionServiceServicer):
    """The AttributionService. `model_server`: where the model-server is
    (`config.downstream("model-server")`); `backend_factory` replaces the
    gRPC backend (tests run the logic over an in-process engine)."""

    def __init__(self, model_server: Downstream | None = None, *, backend_factory: BackendFactory | None = None,
                 progress_interval: float = 0.1, poll_interval: float = 0.1) -> None:
        if model_server is None and backend_factory is None:
            raise ValueError("give the model-server downstream or a backend factory")
        self.model_server = model_server
        self.channel = connect(model_server) if model_server is not None else None
        self.stub = model_pb2_grpc.ModelServiceStub(self.channel) if self.channel is not None else None
        self.backend_factory = backend_factory or self._grpc_backend
        self.progress_interval = progress_interval
        self.poll_interval = poll_interval

    def _grpc_backend(self, model_id: str, context: grpc.ServicerContext) -> ModelBackend:
        return GrpcModelBackend(self.stub, model_id, lambda: remaining_timeout(context),
                                address=self.model_server.address if self.model_server else "")

    def register(self, server: grpc.Server) -> list[str]:
        attribution_pb2_grpc.add_AttributionServiceServicer_to_server(self, server)
        return [SERVICE_NAME]

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()

    # ------------------------------------------------------------ warm-up

    def wait_for_model_server(self, ready: threading.Event, stop: threading.Event | None = None,
                              interval: float = 1.0, log_every: float = 30.0) -> None:
        """Polls the model-server's health until it is SERVING, then sets
        `ready`. Never gives up (the service stays NOT_SERVING meanwhile and
        logs what it last saw); returns early when `stop` is set."""
        if self.channel is None:
            ready.set()
            return
        address = self.model_server.address if self.model_server else "?"
        started = last_log = time.monotonic()
        while not (stop is not None and stop.is_set()):
            try:
                wait_for_health(self.channel, timeout=max(interval, 0.2))
                log.info("model-server at %s is serving", address)
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
                method=m.proto_number, family=m.family, description=m.description,
                defaults_json=json.dumps(m.defaults, sort_keys=True),
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
        if request.method == attribution_pb2.ATTRIBUTION_METHOD_UNSPECIFIED:
            names = ", ".join(attribution_pb2.AttributionMethod.Name(m.proto_number) for m in list_methods())
            raise InvalidArgument(f"method is unspecified: use one of {names}", field="method")
        info = resolve_method(int(request.method))
        granularity = parse(Granularity, int(request.granularity), field="granularity")
        if granularity is not None and granularity.value not in info.granularities:
            raise InvalidArgument(
                f"granularity {granularity.value!r} is not supported by {info.name}; use one of "
                f"{', '.join(g for g in info.granularities if g in ATTRIBUTION_GRANULARITIES)}",
                field="granularity")
        parse(Aggregation, int(request.aggregation), field="aggregation")
        parse(InferenceMode, int(request.inference_mode), field="inference_mode")
        params = parameters_dict(request.parameters)
        backend = self.backend_factory(request.model, context)
        desc = backend.describe()
        resolve_parameters(info, params, desc)  # request-level checks before any work

        def work(index: int, progress: Callable, should_stop: Callable) -> attribution_pb2.ExplainResponse:
            item = request.inputs[index]
            targets, max_new = _targets(item, index, desc.task)
            result = explain(backend, info, params, item.text, targets, granularity=int(request.granularity),
                             aggregation=int(request.aggregation), inference_mode=int(request.inference_mode),
                             progress=progress, should_stop=should_stop, max_new_tokens=max_new)
            return attribution_pb2.ExplainResponse(result=attribution_pb2.AttributionResult(
                input_index=index, attribution=attribution_to_proto(result)))

        def item_error(index: int, status: Any) -> attribution_pb2.ExplainResponse:
            return attribution_pb2.ExplainResponse(item_error=model_pb2.ItemError(index=index, status=status))

        def progress(p: tensor_pb2.Progress) -> attribution_pb2.ExplainResponse:
            return attribution_pb2.ExplainResponse(progress=p)

        log.info("Explain: %s, %d input(s), model %s", info.name, len(request.inputs), desc.model_id)
        yield from self._run(context, backend, len(request.inputs), "explain", "inputs", work, item_error, progress)

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
        parse(InferenceMode, int(request.inference_mode), field="inference_mode")
        replacement = ({sub.name: _scalar(sub, v) for sub, v in request.replacement.ListFields()}
                       if request.HasField("replacement") else None)
        backend = self.backend_factory(request.model, context)
        desc = backend.describe()

        def work(index: int, progress: Callable, should_stop: Callable) -> attribution_pb2.EvaluateAttributionsResponse:
            attribution = attribution_from_proto(request.attributions[index], index)
            result = evaluate(backend, metric, attribution, n_steps=int(request.n_steps), replacement=replacement,
                              inference_mode=int(request.inference_mode),
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
        yield from self._run(context, backend, len(request.attributions), "evaluate", "attributions", work,
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

    def _run(self, context: grpc.ServicerContext, backend: ModelBackend, n_items: int, kind: str, list_name: str,
             work: Callable, item_error: Callable, progress_event: Callable) -> Iterator[Any]:
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        cancel = getattr(backend, "cancel", None)

        def on_done() -> None:  # the call ended (any reason): nothing more to compute
            stop.set()
            if cancel is not None:
                cancel()

        context.add_callback(on_done)

        def should_stop() -> bool:
            return stop.is_set() or not context.is_active()

        aggregator = ProgressAggregator(n_items)
        last_sent = [0.0]

        def send_progress(force: bool = False) -> None:
            now = time.monotonic()
            if not force and now - last_sent[0] < self.progress_interval:
                return
            last_sent[0] = now
            done, total = aggregator.counts()
            events.put(progress_event(tensor_pb2.Progress(stage=aggregator.stage or "scoring", done=done,
                                                          total=total, message=aggregator.message())))

        def on_progress(done: int, total: int, stage: str) -> None:
            aggregator.update(done, total, stage)
            send_progress()

        def job() -> None:
            try:
                for index in range(n_items):
                    if should_stop():
                        return
                    aggregator.start_item(index)
                    try:
                        response = work(index, on_progress, should_stop)
                    except Cancelled:
                        return
                    except ServiceError as exc:
                        field = self._item_field(kind, list_name, index, exc.field)
                        if field is None:
                            events.put(_Fatal(exc))
                            return
                        response = item_error(index, status_for_item(exc.code, exc.message, [(field, exc.message)]))
                    except DownstreamError as exc:
                        if exc.code not in ITEM_CODES:
                            events.put(_Fatal(exc))
                            return
                        violations = [(f"{list_name}[{index}]" + (f".{f}" if f else ""), d)
                                      for f, d in exc.field_violations] or [(f"{list_name}[{index}]", exc.message)]
                        response = item_error(index, status_for_item(exc.code, exc.message, violations))
                    aggregator.finish_item()
                    send_progress(force=True)
                    events.put(response)
            except BaseException as exc:  # noqa: BLE001 - reported to the caller as INTERNAL
                events.put(_Fatal(exc))
            finally:
                events.put(_END)

        worker = threading.Thread(target=job, name=f"attribution-{kind}", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    event = events.get(timeout=self.poll_interval)
                except queue.Empty:
                    if not context.is_active():
                        return
                    continue
                if event is _END:
                    return
                if isinstance(event, _Fatal):
                    raise event.error
                yield event
        finally:
            if worker.is_alive():
                on_done()
