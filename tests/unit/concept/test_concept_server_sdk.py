"""The SDK's split model, activation sets, concept explainers and metrics
against an in-process concept-service and a fake model-server."""

from __future__ import annotations

import numpy as np
import pytest

from xaimesh_contracts.v1 import model_pb2, model_pb2_grpc

from test_concept_server import HIDDEN, N_LAYERS, TEXTS, FakeModelServer, _config, all_expected  # noqa: E402

from xaimesh_concept.server import ConceptServicer
from xaimesh_runtime.server import start_server


class FakeWithInfo(FakeModelServer):
    def GetModel(self, request, context):
        return model_pb2.GetModelResponse(model=model_pb2.ModelInfo(
            name="models/fake-lm", model_id="fake-lm", num_layers=N_LAYERS, hidden_size=HIDDEN,
            split_points=[f"model.layers.{i}" for i in range(N_LAYERS)], is_default=True))


@pytest.fixture()
def mesh(tmp_path, monkeypatch):
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")
    from xaimesh.mesh import Mesh

    fake = FakeWithInfo()

    def register(server):
        model_pb2_grpc.add_ModelServiceServicer_to_server(fake, server)
        return ["xaimesh.v1.ModelService"]

    ms = start_server(_config(), register)
    servicer = ConceptServicer(str(tmp_path / "data"), ms.address, default_device="cpu")
    cs = start_server(_config(), servicer.register)
    assert ms.wait_ready(10) and cs.wait_ready(10)
    m = Mesh({"model": ms.address, "concept": cs.address})
    yield m
    m.close()
    cs.stop(grace=0)
    ms.stop(grace=0)
    servicer.close()


def test_split_model_activation_sets(mesh, tmp_path):
    import xaimesh
    from xaimesh.concepts import ActivationSet

    model = mesh.model()
    sm = xaimesh.ModelWithSplitPoints(model, split_points=[1])
    assert sm.activation_granularities.TOKEN.name == "TOKEN" and sm.aggregation_strategies.MAX
    with pytest.raises(ValueError, match="out of range"):
        xaimesh.ModelWithSplitPoints(model, split_points=[7])
    with pytest.warns(UserWarning, match="1 of 6 texts"):
        acts = sm.get_activations(TEXTS, activation_granularity=sm.activation_granularities.TOKEN)
    assert isinstance(acts, ActivationSet)
    expected = all_expected(1)
    assert acts.shape == expected.shape and len(acts) == len(expected) and acts.dtype == "float32"
    assert acts.split_point == "model.layers.1" and acts.granularity.name == "TOKEN"
    assert "ActivationSet('activationSets/" in repr(acts)
    np.testing.assert_array_equal(acts.numpy(), expected)
    np.testing.assert_array_equal(acts[3], expected[3])
    np.testing.assert_array_equal(acts[-1], expected[-1])
    np.testing.assert_array_equal(acts[2:9], expected[2:9])
    np.testing.assert_array_equal(acts[::5], expected[::5])
    np.testing.assert_array_equal(acts[::-3], expected[::-3])
    np.testing.assert_array_equal(acts[8:2:-2], expected[8:2:-2])
    np.testing.assert_array_equal(acts[3, 2], expected[3, 2])
    np.testing.assert_array_equal(acts[expected[:, 0] > 0], expected[expected[:, 0] > 0])
    np.testing.assert_array_equal(np.asarray(acts), expected)
    np.testing.assert_array_equal(acts[[4, 1, 2, 20]], expected[[4, 1, 2, 20]])
    np.testing.assert_array_equal(acts[1:4, 2], expected[1:4, 2])
    assert acts.torch().shape == expected.shape
    prov = acts.provenance()
    assert [p.text for p in prov] == [w for t in TEXTS for w in t.split()]
    assert acts.provenance(2, 4)[0].text == TEXTS[0].split()[2]
    with pytest.raises(IndexError):
        acts[len(expected)]

    # several split points, and inputs from files
    (tmp_path / "t.txt").write_text("one two three\n\nfour five\n")
    (tmp_path / "t.jsonl").write_text('{"text": "one two three"}\n"four five"\n')
    (tmp_path / "t.csv").write_text('id,text\n1,one two three\n2,four five\n')
    sm2 = xaimesh.ModelWithSplitPoints(model, split_points=[0, 3])
    for source in ("t.txt", "t.jsonl", "t.csv"):
        sets = sm2.get_activations(str(tmp_path / source))
        assert list(sets) == [0, 3] and [s.shape[0] for s in sets.values()] == [5, 5]
        np.testing.assert_array_equal(sets[3].numpy(), all_expected(3, ["one two three", "four five"]))

    class FakeDataset:  # what the SDK needs of a datasets.Dataset
        column_names = ["text", "label"]

        def __getitem__(self, key):
            return ["alpha beta", "gamma"] if key == "text" else [0, 1]

    assert len(sm.get_activations(FakeDataset())) == 3
    assert sm.get_activations("just one text").shape == (3, HIDDEN)

    listed = ActivationSet.list(mesh)
    assert acts in listed
    acts.delete()
    assert acts not in ActivationSet.list(mesh)


