"""Inputs -> concepts attributions over real services (model-server,
concept-service, attribution-service processes; docs/inputs-to-concepts.md):
a probe that is one token's indicator attributes to that token, Occlusion's
numbers equal a brute force on the bare model with the exported encoder,
every concept of a PCA model at once, and the refusals."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch

import xaimesh
from tests.fixtures.planted_concepts import split_rows, token_indicator_rows
from tests.integration.test_concept_service import TEXTS, _quiet  # noqa: F401 (autouse fixture)
from xaimesh import plot_attributions
from xaimesh.concepts import LinearProbe, PCAConcepts, SemiNMFConcepts, upload_activations
from xaimesh.errors import InvalidArgumentError, NotFoundError
from xaimesh_contracts.tensors import to_numpy

TEXT = "Alice offers a drink to Bob."
WORD = "drink"
SPLIT = "model.layers.0"


@pytest.fixture(scope="module")
def mesh(module_launcher, model_server, tmp_path_factory):
    concept = module_launcher.start("concept", "--model-server-address", model_server.address, "--data-dir",
                                    str(tmp_path_factory.mktemp("concept-data")), "--device", "cpu")
    attribution = module_launcher.start("attribution", "--model-server-address", model_server.address)
    with xaimesh.connect(model_server.address, concept=concept.address, attribution=attribution.address,
                         wait_seconds=30) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def bare(tiny_lm_path):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(tiny_lm_path, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def probe(mesh, bare):
    """A least-squares probe of "this token is ' drink'" at layer 0, fitted on random contexts."""
    model = mesh.model()
    (token,) = model.tokenizer.encode(" " + WORD, add_special_tokens=False)
    X, y = token_indicator_rows(bare, SPLIT, token)
    rows = upload_activations(model, X.astype(np.float32), split_point=SPLIT)
    probe = LinearProbe(model, split_point=SPLIT, method="linear_regression", test_fraction=0.2, seed=0)
    probe.fit(rows, y.astype(np.int64), concept_names=[WORD])
    assert probe.metrics_[WORD]["test_auc"] > 0.99
    return probe


@pytest.mark.parametrize("method", ["Occlusion", "KernelShap", "Saliency", "IntegratedGradients"])
def test_a_token_indicator_concept_attributes_to_its_token(probe, method):
    (out,) = probe.input_concept_attribution(TEXT, method, show_progress=False)
    words = [e.strip() for e in out.elements]
    assert out.attributions.shape == (1, len(words))
    assert words[int(np.argmax(np.abs(out.attributions[0])))] == WORD
    assert out.explains_concepts and out.target_text == ""
    assert WORD in plot_attributions(out).html() and "One row per concept" in plot_attributions(out).html()
    assert "concepts: concept 0" in str(plot_attributions(out))


def test_occlusion_equals_a_brute_force_with_the_exported_encoder(mesh, probe, bare):
    from xaimesh.concepts.inputs import concept_encoder

    (out,) = probe.input_concept_attribution(TEXT, "Occlusion", pooling="mean", show_progress=False)
    encoder = concept_encoder(probe, pooling="mean").encoder
    weight, bias = to_numpy(encoder.weight).astype(np.float64), to_numpy(encoder.bias).astype(np.float64)
    ids = np.asarray(out.input_ids)
    replacement = out.parameters["replacement"]["token_id"]

    def pooled(seq):
        return (split_rows(bare, SPLIT, seq[None]) @ weight + bias).mean(0)

    full = pooled(ids)
    positions = np.arange(len(ids))
    expected = np.stack([full - pooled(np.where((positions >= e.start_token) & (positions < e.end_token),
                                                replacement, ids)) for e in out.segments], axis=1)
    assert np.abs(out.attributions - expected).max() <= 1e-4 * np.abs(expected).max()


def test_every_concept_of_a_pca_model_at_once(mesh):
    split_model = xaimesh.ModelWithSplitPoints(mesh.model(), split_points=[SPLIT])
    activations = split_model.get_activations(TEXTS, activation_granularity="TOKEN", show_progress=False)
    pca = PCAConcepts(split_model, nb_concepts=3).fit(activations)
    outs = pca.input_concept_attribution([TEXT, "the cat sat"], "Lime", n_perturbations=64, seed=0,
                                         show_progress=False)
    assert [o.attributions.shape[0] for o in outs] == [3, 3]
    assert all(np.isfinite(o.attributions).all() for o in outs)
    (two,) = pca.input_concept_attribution(TEXT, "InputXGradient", concepts=[2, 0], show_progress=False)
    assert two.target_elements == ["concept 2", "concept 0"] and two.target_classes == [2, 0]


def test_bad_requests_get_a_clear_status(mesh, probe):
    with pytest.raises(InvalidArgumentError, match="out of range") as info:
        probe.input_concept_attribution(TEXT, "Occlusion", concepts=[3], show_progress=False)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(NotFoundError):
        type(probe).load(mesh, "conceptModels/nope")
    from xaimesh.concepts.inputs import concept_encoder

    ghost = PCAConcepts(mesh.model(), nb_concepts=2, split_point=SPLIT)
    ghost.concept_model_ = "conceptModels/nope"
    with pytest.raises(NotFoundError):
        concept_encoder(ghost)
    rows = upload_activations(mesh.model(), np.abs(np.random.default_rng(0).normal(size=(40, 64))).astype(np.float32),
                              split_point=SPLIT)
    nmf = SemiNMFConcepts(mesh.model(), nb_concepts=2, split_point=SPLIT, max_iterations=10).fit(rows)
    with pytest.raises(InvalidArgumentError, match="closed form") as info:
        nmf.input_concept_attribution(TEXT, "Saliency", show_progress=False)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(InvalidArgumentError, match="inference_mode"):
        probe.input_concept_attribution(TEXT, "Occlusion", inference_mode="softmax", show_progress=False)


def test_topk_inputs_over_the_vocabulary(mesh, probe):
    """TopKInputs(use_vocab=True): every token alone through the model; the
    planted concept's top token is ' drink'."""
    from xaimesh.concepts import TopKInputs

    (top,) = TopKInputs(probe, k=3, use_vocab=True).interpret().values()
    assert list(top)[0] == " " + WORD and len(top) == 3
    assert list(top.values()) == sorted(top.values(), reverse=True)
    rows = upload_activations(mesh.model(), np.abs(np.random.default_rng(0).normal(size=(40, 64))).astype(np.float32),
                              split_point=SPLIT)
    nmf = SemiNMFConcepts(mesh.model(), nb_concepts=2, split_point=SPLIT, max_iterations=10).fit(rows)
    with pytest.raises(InvalidArgumentError, match="closed form") as info:
        TopKInputs(nmf, use_vocab=True).interpret()
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_topk_inputs_over_unique_words(mesh, bare):
    """TopKInputs(use_unique_words=2): each 1- and 2-gram of the texts runs as
    its own text (SAMPLE, mean over its tokens); a probe of the token that
    "water" alone is (without a leading space: " water" is another token)
    ranks "water" first and the one 2-gram that starts with it next."""
    from xaimesh.concepts import TopKInputs

    model = mesh.model()
    (token,) = model.tokenizer.encode("water", add_special_tokens=False)
    X, y = token_indicator_rows(bare, SPLIT, token)
    probe = LinearProbe(model, split_point=SPLIT, method="linear_regression", test_fraction=0.2, seed=0)
    probe.fit(upload_activations(model, X.astype(np.float32), split_point=SPLIT), y.astype(np.int64),
              concept_names=["water"])
    texts = ["Alice offers water to Bob.", "the cat sat on the mat", "Bob wants water"]
    (top,) = TopKInputs(probe, k=4, use_unique_words=2, show_progress=False).interpret(inputs=texts).values()
    assert list(top)[:2] == ["water", "water to"]
    with pytest.raises(ValueError, match="CLS_TOKEN or SAMPLE"):
        TopKInputs(probe, "TOKEN", use_unique_words=1)
