"""xaimesh.interpreto: interpreto code run by the mesh with only its import
lines changed, on a tiny GPT-2 (built offline) held as a Hugging Face object.

- the seed notebook's twin (examples/seed_demo_interpreto.py, 0.4 API);
- interpreto 0.5.2's documented examples (the class docstrings' Examples,
  as published in the API pages), model names replaced by the tiny model;
- numbers against independent references: activations against bare
  transformers' hidden states, Saliency (input_x_gradient=False) against
  autograd, interpreto's MSE against its formula on the fetched tensors.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["Alice and Bob enter the bar.", "The cat sleeps on the warm mat.", "I am so happy today!",
         "Nobody came to the party, and I felt sad."]


@pytest.fixture(scope="module")
def gpt2_dir():
    from tests.fixtures.family_models import family_dir

    return family_dir("gpt2")


@pytest.fixture(scope="module")
def hf(gpt2_dir, tmp_path_factory):
    """The tiny GPT-2 as a user holds it; no mesh is connected: the first
    explainer starts a local stack on its folder (xaimesh.models)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.fixtures.sdk_state import fresh_sdk_state

    with fresh_sdk_state(tmp_path_factory.mktemp("home")):
        yield AutoModelForCausalLM.from_pretrained(gpt2_dir), AutoTokenizer.from_pretrained(gpt2_dir)


