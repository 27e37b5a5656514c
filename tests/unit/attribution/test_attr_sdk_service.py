"""The SDK against the attribution servicer over real gRPC, in-process (the
model-server engine behind it, no model-server process): explainers and
metrics give exactly the in-process numbers; targets, item errors, progress."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from xaimesh.attributions import Granularity, IntegratedGradients, KernelShap, Occlusion, Saliency
from xaimesh.attributions.metrics import Deletion, Insertion
from xaimesh.errors import InvalidArgumentError
from xaimesh.mesh import Mesh, RemoteModel
from xaimesh_contracts.v1 import model_pb2
from xaimesh_attribution import evaluate, explain
from xaimesh_runtime.errors import DownstreamError
from xaimesh_attribution.results import AttributionResult
from xaimesh_attribution.server import AttributionServicer
from xaimesh_runtime.config import ServerConfig
from xaimesh_runtime.server import start_server

PROMPT = "Alice and Bob enter the bar, "
TARGET = "then Alice offers a drink."


@pytest.fixture(scope="module")
def mesh(lm_backend, clf_backend):
    backends = {"tiny-lm": lm_backend, "tiny-clf": clf_backend}

    def factory(model_id, context):
        if model_id not in backends:
            raise DownstreamError(grpc.StatusCode.NOT_FOUND, f"model-server: no model {model_id!r}")
        return backends[model_id]

    servicer = AttributionServicer(backend_factory=factory)
    handle = start_server(ServerConfig(service="attribution", workers=4), servicer.register)
    assert handle.wait_ready(10)
    mesh = Mesh({"attribution": handle.address})
    yield mesh
    mesh.close()
    handle.stop(grace=0)


@pytest.fixture(scope="module")
def lm(mesh):
    return RemoteModel(mesh, model_pb2.ModelInfo(model_id="tiny-lm", task=model_pb2.MODEL_TASK_CAUSAL_LM))


@pytest.fixture(scope="module")
def clf(mesh):
    return RemoteModel(mesh, model_pb2.ModelInfo(model_id="tiny-clf",
                                                 task=model_pb2.MODEL_TASK_SEQUENCE_CLASSIFICATION))


def _as_result(out) -> AttributionResult:
    """An SDK output as the logic's AttributionResult (no input ids: rebuilt by tokenizing)."""
    from xaimesh_attribution.server import attribution_from_proto

    return attribution_from_proto(out.to_proto(), 0)


def test_kernel_shap_generation(lm, lm_backend, capsys):
    outputs = KernelShap(lm, n_perturbations=32, granularity=Granularity.WORD, seed=1)(
        model_inputs=PROMPT, targets=TARGET)
    assert len(outputs) == 1
    out = outputs[0]
    want = explain(lm_backend, "kernel_shap", {"n_perturbations": 32, "seed": 1}, PROMPT, TARGET, granularity="word")
    np.testing.assert_allclose(out.attributions, want.scores, atol=1e-6, equal_nan=True)
    assert [e.strip() for e in out.target_elements] == ["then", "Alice", "offers", "a", "drink."]
    assert out.elements[out.num_prompt_elements:] == out.target_elements
    assert out.method == "kernel_shap" and out.model_id == "tiny-lm" and out.parameters["n_perturbations"] == 32
    P = out.num_prompt_elements
    for t in range(len(out.target_elements)):  # row t: the prompt and the target elements before t
        assert np.isfinite(out.attributions[t, : P + t]).all() and np.isnan(out.attributions[t, P + t:]).all()
    assert out.input_text == PROMPT and out.target_text == TARGET
    assert "input 1/1" in capsys.readouterr().err  # the progress bar (tqdm, stderr), fed by progress events


def test_gradient_methods_and_several_inputs(lm, lm_backend):
    texts = [PROMPT, "Bob waves."]
    targets = [TARGET, " Hello there."]
    outputs = IntegratedGradients(lm, n_steps=6)(texts, targets)
    for out, text, target in zip(outputs, texts, targets, strict=True):
        want = explain(lm_backend, "integrated_gradients", {"n_steps": 6}, text, target)
        np.testing.assert_allclose(out.attributions, want.scores, atol=1e-6, equal_nan=True)
        assert out.granularity == "token" and out.aggregation == "sum"
    out = Saliency(lm)(PROMPT, lm_backend.tokenize(" then", False).token_ids)[0]
    assert out.target_elements == [" then"]


def test_classification_with_class_names(clf, clf_backend):
    out = Occlusion(clf)("I am so happy today!", targets=["positive", "neutral"])[0]
    assert out.target_elements == ["positive", "neutral"] and out.target_classes == [2, 1]
    want = explain(clf_backend, "occlusion", {}, "I am so happy today!", ["positive", "neutral"])
    np.testing.assert_allclose(out.attributions, want.scores, atol=1e-6)
    out = Occlusion(clf)(["Great!", "Awful."], targets=[["negative"], [0, 2]])
    assert [o.target_classes for o in out] == [[0], [0, 2]]
    with pytest.raises(InvalidArgumentError, match="unknown class name 'joyful'"):
        Occlusion(clf)("Great!", targets="joyful")


def test_item_error_raises_or_leaves_none(lm):
    explainer = Occlusion(lm, show_progress=False)
    with pytest.raises(InvalidArgumentError) as info:
        explainer([PROMPT, ""], TARGET)
    assert "input 1" in str(info.value) and info.value.field_violations[0].field == "inputs[1].text"
    outputs = explainer([PROMPT, ""], TARGET, errors="none")
    assert outputs[0] is not None and outputs[1] is None
    with pytest.raises(InvalidArgumentError) as info:
        KernelShap(lm, n_perturbations=8, granularity="sentence", inference_mode="logits",
                   replacement="mask_token")(PROMPT, TARGET)  # the tokenizer has no mask token
    assert info.value.field_violations[0].field == "parameters.kernel_shap.replacement.policy"


def test_metrics_match_in_process(lm, lm_backend):
    outputs = KernelShap(lm, n_perturbations=32)([PROMPT, "Bob waves at Carol."], [TARGET, " She waves back."])
    for cls, name in ((Deletion, "deletion"), (Insertion, "insertion")):
        auc, detailed = cls(lm, n_random_orders=4, seed=2).evaluate(outputs)
        wants = [evaluate(lm_backend, name, _as_result(o), n_random_orders=4, seed=2) for o in outputs]
        assert auc == pytest.approx(np.mean([w.curve.auc for w in wants]), abs=1e-6)
        for got, want in zip(detailed, wants, strict=True):
            assert got.auc == pytest.approx(want.curve.auc, abs=1e-6)
            assert got.random_auc == pytest.approx(want.random_curve.auc, abs=1e-6)
            np.testing.assert_allclose(got.scores, want.curve.scores, atol=1e-6)
            np.testing.assert_allclose(got.random_scores, want.random_curve.scores, atol=1e-6)
            np.testing.assert_allclose(got.per_target_scores, want.per_target_scores, atol=1e-6)
        assert detailed.better == cls.better
