"""Deletion / Insertion on a synthetic game whose perfect order is known."""

from __future__ import annotations

import numpy as np
import pytest
from attr_backends import SyntheticBackend

from xaimesh_attribution import AttributionResult, evaluate, explain

W = np.array([3.0, -1.0, 0.5, 2.0, -2.0, 1.0, 0.0, 4.0])


def sigmoid_game(keep, ids, targets, mode):
    k = keep.astype(float)
    z = k @ W[: k.shape[1]] - 3.0
    return np.stack([1 / (1 + np.exp(-z * (1 if c == 0 else -1))) for c in targets], axis=1)


def with_scores(result: AttributionResult, scores: np.ndarray) -> AttributionResult:
    d = result.to_dict()
    r = AttributionResult.from_dict(d)
    r.scores = np.asarray(scores, dtype=np.float32)
    return r


@pytest.fixture()
def clf():
    return SyntheticBackend(sigmoid_game, task="sequence_classification", labels=["pos", "neg"])


def test_deletion_perfect_beats_random_and_reversed_loses(clf):
    base = explain(clf, "occlusion", {}, "a b c d e f g h", [0])
    perfect = with_scores(base, W[None])
    reversed_ = with_scores(base, -W[None])
    good = evaluate(clf, "deletion", perfect, n_random_orders=20, seed=1)
    bad = evaluate(clf, "deletion", reversed_, n_random_orders=20, seed=1)
    assert good.curve.auc < good.random_curve.auc < bad.curve.auc
    # one element per step: 9 points from fraction 0 to 1
    np.testing.assert_allclose(good.curve.fractions, np.arange(9) / 8)
    # the curve starts at the unperturbed score and ends at the fully removed one
    assert good.curve.scores[0] == pytest.approx(base.target_scores[0], rel=1e-6)
    assert good.curve.scores[-1] == pytest.approx(sigmoid_game(np.zeros((1, 8), bool), None, [0], "")[0, 0], rel=1e-6)
    assert good.curve.auc == pytest.approx(np.trapezoid(good.curve.scores, good.curve.fractions), rel=1e-6)
    assert good.per_target_scores.shape == (1, 9)
    # the random baseline is the same for any attribution (same seed)
    np.testing.assert_allclose(good.random_curve.scores, bad.random_curve.scores)


def test_insertion_perfect_beats_random_and_reversed_loses(clf):
    base = explain(clf, "occlusion", {}, "a b c d e f g h", [0])
    good = evaluate(clf, "insertion", with_scores(base, W[None]), seed=2)
    bad = evaluate(clf, "insertion", with_scores(base, -W[None]), seed=2)
    assert good.curve.auc > good.random_curve.auc > bad.curve.auc
    assert good.curve.scores[-1] == pytest.approx(base.target_scores[0], rel=1e-6)


def test_occlusion_attribution_beats_random_on_both_classes(clf):
    r = explain(clf, "kernel_shap", {"n_perturbations": 256}, "a b c d e f g h", [0, 1])
    d = evaluate(clf, "deletion", r, n_steps=4, n_random_orders=5)
    assert len(d.curve.fractions) == 5
    assert d.per_target_scores.shape == (2, 5)
    assert d.curve.auc < d.random_curve.auc
    np.testing.assert_allclose(d.curve.scores, d.per_target_scores.mean(axis=0), rtol=1e-6)


def test_metric_scores_every_target_per_mask_and_disables_random(clf):
    r = explain(clf, "occlusion", {}, "a b c d e f g h", [0, 1])
    clf.score_calls.clear()
    d = evaluate(clf, "insertion", r, n_random_orders=-1, batch_size=5)
    assert d.random_curve is None
    assert all(c["targets"] == [0, 1] for c in clf.score_calls)
    assert all(c["n"] <= 5 for c in clf.score_calls)
    # 2 rows x 9 points, minus the shared first (all removed) and last (all kept) masks
    assert clf.n_forwards == 2 * 9 - 2


def test_generation_deletion_uses_row_coverage():
    def game(keep, ids, positions, mode):
        k = keep.astype(float)
        return np.stack([1 / (1 + np.exp(-(k[:, :p] @ np.arange(1, p + 1)))) for p in positions], axis=1)

    b = SyntheticBackend(game, piece=1)
    r = explain(b, "occlusion", {}, "a b c d", " ef g", granularity="word")
    d = evaluate(b, "deletion", r, n_random_orders=3)
    # rows cover 4 and 5 elements: one element per step on the longest
    assert len(d.curve.fractions) == 6
    assert d.curve.auc < d.random_curve.auc
    # evaluate can rebuild the input from the text alone (as from the proto)
    stripped = AttributionResult.from_dict({**r.to_dict(), "input_ids": [], "prompt_text": ""})
    d2 = evaluate(b, "deletion", stripped, n_random_orders=3)
    np.testing.assert_allclose(d2.curve.scores, d.curve.scores)
