"""Which LLM a request gets and with which key (xaimesh_labeling.llm_policy),
in-process: the model-server is a fake ``ModelGenerator``, the OpenAI
endpoint the real local HTTP fake."""

from __future__ import annotations

import pytest

from xaimesh_labeling.llm_policy import (LABEL_MAX_NEW_TOKENS, LlmPolicy, ModelServerSpec, OpenAISpec, caller_key,
                                         score_max_new_tokens)
from xaimesh_labeling.redaction import Secret, redact
from xaimesh_runtime.errors import InvalidArgument

META_KEY = "sk-proj-CALLERKEY-0123456789abcdefXYZ"
OWN_KEY = "sk-proj-SERVICEKEY-9876543210zyxwvuT"
MSGS = [{"role": "user", "content": "Label: <<cat>>"}]


class FakeGenerator:
    def __init__(self):
        self.calls = []

    def resolve_model(self, model):
        return model or "tiny-instruct"

    def generate(self, model_id, messages, *, max_new_tokens, temperature, seed):
        self.calls.append((model_id, max_new_tokens, temperature, seed))
        return "Cats"


def no_model_server():
    raise AssertionError("the model-server should not be asked")


def sent_key(fake_openai) -> str:
    return fake_openai.requests[-1].headers["authorization"].removeprefix("Bearer ")


def test_no_key_and_no_endpoint_is_the_model_server():
    gen = FakeGenerator()
    llm = LlmPolicy().build(None, Secret(""), lambda: gen, max_new_tokens=LABEL_MAX_NEW_TOKENS, seed=7)
    assert llm.backend == "model-server" and llm.describe() == "model-server:tiny-instruct"
    assert llm.complete(MSGS) == "Cats" and gen.calls == [("tiny-instruct", 16, 0.0, 7)]
    llm = LlmPolicy().build(ModelServerSpec(model="other", max_new_tokens=5, temperature=0.5), Secret(""),
                            lambda: gen, max_new_tokens=16)
    llm.complete(MSGS)
    assert gen.calls[-1] == ("other", 5, 0.5, 0)
    # an OpenAI backend without any key nor base_url falls back to the model-server too
    llm = LlmPolicy().build(OpenAISpec(base_url="https://api.openai.com/v1/"), Secret(""), lambda: gen,
                            max_new_tokens=16)
    assert llm.backend == "model-server"


def test_the_callers_key_goes_where_the_caller_says(fake_openai):
    fake_openai.responder = lambda messages: "Cats"
    policy = LlmPolicy(api_key=OWN_KEY)
    llm = policy.build(OpenAISpec(base_url=fake_openai.base_url, model="gpt-x"), caller_key(META_KEY),
                       no_model_server, max_new_tokens=16)
    assert llm.backend == "openai" and llm.describe() == f"openai:gpt-x@{fake_openai.base_url}"
    assert llm.complete(MSGS) == "Cats" and sent_key(fake_openai) == META_KEY
    assert META_KEY not in redact(f"key {META_KEY}")  # registered with the redactors


def test_the_services_key_goes_only_to_its_own_endpoint(fake_openai):
    fake_openai.responder = lambda messages: "Cats"
    own = LlmPolicy(api_key=OWN_KEY, base_url=fake_openai.base_url, openai_model="gpt-own")
    llm = own.build(None, Secret(""), no_model_server, max_new_tokens=16)  # no backend: the configured endpoint
    assert llm.describe() == f"openai:gpt-own@{fake_openai.base_url}"
    llm.complete(MSGS)
    assert sent_key(fake_openai) == OWN_KEY
    elsewhere = LlmPolicy(api_key=OWN_KEY)  # its own endpoint is the official one
    llm = elsewhere.build(OpenAISpec(base_url=fake_openai.base_url), Secret(""), no_model_server, max_new_tokens=16)
    llm.complete(MSGS)
    assert sent_key(fake_openai) == "no-key"


@pytest.mark.parametrize(("spec", "field"), [
    (OpenAISpec(base_url="ftp://x"), "scorer.openai.base_url"),
    (OpenAISpec(base_url="http://x:99999/v1"), "scorer.openai.base_url"),
    (OpenAISpec(base_url="http://x/v1", timeout_seconds=float("nan")), "scorer.openai.timeout_seconds"),
    (OpenAISpec(base_url="http://x/v1", max_retries=11), "scorer.openai.max_retries"),
    (OpenAISpec(base_url="http://x/v1", max_tokens=-1), "scorer.openai.max_tokens"),
    (OpenAISpec(base_url="http://x/v1", temperature=-1), "scorer.openai.temperature"),
    (ModelServerSpec(max_new_tokens=4097), "scorer.model_server.max_new_tokens"),
    (ModelServerSpec(temperature=float("inf")), "scorer.model_server.temperature"),
])
def test_bad_backends_are_invalid_arguments_naming_the_field(spec, field):
    with pytest.raises(InvalidArgument) as error:
        LlmPolicy().build(spec, Secret(""), no_model_server, max_new_tokens=16, field="scorer")
    assert error.value.field == field


def test_concurrency_and_lengths():
    policy = LlmPolicy(max_concurrency=8)
    gen = FakeGenerator()
    local = policy.build(None, Secret(""), lambda: gen, max_new_tokens=16)
    assert policy.concurrency(0, local) == 8 and policy.concurrency(3, local) == 3
    assert LlmPolicy().concurrency(0, local) == 16 and LlmPolicy().concurrency(0, object()) == 4
    with pytest.raises(InvalidArgument) as error:
        policy.check_concurrency(-1, "max_concurrency")
    assert error.value.field == "max_concurrency"
    with pytest.raises(ValueError):
        LlmPolicy(max_concurrency=-1)
    assert score_max_new_tokens(5) == 41 and score_max_new_tokens(10_000) == 4096
    assert "SERVICEKEY" not in repr(LlmPolicy(api_key=OWN_KEY))
