"""Inputs -> concepts attributions (concepts.py, docs/inputs-to-concepts.md)
over the model-server engine with the tiny LM: planted structure (a probe
that is one token's indicator attributes to that token), Occlusion against
a brute-force computation on the bare transformers model with the same
encoder, Integrated Gradients' completeness, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xaimesh_attribution.backend import ModelDescription
from xaimesh_attribution.concepts import ConceptEncoder
from xaimesh_attribution.explainer import explain_input, prepare
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

TEXT = "Alice offers a drink to Bob."
WORD = "drink"


def _split_rows(loaded, ids: torch.Tensor) -> np.ndarray:
    out = []
    handle = loaded.model.get_submodule(loaded.split_points[0]).register_forward_hook(
        lambda m, a, o: out.append((o[0] if isinstance(o, tuple) else o).detach()))
    try:
        with torch.no_grad():
            loaded.model(ids)
    finally:
        handle.remove()
    return out[0].reshape(-1, out[0].shape[-1]).float().numpy()


@pytest.fixture(scope="module")
def planted(lm_backend):
    """An encoder whose concept 0 is a least-squares probe of "is this token ' drink'"
    at layer 0, fitted on random contexts (held out: every ' drink' row scores
    above every other row), and concept 1 a random direction."""
    from xaimesh_model_server.tokenization import tokenize

    loaded = lm_backend.loaded
    (token,) = tokenize(loaded, " " + WORD, add_special_tokens=False).token_ids
    rng = np.random.default_rng(0)

    def rows(n):
        seqs = rng.integers(100, 5000, size=(n, 12))
        seqs[rng.random(seqs.shape) < 0.15] = token
        return _split_rows(loaded, torch.from_numpy(seqs)), seqs.reshape(-1) == token

    X, y = rows(400)
    coef = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y.astype(np.float64), rcond=None)[0]
    X_test, y_test = rows(100)
    held_out = X_test @ coef[:-1] + coef[-1]
    assert held_out[y_test].min() > held_out[~y_test].max()  # the probe is the token's indicator
    width = loaded.hidden_size
    weight = np.c_[coef[:-1], rng.normal(size=width) / np.sqrt(width)].astype(np.float32)
    bias = np.array([coef[-1], 0.0], np.float32)
    return ConceptEncoder(split_point="0", weight=weight, bias=bias, pooling="max")


def _explain(backend, encoder, method, params=None, granularity="word"):
    plan = prepare(backend, method, params, granularity, concept_encoder=encoder)
    return explain_input(backend, plan, TEXT)


@pytest.mark.parametrize("method", ["occlusion", "saliency", "input_x_gradient", "integrated_gradients"])
def test_the_planted_token_gets_the_concepts_attribution(lm_backend, planted, method):
    result = _explain(lm_backend, planted, method)
    words = [s.text.strip() for s in result.input_elements]
    assert result.scores.shape == (2, len(words))
    assert result.target_classes == [0, 1] and result.target_elements == ["concept 0", "concept 1"]
    assert words[int(np.argmax(np.abs(result.scores[0])))] == WORD
    assert result.target_scores[0] > 0.5  # the concept is on in the text


def test_occlusion_equals_a_brute_force_on_the_bare_model(lm_backend, planted, tiny_lm_path):
    import transformers

    bare = transformers.AutoModelForCausalLM.from_pretrained(tiny_lm_path, dtype=torch.float32).eval()
    encoder = ConceptEncoder(**{**planted.__dict__, "pooling": "mean", "concepts": (1, 0)})
    result = _explain(lm_backend, encoder, "occlusion")
    ids = np.asarray(result.input_ids)
    replacement = result.parameters.replacement.token_id

    def pooled(seq):
        captured = []
        handle = bare.get_submodule(lm_backend.loaded.split_points[0]).register_forward_hook(
            lambda m, a, o: captured.append(o[0] if isinstance(o, tuple) else o))
        with torch.no_grad():
            bare(torch.from_numpy(np.asarray(seq)[None]))
        handle.remove()
        h = captured[0][0].double().numpy()
        return (h @ encoder.weight.astype(np.float64) + encoder.bias)[:, [1, 0]].mean(0)

    full = pooled(ids)
    expected = np.stack([full - pooled(np.where((np.arange(len(ids)) >= s.start_token)
                                                & (np.arange(len(ids)) < s.end_token), replacement, ids))
                         for s in result.input_elements], axis=1)
    assert result.target_classes == [1, 0]
    assert np.abs(result.scores - expected).max() <= 1e-4 * np.abs(expected).max()
    assert np.abs(result.target_scores - full).max() <= 1e-4 * np.abs(full).max()


def test_integrated_gradients_are_complete_for_a_concept(lm_backend, planted):
    """IG sums to s(x) - s(baseline) (zero embeddings) up to the path's discretisation."""
    from xaimesh_model_server import engine

    result = _explain(lm_backend, planted, "integrated_gradients", {"n_steps": 64}, granularity="all_tokens")
    readout = lm_backend._readout(planted)
    x = engine.input_embeddings(lm_backend.loaded, result.input_ids)
    at_baseline = engine.gradients(lm_backend.loaded, result.input_ids, embeddings=torch.zeros_like(x)[None],
                                   concept_readout=readout)["scores"][0]
    gap = result.target_scores - at_baseline
    assert np.abs(result.scores.sum(1) - gap).max() <= 0.05 * np.abs(gap).max()


def test_requests_a_concept_explanation_cannot_take_are_refused(lm_backend, planted):
    with pytest.raises(InvalidArgument) as e:
        prepare(lm_backend, "occlusion", None, concept_encoder=ConceptEncoder(**{**planted.__dict__,
                                                                              "concepts": (2,)}))
    assert e.value.field == "concept_encoder.concepts" and "2 concepts" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        prepare(lm_backend, "occlusion", None, inference_mode="softmax", concept_encoder=planted)
    assert e.value.field == "inference_mode"
    plan = prepare(lm_backend, "occlusion", None, concept_encoder=planted)
    with pytest.raises(InvalidArgument) as e:
        explain_input(lm_backend, plan, TEXT, " and then")
    assert e.value.field == "targets"
    seq2seq = ModelDescription(model_id="t5", task="seq2seq_lm")
    with pytest.raises(FailedPrecondition) as e:
        prepare(lm_backend, "occlusion", None, desc=seq2seq, concept_encoder=planted)
    assert "encoder-decoder" in e.value.message
