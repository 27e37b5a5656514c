"""The API key never shows in a log record (ours, openai's, httpx2's, httpcore2's),
an exception text or a repr, while it does reach the server in the Authorization header."""

import logging
import pickle
import traceback

import pytest

from tests.fixtures.fake_openai import FakeHTTPError
from xaimesh_labeling.errors import LLMError
from xaimesh_labeling.examples import ConceptExample, ConceptExamples, ContextToken
from xaimesh_labeling.labeling import label_concepts
from xaimesh_labeling.llm import OpenAIChatLLM
from xaimesh_labeling.redaction import Secret, redact

KEY = "sk-proj-SECRETVALUE-9f8e7d6c5b4a39281706"
MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture
def debug_logs(caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "openai._base_client", "httpx2", "httpcore2", "xaimesh_labeling"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _assert_no_key(caplog, *texts):
    for record in caplog.records:
        assert KEY not in record.getMessage(), record.name
        assert KEY not in str(record.args)
    assert KEY not in caplog.text
    for text in texts:
        assert KEY not in text


def test_key_never_logged_raised_or_repred(fake_openai, debug_logs):
    llm = OpenAIChatLLM("gpt-test", KEY, base_url=fake_openai.base_url, timeout_seconds=0.3, max_retries=1,
                        sleep=lambda s: None)
    texts = [repr(llm), str(llm), llm.describe()]

    # success, with the key where it belongs
    assert llm.complete(MSGS) == "Test label"
    req = fake_openai.requests[-1]
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert KEY.encode() not in req.raw_body

    # 429 retries (logged by us at INFO), 500 storm, timeout, malformed
    fake_openai.fail_429(1, retry_after="0")
    llm.complete(MSGS)
    fake_openai.fail_500_always()
    for setup in (lambda: None, lambda: (fake_openai.fail_500_always(False), fake_openai.slow(1.0)),
                  lambda: (fake_openai.slow(0), fake_openai.malformed())):
        setup()
        with pytest.raises(LLMError) as err:
            llm.complete(MSGS)
        texts += [str(err.value), repr(err.value), "".join(traceback.format_exception(err.value))]
    fake_openai.malformed(False)

    # a 401 whose body echoes the key, as real servers do (partly masked or not)
    def echo_key(messages):
        raise FakeHTTPError(401, f"Incorrect API key provided: {KEY}. Also {KEY[:8]}****{KEY[-4:]}")
    fake_openai.responder = echo_key
    with pytest.raises(LLMError) as err:
        llm.complete(MSGS)
    assert err.value.code.name == "UNAUTHENTICATED" and "Incorrect API key provided: ***" in str(err.value)
    texts += [str(err.value), repr(err.value), "".join(traceback.format_exception(err.value))]

    # through label_concepts too: per-concept error texts and result reprs
    ex = ConceptExample(" cat", 1.0, 1.0, (ContextToken("The"), ContextToken(" cat", True)))
    results = list(label_concepts([ConceptExamples(0, 1, 1.0, [ex])], llm))
    texts += [repr(r) for r in results] + [r.error.message for r in results]

    # a third-party logger that does print the header (e.g. a verbose debug build)
    logging.getLogger("httpx2").debug("request headers: Authorization: Bearer %s", KEY)
    logging.getLogger("openai").debug("key=" + KEY)
    try:
        raise RuntimeError(f"failed with key {KEY}")
    except RuntimeError:
        logging.getLogger("xaimesh_labeling.test").exception("oops")

    assert any(r.name.startswith("openai") for r in debug_logs.records)  # the client did log
    assert any(r.name.startswith("httpcore2") or r.name.startswith("httpx2") for r in debug_logs.records)
    _assert_no_key(debug_logs, *texts)


def test_secret_wrapper_and_redact():
    s = Secret(KEY)
    assert KEY not in repr(s) and KEY not in str(s) and s.get() == KEY
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert redact(f"url https://user:pw@host/v1 key {KEY}", (KEY,)) == "url https://***@host/v1 key ***"
    assert redact("Incorrect API key provided: sk-abc1**********wxyz.") == "Incorrect API key provided: ***."


def test_llm_is_not_picklable(fake_openai):
    llm = OpenAIChatLLM("gpt-test", Secret(KEY), base_url=fake_openai.base_url)
    with pytest.raises(TypeError):
        pickle.dumps(llm)
    assert KEY not in repr(llm) and KEY not in str(vars(llm).get("_secret"))
