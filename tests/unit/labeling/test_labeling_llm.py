"""OpenAIChatLLM through the official openai client against a real local HTTP server."""

import time

import pytest

from tests.fixtures.fake_openai import FakeHTTPError
from xaimesh_labeling.errors import LLMError
from xaimesh_runtime.errors import ServiceError
from xaimesh_labeling.llm import LLM, CallableLLM, OpenAIChatLLM

KEY = "sk-test-llm-0123456789abcdef"
MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def make(server, sleeps=None, **kw):
    kw.setdefault("timeout_seconds", 5)
    return OpenAIChatLLM("gpt-test", KEY, base_url=server.base_url, sleep=sleeps if sleeps is not None else Sleeps(), **kw)


def test_completion_round_trip(fake_openai):
    fake_openai.responder = lambda messages: f"echo: {messages[-1]['content']}"
    llm = make(fake_openai, temperature=0.2, max_tokens=16)
    assert isinstance(llm, LLM)
    assert llm.complete(MSGS) == "echo: Say hi"
    (req,) = fake_openai.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert KEY.encode() not in req.raw_body
    assert req.body["model"] == "gpt-test"
    assert req.body["messages"] == MSGS
    assert req.body["temperature"] == pytest.approx(0.2) and req.body["max_tokens"] == 16
    assert llm.describe() == f"openai:gpt-test@{fake_openai.base_url}"


def test_default_endpoint_description():
    llm = OpenAIChatLLM("gpt-4.1-nano", KEY)
    assert llm.describe() == "openai:gpt-4.1-nano@https://api.openai.com/v1"
    llm.close()


def test_missing_key_for_official_endpoint_is_unauthenticated():
    with pytest.raises(LLMError) as err:
        OpenAIChatLLM("gpt-4.1-nano", "")
    assert err.value.code.name == "UNAUTHENTICATED"


def test_a_base_url_the_http_client_refuses_is_invalid_argument():
    with pytest.raises(LLMError) as err:  # httpx.InvalidURL: was an unexpected error (INTERNAL)
        OpenAIChatLLM("gpt-test", KEY, base_url="http://x/" + "x" * 70_000)
    assert err.value.code.name == "INVALID_ARGUMENT" and "base_url" in str(err.value) and KEY not in str(err.value)


def test_429_then_success_is_retried_honouring_retry_after(fake_openai):
    fake_openai.fail_429(2, retry_after="3")
    sleeps = Sleeps()
    assert make(fake_openai, sleeps, max_retries=4).complete(MSGS) == "Test label"
    assert [r.status for r in fake_openai.requests] == [429, 429, 200]
    assert sleeps == [3.0, 3.0]


def test_429_without_retry_after_backs_off_exponentially(fake_openai):
    fake_openai.fail_429(3, retry_after=None)
    sleeps = Sleeps()
    make(fake_openai, sleeps, max_retries=3, backoff_base_seconds=1.0).complete(MSGS)
    assert len(sleeps) == 3
    for attempt, s in enumerate(sleeps):  # equal jitter: [ceiling/2, ceiling]
        assert 2 ** attempt / 2 <= s <= 2 ** attempt


def test_429_exhausted(fake_openai):
    fake_openai.fail_429(10, retry_after="0")
    with pytest.raises(LLMError) as err:
        make(fake_openai, max_retries=2).complete(MSGS)
    assert err.value.code.name == "RESOURCE_EXHAUSTED" and err.value.status == 429
    assert "HTTP 429" in str(err.value) and fake_openai.base_url in str(err.value)
    assert len(fake_openai.requests) == 3


def test_500_storm_ends_in_unavailable_after_all_retries(fake_openai):
    fake_openai.fail_500_always()
    with pytest.raises(LLMError) as err:
        make(fake_openai, max_retries=3).complete(MSGS)
    assert len(fake_openai.requests) == 4
    assert err.value.code.name == "UNAVAILABLE" and "HTTP 500" in str(err.value) and "after 4 attempts" in str(err.value)
    assert err.value.__context__ is None and err.value.__cause__ is None


