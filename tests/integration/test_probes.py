"""Linear probes over real services: a planted direction uploaded to a real
concept-service process, recovered through the SDK, stored and reloaded as a
concept model."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests.fixtures.planted_concepts import planted_direction
from tests.integration.test_concept_service import _quiet, connect, start_concept  # noqa: F401 (autouse fixture)


def test_a_probe_recovers_a_planted_direction_and_is_a_concept(launcher, model_server, tmp_path):
    from xaimesh.concepts import ConceptExplainer, LinearProbe, upload_activations
    from xaimesh.errors import InvalidArgumentError
    from xaimesh_contracts.v1 import concept_pb2

    concept = start_concept(launcher, model_server, tmp_path / "concept-data")
    with connect(model_server, concept) as mesh:
        model = mesh.model()
        x, y, u = planted_direction()
        aset = upload_activations(model, x, split_point="model.layers.1")
        probe = LinearProbe(model, split_point="model.layers.1", normalization="standardization", seed=3)
        probe.fit(aset, y, concept_names=["planted"])
        metrics = probe.metrics_["planted"]
        assert metrics["test_auc"] > 0.9 and metrics["test_balanced_accuracy"] > 0.85, metrics
        assert metrics["test_positives"] + metrics["test_negatives"] == 160
        direction = probe.get_dictionary()[0]
        assert direction @ u > 0.9
        scores = probe.encode_activations(aset)[:, 0]
        assert np.mean((scores > 0) == (y == 1)) > 0.9
        loaded = ConceptExplainer.load(mesh, probe.concept_model_)
        assert isinstance(loaded, LinearProbe) and loaded.metrics_ == probe.metrics_
        assert loaded.options["normalization"] == "STANDARDIZATION"

        with pytest.raises(InvalidArgumentError, match="one label per activation row") as info:
            LinearProbe(model, split_point="model.layers.1").fit(aset, y[:-3])
        assert [v.field for v in info.value.field_violations] == ["labels"]
        # FitConceptModel has no labels: a LINEAR_PROBE is refused there.
        request = concept_pb2.FitConceptModelRequest(activation_set=aset.name, nb_concepts=1,
                                                     method=concept_pb2.CONCEPT_METHOD_LINEAR_PROBE)
        with pytest.raises(InvalidArgumentError, match="FitProbe") as info:
            list(mesh.client("concept").stream("FitConceptModel", request, show_progress=False))
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
