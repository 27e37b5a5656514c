"""Perturbation methods on synthetic games with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from attr_backends import SyntheticBackend

from xaimesh_attribution import explain

# ----------------------------------------------------------------- games


def classification_game(n_classes: int, E: int, seed: int = 0):
    """Non-additive: linear + pairwise + one triple interaction."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n_classes, E))
    P = np.triu(rng.normal(size=(n_classes, E, E)), 1)

    def value(keep: np.ndarray, c: int) -> np.ndarray:
        k = keep.astype(float)
        return k @ W[c] + np.einsum("ni,ij,nj->n", k, P[c], k) + 2.0 * k[:, 0] * k[:, 1] * k[:, 2]

    def game(keep, ids, classes, mode):
        return np.stack([value(keep, c) for c in classes], axis=1)

    return game, value


def causal_game(L: int, seed: int = 1):
    """Position p's score depends on keep[:p] only (teacher forcing), with
    pairwise interactions; SOFTMAX squashes it into (0, 1)."""
    rng = np.random.default_rng(seed)
    A = np.tril(rng.normal(size=(L, L)), -1)
    B = rng.normal(size=(L, L, L)) * 0.5

    def token_value(keep: np.ndarray, p: int, mode: str) -> np.ndarray:
        k = keep[:, :p].astype(float)
        v = k @ A[p, :p] + np.einsum("ni,ij,nj->n", k, np.triu(B[p, :p, :p], 1), k)
        return 1.0 / (1.0 + np.exp(-v)) if mode == "softmax" else v

    def game(keep, ids, positions, mode):
        return np.stack([token_value(keep, p, mode) for p in positions], axis=1)

    return game, token_value


def additive_game(weights: np.ndarray, task: str = "sequence_classification"):
    """f = sum_i w_i keep_i for every target (classes or positions: the
    causal version only counts earlier tokens)."""
    w = np.asarray(weights, dtype=float)

    def game(keep, ids, targets, mode):
        k = keep.astype(float)
        if task == "sequence_classification":
            return np.stack([(k * w[: k.shape[1]]).sum(1) * (c + 1) for c in targets], axis=1)
        return np.stack([(k[:, :p] * w[:p]).sum(1) for p in targets], axis=1)

    return game


# ----------------------------------------------------------------- brute force


def shapley_brute(v, players: list[int]) -> dict[int, float]:
    """Shapley values by the permutation-free subset formula, from scratch."""
    m = len(players)
    out = {}
    for i in players:
        others = [j for j in players if j != i]
        total = 0.0
        for r in range(m):
            for S in itertools.combinations(others, r):
                w = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
                total += w * (v(set(S) | {i}) - v(set(S)))
        out[i] = total
    return out


def element_token_keep(result, coalition: set[int], covered: set[int], L: int) -> np.ndarray:
    """Token keep-mask: covered elements outside the coalition dropped."""
    keep = np.ones(L, dtype=bool)
    for e, seg in enumerate(result.input_elements):
        if e in covered and e not in coalition:
            keep[seg.start_token : seg.end_token] = False
    return keep


def generation_truth(result, token_value, mode: str) -> np.ndarray:
    L = len(result.input_ids)
    P = len(result.input_ids) - len(result.target_token_ids)
    npe = result.num_prompt_elements
    ends = [0] + list(result.target_element_token_ends)
    T, E = len(ends) - 1, len(result.input_elements)
    truth = np.full((T, E), np.nan)
    for t in range(T):
        covered = list(range(npe + t))
        positions = range(P + ends[t], P + ends[t + 1])

        def v(S, covered=covered, positions=positions):
            keep = element_token_keep(result, S, set(covered), L)[None]
            vals = [token_value(keep, p, mode)[0] for p in positions]
            return float(np.prod(vals)) if mode == "softmax" else float(np.sum(vals))

        for i, phi in shapley_brute(v, covered).items():
            truth[t, i] = phi
    return truth