def test_explainers_metrics_and_persistence(mesh, tmp_path):
    import xaimesh
    from xaimesh.concepts import (ConceptExplainer, NeuronsAsConcepts, PCAConcepts, SemiNMFConcepts,
                                  TopKSAEConcepts, load_file, upload_activations)
    from xaimesh.concepts.metrics import FID, L0, MSE, DeadConcepts, Sparsity, Stability, compute_metrics
    from xaimesh.errors import InvalidArgumentError, NotFoundError

    sm = xaimesh.ModelWithSplitPoints(mesh.model(), split_points=[1, 2])
    sets = sm.get_activations(TEXTS[:1] + TEXTS[2:])
    with pytest.raises(ValueError, match="several split points"):
        SemiNMFConcepts(sm, nb_concepts=3)
    with pytest.raises(TypeError, match="top_k"):
        SemiNMFConcepts(sm, nb_concepts=3, split_point=1, top_k=3)
    concepts = SemiNMFConcepts(sm, nb_concepts=3, split_point=1, device="cpu", max_iterations=30)
    assert not concepts.is_fitted and concepts.get_params()["max_iterations"] == 30
    assert concepts.fit(sets) is concepts and concepts.is_fitted
    assert concepts.concept_model_.startswith("conceptModels/") and concepts.mesh is mesh
    assert concepts.training_log_ and {"step", "loss"} <= set(concepts.training_log_[0])
    assert concepts.activation_set_ == sets[1].name and concepts.hidden_size_ == HIDDEN
    X = sets[1].numpy()
    codes = concepts.encode_activations(sets)
    np.testing.assert_array_equal(codes, concepts.encode_activations(sets[1]))
    np.testing.assert_allclose(concepts.encode_activations(X), codes, rtol=1e-5, atol=1e-6)
    rec = concepts.decode_concepts(codes)
    dictionary = concepts.get_dictionary()
    np.testing.assert_allclose(rec, codes @ dictionary, rtol=1e-4, atol=1e-4)
    assert MSE(concepts).compute(sets) == pytest.approx(np.mean((X - rec) ** 2), rel=1e-4)
    assert MSE(concepts).compute(X) == pytest.approx(np.mean((X - rec) ** 2), rel=1e-4)
    assert Sparsity(concepts).compute(sets[1]) == pytest.approx(np.mean(codes != 0))
    assert L0(concepts).compute(sets[1]) == pytest.approx(np.mean((codes != 0).sum(1)))
    assert 0 <= DeadConcepts(concepts).compute(sets[1]) <= 1 and FID(concepts).compute(sets[1]) >= 0
    assert set(compute_metrics(concepts, sets[1])) >= {"MSE", "FID", "L0"}

    top = concepts.top_examples(sets[1], [0], k=2)
    assert top[0].concept_index == 0 and len(top[0].examples) == 2

    again = SemiNMFConcepts.load(sm, concepts.concept_model_)
    assert again.split_point == 1 and again.nb_concepts == 3
    np.testing.assert_array_equal(again.encode_activations(sets[1]), codes)
    generic = ConceptExplainer.load(mesh, concepts.id)
    assert type(generic) is SemiNMFConcepts
    with pytest.raises(TypeError, match="SemiNMFConcepts"):
        PCAConcepts.load(mesh, concepts.id)
    path = concepts.export(tmp_path / "c.safetensors")
    imported = load_file(sm, path, display_name="imported")
    assert imported.concept_model_ != concepts.concept_model_
    np.testing.assert_array_equal(imported.encode_activations(sets[1]), codes)
    assert Stability([concepts, imported]).compute() == pytest.approx(1.0, abs=1e-5)

    # arrays are uploaded; other methods
    pca = PCAConcepts(mesh, nb_concepts=2).fit(X)
    assert pca.encode_activations(X).shape == (len(X), 2)
    sae = TopKSAEConcepts(sm, 4, split_point=2, epochs=2, top_k=2, batch_size=8).fit(sets)
    assert (np.count_nonzero(sae.encode_activations(sets), axis=1) <= 2).all()
    neurons = NeuronsAsConcepts(sm, split_point=2).fit(sets)
    assert neurons.nb_concepts_ == HIDDEN
    up = upload_activations(sm, X[:10], display_name="mine", split_point=1)
    assert up.shape == (10, HIDDEN) and up.model == "fake-lm"
    with pytest.raises(InvalidArgumentError, match="NaN"):
        upload_activations(mesh, np.full((3, HIDDEN), np.nan, np.float32))
    with pytest.raises(InvalidArgumentError, match="concepts"):
        SemiNMFConcepts(mesh, nb_concepts=50).fit(X[:10])
    imported.delete()
    assert not imported.is_fitted
    with pytest.raises(NotFoundError):
        SemiNMFConcepts.load(mesh, "conceptModels/doesnotexist")
