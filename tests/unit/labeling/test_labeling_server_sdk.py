"""The SDK side of labeling (xaimesh.llm, xaimesh.concepts.interpretations)
against the in-process labeling-service and the fake downstream services of
test_labeling_server."""

from __future__ import annotations

import logging
import pickle

import pytest

from test_labeling_server import (  # noqa: F401  (fixtures)
    ACT_SET, ANIMALS, CONCEPT_MODEL, LABELS, answer, downstream, fake_llm, start_labeling)
from tests.fixtures.fake_openai import FakeHTTPError
from xaimesh.llm import API_KEY_METADATA, ModelServerLLM, OpenAILLM, as_llm_interface

KEY = "sk-proj-SDKKEY-0123456789abcdefghijk"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")


# ---------------------------------------------------------------------------
# xaimesh.llm


def test_openai_llm_keeps_the_key_out_of_messages_and_reprs():
    llm = OpenAILLM(api_key=KEY, base_url="http://vllm:8000/v1/", model="qwen", max_tokens=16, timeout=5,
                    max_retries=0)
    assert llm.fallback is None and llm.has_api_key
    assert llm.metadata() == [(API_KEY_METADATA, KEY)]
    proto = llm.to_proto()
    assert KEY.encode() not in proto.SerializeToString()
    assert proto.WhichOneof("backend") == "openai"
    oa = proto.openai
    assert (oa.model, oa.base_url, oa.max_tokens, oa.timeout_seconds, oa.max_retries) == (
        "qwen", "http://vllm:8000/v1/", 16, 5.0, -1)  # max_retries 0 travels as "none" (-1)
    for text in (repr(llm), str(llm), llm.describe()):
        assert KEY not in text
    assert "api_key='***'" in repr(llm) and llm.describe() == "openai:qwen@http://vllm:8000/v1"
    copy = pickle.loads(pickle.dumps(llm))
    assert not copy.has_api_key and copy.metadata() == [] and copy.model == "qwen"
    assert KEY.encode() not in pickle.dumps(llm)


def test_openai_llm_key_from_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    llm = OpenAILLM()
    assert llm.fallback is None and llm.metadata() == [(API_KEY_METADATA, KEY)]
    assert llm.to_proto().openai.model == "gpt-4.1-nano" and llm.to_proto().openai.max_retries == 4


def test_openai_llm_without_key_falls_back_to_the_model_server(caplog):
    caplog.set_level(logging.WARNING, logger="xaimesh.llm")
    for key in (None, "", "  "):
        llm = OpenAILLM(api_key=key)
        assert isinstance(llm.fallback, ModelServerLLM)
        assert llm.to_proto().WhichOneof("backend") == "model_server" and llm.metadata() == []
    assert "model-server's own model (ModelServerLLM)" in caplog.text
    # a base_url (local server) needs no key; use_service_key defers to the service's key
    assert OpenAILLM(base_url="http://ollama:11434/v1").fallback is None
    service = OpenAILLM(use_service_key=True)
    assert service.fallback is None and service.metadata() == []
    assert service.to_proto().WhichOneof("backend") == "openai"


def test_model_server_llm_and_shorthands():
    llm = ModelServerLLM(model="smollm2-135m-instruct", max_new_tokens=20, temperature=0.5)
    ms = llm.to_proto().model_server
    assert (ms.model, ms.max_new_tokens, ms.temperature) == ("smollm2-135m-instruct", 20, 0.5)
    assert ModelServerLLM().to_proto().model_server.model == "" and ModelServerLLM().metadata() == []
    assert as_llm_interface("model-server") == ModelServerLLM() and as_llm_interface(None) is None
    for bad in (dict(max_new_tokens=0), dict(temperature=-1)):
        with pytest.raises(ValueError):
            ModelServerLLM(**bad)
    for bad in (dict(timeout=0), dict(max_retries=-1), dict(temperature=float("nan")), dict(model="")):
        with pytest.raises(ValueError):
            OpenAILLM(api_key=KEY, **bad)
    with pytest.raises(TypeError):
        as_llm_interface(42)