# ----------------------------------------------------------------- KernelShap


def test_kernel_shap_enumeration_is_exact_shapley_classification():
    game, value = classification_game(2, 6)
    b = SyntheticBackend(game, task="sequence_classification", labels=["a", "b"])
    r = explain(b, "kernel_shap", {"n_perturbations": 64}, "a b c d e f", [0, 1])
    assert r.scores.shape == (2, 6)
    for c in range(2):
        truth = shapley_brute(lambda S, c=c: float(value(np.array([[i in S for i in range(6)]]), c)[0]), list(range(6)))
        np.testing.assert_allclose(r.scores[c], [truth[i] for i in range(6)], rtol=1e-5, atol=1e-5)
    # efficiency: sum = f(all) - f(none)
    full = value(np.ones((1, 6), bool), 0)[0] - value(np.zeros((1, 6), bool), 0)[0]
    assert r.scores[0].sum() == pytest.approx(full, rel=1e-5)
    assert b.n_forwards == 64  # 2^6 coalitions, each scored once for both classes


@pytest.mark.parametrize("mode", ["logits", "softmax"])
def test_kernel_shap_enumeration_exact_on_generation_rows(mode):
    # prompt: 4 one-token words; target: words of 2, 1 and 2 tokens (piece=1
    # cuts "pq" into " p" + "q"): 7 elements, 9 tokens, 3 rows covering 4, 5, 6.
    game, token_value = causal_game(9)
    b = SyntheticBackend(game, piece=1)
    r = explain(
        b, "kernel_shap", {"n_perturbations": 128}, "a b c d", " pq r st", granularity="word", inference_mode=mode
    )
    assert [s.text for s in r.input_elements] == ["a", "b", "c", "d", "pq", "r", "st"]
    assert r.target_element_token_ends == [2, 3, 5]
    truth = generation_truth(r, token_value, mode)
    np.testing.assert_array_equal(np.isnan(r.scores), np.isnan(truth))
    np.testing.assert_allclose(r.scores, truth, rtol=1e-4, atol=1e-5, equal_nan=True)
    # every forward scored every target token
    assert all(c["targets"] == [4, 5, 6, 7, 8] for c in b.score_calls)


def test_kernel_shap_sampling_converges_on_every_row():
    game, token_value = causal_game(9, seed=3)
    mode = "logits"
    truth = None
    errors = []
    for n in (300, 20000):
        b = SyntheticBackend(game, piece=1)
        r = explain(
            b,
            "kernel_shap",
            {"n_perturbations": n, "exact": False, "seed": 7, "batch_size": 4096},
            "a b c d",
            " pq r st",
            granularity="word",
            inference_mode=mode,
        )
        if truth is None:
            truth = generation_truth(r, token_value, mode)
        err = np.nanmax(np.abs(r.scores - truth)) / np.nanmax(np.abs(truth))
        errors.append(err)
        # efficiency holds exactly on every row, whatever the sample
        for t in range(r.scores.shape[0]):
            assert np.nansum(r.scores[t]) == pytest.approx(np.nansum(truth[t]), rel=1e-4, abs=1e-5)
        # no forward per target: forwards = samples + empty coalitions + full, plus the
        # canonical re-scorings of multi-token rows (none: sampling conditions on validity)
        assert b.n_forwards <= n + 4
    assert errors[1] < 0.03, errors
    assert errors[1] < errors[0]


