"""The attribution-service as a real process (`xaimesh serve attribution`),
calling a real model-server process (the tiny Llama LM and classifier),
driven through the SDK. Every number is compared with the same computation
run in-process on the model-server engine: the gRPC path changes nothing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

_ATTR_TESTS = Path(__file__).resolve().parents[1] / "unit" / "attribution"
if str(_ATTR_TESTS) not in sys.path:
    sys.path.insert(0, str(_ATTR_TESTS))

PROMPT = "Alice and Bob enter the bar, "
TARGET = "then Alice offers a drink to Bob."
TOL = 1e-5


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")


@pytest.fixture(scope="module")
def attribution(module_launcher, model_server):
    return module_launcher.start("attribution", "--model-server-address", model_server.address)


@pytest.fixture(scope="module")
def mesh(model_server, attribution):
    import xaimesh

    mesh = xaimesh.connect(model_server=model_server.address, attribution=attribution.address, wait_seconds=30)
    yield mesh
    mesh.close()


@pytest.fixture(scope="module")
def engine(tiny_lm_path, tiny_classifier_path):
    """In-process backends over the model-server engine, on the same model files."""
    import torch
    from attr_backends import engine_backend

    torch.set_num_threads(1)
    return {"lm": engine_backend(tiny_lm_path, "tiny-llama-causal"),
            "clf": engine_backend(tiny_classifier_path, "tiny-llama-classifier")}


def _result(out):
    from xaimesh_attribution.server import attribution_from_proto

    return attribution_from_proto(out.to_proto(), 0)


def test_kernel_shap_generation_with_text_targets(mesh, engine):
    from xaimesh import KernelShap
    from xaimesh.attributions import Granularity
    from xaimesh_attribution import explain

    model = mesh.model()
    assert model.model_id == "tiny-llama-causal"
    (out,) = KernelShap(model, n_perturbations=64, granularity=Granularity.WORD, seed=3)(
        model_inputs=PROMPT, targets=TARGET)
    want = explain(engine["lm"], "kernel_shap", {"n_perturbations": 64, "seed": 3}, PROMPT, TARGET,
                   granularity="word")
    np.testing.assert_allclose(out.attributions, want.scores, rtol=0, atol=TOL, equal_nan=True)
    # rows are the target elements; row t covers the prompt and the target elements before t
    assert [e.strip() for e in out.target_elements] == TARGET.split()
    P, T = out.num_prompt_elements, len(out.target_elements)
    assert [e.strip() for e in out.elements[:P]] == PROMPT.split() and out.shape == (T, P + T)
    for t in range(T):
        assert np.isfinite(out.attributions[t, : P + t]).all() and np.isnan(out.attributions[t, P + t:]).all()
    np.testing.assert_allclose(out.target_scores, want.target_scores, atol=TOL)
    assert out.text == PROMPT + TARGET and out.model_id == "tiny-llama-causal"


def test_classification_with_class_names(mesh, engine):
    from xaimesh import Lime
    from xaimesh_attribution import explain

    model = mesh.model("tiny-llama-classifier")
    assert model.is_classifier
    texts = ["I am so happy today!", "This is terrible news."]
    outputs = Lime(model, n_perturbations=48)(texts, targets=["positive", "negative"])
    for out, text in zip(outputs, texts, strict=True):
        assert out.target_elements == ["positive", "negative"] and out.target_classes == [2, 0]
        want = explain(engine["clf"], "lime", {"n_perturbations": 48}, text, ["positive", "negative"])
        np.testing.assert_allclose(out.attributions, want.scores, atol=TOL)
        assert np.isfinite(out.attributions).all()


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_gradient_methods_on_the_lm(mesh, engine, method):
    from xaimesh import IntegratedGradients, Saliency
    from xaimesh_attribution import explain

    model = mesh.model()
    if method == "saliency":
        explainer, params = Saliency(model), {}
    else:
        explainer, params = IntegratedGradients(model, n_steps=16), {"n_steps": 16}
    (out,) = explainer(PROMPT, TARGET)
    want = explain(engine["lm"], method, params, PROMPT, TARGET)
    np.testing.assert_allclose(out.attributions, want.scores, rtol=1e-4, atol=TOL, equal_nan=True)
    assert out.granularity == "token" and out.inference_mode == "logits"


def test_generated_targets(mesh, engine):
    from xaimesh import Occlusion
    from xaimesh_attribution import explain

    (out,) = Occlusion(mesh.model())(PROMPT, max_new_tokens=4)
    want = explain(engine["lm"], "occlusion", {}, PROMPT, None, max_new_tokens=4)
    assert out.target_token_ids == want.target_token_ids
    np.testing.assert_allclose(out.attributions, want.scores, atol=TOL, equal_nan=True)


def test_deletion_and_insertion_with_random_baselines(mesh, engine):
    from xaimesh import KernelShap
    from xaimesh.attributions.metrics import Deletion, Insertion
    from xaimesh_attribution import evaluate

    model = mesh.model()
    outputs = KernelShap(model, n_perturbations=64)([PROMPT, "The cat sat on the mat, "],
                                                    [TARGET, "and then it slept."])
    for cls, name in ((Deletion, "deletion"), (Insertion, "insertion")):
        auc, detailed = cls(model, n_random_orders=5, seed=1).evaluate(outputs)
        assert detailed.better == ("lower" if name == "deletion" else "higher")
        wants = [evaluate(engine["lm"], name, _result(o), n_random_orders=5, seed=1) for o in outputs]
        assert auc == pytest.approx(np.mean([w.curve.auc for w in wants]), abs=TOL)
        for got, want in zip(detailed, wants, strict=True):
            assert got.random_auc is not None and got.random_scores is not None
            assert got.auc == pytest.approx(want.curve.auc, abs=TOL)
            assert got.random_auc == pytest.approx(want.random_curve.auc, abs=TOL)
            np.testing.assert_allclose(got.scores, want.curve.scores, atol=TOL)
            np.testing.assert_allclose(got.per_target_scores, want.per_target_scores, atol=TOL)
            assert got.fractions[0] == 0 and got.fractions[-1] == 1


def test_errors_through_the_sdk(mesh):
    from xaimesh import KernelShap, Occlusion
    from xaimesh.errors import InvalidArgumentError

    clf = mesh.model("tiny-llama-classifier")
    with pytest.raises(InvalidArgumentError) as info:
        Occlusion(clf)("Great!", targets="joyful")
    assert "unknown class name 'joyful'" in str(info.value)
    assert info.value.field_violations[0].field == "inputs[0].targets"
    outputs = Occlusion(mesh.model())([PROMPT, PROMPT], [TARGET, " word" * 600], errors="none")
    assert outputs[0] is not None and outputs[1] is None
    with pytest.raises(InvalidArgumentError):
        KernelShap(mesh.model(), n_perturbations=0)


def test_request_errors_and_cancel_over_raw_grpc(attribution):
    from xaimesh_contracts.v1 import attribution_pb2 as apb
    from xaimesh_contracts.v1 import attribution_pb2_grpc

    with grpc.insecure_channel(attribution.address) as channel:
        stub = attribution_pb2_grpc.AttributionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Explain(apb.ExplainRequest(method=apb.ATTRIBUTION_METHOD_KERNEL_SHAP,
                                                 parameters=apb.MethodParameters(
                                                     kernel_shap=apb.KernelShapParameters(n_perturbations=-1)),
                                                 inputs=[apb.ExplainInput(text="x")]), timeout=30))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "n_perturbations" in info.value.details()
        # a long job, cancelled at its first progress event: the call ends at once
        request = apb.ExplainRequest(method=apb.ATTRIBUTION_METHOD_KERNEL_SHAP,
                                     parameters=apb.MethodParameters(kernel_shap=apb.KernelShapParameters(
                                         n_perturbations=20000, batch_size=4)),
                                     inputs=[apb.ExplainInput(text=PROMPT, targets=apb.Targets(text=TARGET))])
        call = stub.Explain(request, timeout=120)
        started = time.monotonic()
        for event in call:
            if event.WhichOneof("event") == "progress" and event.progress.done > 0:
                call.cancel()
                break
        assert call.code() == grpc.StatusCode.CANCELLED and time.monotonic() - started < 60
        # the service is still healthy and answers
        assert stub.ListMethods(apb.ListMethodsRequest(), timeout=10).methods


def test_waits_for_the_model_server(launcher):
    """Pointed at an address where nothing answers, the service starts and
    stays NOT_SERVING (it keeps retrying) instead of exiting."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    nowhere = f"127.0.0.1:{_free_port()}"
    port = _free_port()
    proc = launcher.start("attribution", "--model-server-address", nowhere, "--health-poll-s", "0.2",
                          port=port, wait=False)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                break
            except grpc.RpcError:
                time.sleep(0.1)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        time.sleep(1.0)
        assert proc.process.poll() is None
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
            health_pb2.HealthCheckResponse.NOT_SERVING


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