def _seed_twin():
    spec = importlib.util.spec_from_file_location("seed_demo_interpreto", ROOT / "examples" / "seed_demo_interpreto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_seed_notebook_runs_with_only_its_imports_changed(hf, gpt2_dir):
    import torch

    result = _seed_twin().run(str(gpt2_dir), n_texts=80, split_point=1)
    out = result["attributions"][0]
    target_words = out.xaimesh_output.target_elements  # generation: one row per target element (l_g, l)
    assert isinstance(out.attributions, torch.Tensor) and out.attributions.shape == (len(target_words),
                                                                                      len(out.elements))
    assert out.attributions.abs().sum(dim=1).shape == (len(target_words),)  # interpreto's tensor arithmetic
    assert 0.0 <= result["auc"] <= 1.0
    assert len(result["detailed_scores"]) == 1 and all(isinstance(c, torch.Tensor) for c in result["detailed_scores"][0])
    activations = result["activations"]  # 0.4 API: {module path: tensor}
    assert list(activations) == ["transformer.h.1"] and activations["transformer.h.1"].shape[1] == 64
    assert len(result["labels"]) == 20
    assert 0 < result["sparsity"] <= 1
    # interpreto's MSE is ||X - decode(encode(X))||_2 over every element
    explainer = result["concept_explainer"]
    x = activations["transformer.h.1"]
    reconstruction = explainer.concepts_to_activations(explainer.activations_to_concepts(x))
    assert result["mse"] == pytest.approx(float((x - reconstruction).norm()), rel=1e-4)


def test_activations_are_bare_transformers_hidden_states(hf):
    import torch

    from xaimesh.interpreto import ModelWithSplitPoints, SplitterForGeneration

    model, tokenizer = hf
    splitter = SplitterForGeneration(model, split_point=1, tokenizer=tokenizer, batch_size=8, device_map="auto")
    activations, predictions = splitter.get_activations(TEXTS)
    assert predictions is None and splitter.split_point == "transformer.h.1"
    captured = []  # the output of block 1 (hidden_states[2] would be after the final layer norm)
    hook = model.transformer.h[1].register_forward_hook(lambda m, i, o: captured.append(o[0][0] if isinstance(
        o, tuple) else o[0]))
    with torch.no_grad():
        for t in TEXTS:
            model(**tokenizer(t, return_tensors="pt"))
    hook.remove()
    expected = torch.cat(captured)
    torch.testing.assert_close(activations, expected, rtol=1e-4, atol=1e-4)
    per_text, _ = splitter.get_activations(TEXTS, flatten_activations=False)
    assert [len(a) for a in per_text] == [len(tokenizer(t)["input_ids"]) for t in TEXTS]

    mwsp = ModelWithSplitPoints(model, 1, tokenizer=tokenizer)  # 0.5: the second argument is the split point
    acts, _ = mwsp.get_activations(TEXTS, activation_granularity=mwsp.activation_granularities.SAMPLE)
    torch.testing.assert_close(acts[0], expected[:len(tokenizer(TEXTS[0])["input_ids"])].mean(0), rtol=1e-4,
                               atol=1e-4)
    with pytest.warns(DeprecationWarning, match="Multiple split points"):
        assert ModelWithSplitPoints(model, [1, 0], tokenizer=tokenizer).split_point == "transformer.h.1"


def test_saliency_is_interpretos_mean_absolute_gradient(hf):
    import torch

    from xaimesh.interpreto import Granularity, Saliency

    model, tokenizer = hf
    prompt, target = "Alice and Bob enter the bar,", " then Alice"
    out = Saliency(model, tokenizer, granularity=Granularity.TOKEN, input_x_gradient=False)(prompt, target)[0]
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = torch.tensor([prompt_ids + out.targets.tolist()])
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits[0]
    first_target = logits[len(prompt_ids) - 1, ids[0, len(prompt_ids)]]
    (grad,) = torch.autograd.grad(first_target, embeds)
    expected = grad[0, :len(prompt_ids)].abs().mean(dim=-1)
    torch.testing.assert_close(out.attributions[0, :len(prompt_ids)], expected, rtol=1e-3, atol=1e-6)


def test_interpretos_documented_examples(hf):
    """The Examples of interpreto 0.5.2's docstrings (API pages), unchanged but
    for the import lines and the model."""
    import torch

    from xaimesh.errors import InvalidArgumentError
    from xaimesh.interpreto import Granularity, KernelShap, Lime, Saliency, Sobol
    from xaimesh.interpreto.attributions import InferenceModes
    from xaimesh.interpreto.attributions.metrics import Deletion, Insertion

    model, tokenizer = hf
    text = "Alice and Bob enter the bar, then Alice offers a drink to Bob."

    method = KernelShap(model, tokenizer, batch_size=4,
                        inference_mode=InferenceModes.SOFTMAX,
                        n_perturbations=20,
                        granularity=Granularity.WORD)
    explanations = method(text)
    assert isinstance(explanations[0].attributions, torch.Tensor)

    method = Sobol(model, tokenizer, batch_size=4,
                   inference_mode=InferenceModes.LOGITS,
                   n_token_perturbations=8,
                   granularity=Granularity.WORD,
                   sobol_indices_order=Sobol.sobol_indices_orders.FIRST_ORDER,
                   sampler=Sobol.samplers.SOBOL)
    assert method(text)[0].granularity is Granularity.WORD

    with pytest.warns(UserWarning, match="Saliency"):
        method = Saliency(model, tokenizer, batch_size=4)
    explanations = method.explain(text)

    metric = Deletion(model, tokenizer, n_perturbations=100)
    auc, metric_scores = metric.evaluate(explanations)
    assert 0.0 <= auc <= 1.0 and len(metric_scores) == 1
    auc, _ = Insertion(model, tokenizer, n_perturbations=100)(explanations)
    assert 0.0 <= auc <= 1.0

    # Lime's documented HAMMING distance is not a mesh option: refused, naming it
    with pytest.raises(InvalidArgumentError, match="distance_function"):
        Lime(model, tokenizer, batch_size=4,
             inference_mode=InferenceModes.LOG_SOFTMAX,
             n_perturbations=20,
             granularity=Granularity.WORD,
             distance_function=Lime.distance_functions.HAMMING)


def test_concepts_with_the_05_api(hf):
    import torch

    from xaimesh.interpreto import ModelWithSplitPoints
    from xaimesh.interpreto.concepts import NMFConcepts, TopKInputs
    from xaimesh.interpreto.concepts.metrics import SparsityRatio, Sparsity, Stability

    model, tokenizer = hf
    splitter = ModelWithSplitPoints(model, tokenizer=tokenizer, split_point=1, device_map="cpu", batch_size=64)
    word = splitter.activation_granularities.WORD
    activations, _ = splitter.get_activations(TEXTS * 5, activation_granularity=word, tqdm_bar=True)
    explainers = []
    for seed in range(2):
        torch.manual_seed(seed)
        explainer = NMFConcepts(splitter, nb_concepts=4, device="cuda", force_relu=True)
        explainer.fit(activations, max_iter=50)  # interpreto's fit keyword
        explainers.append(explainer)
    codes = explainers[0].activations_to_concepts(activations)
    assert isinstance(codes, torch.Tensor) and codes.shape == (activations.shape[0], 4)
    assert 0.0 <= Stability(*explainers).compute() <= 1.0 + 1e-6
    sparsity = Sparsity(explainers[0]).compute(activations)
    assert SparsityRatio(explainers[0]).compute(activations) == pytest.approx(sparsity / 4)
    assert Sparsity(explainers[0], epsilon=1e-3).compute(activations) <= sparsity
    topk = TopKInputs(concept_explainer=explainers[0], activation_granularity=word, k=3).interpret(
        inputs=TEXTS * 5, latent_activations=activations)
    assert set(topk) == set(range(4))
    # a changed tensor is sent as values: same encoding as the stored set's
    torch.testing.assert_close(explainers[0].activations_to_concepts(activations * 1.0), codes, rtol=1e-4, atol=1e-5)


def test_arguments_the_mesh_cannot_honour_are_refused_by_name(hf):
    from xaimesh.errors import InvalidArgumentError
    from xaimesh.interpreto import ModelWithSplitPoints
    from xaimesh.interpreto.attributions.metrics import Deletion

    model, tokenizer = hf
    with pytest.raises(InvalidArgumentError, match="max_percentage_perturbed"):
        Deletion(model, tokenizer, max_percentage_perturbed=0.5)
    with pytest.raises(InvalidArgumentError, match="forward_kwargs"):
        ModelWithSplitPoints(model, 1, tokenizer=tokenizer).get_activations(
            TEXTS, activation_granularity="TOKEN", forward_kwargs={"use_cache": False})
    with pytest.raises(InvalidArgumentError, match="nnsight"):
        ModelWithSplitPoints(model, 1, "extra", tokenizer=tokenizer)


def test_a_users_own_llm_interface_labels_concepts(hf):
    """interpreto's LLMInterface subclass: the labeling-service builds the
    prompts, generate(prompt) runs here with interpreto's (Role, text) pairs."""
    from xaimesh.interpreto import ModelWithSplitPoints
    from xaimesh.interpreto.commons.llm_interface import LLMInterface, Role
    from xaimesh.interpreto.concepts import LLMLabels, PCAConcepts

    class MyLLM(LLMInterface):
        def __init__(self):
            self.prompts = []

        def generate(self, prompt):
            self.prompts.append(prompt)
            return f"concept seen in {len(prompt[-1][1].splitlines())} lines"

    model, tokenizer = hf
    splitter = ModelWithSplitPoints(model, 1, tokenizer=tokenizer)
    granularity = splitter.activation_granularities.TOKEN
    activations, _ = splitter.get_activations(TEXTS, activation_granularity=granularity)
    explainer = PCAConcepts(splitter, nb_concepts=3)
    explainer.fit(activations)
    llm = MyLLM()
    labels = LLMLabels(concept_explainer=explainer, activation_granularity=granularity, llm_interface=llm,
                       k_examples=5).interpret(concepts_indices="all", inputs=TEXTS, latent_activations=activations)
    assert set(labels) == {0, 1, 2} and all(label.startswith("concept seen in") for label in labels.values())
    assert len(llm.prompts) == 3 and [role for role, _ in llm.prompts[0]] == [Role.SYSTEM, Role.USER]


def test_the_classification_plot_example(hf, tmp_path):
    """visualizations.plot_attributions' classification example (interpreto
    0.5.2 docstring), on a tiny BERT classifier held as an object; the local
    stack serves it next to the GPT-2."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.fixtures.family_models import family_dir
    from xaimesh.interpreto import Lime, plot_attributions

    model = AutoModelForSequenceClassification.from_pretrained(family_dir("bert"))
    tokenizer = AutoTokenizer.from_pretrained(family_dir("bert"))
    classes_names = ["negative", "neutral", "positive"]

    attribution_explainer = Lime(model, tokenizer)
    attributions = attribution_explainer(
        model_inputs="Love and hate are two sides of the same coin.",
        targets=torch.tensor([[0, 1, 2]]),
    )
    plot_attributions(attributions[0], classes_names=classes_names, save_path=tmp_path / "lime.html")
    out = attributions[0]
    assert out.attributions.shape == (3, len(out.elements)) and out.targets.tolist() == [0, 1, 2]
    import re

    page = (tmp_path / "lime.html").read_text()
    visible = re.sub(r"<[^>]+>", "", re.sub(r"<(script|style)>.*?</\1>", "", page, flags=re.S))
    assert all(name in visible for name in classes_names)
    assert "Love and hate are two sides of the same coin." in visible  # the words keep their spaces


def test_inputs_to_concepts_through_get_inputs_to_concepts_model(hf):
    """interpreto's InputsToConceptsAttributionsExplainer example: a fitted
    concept explainer's get_inputs_to_concepts_model() is the model of an
    attribution class; targets are concept indices (docs/inputs-to-concepts.md)."""
    import numpy as np
    import torch

    from xaimesh.interpreto import Occlusion, Saliency
    from xaimesh.interpreto.attributions import ModelTask
    from xaimesh.interpreto.concepts import ModelWithSplitPoints, PCAConcepts

    model, tokenizer = hf
    splitter = ModelWithSplitPoints(model, 1, tokenizer=tokenizer)
    activations, _ = splitter.get_activations(TEXTS, activation_granularity=splitter.activation_granularities.TOKEN)
    explainer = PCAConcepts(splitter, nb_concepts=3)
    explainer.fit(activations)
    (out,) = Occlusion(explainer.get_inputs_to_concepts_model(), tokenizer).explain(TEXTS[0], targets=torch.arange(2))
    assert out.model_task == ModelTask.CONCEPTS and out.attributions.shape == (2, len(out.elements))
    assert out.targets.tolist() == [0, 1]
    (native,) = explainer.native.input_concept_attribution(TEXTS[0], "Occlusion", concepts=[0, 1], show_progress=False)
    np.testing.assert_allclose(out.attributions.numpy(), native.attributions, rtol=1e-6)
    (every,) = Saliency(explainer.get_inputs_to_concepts_model(), tokenizer).explain(TEXTS[1])
    assert every.attributions.shape[0] == 3 and torch.isfinite(every.attributions).all()


def test_topk_inputs_use_vocab_minimal_example(hf):
    """interpreto 0.5.2's TopKInputs minimal example: NeuronsAsConcepts (no
    fit) and use_vocab=True; neuron 0's top tokens and values against every
    vocabulary token run alone through the bare model."""
    from tests.fixtures.planted_concepts import split_rows
    from xaimesh.interpreto.concepts import ModelWithSplitPoints, NeuronsAsConcepts, TopKInputs

    model, tokenizer = hf
    mwsp = ModelWithSplitPoints(model, split_point=1, tokenizer=tokenizer)
    concept_explainer = NeuronsAsConcepts(mwsp)
    method = TopKInputs(concept_explainer=concept_explainer, use_vocab=True, k=10)
    topk_tokens = method.interpret(concepts_indices="all")
    assert len(topk_tokens) == model.config.n_embd
    special = set(tokenizer.all_special_ids)
    ids = np.array([i for i in range(len(tokenizer)) if i not in special])
    neuron0 = split_rows(model.eval(), "transformer.h.1", ids[:, None])[:, 0]
    best = {}
    for i in np.argsort(-neuron0, kind="stable"):
        best.setdefault(tokenizer.decode([int(ids[i])]), float(neuron0[i]))
        if len(best) == 10:
            break
    got = topk_tokens[0]
    assert list(got) == list(best)
    np.testing.assert_allclose(list(got.values()), list(best.values()), rtol=1e-4)


def test_topk_inputs_use_unique_words(hf):
    """TopKInputs(use_unique_words=1) on SAMPLE activations: the top inputs
    are words of the texts, each run as its own text; lemmatize is refused."""
    from xaimesh.concepts.ngrams import extract_ngrams
    from xaimesh.errors import InvalidArgumentError
    from xaimesh.interpreto.concepts import ModelWithSplitPoints, PCAConcepts, TopKInputs

    model, tokenizer = hf
    splitter = ModelWithSplitPoints(model, 1, tokenizer=tokenizer)
    sample = splitter.activation_granularities.SAMPLE
    activations, _ = splitter.get_activations(TEXTS, activation_granularity=sample)
    explainer = PCAConcepts(splitter, nb_concepts=2)
    explainer.fit(activations)
    method = TopKInputs(concept_explainer=explainer, activation_granularity=sample, k=3, use_unique_words=1)
    out = method.interpret(concepts_indices="all", inputs=TEXTS)
    words = set(extract_ngrams(TEXTS, 1))
    assert set(out) == {0, 1} and all(len(top) == 3 and set(top) <= words for top in out.values())
    with pytest.raises(InvalidArgumentError, match="lemmatize"):
        TopKInputs(concept_explainer=explainer, activation_granularity=sample, use_unique_words=1,
                   unique_words_kwargs={"lemmatize": True})