def test_kernel_shap_empty_coalitions_of_single_token_rows_are_one_forward():
    """Rows of single-token target elements read neither their own token nor
    later ones, so their empty coalitions are one all-masked forward; a
    multi-token row keeps its own (its element and later ones kept). Each
    row's efficiency sum still equals its exact v(C) - v(empty)."""
    from xaimesh_attribution.methods.kernel_shap import _kernel_masks

    game, token_value = causal_game(9, seed=3)
    n, seed, n_prompt = 200, 7, 4
    for target, multi_token_rows in ((" p q r s", []), (" p qr s", [1])):
        b = SyntheticBackend(game, piece=1)  # one token per character: "qr" is two
        r = explain(b, "kernel_shap", {"n_perturbations": n, "exact": False, "seed": seed, "batch_size": 4096},
                    "a b c d", target, granularity="word", inference_mode="logits")
        truth = generation_truth(r, token_value, "logits")
        for t in range(r.scores.shape[0]):
            assert np.nansum(r.scores[t]) == pytest.approx(np.nansum(truth[t]), rel=1e-4, abs=1e-5)
        E = len(r.input_elements)
        empties = [np.arange(E) >= n_prompt + t for t in multi_token_rows]  # own element and later kept
        expected = np.unique(np.vstack([_kernel_masks(E, n, np.random.default_rng(seed)), np.ones(E, bool),
                                        np.zeros(E, bool), *empties]), axis=0)
        assert b.n_forwards == len(expected)
        sent = np.concatenate([c["keep"] for c in b.score_calls])
        assert int((~sent.any(axis=1)).sum()) == 1  # the one all-masked forward


def test_kernel_shap_sampling_converges_classification():
    game, value = classification_game(1, 8, seed=5)
    b = SyntheticBackend(game, task="sequence_classification", labels=["x"])
    r = explain(b, "kernel_shap", {"n_perturbations": 20000, "exact": False, "batch_size": 4096}, "a b c d e f g h", 0)
    truth = shapley_brute(lambda S: float(value(np.array([[i in S for i in range(8)]]), 0)[0]), list(range(8)))
    t = np.array([truth[i] for i in range(8)])
    assert np.max(np.abs(r.scores[0] - t)) < 0.03 * np.max(np.abs(t))


def test_kernel_shap_seed_determinism():
    game, _ = classification_game(1, 8, seed=2)
    b = SyntheticBackend(game, task="sequence_classification", labels=["x"])
    a1 = explain(b, "kernel_shap", {"n_perturbations": 50, "seed": 3}, "a b c d e f g h", 0).scores
    a2 = explain(b, "kernel_shap", {"n_perturbations": 50, "seed": 3}, "a b c d e f g h", 0).scores
    a3 = explain(b, "kernel_shap", {"n_perturbations": 50, "seed": 4}, "a b c d e f g h", 0).scores
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a1, a3)


# ----------------------------------------------------------------- Occlusion / Lime / Sobol

W6 = np.array([0.5, -1.0, 2.0, 0.0, 1.5, -0.25])


def test_occlusion_additive_known_answer():
    b = SyntheticBackend(additive_game(W6), task="sequence_classification", labels=["x", "y"])
    r = explain(b, "occlusion", {}, "a b c d e f", [0, 1])
    np.testing.assert_allclose(r.scores[0], W6, rtol=1e-6)
    np.testing.assert_allclose(r.scores[1], 2 * W6, rtol=1e-6)
    assert b.n_forwards == 7
    # window 2: element i gets the mean drop of the windows holding it
    r2 = explain(b, "occlusion", {"window": 2}, "a b c d e f", 0)
    pair = W6[:-1] + W6[1:]
    expect = [pair[0]] + [(pair[i - 1] + pair[i]) / 2 for i in range(1, 5)] + [pair[4]]
    np.testing.assert_allclose(r2.scores[0], expect, rtol=1e-6)


def test_occlusion_generation_rows_cover_earlier_elements_only():
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    b = SyntheticBackend(additive_game(w, task="causal_lm"), piece=1)
    r = explain(b, "occlusion", {}, "a b c", " de f", granularity="word", inference_mode="logits")
    # tokens: a, " b", " c", " d", "e", " f"; elements a b c de f; rows: "de" (tokens 3,4), "f" (5)
    assert r.target_elements == ["de", "f"]
    # row "de": score = value(pos 3) + value(pos 4); removing "c" (token 2) drops w2 twice
    np.testing.assert_allclose(r.scores[0, :3], [2 * 1.0, 2 * 2.0, 2 * 3.0])
    assert np.isnan(r.scores[0, 3:]).all()
    np.testing.assert_allclose(r.scores[1, :4], [1.0, 2.0, 3.0, 4.0 + 5.0])
    assert np.isnan(r.scores[1, 4])