# ---------------------------------------------------------------------------
# LLMLabels / TopKInputs through the in-process service


class FakeExplainer:
    """What the SDK's concept explainers expose to the interpretations."""

    def __init__(self, mesh):
        self.mesh = mesh
        self.concept_model_ = CONCEPT_MODEL
        self.activation_set_ = ACT_SET
        self.nb_concepts = 4
        self.split_point = None


@pytest.fixture
def explainer(start_labeling, downstream):
    from xaimesh.mesh import Mesh

    handle = start_labeling()
    address = downstream[2]
    mesh = Mesh({"model": address, "concept": address, "labeling": handle.address})
    yield FakeExplainer(mesh)
    mesh.close()


def test_llm_labels_interpret_and_score(explainer, fake_llm, monkeypatch):
    from xaimesh.concepts.interpretations import LLMLabels
    from xaimesh.split_model import ActivationSet

    monkeypatch.setenv("XAIMESH_PROGRESS", "1")  # the bar runs (on stderr)
    llm = OpenAILLM(api_key=KEY, base_url=fake_llm.base_url, model="gpt-test")
    labeller = LLMLabels(explainer, "TOKEN", llm_interface=llm, k_examples=4, k_context=2, sampling="quantile",
                         k_quantile=2, max_concurrency=2)
    activations = ActivationSet.get(explainer.mesh, ACT_SET)
    labels = labeller.interpret(inputs=["ignored"], latent_activations=activations, concepts_indices="all")
    assert labels == {**LABELS, 3: None}
    assert list(labels) == [0, 1, 2, 3]
    r = labeller.results_[0]
    assert r.llm == f"openai:gpt-test@{fake_llm.base_url}" and r.error is None and not r.is_dead
    assert r.examples[0].text == " cat" and r.examples[0].context_text.startswith("The<<")
    assert "[user]" in r.prompt and labeller.results_[3].is_dead
    assert {req.headers["authorization"] for req in fake_llm.requests} == {f"Bearer {KEY}"}
    assert labeller.labeller_ == r.llm

    # an index, a list (order kept), the fitted set by default
    assert labeller.interpret(concepts_indices=2) == {2: "Past tense verbs"}
    assert list(labeller.interpret(latent_activations={8: activations}, concepts_indices=[2, 0])) == [2, 0]

    scores = labeller.score(labels, n_examples=3)
    assert scores.scorer_is_labeller and scores.scorer == labeller.labeller_
    assert scores.scores == {0: {"detection": 1.0, "fuzzing": 1.0}, 1: {"detection": 1.0, "fuzzing": 1.0},
                             2: {"detection": 1.0, "fuzzing": 1.0}}
    assert scores.mean_detection == 1.0 and scores.mean_fuzzing == 1.0
    assert scores.summary["scorer_is_labeller"] is True
    other = labeller.score({0: "Weather", 1: None}, scorer=ModelServerLLM(), methods="detection")
    assert not other.scorer_is_labeller and other.scorer == "model-server:tiny-instruct"
    assert other.scores == {0: {"detection": 0.5}} and other.mean_fuzzing is None


def test_llm_labels_per_concept_errors_and_bad_inputs(explainer, fake_llm, caplog):
    from xaimesh.concepts.interpretations import LLMLabels
    from xaimesh.errors import XaimeshError

    def responder(messages):
        if "<<cat>>" in messages[-1]["content"]:
            raise FakeHTTPError(500, "boom")
        return answer(messages)

    fake_llm.responder = responder
    caplog.set_level(logging.WARNING, logger="xaimesh.concepts")
    labeller = LLMLabels(explainer, None, llm_interface=OpenAILLM(api_key=KEY, base_url=fake_llm.base_url,
                                                                   max_retries=0), k_context=1)
    labels = labeller.interpret()
    assert labels[0] is None and labeller.results_[0].error.code == "UNAVAILABLE"
    assert labels[1] == "Articles"
    assert "1 of 4 concepts could not be labelled" in caplog.text and KEY not in caplog.text
    with pytest.raises(ValueError, match="granularity"):
        LLMLabels(explainer, "SENTENCE").interpret()
    with pytest.raises(TypeError, match="activation set handle"):
        LLMLabels(explainer).interpret(latent_activations=[[0.0, 1.0]])
    with pytest.raises(ValueError):
        LLMLabels(explainer, sampling="best")
    with pytest.raises(XaimeshError) as err:
        LLMLabels(explainer, llm_interface=ModelServerLLM()).interpret(concepts_indices=[7])
    assert "out of range" in str(err.value)


