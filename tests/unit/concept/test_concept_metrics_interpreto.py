"""The reconstruction distances and dictionary matchings of the reference
toolkit (interpreto 0.5.2's ReconstructionError distances and Stability
matchings), against hand / brute-force values and streamed in chunks."""

import numpy as np
import pytest

from xaimesh_concept.methods import build_method
from xaimesh_concept.metrics import compute_metrics, metrics_from_arrays, stability
from xaimesh_concept.workspace import ConceptWorkspace
from xaimesh_runtime.errors import InvalidArgument

X = np.array([[3.0, 4.0], [1.0, 1.0], [0.0, 2.0]], np.float32)
X_HAT = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)
CODES = np.ones((3, 1), np.float32)


def test_reconstruction_distances_by_hand():
    m = metrics_from_arrays(X, CODES, X_HAT, ["AVERAGE_EUCLIDEAN", "COSINE_DISTANCE", "FROBENIUS"])
    assert m["AVERAGE_EUCLIDEAN"] == pytest.approx((5 + 0 + 1) / 3)  # row norms 5, 0, 1
    # <X, X_hat> = 2 + 2 = 4; ||X||^2 = 9 + 16 + 2 + 4 = 31; ||X_hat||^2 = 3
    assert m["COSINE_DISTANCE"] == pytest.approx(1 - 4 / np.sqrt(31 * 3))
    assert m["FROBENIUS"] == pytest.approx(np.sqrt(26))  # interpreto's EUCLIDEAN / MSE
    assert np.isnan(metrics_from_arrays(X, CODES, np.zeros_like(X), ["COSINE_DISTANCE"])["COSINE_DISTANCE"])


def test_streamed_values_equal_the_whole_matrix():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(300, 8)).astype(np.float32)
    model = build_method("PCA", 3).fit(A)
    rec = model.decode(model.encode(A)).astype(np.float64)
    streamed = compute_metrics(model, A, ["AVERAGE_EUCLIDEAN", "COSINE_DISTANCE"], chunk_rows=7)
    a64 = A.astype(np.float64)
    assert streamed["AVERAGE_EUCLIDEAN"] == pytest.approx(np.linalg.norm(a64 - rec, axis=1).mean(), rel=1e-6)
    cosine = (a64 * rec).sum() / (np.linalg.norm(a64) * np.linalg.norm(rec))
    assert streamed["COSINE_DISTANCE"] == pytest.approx(1 - cosine, rel=1e-6, abs=1e-9)


def test_stability_matchings():
    a = np.eye(3)
    b = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 1.0, 0.0]])  # a permutation, a sign flip, a blend
    # MAXIMUM: rows of a -> best |cos| in b: e0 -> 1/sqrt2, e1 -> 1, e2 -> 1
    assert stability([a, b], matching="MAXIMUM") == pytest.approx((1 / np.sqrt(2) + 2) / 3)
    # HUNGARIAN (one-to-one): e1->b0 (1), e2->b1 (1), e0->b2 (1/sqrt2): the same here ...
    assert stability([a, b]) == pytest.approx((1 / np.sqrt(2) + 2) / 3)
    # ... but not when two rows of a want the same row of b.
    c = np.array([[1.0, 0.1, 0.0], [1.0, 0.0, 0.1], [0.0, 0.0, 0.0]])
    brute = max(np.mean([abs(a[i] @ c[p[i]]) / max(np.linalg.norm(c[p[i]]), 1e-12) for i in range(3)])
                for p in __import__("itertools").permutations(range(3)))
    assert stability([a, c]) == pytest.approx(brute)
    assert stability([a, c], matching="MAXIMUM") > stability([a, c])


