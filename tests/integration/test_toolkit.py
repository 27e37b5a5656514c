"""The toolkit over real services (one model-server and one concept-service
for the module): the logit lens against the bare model, extractive labels of
a planted concept, a probe recovering a planted direction, interpreto's
reconstruction distances and stability matchings, and
concept_output_gradient against autograd on the bare model."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch

import xaimesh
from tests.fixtures.planted_concepts import FAMILY, planted_direction, planted_token_rows
from tests.integration.test_concept_service import TEXTS, _quiet  # noqa: F401 (autouse fixture)
from xaimesh.concepts import (ConceptExplainer, ExtractiveLabels, ICAConcepts, LinearProbe, NeuronsAsConcepts,
                              PCAConcepts, upload_activations)
from xaimesh.concepts.metrics import FID, FrobeniusNorm, ReconstructionError, Stability
from xaimesh.errors import InvalidArgumentError, from_rpc_error
from xaimesh_contracts.v1 import concept_pb2, model_pb2, model_pb2_grpc
from xaimesh_runtime.client import make_channel

TEXT = "Alice offers a drink to Bob."
PROMPT = "Alice and Bob enter the bar, then Alice offers a drink to Bob."


@pytest.fixture(scope="module")
def mesh(module_launcher, model_server, tmp_path_factory):
    concept = module_launcher.start("concept", "--model-server-address", model_server.address, "--data-dir",
                                    str(tmp_path_factory.mktemp("concept-data")), "--device", "cpu")
    with xaimesh.connect(model_server.address, concept=concept.address, wait_seconds=30) as mesh:
        yield mesh


def test_a_planted_concept_gets_a_label_from_its_word_set(mesh):
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


def test_a_probe_recovers_a_planted_direction_and_is_a_concept(mesh):
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


def test_reconstruction_error_and_stability_matchings(mesh):
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


def test_concept_output_gradient_equals_autograd_on_the_bare_model(mesh, tiny_lm_path):
    from transformers import AutoModelForCausalLM

    model = mesh.model()
    split_model = xaimesh.ModelWithSplitPoints(model, split_points=[1])
    acts = split_model.get_activations(TEXTS, activation_granularity=split_model.activation_granularities.TOKEN)
    concepts = PCAConcepts(split_model, nb_concepts=4).fit(acts)
    (raw,) = concepts.concept_output_gradient(TEXT, concepts_x_gradients=False, normalization=False)
    (normed,) = concepts.concept_output_gradient(TEXT)
    ids = model.tokenizer.encode(TEXT, add_special_tokens=True)
    (rows,) = model.activations([TEXT], split_points=[1], granularity="ALL_TOKENS", show_progress=False).values()
    codes = concepts.encode_activations(rows.rows)
    offset = concepts.decode_concepts(np.zeros((1, 4), np.float32))[0]
    decoder = concepts.decode_concepts(np.eye(4, dtype=np.float32)) - offset

    bare = AutoModelForCausalLM.from_pretrained(tiny_lm_path).eval()
    c = torch.from_numpy(codes).requires_grad_(True)

    def swap(module, args, output):
        new = (c @ torch.from_numpy(decoder) + torch.from_numpy(offset))[None]
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = bare.model.layers[1].register_forward_hook(swap)
    logits = bare(torch.tensor([ids])).logits[0]
    handle.remove()
    expected = np.stack([torch.autograd.grad(logits[p - 1, ids[p]], c, retain_graph=True)[0].numpy()
                         for p in range(1, len(ids))])
    assert raw.shape == (len(ids) - 1, len(ids), 4)
    assert np.abs(raw - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
    # The tokens each concept direction promotes: U . D_j of the bare model.
    tokens = concepts.output_tokens(top_k=3)
    logit_weights = decoder.astype(np.float64) @ bare.lm_head.weight.detach().double().numpy().T
    assert len(tokens) == 4
    assert [v for _, v in tokens[0]["promoted"]] == pytest.approx(sorted(logit_weights[0])[::-1][:3], rel=1e-4)
    assert [v for _, v in tokens[0]["suppressed"]] == pytest.approx(sorted(logit_weights[0])[:3], rel=1e-4)
    # The concept page of these concepts, over the same services.
    from xaimesh.concepts import concept_page

    page = concept_page(concepts, acts, labels={0: "first"}, importance_text=TEXT, k_examples=2)
    assert [c.index for c in page.cards] == [0, 1, 2, 3] and page.cards[0].llm_label == "first"
    assert all(c.promoted and c.importance is not None and c.examples for c in page.cards)
    assert page.cards[0].importance == pytest.approx(np.abs(expected * codes[None]).sum(axis=1).mean(axis=0)[0],
                                                     rel=1e-3)
    assert "<svg" in page.html()
    weighted = expected * codes[None]
    weighted /= np.abs(weighted).sum(axis=(1, 2), keepdims=True)
    assert np.abs(normed - weighted).max() < 1e-4
    assert np.allclose(np.abs(normed).sum(axis=(1, 2)), 1.0, atol=1e-5)

def test_the_lens_of_the_sdk_equals_the_bare_model(mesh, tiny_lm_path, tmp_path):
    from transformers import AutoModelForCausalLM

    model = mesh.model()
    out = xaimesh.LogitLens(model, model.tokenizer, top_k=4)(PROMPT)
    bare = AutoModelForCausalLM.from_pretrained(tiny_lm_path).eval()
    with torch.no_grad():
        hf = bare(torch.tensor([out.input_token_ids]), output_hidden_states=True)
        rows = [bare.lm_head(bare.model.norm(h[0])) for h in hf.hidden_states[:-1]] + [hf.logits[0]]
        expected = torch.softmax(torch.stack(rows).double(), -1).numpy()
    assert out.shape == (model.num_layers + 1, len(out.input_token_ids), 4)
    assert out.layers == ["embeddings", *model.info.split_points]
    assert np.abs(out.top_probabilities - -np.sort(-expected, -1)[..., :4]).max() < 1e-5
    assert "".join(out.input_tokens) == PROMPT

    plot = xaimesh.plot_lens(out, show=False)
    text = str(plot)
    assert text.splitlines()[-1].strip().startswith(model.info.split_points[-1])
    page = plot.save_html(tmp_path / "lens.html").read_text(encoding="utf-8")
    assert page.count("<tr>") == model.num_layers + 2 and "Alice" in page
    # A list of texts gives a list of outputs.
    assert [o.text for o in xaimesh.LogitLens(model)(["the cat", "a dog"])] == ["the cat", "a dog"]


def test_a_lens_on_a_classifier_is_refused(mesh):
    with pytest.raises(InvalidArgumentError, match="not a causal LM") as info:
        xaimesh.LogitLens(mesh.model("tiny-llama-classifier"))("a good film")
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("request_, field", [
    (model_pb2.LogitLensRequest(input_ids=[1, 2], top_k=101), "top_k"),
    (model_pb2.LogitLensRequest(), "input_ids"),
    (model_pb2.LogitLensRequest(input_ids=[10**9]), "input_ids"),
])
def test_bad_lens_requests_name_the_field(model_server, request_, field):
    channel = make_channel(model_server.address)
    try:
        with pytest.raises(grpc.RpcError) as info:
            model_pb2_grpc.ModelServiceStub(channel).LogitLens(request_, timeout=30)
    finally:
        channel.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert [v.field for v in from_rpc_error(info.value, "model-server").field_violations] == [field]