def test_llm_labels_default_backend_is_the_service_choice(explainer):
    from xaimesh.concepts.interpretations import LLMLabels

    labeller = LLMLabels(explainer, k_examples=3)
    assert labeller.interpret(concepts_indices=[0, 3]) == {0: "Animals", 3: None}
    assert labeller.results_[0].llm == "model-server:tiny-instruct"


def test_top_k_inputs(explainer):
    from xaimesh.concepts.interpretations import TopKInputs

    top = TopKInputs(explainer, "TOKEN", k=3).interpret(concepts_indices="all")
    assert list(top) == [0, 1, 2, 3]
    assert top[0] == {" cat": 3.0, " dog": 2.5, " bird": 2.0}
    assert list(top[0].values()) == sorted(top[0].values(), reverse=True)
    assert set(top[1]) <= {" the", "The", " a", "A"} and len(top[1]) == 3
    assert top[3] == {}
    top2 = TopKInputs(explainer, k=2).interpret(concepts_indices=[2])
    assert list(top2) == [2] and top2[2] == pytest.approx({" swam": 1.3, " sang": 1.2})
    assert set(ANIMALS) >= {t.strip() for t in top[0]}


# ---------------------------------------------------------------------------
# the caller's own LLM (CallerLLM over LabelConceptsWithCallerLlm)


def test_a_callers_own_llm_labels_concepts(explainer):
    from xaimesh.concepts.interpretations import LLMLabels
    from xaimesh.llm import CallerLLM

    prompts = []

    def my_llm(messages):
        prompts.append(messages)
        return answer(messages)

    labeller = LLMLabels(explainer, "TOKEN", llm_interface=CallerLLM(my_llm, "my-llm"), k_examples=4)
    assert labeller.interpret(concepts_indices="all") == {**LABELS, 3: None}
    assert labeller.results_[0].llm == "caller:my-llm" and labeller.labeller_ == "caller:my-llm"
    assert len(prompts) == 3  # the dead concept 3 costs no call
    assert [m["role"] for m in prompts[0]] == ["system", "user"]
    assert "What do these have in common" in prompts[0][-1]["content"]
    with pytest.raises(ValueError, match="cannot score"):
        labeller.score()


def test_a_callers_failed_replies_are_retried_then_recorded_against_their_concept(explainer):
    from collections import Counter

    from xaimesh.concepts.interpretations import LLMLabels
    from xaimesh.llm import CallerLLM

    calls = Counter()

    def flaky(messages):
        label = answer(messages).removeprefix("Label: ").rstrip(".")
        calls[label] += 1
        if label == "Animals":
            raise RuntimeError("GPU out of memory")
        if label == "Articles" and calls[label] == 1:
            return None  # no answer the first time: retried
        return answer(messages)

    labeller = LLMLabels(explainer, "TOKEN", llm_interface=CallerLLM(flaky, max_retries=1), k_examples=4)
    labels = labeller.interpret(concepts_indices=[0, 1, 2])
    assert labels == {0: None, 1: "Articles", 2: "Past tense verbs"}
    assert "GPU out of memory" in str(labeller.results_[0].error) and labeller.results_[1].error is None
    assert calls["Animals"] == 2 and calls["Articles"] == 2  # one try + max_retries


def test_caller_llm_arguments_are_checked():
    from xaimesh.llm import CallerLLM

    with pytest.raises(TypeError, match="function"):
        CallerLLM("not a function")
    for bad in (dict(max_retries=-1), dict(max_retries=11), dict(timeout_seconds=0)):
        with pytest.raises(ValueError):
            CallerLLM(answer, **bad)