def test_workspace_computes_them_by_name(tmp_path):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(50, 6)).astype(np.float32)
    ws = ConceptWorkspace(str(tmp_path))
    aset = ws.store.put_activation_set(A)
    one = ws.fit(aset.name, "PCA", 3, {"seed": 0})
    two = ws.fit(aset.name, "ICA", 3, {"seed": 1})
    values = {v.metric: v.value for v in ws.compute_metrics([one.name, two.name], None,
                                                            ["STABILITY", "STABILITY_MAX"])}
    _, m1 = ws.load_model(one.name)
    _, m2 = ws.load_model(two.name)
    assert values["STABILITY_MAX"] == pytest.approx(stability([m1.dictionary_, m2.dictionary_], matching="MAXIMUM"))
    assert values["STABILITY"] == pytest.approx(stability([m1.dictionary_, m2.dictionary_]))
    with pytest.raises(InvalidArgument, match="STABILITY_MAX needs at least 2"):
        ws.compute_metrics([one.name], None, ["STABILITY_MAX"])
    defaults = {v.metric for v in ws.compute_metrics(one.name, aset.name)}
    assert {"AVERAGE_EUCLIDEAN", "COSINE_DISTANCE"} <= defaults


def test_lp_distances_and_the_activity_threshold_by_hand():
    # X - X_hat rows: (3, 4), (0, 0), (0, 1)
    m = metrics_from_arrays(X, CODES, X_HAT, ["LP", "AVERAGE_LP"], lp_p=1)
    assert m["LP"] == pytest.approx(8) and m["AVERAGE_LP"] == pytest.approx((7 + 0 + 1) / 3)
    m = metrics_from_arrays(X, CODES, X_HAT, ["LP", "AVERAGE_LP", "FROBENIUS", "AVERAGE_EUCLIDEAN"])  # p = 2
    assert m["LP"] == pytest.approx(m["FROBENIUS"]) and m["AVERAGE_LP"] == pytest.approx(m["AVERAGE_EUCLIDEAN"])
    m = metrics_from_arrays(X, CODES, X_HAT, ["LP"], lp_p=3)
    assert m["LP"] == pytest.approx((27 + 64 + 1) ** (1 / 3))
    codes = np.array([[0.5, 0.0], [0.05, -2.0], [0.0, 0.01]], np.float32)
    active = ["SPARSITY", "L0", "DEAD_CONCEPTS", "SPARSITY_RATIO"]
    exact = metrics_from_arrays(X, codes, X_HAT, active)
    assert (exact["SPARSITY"], exact["L0"], exact["DEAD_CONCEPTS"]) == (pytest.approx(4 / 6), pytest.approx(4 / 3), 0.0)
    thresholded = metrics_from_arrays(X, codes, X_HAT, active, epsilon=0.1)  # |c| > 0.1: 0.5 and -2
    assert thresholded["SPARSITY"] == pytest.approx(2 / 6) and thresholded["L0"] == pytest.approx(2 / 3)
    assert thresholded["DEAD_CONCEPTS"] == 0.0
    assert metrics_from_arrays(X, codes, X_HAT, active, epsilon=1.0)["DEAD_CONCEPTS"] == 0.5
    # X has 5 non-zeros of 6
    assert thresholded["SPARSITY_RATIO"] == pytest.approx((2 / 6) / (5 / 6))


@pytest.mark.parametrize("lp_p, epsilon, field", [(0.5, 0.0, "lp_p"), (float("inf"), 0.0, "lp_p"),
                                                  (2.0, -1.0, "activation_epsilon"),
                                                  (2.0, float("nan"), "activation_epsilon")])
def test_bad_metric_parameters_are_refused(lp_p, epsilon, field):
    with pytest.raises(InvalidArgument) as err:
        metrics_from_arrays(X, CODES, X_HAT, ["LP"], lp_p=lp_p, epsilon=epsilon)
    assert err.value.field == field


def test_lp_is_computed_only_when_asked_for(tmp_path):
    rng = np.random.default_rng(2)
    A = rng.normal(size=(40, 5)).astype(np.float32)
    ws = ConceptWorkspace(str(tmp_path))
    aset = ws.store.put_activation_set(A)
    pca = ws.fit(aset.name, "PCA", 2, {"seed": 0})
    every = {v.metric for v in ws.compute_metrics(pca.name, aset.name)}
    assert "LP" not in every and "AVERAGE_LP" not in every
    (lp,) = ws.compute_metrics(pca.name, aset.name, ["LP"], lp_p=1)
    model = ws.load_model(pca.name)[1]
    assert lp.value == pytest.approx(float(np.abs(A - model.reconstruct(A)).sum()), rel=1e-5)