def test_lime_additive_known_answer():
    b = SyntheticBackend(additive_game(W6), task="sequence_classification", labels=["x"])
    r = explain(b, "lime", {"n_perturbations": 200, "regularization": 1e-9}, "a b c d e f", 0)
    np.testing.assert_allclose(r.scores[0], W6, atol=1e-6)
    # default ridge shrinks a little but keeps the order
    r2 = explain(b, "lime", {"n_perturbations": 200}, "a b c d e f", 0)
    assert np.array_equal(np.argsort(r2.scores[0]), np.argsort(W6))


def test_lime_generation_rows_additive():
    w = np.array([1.0, -2.0, 3.0, 0.5, 1.0, 2.0, 0.0])
    b = SyntheticBackend(additive_game(w, task="causal_lm"), piece=1)
    r = explain(
        b,
        "lime",
        {"n_perturbations": 300, "regularization": 1e-9},
        "a b c",
        " de f",
        granularity="word",
        inference_mode="logits",
    )
    np.testing.assert_allclose(r.scores[0, :3], [2.0, -4.0, 6.0], atol=1e-6)
    np.testing.assert_allclose(r.scores[1, :4], [1.0, -2.0, 3.0, 1.5], atol=1e-6)


@pytest.mark.parametrize("sampler", ["sobol", "halton", "latin_hypercube"])
def test_sobol_total_and_first_order_of_additive_game(sampler):
    # additive game of Bernoulli(1/2) inputs: S_i = S_Ti = w_i^2 / sum w^2
    b = SyntheticBackend(additive_game(W6), task="sequence_classification", labels=["x"])
    truth = W6**2 / (W6**2).sum()
    for index in ("total", "first"):
        r = explain(
            b, "sobol", {"n_perturbations": 1024, "sobol_sampler": sampler, "sobol_index": index}, "a b c d e f", 0
        )
        np.testing.assert_allclose(r.scores[0], truth, atol=0.04)
    assert b.n_forwards <= 2 * 1024 * (6 + 2)


def test_sobol_generation_rows():
    w = np.array([1.0, 2.0, 0.0, 3.0, 1.0, 1.0, 1.0])
    b = SyntheticBackend(additive_game(w, task="causal_lm"), piece=1)
    r = explain(b, "sobol", {"n_perturbations": 512}, "a b c", " de f", granularity="word", inference_mode="logits")
    # row "de": value 2*(w0 k0 + w1 k1 + w2 k2) -> indices w^2 / sum over covered
    np.testing.assert_allclose(r.scores[0, :3], np.array([1, 4, 0]) / 5, atol=0.05)
    # row "f": w0 k0 + w1 k1 + w2 k2 + (w3 + w4) k_de
    np.testing.assert_allclose(r.scores[1, :4], np.array([1, 4, 0, 16]) / 21, atol=0.05)
    assert np.isnan(r.scores[0, 3:]).all() and np.isnan(r.scores[1, 4])


def test_remove_policy_scores_kept_targets_only():
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    b = SyntheticBackend(additive_game(w, task="causal_lm"), piece=1)
    r = explain(
        b,
        "occlusion",
        {"replacement": {"policy": "remove"}},
        "a b c",
        " de f",
        granularity="word",
        inference_mode="logits",
    )
    np.testing.assert_allclose(r.scores[1, :4], [1.0, 2.0, 3.0, 9.0])
    np.testing.assert_allclose(r.scores[0, :3], [2.0, 4.0, 6.0])
    assert all(c["policy"] == "remove" for c in b.score_calls)
