"""Extractive labels over real services: a planted activation set uploaded to
a real concept-service process, named without an LLM through the SDK."""

from __future__ import annotations

import pytest

from tests.fixtures.planted_concepts import FAMILY, planted_token_rows
from tests.integration.test_concept_service import _quiet, connect, start_concept  # noqa: F401 (autouse fixture)


def test_a_planted_concept_gets_a_label_from_its_word_set(launcher, model_server, tmp_path):
    from xaimesh.concepts import ExtractiveLabels, NeuronsAsConcepts, upload_activations
    from xaimesh.errors import InvalidArgumentError

    concept = start_concept(launcher, model_server, tmp_path / "concept-data")
    with connect(model_server, concept) as mesh:
        model = mesh.model()
        A, prov = planted_token_rows()
        aset = upload_activations(model, A, granularity="TOKEN", provenance=prov, split_point="model.layers.1")
        concepts = NeuronsAsConcepts(model, split_point="model.layers.1").fit(aset)
        labeller = ExtractiveLabels(concepts, "TOKEN", k_examples=50)
        labels = labeller.interpret(latent_activations=aset)
        assert set(labels) == {0, 1} and labels[1] is None
        assert set(labels[0].split(", ")) == FAMILY
        assert [t.text for t in labeller.results_[0].terms] == labels[0].split(", ")
        assert labeller.results_[0].num_examples == 50
        with pytest.raises(InvalidArgumentError, match="out of range"):
            labeller.interpret(latent_activations=aset, concepts_indices=[7])
        with pytest.raises(InvalidArgumentError, match="max_ngram"):
            ExtractiveLabels(concepts, max_ngram=9).interpret(latent_activations=aset)
