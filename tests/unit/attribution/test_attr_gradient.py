"""Gradient methods: properties, aggregation, multi-token targets (tiny LM)."""

from __future__ import annotations

import numpy as np
import pytest

from xaimesh_attribution import explain
from xaimesh_attribution.gradient import aggregate, gauss_legendre
from xaimesh_attribution.options import Aggregation

PROMPT = "Alice and Bob enter the bar, "
TARGET = "then Alice offers"


def test_aggregations_of_token_values_into_words(lm_backend):
    tok = explain(lm_backend, "input_x_gradient", {}, PROMPT, TARGET, granularity="token")
    for agg, fn in [
        ("sum", np.sum),
        ("mean", np.mean),
        ("max", np.max),
        ("min", np.min),
        ("signed_max", lambda v: v[np.argmax(np.abs(v))]),
    ]:
        word = explain(lm_backend, "input_x_gradient", {}, PROMPT, TARGET, granularity="word", aggregation=agg)
        assert word.aggregation == agg
        # single-token target words: rows of the word attribution = rows of the token one
        assert word.target_elements == ["then", "Alice", "offers"]
        for t in range(3):
            npe = word.num_prompt_elements + t
            expect = [fn(tok.scores[t, s.start_token : s.end_token]) for s in word.input_elements[:npe]]
            np.testing.assert_allclose(word.scores[t, :npe], expect, rtol=1e-5, atol=1e-7)


def test_aggregate_signed_max_keeps_sign():
    v = np.array([[1.0, -3.0, 2.0, 0.5]])
    out = aggregate(v, [np.array([0, 1]), np.array([2, 3])], Aggregation.SIGNED_MAX)
    np.testing.assert_array_equal(out, [[-3.0, 2.0]])


def test_multi_token_word_target_is_sum_of_token_rows_for_logits(lm_backend):
    target = " Alicia"
    tok = explain(lm_backend, "input_x_gradient", {}, PROMPT, target, granularity="token")
    word = explain(lm_backend, "input_x_gradient", {}, PROMPT, target, granularity="word")
    assert len(tok.target_token_ids) >= 2 and len(word.target_elements) == 1
    npe = word.num_prompt_elements
    summed = np.nan_to_num(tok.scores).sum(axis=0)  # the word's row only covers the prompt
    expect = [summed[s.start_token : s.end_token].sum() for s in word.input_elements[:npe]]
    np.testing.assert_allclose(word.scores[0, :npe], expect, rtol=1e-5, atol=1e-7)
    assert word.target_scores[0] == pytest.approx(tok.target_scores.sum(), rel=1e-5)


def test_integrated_gradients_completeness(lm_backend):
    # the unk-token baseline: a zero baseline (and the tiny model's pad embedding, which is zero) puts
    # RMSNorm on a discontinuity at alpha = 0
    base = {"kind": "unk_token"}
    r = explain(
        lm_backend, "integrated_gradients", {"n_steps": 64, "baseline": base}, PROMPT, TARGET, granularity="word"
    )
    assert r.parameters.baseline.to_dict() == {"kind": "unk_token", "token_id": 0}
    from xaimesh_attribution.backend import EmbeddingSamples

    n = len(r.input_ids)
    res = lm_backend.gradients(
        r.input_ids,
        target_positions=list(range(n - 3, n)),
        inference_mode="logits",
        samples=EmbeddingSamples(baseline_kind="unk_token", alphas=[0.0, 1.0]),
    )
    diff = res["scores"][1] - res["scores"][0]
    # row t covers the prompt and earlier targets; a token's own embedding never changes its own
    # score (causal), so completeness holds per row
    sums = np.nansum(r.scores, axis=1)
    np.testing.assert_allclose(sums, diff, rtol=1e-3, atol=1e-3 * np.abs(diff).max())


def test_noise_free_smoothgrad_family(lm_backend):
    sal = explain(lm_backend, "saliency", {}, PROMPT, TARGET).scores
    sg = explain(lm_backend, "smooth_grad", {"noise_std": 0.0, "n_steps": 3}, PROMPT, TARGET).scores
    np.testing.assert_allclose(sg, sal, rtol=1e-5, equal_nan=True)
    vg = explain(lm_backend, "var_grad", {"noise_std": 0.0, "n_steps": 3}, PROMPT, TARGET).scores
    assert np.nanmax(np.abs(vg)) < 1e-6 * np.nanmax(sal)
    l2 = explain(lm_backend, "saliency", {"gradient_reduction": "l2_norm"}, PROMPT, TARGET).scores
    assert np.all(l2[~np.isnan(l2)] <= sal[~np.isnan(sal)] + 1e-6)


def test_noisy_methods_are_seeded(lm_backend):
    for method in ("smooth_grad", "square_grad", "var_grad", "gradient_shap"):
        a = explain(lm_backend, method, {"n_steps": 4, "seed": 1, "batch_size": 2}, PROMPT, TARGET).scores
        b = explain(lm_backend, method, {"n_steps": 4, "seed": 1, "batch_size": 2}, PROMPT, TARGET).scores
        c = explain(lm_backend, method, {"n_steps": 4, "seed": 2, "batch_size": 2}, PROMPT, TARGET).scores
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c, equal_nan=True), method


def test_gradient_batches_and_progress(lm_backend):
    events = []
    lm_backend.gradient_calls = 0
    explain(
        lm_backend,
        "integrated_gradients",
        {"n_steps": 10, "batch_size": 4},
        PROMPT,
        TARGET,
        progress=lambda d, t, s: events.append((d, t, s)),
    )
    assert lm_backend.gradient_calls == 3
    assert [e for e in events if e[2] == "gradients"] == [
        (0, 10, "gradients"),
        (4, 10, "gradients"),
        (8, 10, "gradients"),
        (10, 10, "gradients"),
    ]


def test_classifier_default_target_is_predicted_class(clf_backend):
    r = explain(clf_backend, "saliency", {}, "I love this movie.", None)
    all_scores = clf_backend.score(r.input_ids, None, __import__("xaimesh_attribution").Replacement())
    assert r.target_classes == [int(np.argmax(all_scores[0]))]
    assert r.scores.shape == (1, len(r.input_elements))
    assert not np.isnan(r.scores).any()


def test_gauss_legendre_matches_captum_rule():
    from captum.attr._utils.approximation_methods import approximation_parameters

    steps, alphas = approximation_parameters("gausslegendre")
    a, w = gauss_legendre(7)
    np.testing.assert_allclose(a, alphas(7))
    np.testing.assert_allclose(w, steps(7))


def test_gauss_legendre_is_exact_and_quick_at_the_largest_n_steps():
    # numpy's leggauss agrees where it is affordable
    a, w = gauss_legendre(300)
    x, v = np.polynomial.legendre.leggauss(300)
    np.testing.assert_allclose(a, 0.5 * (1 + x), atol=1e-14)
    np.testing.assert_allclose(w, 0.5 * v, atol=1e-14)
    # at the service's n_steps bound the rule still integrates polynomials exactly on [0, 1]
    a, w = gauss_legendre(10_000)
    assert np.all(np.diff(a) > 0) and a[0] > 0 and a[-1] < 1
    for k in (0, 1, 3, 7):
        assert abs((w * a**k).sum() - 1.0 / (k + 1)) < 1e-12
