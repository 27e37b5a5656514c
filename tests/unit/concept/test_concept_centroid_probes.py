"""Centroid probes (interpreto 0.5.2's centroid.py; docs/probes.md): a
planted cluster is found by every metric and normalisation, the scores are
the closed forms (numpy, written from the definitions), the calibrations and
the SVDD sphere decide, and a fitted centroid probe is a concept model
(stored, reloaded, exported and imported) without a decoder."""

import numpy as np
import pytest

from xaimesh_concept.common import Provenance
from xaimesh_concept.methods import METHOD_NAMES
from xaimesh_concept.probes import CENTROID_PREFIX, METHODS, NORMALIZATIONS, ProbeSettings, fit_probe
from xaimesh_concept.workspace import ConceptWorkspace
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

CENTROID_METHODS = [m for m in METHODS if m.startswith(CENTROID_PREFIX)]


def planted_cluster(n: int = 800, d: int = 16, seed: int = 0):
    """(rows [n, d] float32, labels [n], the planted unit direction u): anisotropic rows with an offset; the
    positive rows (30 %) are shifted by 4 u."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 2.0, size=d)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    y = (rng.random(n) < 0.3).astype(np.int64)
    x = rng.normal(size=(n, d)) * scale + 4.0 * u * y[:, None] + rng.normal(size=d)
    return x.astype(np.float32), y, u


@pytest.mark.parametrize("method", CENTROID_METHODS)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_every_centroid_probe_finds_a_planted_cluster(method, normalization):
    x, y, u = planted_cluster()
    fit = fit_probe(x, y, ProbeSettings(method=method, normalization=normalization))
    assert fit.concept_model.method_name == "CENTROID_PROBE" and fit.weight is None
    direction = fit.concept_model.get_dictionary()[0] if hasattr(fit.concept_model, "get_dictionary") \
        else fit.concept_model._dictionary()[0]
    assert direction @ u > 0.95  # from the training mean towards the positive rows
    (test,) = fit.test
    assert fit.test_rows == 160 and test.auc > 0.7, test
    if method in ("CENTROID_DOT_PRODUCT", "CENTROID_COSINE") and normalization != "NONE":
        assert test.auc > 0.99


def _standardize(x):
    mean, std = x.mean(0), x.std(0)
    return (x - mean) / np.maximum(std, 1e-8)


@pytest.mark.parametrize("shrinkage", [1.0, 0.3, 0.0])
def test_scores_are_the_closed_forms(shrinkage):
    x, y, _ = planted_cluster(n=300, d=8, seed=2)
    x64 = x.astype(np.float64)
    c = x64[y == 1].mean(0)
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    expected = {"CENTROID_DOT_PRODUCT": x64 @ c, "CENTROID_COSINE": unit(x64) @ unit(c),
                "CENTROID_SQ_L2": -((x64 - c) ** 2).sum(1)}
    z = _standardize(x64)
    cz = z[y == 1].mean(0)
    var = shrinkage * z.var(0) + (1 - shrinkage) * z[y == 1].var(0)
    expected["CENTROID_DIAGONAL_MAHALANOBIS"] = -(((z - cz) ** 2) / var).sum(1)
    for method, want in expected.items():
        settings = ProbeSettings(method=method, test_fraction=0, shrinkage=shrinkage)  # Mahalanobis: standardised
        got = fit_probe(x, y, settings).concept_model.encode(x)[:, 0]
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), method


def test_calibrated_distances_and_the_svdd_sphere_decide():
    x, y, _ = planted_cluster(seed=4)
    for method in ("CENTROID_SQ_L2", "CENTROID_DIAGONAL_MAHALANOBIS"):
        plain = fit_probe(x, y, ProbeSettings(method=method))
        assert plain.test[0].balanced_accuracy == 0.5  # bias 0: every distance score is negative
        calibrated = fit_probe(x, y, ProbeSettings(method=method, bias_calibration="MIDPOINT"))
        # A distance to the positive centroid alone separates these classes moderately (AUC about 0.8).
        assert calibrated.test[0].balanced_accuracy > 0.7, calibrated.test
        assert calibrated.test[0].auc == pytest.approx(plain.test[0].auc)  # a bias moves no ranking
    # SVDD: at the optimum of r^2 + C mean_pos relu(d - r^2), d/dr^2 = 1 - C x (share of positives outside) = 0,
    # so 1 / C of the positive rows lie outside the sphere (score < 0).
    svdd = fit_probe(x, y, ProbeSettings(method="CENTROID_SVDD", normalization="STANDARDIZATION", test_fraction=0,
                                         max_iterations=300, svdd_c=5.0))
    probe = svdd.concept_model
    assert float(probe.bias_[0]) > 0  # the squared radius
    inside = probe.encode(x)[:, 0] > 0
    assert abs((1 - inside[y == 1].mean()) - 1 / 5) < 0.03, inside[y == 1].mean()
    assert inside[y == 0].mean() < 0.5 * inside[y == 1].mean()


def test_bad_centroid_settings_name_their_field():
    x, y, _ = planted_cluster(n=100)
    for settings, field in [(ProbeSettings(method="CENTROID_SVDD", bias_calibration="MIDPOINT"), "bias_calibration"),
                            (ProbeSettings(method="CENTROID_DIAGONAL_MAHALANOBIS", shrinkage=1.5), "shrinkage"),
                            (ProbeSettings(method="CENTROID_SVDD", svdd_c=0.0), "svdd_c"),
                            (ProbeSettings(method="CENTROID_COSINE", normalization="ZCA"), "normalization")]:
        with pytest.raises(InvalidArgument) as info:
            fit_probe(x, y, settings)
        assert info.value.field == field
    defaults = ProbeSettings(method="CENTROID_SVDD").check()
    assert (defaults.learning_rate, defaults.max_iterations, defaults.normalization) == (5e-2, 20, "NONE")
    assert ProbeSettings(method="CENTROID_DIAGONAL_MAHALANOBIS").check().normalization == "STANDARDIZATION"
    assert ProbeSettings().check().normalization == "NONE"


def test_a_stored_centroid_probe_is_a_concept_model_without_a_decoder(tmp_path):
    x, y, u = planted_cluster(n=400)
    ws = ConceptWorkspace(str(tmp_path))
    info = ws.store.put_activation_set(x, [Provenance(i, 0, 1, f"t{i}") for i in range(len(x))])
    stored, fit, names = ws.fit_probe(info.name, np.c_[y, 1 - y], ProbeSettings(method="CENTROID_COSINE"),
                                      concept_names=["planted", "rest"])
    assert stored.method == "CENTROID_PROBE" and stored.nb_concepts == 2 and names == ["planted", "rest"]
    assert stored.options["metrics"][0]["test"]["auc"] == pytest.approx(fit.test[0].auc)
    codes = ws.encode_all(stored.name, info.name)
    assert np.allclose(codes, fit.concept_model.encode(x), atol=1e-6)
    assert ws.get_dictionary(stored.name)[0] @ u > 0.95
    again = ConceptWorkspace(str(tmp_path))  # a restart: reloaded from disk
    _, probe = again.load_model(stored.name)
    assert np.array_equal(probe.encode(x), codes)
    with pytest.raises(FailedPrecondition, match="no decoder"):
        probe.decode(codes[:2])
    imported, _ = ws.store.import_concept_model(ws.store.export_concept_model(stored.id))
    _, reimported = ws.load_model(imported.name)
    assert np.array_equal(reimported.encode(x), codes)
    with pytest.raises(FailedPrecondition, match="FitProbe"):
        ws.fit(info.name, "CENTROID_PROBE", 1)
    assert "CENTROID_PROBE" not in METHOD_NAMES