@pytest.mark.parametrize("status,code", [(400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"),
                                         (403, "PERMISSION_DENIED"), (404, "NOT_FOUND"), (422, "INVALID_ARGUMENT")])
def test_other_4xx_are_not_retried(fake_openai, status, code):
    def responder(messages):
        raise FakeHTTPError(status, f"nope {status}")
    fake_openai.responder = responder
    with pytest.raises(LLMError) as err:
        make(fake_openai, max_retries=4).complete(MSGS)
    assert len(fake_openai.requests) == 1
    assert err.value.code.name == code and f"HTTP {status}: nope {status}" in str(err.value)


def test_connection_refused_is_retried_then_unavailable(fake_openai):
    url = fake_openai.base_url
    fake_openai.stop()
    sleeps = Sleeps()
    llm = OpenAIChatLLM("gpt-test", KEY, base_url=url, max_retries=2, timeout_seconds=2, sleep=sleeps)
    with pytest.raises(LLMError) as err:
        llm.complete(MSGS)
    assert err.value.code.name == "UNAVAILABLE" and "connection" in str(err.value).lower()
    assert len(sleeps) == 2


def test_slow_server_times_out(fake_openai):
    fake_openai.slow(3.0)
    t0 = time.monotonic()
    with pytest.raises(LLMError) as err:
        make(fake_openai, timeout_seconds=0.2, max_retries=1).complete(MSGS)
    assert time.monotonic() - t0 < 2.5
    assert err.value.code.name == "DEADLINE_EXCEEDED" and "timed out" in str(err.value)
    assert len(fake_openai.requests) == 2


def test_malformed_json_is_an_error_without_retry(fake_openai):
    fake_openai.malformed()
    with pytest.raises(LLMError) as err:
        make(fake_openai).complete(MSGS)
    assert err.value.code.name == "INTERNAL" and "malformed" in str(err.value)
    assert len(fake_openai.requests) == 1


def test_response_without_choices_is_an_error(fake_openai, monkeypatch):
    import tests.fixtures.fake_openai as fo

    def send_empty(self, h, status, obj, headers=None):
        if status == 200:
            obj = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
        return self._send_raw(h, status, fo.json.dumps(obj).encode(), "application/json", headers)

    monkeypatch.setattr(fo.FakeOpenAIServer, "_send_json", send_empty)
    with pytest.raises(LLMError) as err:
        make(fake_openai).complete(MSGS)
    assert err.value.code.name == "INTERNAL" and "no choices" in str(err.value)


def test_bad_messages_are_rejected_before_any_request(fake_openai):
    with pytest.raises(LLMError) as err:
        make(fake_openai).complete([{"role": "robot", "content": "x"}])
    assert err.value.code.name == "INVALID_ARGUMENT" and not fake_openai.requests


class _FakeRpcError(Exception):
    class _Code:
        name = "UNAVAILABLE"

    def code(self):
        return self._Code()

    def details(self):
        return "model-server is down"


def test_callable_llm_wraps_functions_and_maps_errors():
    seen = []
    llm = CallableLLM(lambda m: seen.append(m) or "Animals", "model-server:smollm2-135m-instruct")
    assert isinstance(llm, LLM)
    assert llm.complete(MSGS) == "Animals" and seen == [MSGS]
    assert llm.describe() == "model-server:smollm2-135m-instruct"

    def rpc_down(m):
        raise _FakeRpcError()
    with pytest.raises(LLMError) as err:
        CallableLLM(rpc_down, "model-server:x").complete(MSGS)
    assert err.value.code.name == "UNAVAILABLE" and "model-server is down" in str(err.value)

    def boom(m):
        raise RuntimeError("kaput")
    with pytest.raises(LLMError) as err:
        CallableLLM(boom, "model-server:x").complete(MSGS)
    assert err.value.code.name == "UNKNOWN" and "kaput" in str(err.value)

    def own(m):
        raise ServiceError("quota", code="RESOURCE_EXHAUSTED")
    with pytest.raises(ServiceError) as err:
        CallableLLM(own, "model-server:x").complete(MSGS)
    assert err.value.code.name == "RESOURCE_EXHAUSTED"

    with pytest.raises(LLMError) as err:
        CallableLLM(lambda m: None, "model-server:x").complete(MSGS)
    assert err.value.code.name == "INTERNAL"
