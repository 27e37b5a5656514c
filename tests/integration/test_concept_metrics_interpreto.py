"""The reference toolkit's reconstruction distances and Stability matchings
through the SDK and a real concept-service."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.test_concept_service import _quiet, connect, start_concept  # noqa: F401 (autouse fixture)


def test_reconstruction_error_and_stability_matchings(launcher, model_server, tmp_path):
    from xaimesh.concepts import ICAConcepts, PCAConcepts, upload_activations
    from xaimesh.concepts.metrics import FID, FrobeniusNorm, ReconstructionError, Stability

    concept = start_concept(launcher, model_server, tmp_path / "concept-data")
    with connect(model_server, concept) as mesh:
        model = mesh.model()
        x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
        aset = upload_activations(model, x, split_point="model.layers.1")
        pca = PCAConcepts(model, nb_concepts=3, split_point="model.layers.1").fit(aset)
        ica = ICAConcepts(model, nb_concepts=3, split_point="model.layers.1", seed=0).fit(aset)
        rec = pca.decode_concepts(pca.encode_activations(aset)).astype(np.float64)
        error = ReconstructionError(pca, "average_euclidean").compute(aset)
        assert error == pytest.approx(np.linalg.norm(x - rec, axis=1).mean(), rel=1e-5)
        cosine = (x * rec).sum() / (np.linalg.norm(x) * np.linalg.norm(rec))
        assert ReconstructionError(pca, "cosine").compute(aset) == pytest.approx(1 - cosine, rel=1e-4)
        assert ReconstructionError(pca).compute(aset) == pytest.approx(FrobeniusNorm(pca).compute(aset))
        assert ReconstructionError(pca, "wasserstein_1d").compute(aset) == pytest.approx(FID(pca).compute(aset))
        hungarian = Stability(pca, ica).compute()
        maximum = Stability(pca, ica, matching="maximum").compute()
        assert 0 < hungarian <= maximum <= 1
        with pytest.raises(ValueError, match="unknown distance"):
            ReconstructionError(pca, "kl")
