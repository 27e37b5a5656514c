"""The service side of the caller's own LLM (xaimesh_labeling.caller_llm),
driven with plain queues: a reply reaches the call of its id, a slow caller
times out, an ended stream fails every waiting call at once."""

from __future__ import annotations

import threading

import pytest

from xaimesh_labeling.caller_llm import CallerLLM, Reply
from xaimesh_labeling.errors import LLMError

MESSAGES = [{"role": "system", "content": "Label it."}, {"role": "user", "content": "cat, dog"}]


def _answer_from(llm: CallerLLM, text_of) -> threading.Thread:
    """A caller that answers each call with text_of(call) (None: stop)."""
    def run():
        while (call := llm.outbox.get()) is not None:
            llm.deliver(text_of(call))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_reply_answers_the_call_of_its_id():
    llm = CallerLLM("mine")
    caller = _answer_from(llm, lambda call: Reply(call.id, text=f"Label {call.id}: animals"))
    assert llm.complete(MESSAGES) == "Label 1: animals" and llm.complete(MESSAGES) == "Label 2: animals"
    assert llm.describe() == "caller:mine"
    llm.outbox.put(None)
    caller.join(5)


def test_failed_replies_are_retried_then_raised_with_the_callers_message():
    llm = CallerLLM("mine", max_retries=2)
    caller = _answer_from(llm, lambda call: Reply(call.id, error="CUDA out of memory", code="RESOURCE_EXHAUSTED"))
    with pytest.raises(LLMError, match="CUDA out of memory") as info:
        llm.complete(MESSAGES)
    assert info.value.code.name == "RESOURCE_EXHAUSTED"
    llm.outbox.put(None)
    caller.join(5)
    assert llm._ids.__next__() == 4  # 1 try + 2 retries were asked


def test_a_caller_that_never_answers_times_out_without_retrying():
    llm = CallerLLM("slow", max_retries=3, timeout_seconds=0.05)
    with pytest.raises(LLMError, match="no reply within") as info:
        llm.complete(MESSAGES)
    assert info.value.code.name == "DEADLINE_EXCEEDED" and llm.outbox.qsize() == 1


def test_an_ended_stream_fails_waiting_and_later_calls():
    llm = CallerLLM("gone", timeout_seconds=30)
    errors = []
    waiting = threading.Thread(target=lambda: errors.append(pytest.raises(LLMError, llm.complete, MESSAGES)))
    waiting.start()
    llm.outbox.get(timeout=5)  # the call is out
    llm.close()
    waiting.join(5)
    assert not waiting.is_alive() and "stream ended" in str(errors[0].value)
    with pytest.raises(LLMError, match="stream ended"):
        llm.complete(MESSAGES)


def test_a_late_reply_for_an_unknown_id_is_dropped():
    llm = CallerLLM("mine")
    llm.deliver(Reply(99, text="late"))  # nothing waits for it: no error, nothing queued
    assert llm.outbox.empty()
