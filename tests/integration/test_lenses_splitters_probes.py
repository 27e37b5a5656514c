"""Over real services: xaimesh.interpreto's lenses and the splitters that
were refused before (AllLayersSplitter, SplitterForClassification) against
bare transformers (interpreto 0.5.2's definitions, read from its wheel,
computed on the same tiny models by hand); centroid probes natively and
interpreto's probes through xaimesh.interpreto against the concept-service's
logic run in-process. (Against interpreto itself:
test_interpreto_reference.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xaimesh
from tests.integration.test_concept_service import _quiet  # noqa: F401 (autouse fixture)
from tests.integration.test_toolkit import mesh  # noqa: F401 (one model-server and concept-service per module)
from xaimesh.concepts import CentroidProbe, ConceptExplainer, upload_activations
from xaimesh.errors import InvalidArgumentError

TEXT = "Alice offers a drink to Bob, then the cat sat."
TEXTS = ["Alice and Bob enter the bar.", "a good film", "The cat sleeps on the warm mat today."]




def _bare(path, cls_name):
    import transformers

    return getattr(transformers, cls_name).from_pretrained(path).eval()


def test_all_layers_splitter_is_every_block_boundary(mesh, tiny_lm_path):
    from xaimesh.interpreto import AllLayersSplitter

    model = mesh.model()
    splitter = AllLayersSplitter(model)
    layers = list(model.info.split_points)
    assert splitter.split_points == [f"model.{p}" for p in layers]  # nnsight's root "model." as interpreto names them
    assert splitter.activation_names == [f"model.{layers[0]}.input", *splitter.split_points]
    states = splitter.get_activations(TEXT)
    bare = _bare(tiny_lm_path, "AutoModelForCausalLM")
    ids = model.tokenizer.encode(TEXT, add_special_tokens=True)
    seen = {}
    hook = bare.model.norm.register_forward_pre_hook(lambda m, a: seen.update(last=a[0]) and None)
    with torch.no_grad():
        out = bare(torch.tensor([ids]), output_hidden_states=True)
    hook.remove()
    expected = [*out.hidden_states[:-1], seen["last"]]
    assert len(states) == len(expected) == model.num_layers + 1
    for got, want in zip(states, expected, strict=True):
        assert got.shape == (1, len(ids), model.hidden_size)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(InvalidArgumentError, match="apply_head"):
        splitter.apply_head(states[0])
    with pytest.raises(InvalidArgumentError, match="layer_path"):
        AllLayersSplitter(model, layer_path="transformer.h")


def test_logit_lens_results_are_interpretos(mesh, tiny_lm_path):
    from xaimesh.interpreto import AllLayersSplitter, LogitLens, TunedLens, plot_lens

    model = mesh.model()
    splitter = AllLayersSplitter(model)
    lens = LogitLens(splitter, top_k=3)
    results = lens.explain(TEXT)
    ids = model.tokenizer.encode(TEXT, add_special_tokens=True)
    assert list(results) == splitter.activation_names
    # interpreto's definition on the bare model: every boundary through the final norm and lm_head,
    # softmax, top-k; aligned: the last position dropped.
    bare = _bare(tiny_lm_path, "AutoModelForCausalLM")
    seen = {}
    hook = bare.model.norm.register_forward_pre_hook(lambda m, a: seen.update(last=a[0]) and None)
    with torch.no_grad():
        out = bare(torch.tensor([ids]), output_hidden_states=True)
        hook.remove()
        states = torch.cat([*out.hidden_states[:-1], seen["last"]])
        probs = bare.lm_head(bare.model.norm(states)).softmax(-1)
    top = probs.topk(3, dim=-1)
    for row, name in enumerate(splitter.activation_names):
        assert results[name]["top_indices"].shape == (1, len(ids) - 1, 3)
        torch.testing.assert_close(results[name]["top_scores"][0], top.values[row, :-1], rtol=1e-4, atol=1e-5)
    unaligned = lens.explain(TEXT, align=False)
    assert unaligned[splitter.activation_names[-1]]["top_indices"].shape == (1, len(ids), 3)

    # generate: greedy continuation, then the lens of its tokens (aligned: the prediction of each generated token).
    text, generated = lens.generate("Alice and Bob", max_new_tokens=4)
    prompt = model.tokenizer.encode("Alice and Bob", add_special_tokens=True)
    with torch.no_grad():
        greedy = bare.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False)[0, len(prompt):]
    assert text == model.tokenizer.decode(greedy.tolist())
    last = generated[splitter.activation_names[-1]]["top_indices"][0, :, 0]
    assert torch.equal(last, greedy[: len(last)])  # the model's own top-1 is what greedy generation chose

    tuned = TunedLens(splitter, top_k=3)  # zero translators: the logit lens
    assert all(torch.equal(tuned.explain(TEXT)[k]["top_scores"], results[k]["top_scores"]) for k in results)
    losses = tuned.fit(TEXTS, epochs=2, learning_rate=1e-2)
    assert len(losses) == 2 and tuned.lens_id.startswith("tunedLenses/")
    fitted = tuned.explain(TEXT)
    assert not torch.equal(fitted[splitter.activation_names[0]]["top_scores"],
                           results[splitter.activation_names[0]]["top_scores"])
    again = TunedLens(splitter, top_k=3, lens_id=tuned.lens_id).explain(TEXT)
    assert all(torch.equal(again[k]["top_scores"], fitted[k]["top_scores"]) for k in fitted)
    with pytest.raises(ValueError, match="positive"):
        tuned.fit(TEXTS, epochs=0)
    assert plot_lens(fitted, TEXT, tokenizer=model.tokenizer) is None


def test_splitter_for_classification_reads_the_heads_input(mesh, tiny_classifier_path):
    from xaimesh.interpreto import SplitterForClassification, SplitterForGeneration

    model = mesh.model("tiny-llama-classifier")
    splitter = SplitterForClassification(model, batch_size=4, device_map="cpu")
    assert splitter.split_point == "score"  # interpreto's search: classifier, classification_head, score
    activations, predictions = splitter.get_activations(TEXTS)
    bare = _bare(tiny_classifier_path, "AutoModelForSequenceClassification")
    rows, labels = [], []
    hook = bare.score.register_forward_pre_hook(lambda m, a: rows.append(a[0][0]) and None)
    with torch.no_grad():
        for text in TEXTS:
            logits = bare(torch.tensor([model.tokenizer.encode(text, add_special_tokens=True)])).logits
            labels.append(int(logits.argmax(-1)))
    hook.remove()
    # interpreto takes position 0 of the head's input with a right-padding tokenizer, -1 with a left-padding one.
    position = -1 if getattr(model.tokenizer, "padding_side", "right") == "left" else 0
    torch.testing.assert_close(activations, torch.stack([r[position] for r in rows]), rtol=1e-4, atol=1e-4)
    assert predictions.tolist() == labels
    with pytest.raises(ValueError, match="not a sequence classification model"):
        SplitterForClassification(mesh.model())
    with pytest.raises(TypeError, match="not a causal language model"):
        SplitterForGeneration(model, split_point=1)
    with pytest.raises(ValueError, match="not valid"):
        SplitterForClassification(model, split_point="classifier")


def test_a_pooled_classification_head_is_refused_with_the_reason(module_launcher):
    from tests.fixtures.family_models import family_dir
    from xaimesh.interpreto import SplitterForClassification

    server = module_launcher.start("model", "--model", str(family_dir("bert")))
    with xaimesh.connect(server.address, wait_seconds=30) as mesh:
        with pytest.raises(InvalidArgumentError, match="pooled vector per text") as info:
            SplitterForClassification(mesh.model())
        assert "CLS_TOKEN" in str(info.value)


def _planted_cluster(d: int, n: int = 400, seed: int = 0):
    from tests.unit.concept.test_concept_centroid_probes import planted_cluster

    return planted_cluster(n=n, d=d, seed=seed)


def test_a_centroid_probe_over_the_services(mesh):
    import grpc

    from xaimesh_concept.probes import ProbeSettings, fit_probe

    model = mesh.model()
    x, y, u = _planted_cluster(model.hidden_size)
    aset = upload_activations(model, x, split_point="model.layers.1")
    probe = CentroidProbe(model, split_point="model.layers.1", metric="cosine", normalization="standardization",
                          seed=2).fit(aset, y, concept_names=["planted"], show_progress=False)
    metrics = probe.metrics_["planted"]
    assert metrics["test_auc"] > 0.99 and metrics["test_positives"] + metrics["test_negatives"] == 80
    assert probe.get_dictionary()[0] @ u > 0.95
    local = fit_probe(x, y, ProbeSettings(method="CENTROID_COSINE", normalization="STANDARDIZATION", seed=2))
    np.testing.assert_allclose(probe.encode_activations(aset), local.concept_model.encode(x), rtol=1e-5, atol=1e-6)
    loaded = ConceptExplainer.load(mesh, probe.concept_model_)
    assert isinstance(loaded, CentroidProbe) and loaded.options["method"] == "CENTROID_COSINE"
    with pytest.raises(InvalidArgumentError, match="no decoder") as info:
        loaded.decode_concepts(np.zeros((2, 1), np.float32))
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(InvalidArgumentError, match="squared radius") as info:
        CentroidProbe(model, split_point="model.layers.1", metric="svdd", bias_calibration="midpoint").fit(
            aset, y, show_progress=False)
    assert [v.field for v in info.value.field_violations] == ["bias_calibration"]
    with pytest.raises(InvalidArgumentError, match="shrinkage"):
        CentroidProbe(model, split_point="model.layers.1", metric="diagonal_mahalanobis", shrinkage=2.0).fit(
            aset, y, show_progress=False)


def test_interpretos_probes_through_the_compatibility_layer(mesh):
    from sklearn.linear_model import LogisticRegression

    from xaimesh.interpreto import ModelWithSplitPoints
    from xaimesh.interpreto.concepts import CosineCentroidProbe, LogisticRegressionProbe, ProbeExplainer
    from xaimesh.interpreto.concepts.probes import Standardization, Whitening, midpoint_bias
    from xaimesh.interpreto.concepts.probes.sklearn import SklearnProbeExplainer
    from xaimesh_concept.probes import ProbeSettings, fit_probe

    model = mesh.model()
    splitter = ModelWithSplitPoints(model, split_point=1)
    x, y, _ = _planted_cluster(model.hidden_size, n=200, seed=1)
    acts, labels = torch.from_numpy(x), torch.from_numpy(y)[:, None].float()
    for probe, settings in ((CosineCentroidProbe(normalization=Standardization(), bias_calibrator=midpoint_bias),
                             {"method": "CENTROID_COSINE", "normalization": "STANDARDIZATION",
                              "bias_calibration": "MIDPOINT"}),
                            (LogisticRegressionProbe(), {"method": "LOGISTIC_REGRESSION", "max_iterations": 20})):
        explainer = ProbeExplainer(splitter, probe)
        with pytest.raises(RuntimeError, match="not fitted"):
            explainer.activations_to_concepts(acts)
        explainer.fit(acts, labels)
        assert probe.fitted and probe.nb_concepts == 1
        scores = explainer.activations_to_concepts(acts)
        # interpreto fits on every row: the concept-service's fit with no held-out rows
        expected = fit_probe(x, y, ProbeSettings(test_fraction=0, **settings)).concept_model.encode(x)
        torch.testing.assert_close(scores, torch.from_numpy(expected), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="same number of samples"):
        ProbeExplainer(splitter, CosineCentroidProbe()).fit(acts, labels[:-1])
    with pytest.raises(InvalidArgumentError, match="full rank"):
        Whitening(rank=4)
    with pytest.raises(InvalidArgumentError, match="bias_calibrator"):
        CosineCentroidProbe(bias_calibrator=lambda s, t: s.mean(0))
    with pytest.raises(TypeError, match="Probe instance"):
        ProbeExplainer(splitter, "cosine")
    # scikit-learn probes run in this process, as interpreto's
    local = SklearnProbeExplainer(splitter, LogisticRegression, {"max_iter": 200})
    local.fit(acts, y)
    reference = LogisticRegression(max_iter=200).fit(x, y)
    torch.testing.assert_close(local.activations_to_concepts(acts)[:, 0],
                               torch.from_numpy(reference.decision_function(x)))
