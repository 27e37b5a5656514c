"""The labeling-service as a real process (``xaimesh serve labeling``), with a
real model-server (the tiny 4-layer Llama), a real concept-service and the
fake OpenAI HTTP server, driven through the SDK: get_activations -> SemiNMF
fit -> LLMLabels.interpret -> score; TopKInputs; the ModelServerLLM path.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.fixtures.fake_openai import FakeOpenAIServer

KEY = "sk-proj-INTEGRATIONKEY-0123456789abcdefgh"
TEXTS = [
    "The cat sat on the mat.",
    "A dog ran across the park.",
    "Paris is the capital of France.",
    "Rain fell all night over the quiet town.",
    "Alice and Bob enter the bar, then Alice offers a drink to Bob.",
    "Gradient descent follows the slope downhill.",
    "Seven plus five makes twelve.",
    "She wrote a long letter to her brother.",
]
NB_CONCEPTS = 4


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")


@pytest.fixture(scope="module")
def stack(module_launcher, model_server, tmp_path_factory):
    concept = module_launcher.start("concept", "--model-server-address", model_server.address,
                                    "--data-dir", str(tmp_path_factory.mktemp("concept-data")), "--device", "cpu")
    labeling = module_launcher.start("labeling", "--model-server-address", model_server.address,
                                     "--concept-service-address", concept.address,
                                     env={"XAIMESH_OPENAI_API_KEY": ""})
    return model_server, concept, labeling


@pytest.fixture(scope="module")
def fitted(stack):
    import xaimesh
    from xaimesh.concepts.explainers import SemiNMFConcepts

    model_server, concept, labeling = stack
    mesh = xaimesh.connect(model_server.address, concept=concept.address, labeling=labeling.address,
                           wait_seconds=30)
    split_model = xaimesh.ModelWithSplitPoints(mesh.model(), split_points=[2])
    granularity = split_model.activation_granularities.TOKEN
    activations = split_model.get_activations(inputs=TEXTS, activation_granularity=granularity)
    concepts = SemiNMFConcepts(split_model, nb_concepts=NB_CONCEPTS, device="cpu", max_iterations=50, seed=0)
    concepts.fit(activations)
    yield mesh, split_model, activations, concepts
    mesh.close()


def first_marked(messages):
    """A labeller that names the first highlighted token of the prompt."""
    user = messages[-1]["content"]
    marked = re.search(r"<<\s*([^<>]*?)\s*>>", user)
    word = re.sub(r"\W+", " ", marked.group(1) if marked else "").strip() or "symbols"
    return f"Label: the token {word}"


def test_labels_from_an_openai_compatible_endpoint(fitted, stack):
    from xaimesh.concepts.interpretations import LLMLabels
    from xaimesh.llm import OpenAILLM

    mesh, split_model, activations, concepts = fitted
    labeling = stack[2]
    with FakeOpenAIServer(responder=first_marked) as fake:
        llm = OpenAILLM(api_key=KEY, base_url=fake.base_url, model="gpt-fake", max_retries=2)
        assert KEY not in repr(llm)
        labeller = LLMLabels(concepts, split_model.activation_granularities.TOKEN, llm_interface=llm,
                             k_examples=5, k_context=2)
        fake.fail_429(1, retry_after="0")
        labels = labeller.interpret(inputs=TEXTS, latent_activations=activations, concepts_indices="all")
        assert list(labels) == list(range(NB_CONCEPTS))
        for c, label in labels.items():
            result = labeller.results_[c]
            if result.is_dead:
                continue
            assert result.error is None, result.error
            assert label and label.startswith("the token"), label
            assert result.llm == f"openai:gpt-fake@{fake.base_url}"
            assert 1 <= len(result.examples) <= 5 and result.examples[0].context
            assert result.examples[0].text in result.examples[0].context_text
        assert any(label for label in labels.values())
        auth = {r.headers["authorization"] for r in fake.requests}
        assert auth == {f"Bearer {KEY}"} and all(KEY.encode() not in r.raw_body for r in fake.requests)
        assert [r.status for r in fake.requests].count(429) == 1

        # one concept, by index; the order asked for is kept
        some = labeller.interpret(latent_activations=activations, concepts_indices=[2, 0])
        assert list(some) == [2, 0]

        # scoring with the labeller itself: flagged as optimistic
        fake.responder = lambda messages: "[1, 2]"
        scores = labeller.score(labels, n_examples=3)
        assert scores.scorer_is_labeller and scores.scorer == f"openai:gpt-fake@{fake.base_url}"
        scored = [c for c, label in labels.items() if label]
        assert sorted(scores.scores) == sorted(scored)
        accuracies = [d.balanced_accuracy for d in scores.details if d.error is None]
        assert accuracies and all(0.0 <= a <= 1.0 for a in accuracies)
        assert {d.method for d in scores.details} == {"detection", "fuzzing"}
        for d in scores.details:  # a concept never quiet on the rows searched cannot be scored by detection
            assert d.error is None or d.error.code == "FAILED_PRECONDITION", d.error
        if scores.mean_detection is not None:
            assert 0.0 <= scores.mean_detection <= 1.0

        # another scorer (the model-server's own model): not the labeller
        from xaimesh.llm import ModelServerLLM

        other = labeller.score(labels, scorer=ModelServerLLM(max_new_tokens=8), methods="detection", n_examples=2)
        assert not other.scorer_is_labeller and other.scorer.startswith("model-server:")
    assert KEY not in labeling.log()


def test_model_server_llm_labels(fitted):
    from xaimesh.concepts.interpretations import LLMLabels
    from xaimesh.llm import ModelServerLLM, OpenAILLM

    mesh, split_model, activations, concepts = fitted
    model_id = mesh.model().model_id
    # Sampled: the tiny random model's greedy answer to a chat prompt is only newlines.
    labeller = LLMLabels(concepts, "TOKEN", llm_interface=ModelServerLLM(max_new_tokens=8, temperature=1.0),
                         k_examples=4, k_context=1)
    labels = labeller.interpret(latent_activations=activations)
    assert list(labels) == list(range(NB_CONCEPTS))
    for c, label in labels.items():
        result = labeller.results_[c]
        assert result.llm == f"model-server:{model_id}"
        if label is None:
            assert result.is_dead, result.error
        else:  # gibberish, but a label
            assert isinstance(label, str) and label.strip() and len(label.split()) <= 5
    assert any(labels.values())
    # greedy: the answer holds no usable label, a per-concept error
    greedy = LLMLabels(concepts, "TOKEN", llm_interface=ModelServerLLM(max_new_tokens=4), k_examples=3)
    labels = greedy.interpret(latent_activations=activations, concepts_indices=[1, 3])
    assert list(labels) == [1, 3]
    for c in (1, 3):
        r = greedy.results_[c]
        assert r.label is not None or r.is_dead or r.error.code == "INTERNAL", r.error
    # OpenAILLM without a key or base_url falls back to the model-server's model
    fallback = OpenAILLM(api_key="")
    assert fallback.fallback is not None
    labels = LLMLabels(concepts, "TOKEN", llm_interface=fallback, k_examples=3).interpret(
        latent_activations=activations, concepts_indices=0)
    assert list(labels) == [0]


def test_top_k_inputs(fitted):
    from xaimesh.concepts.interpretations import TopKInputs

    mesh, split_model, activations, concepts = fitted
    top = TopKInputs(concepts, split_model.activation_granularities.TOKEN, k=3).interpret(
        inputs=TEXTS, latent_activations=activations, concepts_indices="all")
    assert list(top) == list(range(NB_CONCEPTS))
    texts = {p.text for p in activations.provenance()}
    for c, inputs in top.items():
        assert len(inputs) <= 3
        values = list(inputs.values())
        assert values == sorted(values, reverse=True)
        assert set(inputs) <= texts
    # the set the model was fitted on is the default
    assert TopKInputs(concepts, k=2).interpret(concepts_indices=1) == {1: dict(list(top[1].items())[:2])}
    with pytest.raises(ValueError, match="granularity"):
        TopKInputs(concepts, "SENTENCE").interpret(latent_activations=activations)


@pytest.mark.slow
def test_real_smollm2_labels_offline(launcher, tmp_path):
    """The embedded SmolLM2-135M-Instruct writes labels, offline (the first
    conversion of the GGUF file may take ~40 s)."""
    import xaimesh
    from xaimesh.concepts.explainers import SemiNMFConcepts
    from xaimesh.concepts.interpretations import LLMLabels

    model_server = launcher.start("model", timeout=600)
    concept = launcher.start("concept", "--model-server-address", model_server.address,
                             "--data-dir", str(tmp_path / "concept-data"), "--device", "cpu")
    labeling = launcher.start("labeling", "--model-server-address", model_server.address,
                              "--concept-service-address", concept.address, env={"XAIMESH_OPENAI_API_KEY": ""})
    mesh = xaimesh.connect(model_server.address, concept=concept.address, labeling=labeling.address,
                           wait_seconds=60)
    try:
        split_model = xaimesh.ModelWithSplitPoints(mesh.model(), split_points=[6])
        activations = split_model.get_activations(TEXTS, activation_granularity="TOKEN")
        concepts = SemiNMFConcepts(split_model, nb_concepts=3, device="cpu", max_iterations=50, seed=0)
        concepts.fit(activations)
        # without context: with it, the 135M model only repeats the instructions ("The marked tokens have...")
        labeller = LLMLabels(concepts, "TOKEN", k_examples=5, timeout=300)
        labels = labeller.interpret(latent_activations=activations)
        assert list(labels) == [0, 1, 2]
        assert all(r.llm.startswith("model-server:") for r in labeller.results_.values())
        assert any(label for label in labels.values()), labeller.results_
        for c, label in labels.items():
            if label is not None:
                assert 1 <= len(label.split()) <= 5
    finally:
        mesh.close()


def test_serve_labeling_process(launcher, tmp_path):
    """`xaimesh serve labeling` alone: health, reflection-visible service, the
    configured key kept out of the log, a clean exit on SIGTERM."""
    import signal

    from xaimesh_runtime.client import make_channel, wait_for_health

    key_file = tmp_path / "openai-key"
    key_file.write_text(KEY)
    labeling = launcher.start("labeling", "--openai-api-key-file", str(key_file), "--log-level", "DEBUG",
                              "--model-server-address", "127.0.0.1:9", "--concept-service-address", "127.0.0.1:9")
    wait_for_health(labeling.address, timeout=10, service="xaimesh.v1.LabelingService")
    import grpc

    from xaimesh_contracts.v1 import labeling_pb2, labeling_pb2_grpc

    with make_channel(labeling.address) as channel:
        stub = labeling_pb2_grpc.LabelingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:  # the concept-service is unreachable
            list(stub.LabelConcepts(labeling_pb2.LabelConceptsRequest(
                concept_model="conceptModels/x", activation_set="activationSets/y"), timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert labeling.stop(signal.SIGTERM) == 0
    log = labeling.log()
    assert "labeling config" in log and KEY not in log


# ---------------------------------------------------------------------------
# ConSim (ScoreSimulatability) over the real services: the model calls a
# review positive when it names a "great" thing; a simulator that is told
# the concept "great things" predicts it, one that is not guesses the sentiment.

CONSIM_SAMPLES = ["great but long", "bad", "great", "fine", "great yet awful", "lovely", "great", "poor"]
CONSIM_PREDICTIONS = [1, 0, 1, 0, 1, 0, 1, 0]
CONSIM_CLASSES = ["negative", "positive"]
CONSIM_LABELS = {0: "great things", 1: "complaints"}
CONSIM_GLOBAL = [[-1.0, 1.0], [2.0, -0.5]]
CONSIM_LOCAL = [[1.0, 0.2], [0.0, 1.0], [1.0, 0.0], [0.1, 0.3]]


def consim_simulator(messages):
    system, user = messages[0]["content"], messages[-1]["content"]
    explained = "great things" in system
    lines = []
    for i, text in re.findall(r"^Sample_(\d+): (.*)$", user, re.M):
        positive = "great" in text if explained else text in ("great", "lovely", "fine")
        lines.append(f"Sample_{i}: {'positive' if positive else 'negative'}")
    return "\n".join(lines)


def test_consim_against_its_baseline_through_an_openai_endpoint(fitted):
    from xaimesh.concepts import ConSim
    from xaimesh.errors import InvalidArgumentError
    from xaimesh.llm import OpenAILLM

    mesh = fitted[0]
    with FakeOpenAIServer(responder=consim_simulator) as fake:
        consim = ConSim(mesh, OpenAILLM(api_key=KEY, base_url=fake.base_url, model="gpt-fake"), CONSIM_CLASSES)
        explained = consim.evaluate(CONSIM_SAMPLES, CONSIM_PREDICTIONS, concept_labels=CONSIM_LABELS,
                                    class_importances=CONSIM_GLOBAL, sample_contributions=CONSIM_LOCAL)
        baseline = consim.evaluate(CONSIM_SAMPLES, CONSIM_PREDICTIONS, prompt_type="l2_baseline_with_lp")
        assert (explained.score, baseline.score) == (1.0, 0.5)
        assert explained.llm == f"openai:gpt-fake@{fake.base_url}" and explained.n_evaluated == 4
        assert explained.model_predictions == ["positive", "negative", "positive", "negative"]
        assert "concept 0: great things" in explained.prompt[0]["content"]
        assert [m["content"] for m in fake.requests[0].body["messages"]] == [m["content"] for m in explained.prompt]
        assert {r.headers["authorization"] for r in fake.requests} == {f"Bearer {KEY}"}
        with pytest.raises(InvalidArgumentError) as err:
            consim.evaluate(CONSIM_SAMPLES, CONSIM_PREDICTIONS[:6], prompt_type="l2_baseline_with_lp")
        assert [v.field for v in err.value.field_violations] == ["predictions"]
        assert len(fake.requests) == 2


def test_interpretos_consim_with_a_users_own_llm(fitted):
    from xaimesh.interpreto.commons.llm_interface import LLMInterface, Role
    from xaimesh.interpreto.concepts.metrics import ConSim, PromptTypes

    class Simulator(LLMInterface):
        def generate(self, prompt):
            return consim_simulator([{"role": role.value, "content": text} for role, text in prompt])

    split_model = fitted[1]
    global_importances = {name: dict(enumerate(row)) for name, row in zip(CONSIM_CLASSES, CONSIM_GLOBAL)}
    consim = ConSim(split_model, Simulator(), classes=CONSIM_CLASSES)
    score = consim.evaluate(CONSIM_SAMPLES, np.array(CONSIM_PREDICTIONS), concepts_interpretation=CONSIM_LABELS,
                            global_importances=global_importances, local_importances=np.array(CONSIM_LOCAL))
    baseline = consim.evaluate(CONSIM_SAMPLES, CONSIM_PREDICTIONS, prompt_type=PromptTypes.L2_baseline_with_lp)
    assert (score, baseline) == (1.0, 0.5)
    # without a user_llm, interpreto's (prompt, model predictions)
    prompt, expected = ConSim(split_model, None, classes=CONSIM_CLASSES).evaluate(
        CONSIM_SAMPLES, CONSIM_PREDICTIONS, prompt_type=PromptTypes.L2_baseline_with_lp)
    assert [role for role, _ in prompt] == [Role.SYSTEM, Role.USER, Role.ASSISTANT]
    assert "Class of Sample_0: positive" in prompt[0][1] and expected == ["positive", "negative", "positive", "negative"]
    with pytest.raises(ValueError, match="local_importances"):
        consim.evaluate(CONSIM_SAMPLES, CONSIM_PREDICTIONS, concepts_interpretation=CONSIM_LABELS,
                        global_importances=global_importances)
