"""Linear probes: a planted direction is recovered by every method and
normalisation, the closed forms match numpy, the metrics match scikit-learn,
and a fitted probe is a concept model like the others."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.fixtures.planted_concepts import planted_direction
from xaimesh_concept.common import Provenance
from xaimesh_concept.methods import METHOD_NAMES, build_method
from xaimesh_concept.probes import (CALIBRATIONS, LINEAR_METHODS, NORMALIZATIONS, ProbeSettings, auc_score, calibrate,
                                    check_fits, fit_probe)
from xaimesh_concept.store import Store
from xaimesh_concept.workspace import ConceptWorkspace
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument, ResourceExhausted


@pytest.mark.parametrize("method", LINEAR_METHODS)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_every_probe_recovers_a_planted_direction(method, normalization):
    x, y, u = planted_direction()
    fit = fit_probe(x, y, ProbeSettings(method=method, normalization=normalization, max_iterations=300,
                                        bias_calibration="" if method != "MEANS_DIFF" else "MIDPOINT"))
    w = fit.weight[:, 0]
    cosine = float(w @ u / np.linalg.norm(w))
    (test,) = fit.test
    assert fit.test_rows == 160 and fit.train_rows == 640
    # MEANS_DIFF on anisotropic features without whitening is the one that cannot align fully.
    assert cosine > (0.6 if method == "MEANS_DIFF" and normalization != "WHITENING" else 0.9), cosine
    assert test.auc > 0.9 and test.balanced_accuracy > 0.8, test


def test_linear_regression_is_the_least_squares_solution():
    x, y, _ = planted_direction(n=300, d=8)
    fit = fit_probe(x, y, ProbeSettings(method="LINEAR_REGRESSION", test_fraction=0))
    xa = np.c_[x.astype(np.float64), np.ones(len(x))]
    target = 2.0 * y - 1  # regressed on -1 / +1
    expected = np.linalg.lstsq(xa, target, rcond=None)[0]
    assert np.abs(fit.weight[:, 0] - expected[:-1]).max() < 1e-5 and abs(fit.bias[0] - expected[-1]) < 1e-5
    ridge = fit_probe(x, y, ProbeSettings(method="LINEAR_REGRESSION", l2=5.0, test_fraction=0))
    penalty = np.diag([5.0] * 8 + [0.0])  # the intercept is not penalised
    expected = np.linalg.solve(xa.T @ xa + penalty, xa.T @ target)
    assert np.abs(ridge.weight[:, 0] - expected[:-1]).max() < 1e-5


def test_metrics_match_scikit_learn_and_the_folded_map_is_the_normalised_probe():
    x, y, _ = planted_direction(seed=3)
    fit = fit_probe(x, y, ProbeSettings(normalization="WHITENING", test_fraction=0.25, seed=7))
    scores = x.astype(np.float64) @ fit.weight[:, 0] + fit.bias[0]
    order = np.random.default_rng(7).permutation(len(x))
    test = np.sort(order[:200])
    assert fit.test[0].auc == pytest.approx(roc_auc_score(y[test], scores[test]), abs=1e-9)
    assert fit.test[0].accuracy == pytest.approx(float(((scores[test] > 0) == y[test]).mean()))
    tied = np.array([0.1, 0.1, 0.3, 0.3, 0.2])
    assert auc_score(tied, np.array([0, 1, 1, 0, 1])) == pytest.approx(roc_auc_score([0, 1, 1, 0, 1], tied))


@pytest.mark.parametrize("kind", [c for c in CALIBRATIONS if c and c != "PREVALENCE"])
def test_calibrations_put_the_threshold_between_the_classes(kind):
    import torch

    rng = np.random.default_rng(0)
    y = torch.from_numpy((rng.random(500) < 0.4).astype(np.float64))[:, None]
    scores = torch.from_numpy(rng.normal(size=500))[:, None] + 3 * y
    b = calibrate(kind, scores, y)
    accuracy = float((((scores + b) > 0).double() == y).double().mean())
    assert accuracy > (0.6 if kind == "FPR" else 0.9), (kind, accuracy)
    if kind == "FPR":  # about 1 % of the negatives above the threshold
        assert float(((scores + b) > 0)[y == 0].double().mean()) <= 0.02
    prevalence = float(y.mean())
    assert float(calibrate("PREVALENCE", scores, y)[0]) == pytest.approx(np.log(prevalence / (1 - prevalence)))


def test_several_concepts_at_once_and_bad_labels():
    x, y, _ = planted_direction(n=300)
    two = np.c_[y, 1 - y]
    fit = fit_probe(x, two, ProbeSettings(method="MEANS_DIFF"))
    assert fit.weight.shape == (16, 2) and np.allclose(fit.weight[:, 0], -fit.weight[:, 1], atol=1e-5)
    for labels, match in [(y[:-1], "one label per activation row"), (y * 2, "only 0 and 1"),
                          (np.zeros(300), "no positive row"), (np.zeros((300, 0)), "rows, concepts")]:
        with pytest.raises(InvalidArgument, match=match) as info:
            fit_probe(x, labels, ProbeSettings())
        assert info.value.field == "labels"
    for settings, field in [(ProbeSettings(method="MLP"), "method"), (ProbeSettings(l2=-1), "l2"),
                            (ProbeSettings(test_fraction=0.95), "test_fraction"),
                            (ProbeSettings(max_iterations=10**6), "max_iterations"),
                            (ProbeSettings(learning_rate=float("nan")), "learning_rate")]:
        with pytest.raises(InvalidArgument) as info:
            fit_probe(x, y, settings)
        assert info.value.field == field


def test_a_stored_probe_is_a_concept_model(tmp_path):
    x, y, u = planted_direction(n=400)
    ws = ConceptWorkspace(str(tmp_path))
    info = ws.store.put_activation_set(x, [Provenance(i, 0, 1, f"t{i}") for i in range(len(x))])
    stored, fit, names = ws.fit_probe(info.name, y, ProbeSettings(), concept_names=["planted"])
    assert stored.method == "LINEAR_PROBE" and names == ["planted"]
    assert stored.options["metrics"][0]["test"]["auc"] == pytest.approx(fit.test[0].auc)
    codes = ws.encode_all(stored.name, info.name)
    assert np.allclose(codes[:, 0], x @ fit.weight[:, 0] + fit.bias[0], atol=1e-4)
    direction = ws.get_dictionary(stored.name)[0]
    assert np.linalg.norm(direction) == pytest.approx(1.0) and direction @ u > 0.9
    # Restart: reloaded from disk, same codes; decode gives activations with those scores.
    again = ConceptWorkspace(str(tmp_path))
    _, probe = again.load_model(stored.name)
    assert np.allclose(probe.encode(x), codes, atol=1e-5)
    assert np.allclose(probe.encode(probe.decode(codes[:5])), codes[:5], atol=1e-3)
    with pytest.raises(FailedPrecondition, match="FitProbe"):
        ws.fit(info.name, "LINEAR_PROBE", 1)
    assert "LINEAR_PROBE" not in METHOD_NAMES
    with pytest.raises(InvalidArgument, match="concept_names"):
        ws.fit_probe(info.name, y, ProbeSettings(), concept_names=["a", "b"])
    with pytest.raises(FailedPrecondition, match="FitProbe"):
        build_method("LINEAR_PROBE", 1).fit(x)
    with pytest.raises(ResourceExhausted, match="smaller activation set"):
        check_fits(10**8, 4096)
