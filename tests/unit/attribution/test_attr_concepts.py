"""Inputs -> concepts attributions (concepts.py, docs/inputs-to-concepts.md)
over the model-server engine with the tiny LM: planted structure (a probe
that is one token's indicator attributes to that token), Occlusion against
a brute-force computation on the bare transformers model with the same
encoder, Integrated Gradients' completeness, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fixtures.planted_concepts import split_rows, token_indicator_probe
from xaimesh_attribution.backend import ModelDescription
from xaimesh_attribution.concepts import ConceptEncoder
from xaimesh_attribution.explainer import explain_input, prepare
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

TEXT = "Alice offers a drink to Bob."
WORD = "drink"


@pytest.fixture(scope="module")
def planted(lm_backend):
    """An encoder whose concept 0 is a least-squares probe of "is this token ' drink'"
    at layer 0 (tests/fixtures/planted_concepts.py), and concept 1 a random direction."""
    from xaimesh_model_server.tokenization import tokenize

    loaded = lm_backend.loaded
    (token,) = tokenize(loaded, " " + WORD, add_special_tokens=False).token_ids
    weight, bias = token_indicator_probe(loaded.model, loaded.split_points[0], token)
    width = loaded.hidden_size
    random = np.random.default_rng(0).normal(size=width) / np.sqrt(width)
    return ConceptEncoder(split_point="0", weight=np.c_[weight, random].astype(np.float32),
                          bias=np.array([bias, 0.0], np.float32), pooling="max")


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
        h = split_rows(bare, lm_backend.loaded.split_points[0], np.asarray(seq)[None])
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


def test_the_vocabulary_scan_ranks_the_planted_token_first(lm_backend, planted, tiny_lm_path):
    """VocabularyConcepts (TopKInputs use_vocab): every token alone; the
    planted concept's top token is ' drink', and the top-k values equal the
    bare model's, above a sample of the other tokens."""
    import transformers

    from xaimesh_model_server import engine
    from xaimesh_model_server.tokenization import tokenize

    loaded = lm_backend.loaded
    out = engine.vocabulary_concepts(loaded, lm_backend._readout(planted), k=5)
    (token,) = tokenize(loaded, " " + WORD, add_special_tokens=False).token_ids
    special = set(loaded.tokenizer.all_special_ids)
    assert out.num_tokens == len(loaded.tokenizer) - len(special)
    assert out.concepts == [0, 1] and out.token_ids.shape == (2, 5)
    assert out.token_ids[0, 0] == token
    assert not special & set(out.token_ids.reshape(-1).tolist())
    bare = transformers.AutoModelForCausalLM.from_pretrained(tiny_lm_path, dtype=torch.float32).eval()

    def alone(ids):
        return split_rows(bare, loaded.split_points[0], np.asarray(ids)[:, None]) @ planted.weight + planted.bias

    assert np.abs(alone(out.token_ids[0])[:, 0] - out.activations[0]).max() <= 1e-4
    assert np.abs(alone(out.token_ids[1])[:, 1] - out.activations[1]).max() <= 1e-4
    others = np.random.default_rng(0).choice([i for i in range(len(loaded.tokenizer)) if i not in special], 300)
    assert (alone(others).max(0) <= out.activations[:, -1] + 1e-5).all()
    assert np.all(np.diff(out.activations, axis=1) <= 0)


@pytest.mark.parametrize("activation", ["relu", "top_k", "jump_relu"])
def test_only_the_explained_columns_travel_unless_top_k_needs_them_all(lm_backend, activation):
    """Rows of concepts [3, 1] equal the same concepts explained with the whole
    encoder (the columns sent to the model-server are sliced except for TOP_K)."""
    rng = np.random.default_rng(3)
    width = lm_backend.loaded.hidden_size
    encoder = ConceptEncoder(split_point="0", weight=rng.normal(size=(width, 5)).astype(np.float32) / 8,
                             bias=np.zeros(5, np.float32), activation=activation, top_k=2,
                             thresholds=np.full(5, 0.05, np.float32), pooling="mean", concepts=(3, 1))
    sent = []
    inner_score = lm_backend.concept_scores

    def spy(ids, keep, replacement, enc):
        sent.append(enc.weight.shape[1])
        return inner_score(ids, keep, replacement, enc)

    lm_backend.concept_scores = spy
    try:
        result = _explain(lm_backend, encoder, "occlusion")
    finally:
        del lm_backend.concept_scores
    assert set(sent) == {5 if activation == "top_k" else 2}
    readout = lm_backend._readout(ConceptEncoder(**{**encoder.__dict__, "concepts": (3, 1)}))
    from xaimesh_model_server import engine

    full = engine.concept_scores(lm_backend.loaded, result.input_ids, None, None, readout)[0]
    np.testing.assert_allclose(result.target_scores, full, rtol=1e-5, atol=1e-7)


def test_deletion_refuses_a_concept_attribution_and_the_flag_round_trips(lm_backend, planted):
    from xaimesh_attribution.explainer import evaluate
    from xaimesh_attribution.results import AttributionResult
    from xaimesh_attribution.server import attribution_from_proto, attribution_to_proto

    result = _explain(lm_backend, planted, "occlusion")
    assert result.explains_concepts
    assert attribution_from_proto(attribution_to_proto(result), 0).explains_concepts
    assert AttributionResult.from_json(result.to_json()).explains_concepts
    with pytest.raises(InvalidArgument, match="concept activations") as e:
        evaluate(lm_backend, "deletion", result)
    assert e.value.field == "attributions"
