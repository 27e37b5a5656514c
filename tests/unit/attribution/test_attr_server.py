"""The attribution servicer over real gRPC, in-process, with the model-server
engine behind it (no model-server process): every method, streams,
item errors, request errors, cancellation, deadlines, metrics."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from xaimesh_contracts.v1 import attribution_pb2 as apb
from xaimesh_contracts.v1 import attribution_pb2_grpc, model_pb2, tensor_pb2
from xaimesh_attribution import REGISTRY, evaluate, explain
from xaimesh_runtime.errors import DownstreamError
from xaimesh_attribution.server import AttributionServicer, attribution_from_proto
from xaimesh_runtime.config import ServerConfig
from xaimesh_runtime.server import start_server

PROMPT = "Alice and Bob enter the bar."
TARGET = " Alice smiles at Bob."

METHODS = {
    "occlusion": (apb.ATTRIBUTION_METHOD_OCCLUSION, {}),
    "lime": (apb.ATTRIBUTION_METHOD_LIME, {"n_perturbations": 16}),
    "kernel_shap": (apb.ATTRIBUTION_METHOD_KERNEL_SHAP, {"n_perturbations": 16}),
    "sobol": (apb.ATTRIBUTION_METHOD_SOBOL, {"n_perturbations": 4}),
    "saliency": (apb.ATTRIBUTION_METHOD_SALIENCY, {}),
    "input_x_gradient": (apb.ATTRIBUTION_METHOD_INPUT_X_GRADIENT, {}),
    "integrated_gradients": (apb.ATTRIBUTION_METHOD_INTEGRATED_GRADIENTS, {"n_steps": 4}),
    "gradient_shap": (apb.ATTRIBUTION_METHOD_GRADIENT_SHAP, {"n_steps": 4}),
    "smooth_grad": (apb.ATTRIBUTION_METHOD_SMOOTH_GRAD, {"n_steps": 3}),
    "square_grad": (apb.ATTRIBUTION_METHOD_SQUARE_GRAD, {"n_steps": 3}),
    "var_grad": (apb.ATTRIBUTION_METHOD_VAR_GRAD, {"n_steps": 3}),
}


class CountingBackend:
    """An in-process backend that counts Score calls and can slow them down."""

    def __init__(self, inner, delay: float = 0.0) -> None:
        self.inner = inner
        self.delay = delay
        self.score_calls = 0
        self.cancel_calls = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score(self, *args, **kwargs):
        self.score_calls += 1
        if self.delay:
            time.sleep(self.delay)
        return self.inner.score(*args, **kwargs)

    def cancel(self) -> None:
        self.cancel_calls += 1


@pytest.fixture(scope="module")
def service(lm_backend, clf_backend):
    state = SimpleNamespace(delay=0.0, backends=[])

    def factory(model_id, context):
        inner = {"": lm_backend, "tiny-lm": lm_backend, "tiny-clf": clf_backend}.get(model_id)
        if inner is None:
            raise DownstreamError(grpc.StatusCode.NOT_FOUND, f"model-server: model {model_id!r} is not loaded")
        backend = CountingBackend(inner, state.delay)
        state.backends.append(backend)
        return backend

    servicer = AttributionServicer(backend_factory=factory, progress_interval=0.0, poll_interval=0.02)
    handle = start_server(ServerConfig(service="attribution", workers=4), servicer.register)
    assert handle.wait_ready(10)
    channel = grpc.insecure_channel(handle.address)
    yield SimpleNamespace(stub=attribution_pb2_grpc.AttributionServiceStub(channel), state=state,
                          address=handle.address)
    channel.close()
    handle.stop(grace=0)


def parameters(method: str, params: dict | None) -> apb.MethodParameters:
    """The MethodParameters of a method (its oneof field) from a dict."""
    if not params:
        return apb.MethodParameters()
    message = apb.MethodParameters()
    getattr(message, method).CopyFrom(type(getattr(message, method))(**params))
    return message


def request(method, params=None, inputs=None, model="tiny-lm", **kwargs) -> apb.ExplainRequest:
    number = METHODS[method][0] if isinstance(method, str) else method
    inputs = inputs if inputs is not None else [apb.ExplainInput(text=PROMPT, targets=apb.Targets(text=TARGET))]
    message = parameters(method, params) if isinstance(method, str) else apb.MethodParameters()
    return apb.ExplainRequest(model=model, method=number, parameters=message, inputs=inputs, **kwargs)


def run(stub, req, method="Explain"):
    events = list(getattr(stub, method)(req, timeout=60))
    kinds = [e.WhichOneof("event") for e in events]
    return events, kinds


def violations(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    out = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    return out


def item_violations(status) -> dict[str, str]:
    out = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    return out


def scores_of(attribution: apb.Attribution) -> np.ndarray:
    raw = np.frombuffer(attribution.scores.raw_contents, dtype="<f4")
    return raw.reshape(tuple(attribution.scores.shape))


# --------------------------------------------------------------------------- ListMethods


def test_list_methods(service):
    response = service.stub.ListMethods(apb.ListMethodsRequest(), timeout=10)
    by_number = {m.method: m for m in response.methods}
    assert set(by_number) == {number for number, _ in METHODS.values()}
    ks = by_number[apb.ATTRIBUTION_METHOD_KERNEL_SHAP]
    assert ks.family == "perturbation" and ks.defaults.kernel_shap.n_perturbations == 256
    assert by_number[apb.ATTRIBUTION_METHOD_SALIENCY].family == "gradient"
    assert tensor_pb2.GRANULARITY_WORD in ks.granularities
    assert tensor_pb2.GRANULARITY_SAMPLE not in ks.granularities


def test_list_methods_returns_typed_defaults_and_docs(service):
    response = service.stub.ListMethods(apb.ListMethodsRequest(), timeout=10)
    assert [m.method for m in response.methods] == [m.number for m in REGISTRY.values()]
    for info in response.methods:
        method = next(m for m in REGISTRY.values() if m.number == info.method)
        # the method's own parameter message, every field filled in with its default
        assert info.defaults.WhichOneof("method") == method.name
        message = getattr(info.defaults, method.name)
        for field in message.DESCRIPTOR.fields:
            if field.has_presence and field.name != "exact":  # exact: unset is its default
                assert message.HasField(field.name), (method.name, field.name)
        assert method.Parameters.from_proto(message) == method.defaults
        assert info.description == method.doc and "\n" not in info.description
    by_name = {m.defaults.WhichOneof("method"): m.defaults for m in response.methods}
    assert by_name["lime"].lime.regularization == 1.0 and by_name["kernel_shap"].kernel_shap.regularization == 0
    assert by_name["lime"].lime.HasField("regularization") and by_name["kernel_shap"].kernel_shap.HasField(
        "regularization")
    assert by_name["sobol"].sobol.sobol_sampler == apb.SOBOL_SAMPLER_SOBOL
    assert by_name["smooth_grad"].smooth_grad.gradient_reduction == apb.GRADIENT_REDUCTION_ABS_SUM
    assert by_name["integrated_gradients"].integrated_gradients.baseline.kind == model_pb2.BASELINE_KIND_ZERO
    # unset: the model's default, resolved per request (mask, else pad, else unk token)
    assert by_name["occlusion"].occlusion.replacement.policy == model_pb2.REPLACEMENT_POLICY_UNSPECIFIED


def test_regularization_zero_over_grpc(service, lm_backend):
    zero, _ = run(service.stub, request("lime", {"n_perturbations": 16, "regularization": 0}))
    default, _ = run(service.stub, request("lime", {"n_perturbations": 16}))
    a, b = zero[-1].result.attribution, default[-1].result.attribution
    assert a.parameters.lime.HasField("regularization") and a.parameters.lime.regularization == 0
    assert b.parameters.lime.regularization == 1.0
    assert not np.allclose(scores_of(a), scores_of(b), equal_nan=True)
    want = explain(lm_backend, "lime", {"n_perturbations": 16, "regularization": 0.0}, PROMPT, TARGET)
    np.testing.assert_allclose(scores_of(a), want.scores, atol=1e-6, equal_nan=True)


# --------------------------------------------------------------------------- every method


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_matches_in_process(service, lm_backend, method):
    number, params = METHODS[method]
    events, kinds = run(service.stub, request(method, params))
    assert kinds[-1] == "result" and kinds.count("result") == 1 and "progress" in kinds
    attribution = events[-1].result.attribution
    got = scores_of(attribution)
    want = explain(lm_backend, method, params, PROMPT, TARGET)
    np.testing.assert_allclose(got, want.scores, rtol=0, atol=1e-6, equal_nan=True)
    assert attribution.method == number
    assert list(attribution.target_elements) == want.target_elements
    assert [s.text for s in attribution.input_elements] == [s.text for s in want.input_elements]
    assert attribution.num_prompt_elements == want.num_prompt_elements
    assert attribution.parameters.WhichOneof("method") == method
    assert attribution.parameters == REGISTRY[method].parameters_to_proto(want.parameters)
    expected_granularity = tensor_pb2.GRANULARITY_WORD if method in ("occlusion", "lime", "kernel_shap", "sobol") \
        else tensor_pb2.GRANULARITY_TOKEN
    assert attribution.granularity == expected_granularity
    # generation rows: row t covers the prompt and the target elements before t
    P = attribution.num_prompt_elements
    for t in range(got.shape[0]):
        assert np.isfinite(got[t, : P + t]).all() and np.isnan(got[t, P + t:]).all()


def test_classification_with_class_names(service, clf_backend):
    inputs = [apb.ExplainInput(text="I am so happy today!",
                               targets=apb.Targets(class_names=apb.ClassNames(names=["positive", "negative"])))]
    params = {"n_perturbations": 16}
    events, _ = run(service.stub, request("kernel_shap", params, inputs, model="tiny-clf"))
    attribution = events[-1].result.attribution
    assert list(attribution.target_elements) == ["positive", "negative"]
    assert list(attribution.target_classes) == [2, 0]
    assert attribution.task == model_pb2.MODEL_TASK_SEQUENCE_CLASSIFICATION
    want = explain(clf_backend, "kernel_shap", params, "I am so happy today!", ["positive", "negative"])
    np.testing.assert_allclose(scores_of(attribution), want.scores, atol=1e-6)
    assert np.isfinite(scores_of(attribution)).all()


def test_predicted_class_and_generated_targets(service):
    inputs = [apb.ExplainInput(text="What a day.")]
    events, _ = run(service.stub, request("saliency", {}, inputs, model="tiny-clf"))
    assert len(events[-1].result.attribution.target_classes) == 1
    inputs = [apb.ExplainInput(text=PROMPT, targets=apb.Targets(max_new_tokens=3))]
    events, kinds = run(service.stub, request("saliency", {}, inputs))
    attribution = events[-1].result.attribution
    assert 1 <= len(attribution.target_token_ids) <= 3
    stages = {e.progress.stage for e in events if e.WhichOneof("event") == "progress"}
    assert "generating" in stages


# --------------------------------------------------------------------------- several inputs


def test_several_inputs_one_bad(service):
    inputs = [apb.ExplainInput(text=PROMPT, targets=apb.Targets(text=TARGET)),
              apb.ExplainInput(text="", targets=apb.Targets(text=TARGET)),
              apb.ExplainInput(text="Bob waves.", targets=apb.Targets(text=" Hi."))]
    events, kinds = run(service.stub, request("kernel_shap", {"n_perturbations": 8}, inputs))
    items = [e for e in events if e.WhichOneof("event") != "progress"]
    assert [e.WhichOneof("event") for e in items] == ["result", "item_error", "result"]
    assert [items[0].result.input_index, items[1].item_error.index, items[2].result.input_index] == [0, 1, 2]
    status = items[1].item_error.status
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "inputs[1].text" in item_violations(status)
    assert items[2].result.attribution.text == "Bob waves. Hi."
    progress = [e.progress for e in events if e.WhichOneof("event") == "progress"]
    dones = [p.done for p in progress]
    assert dones == sorted(dones) and progress[-1].done == progress[-1].total > 0
    assert all(p.done <= p.total for p in progress)
    assert progress[-1].message == "input 3/3"


# --------------------------------------------------------------------------- request errors


@pytest.mark.parametrize("case, field", [
    ("no_inputs", "inputs"),
    ("unknown_method", "method"),
    ("unspecified_method", "method"),
    ("n_perturbations", "parameters.kernel_shap.n_perturbations"),
    ("granularity", "granularity"),
    ("parameters_of_another_method", "parameters.saliency"),
    ("replacement_token_out_of_vocabulary", "parameters.lime.replacement.token_id"),
])
def test_request_errors(service, case, field):
    req = {
        "no_inputs": request("kernel_shap", inputs=[]),
        "unknown_method": request(99),
        "unspecified_method": request(0),
        "n_perturbations": request("kernel_shap", {"n_perturbations": -1}),
        "granularity": request("kernel_shap", granularity=tensor_pb2.GRANULARITY_SAMPLE),
        "parameters_of_another_method": apb.ExplainRequest(
            model="tiny-lm", method=apb.ATTRIBUTION_METHOD_INTEGRATED_GRADIENTS,
            parameters=apb.MethodParameters(saliency=apb.SaliencyParameters(batch_size=4)),
            inputs=[apb.ExplainInput(text=PROMPT)]),
        "replacement_token_out_of_vocabulary": request(
            "lime", {"replacement": model_pb2.Replacement(policy=model_pb2.REPLACEMENT_POLICY_TOKEN_ID,
                                                          token_id=10 ** 9)}),
    }[case]
    with pytest.raises(grpc.RpcError) as info:
        run(service.stub, req)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(info.value), (info.value.details(), violations(info.value))


def test_parameters_of_an_older_contract_are_refused_not_ignored(service):
    # what a client built before each method had its own message sends for
    # KernelShap(n_perturbations=64, regularization=0.5): the flat fields 1 and 9
    import struct

    stale = apb.MethodParameters()
    stale.ParseFromString(bytes([1 << 3 | 0, 64]) + bytes([9 << 3 | 5]) + struct.pack("<f", 0.5))
    assert stale.WhichOneof("method") is None  # protobuf keeps them as unknown fields
    req = apb.ExplainRequest(model="tiny-lm", method=apb.ATTRIBUTION_METHOD_KERNEL_SHAP, parameters=stale,
                             inputs=[apb.ExplainInput(text=PROMPT)])
    with pytest.raises(grpc.RpcError) as info:
        run(service.stub, req)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "parameters" in violations(info.value)
    assert "numbers 1, 9" in info.value.details() and "older attribution.proto" in info.value.details()


def test_unknown_model_keeps_upstream_code(service):
    with pytest.raises(grpc.RpcError) as info:
        run(service.stub, request("saliency", model="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in info.value.details()


@pytest.mark.parametrize("case", ["too_long", "unknown_class", "class_for_lm", "text_for_classifier"])
def test_item_errors(service, case):
    model, targets = {
        "too_long": ("tiny-lm", apb.Targets(text=" word" * 600)),
        "unknown_class": ("tiny-clf", apb.Targets(class_names=apb.ClassNames(names=["joyful"]))),
        "class_for_lm": ("tiny-lm", apb.Targets(class_indices=apb.ClassIndices(indices=[1]))),
        "text_for_classifier": ("tiny-clf", apb.Targets(text="positive")),
    }[case]
    inputs = [apb.ExplainInput(text=PROMPT, targets=targets)]
    events, kinds = run(service.stub, request("saliency", inputs=inputs, model=model))
    assert kinds[-1] == "item_error"
    status = events[-1].item_error.status
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "inputs[0].targets" in item_violations(status), status.message
    if case == "unknown_class":
        assert "'joyful'" in status.message and "positive" in status.message


# --------------------------------------------------------------------------- cancellation and deadlines


def _slow_request():
    inputs = [apb.ExplainInput(text="One two three four five six seven eight nine ten.",
                               targets=apb.Targets(text=" Eleven."))] * 3
    return request("kernel_shap", {"n_perturbations": 400, "batch_size": 2}, inputs)


def test_cancel_stops_scoring(service):
    service.state.delay = 0.02
    try:
        call = service.stub.Explain(_slow_request(), timeout=60)
        for event in call:
            if event.WhichOneof("event") == "progress" and event.progress.done >= 4:
                break
        backend = service.state.backends[-1]
        call.cancel()
        time.sleep(0.3)
        at_cancel = backend.score_calls
        time.sleep(0.5)
        assert backend.score_calls == at_cancel, "scoring went on after the call was cancelled"
        assert at_cancel < 50
        assert backend.cancel_calls >= 1
    finally:
        service.state.delay = 0.0


def test_deadline_stops_scoring(service):
    service.state.delay = 0.02
    try:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            list(service.stub.Explain(_slow_request(), timeout=0.5))
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 5
        backend = service.state.backends[-1]
        time.sleep(0.3)
        at_end = backend.score_calls
        time.sleep(0.4)
        assert backend.score_calls == at_end
    finally:
        service.state.delay = 0.0


# --------------------------------------------------------------------------- metrics


@pytest.fixture(scope="module")
def explained(service):
    inputs = [apb.ExplainInput(text=PROMPT, targets=apb.Targets(text=TARGET)),
              apb.ExplainInput(text="Bob waves at the crowd.", targets=apb.Targets(text=" Hello."))]
    events, _ = run(service.stub, request("kernel_shap", {"n_perturbations": 32}, inputs))
    return [e.result.attribution for e in events if e.WhichOneof("event") == "result"]


@pytest.mark.parametrize("metric", [apb.ATTRIBUTION_METRIC_DELETION, apb.ATTRIBUTION_METRIC_INSERTION])
def test_metrics_match_in_process(service, lm_backend, explained, metric):
    req = apb.EvaluateAttributionsRequest(model="tiny-lm", metric=metric, attributions=explained, n_random_orders=3,
                                          seed=5)
    events, kinds = run(service.stub, req, "EvaluateAttributions")
    results = [e.result for e in events if e.WhichOneof("event") == "result"]
    assert [r.input_index for r in results] == [0, 1] and "progress" in kinds
    name = "deletion" if metric == apb.ATTRIBUTION_METRIC_DELETION else "insertion"
    for i, r in enumerate(results):
        want = evaluate(lm_backend, name, attribution_from_proto(explained[i], i), n_random_orders=3, seed=5)
        assert r.metric == metric
        assert r.curve.auc == pytest.approx(want.curve.auc, abs=1e-6)
        assert r.random_curve.auc == pytest.approx(want.random_curve.auc, abs=1e-6)
        np.testing.assert_allclose(list(r.curve.scores), want.curve.scores, atol=1e-6)
        assert list(r.curve.fractions)[0] == 0 and list(r.curve.fractions)[-1] == 1
        per = np.frombuffer(r.per_target_scores.raw_contents, "<f4").reshape(tuple(r.per_target_scores.shape))
        np.testing.assert_allclose(per, want.per_target_scores, atol=1e-6)


def test_metric_item_and_request_errors(service, explained):
    bad = apb.Attribution()
    bad.CopyFrom(explained[0])
    bad.scores.shape[:] = [1, 1]
    bad.scores.raw_contents = np.zeros(1, "<f4").tobytes()
    req = apb.EvaluateAttributionsRequest(model="tiny-lm", metric=apb.ATTRIBUTION_METRIC_DELETION,
                                          attributions=[explained[0], bad], n_random_orders=-1)
    events, _ = run(service.stub, req, "EvaluateAttributions")
    items = [e for e in events if e.WhichOneof("event") != "progress"]
    assert [e.WhichOneof("event") for e in items] == ["result", "item_error"]
    assert not items[0].result.HasField("random_curve")
    assert "attributions[1].scores" in item_violations(items[1].item_error.status)
    for req, field in [
        (apb.EvaluateAttributionsRequest(model="tiny-lm", attributions=explained), "metric"),
        (apb.EvaluateAttributionsRequest(model="tiny-lm", metric=1), "attributions"),
        (apb.EvaluateAttributionsRequest(model="tiny-lm", metric=1, attributions=explained, n_steps=-2), "n_steps"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            run(service.stub, req, "EvaluateAttributions")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations(info.value)


def test_concurrent_calls(service):
    results = {}

    def one(i):
        inputs = [apb.ExplainInput(text=f"Call number {i} starts.", targets=apb.Targets(text=" Done."))]
        events, _ = run(service.stub, request("occlusion", {}, inputs))
        results[i] = events[-1].result.attribution.text

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: f"Call number {i} starts. Done." for i in range(3)}
