"""label_concepts: labels through the official openai client and a real local server,
per-concept failures, streaming, bounded concurrency, dead concepts."""

import re
import threading
import time

import pytest

from tests.fixtures.fake_openai import FakeHTTPError
from xaimesh_runtime.errors import Cancelled
from xaimesh_labeling.examples import ConceptExample, ConceptExamples, ContextToken
from xaimesh_labeling.labeling import label_concepts
from xaimesh_labeling.llm import CallableLLM, OpenAIChatLLM

KEY = "sk-test-labels-0123456789abcdef"


def concept(index, words, active=True):
    """A concept whose examples highlight the given words in a short sentence."""
    examples = []
    for j, w in enumerate(words):
        toks = ["The", f" {w}", " was", " here"]
        examples.append(ConceptExample(
            text=f" {w}", activation=2.0 - j * 0.5, normalized_activation=1.0 - j * 0.25,
            context=tuple(ContextToken(t, i == 1) for i, t in enumerate(toks)), sample_index=j, token_start=1, token_end=2))
    return ConceptExamples(index, num_active_rows=len(words) if active else 0, max_activation=2.0,
                           examples=examples if active else [])


def marker_of(messages):
    """The first highlighted word of the prompt: tells concepts apart in responders."""
    return re.search(r"<<(\w+)>>", messages[-1]["content"]).group(1)


def openai_llm(server, **kw):
    kw.setdefault("timeout_seconds", 5)
    kw.setdefault("max_retries", 2)
    return OpenAIChatLLM("gpt-test", KEY, base_url=server.base_url, sleep=lambda s: None, **kw)


def test_labels_come_back_through_the_openai_client(fake_openai):
    fake_openai.responder = lambda m: f"Label: {marker_of(m).capitalize()} words."
    concepts = [concept(0, ["cat", "dog"]), concept(3, ["red", "blue"])]
    progress = []
    results = list(label_concepts(concepts, openai_llm(fake_openai), max_concurrency=2,
                                  progress=lambda d, t: progress.append((d, t))))
    by = {r.concept_index: r for r in results}
    assert by[0].label == "Cat words" and by[3].label == "Red words"
    assert all(r.error is None for r in results)
    assert by[0].llm == f"openai:gpt-test@{fake_openai.base_url}"
    assert by[0].examples == concepts[0].examples
    assert "[system]" in by[0].prompt and "1. [10] The <<cat>> was here" in by[0].prompt
    assert "2. [8] The <<dog>> was here" in by[0].prompt
    assert by[0].raw_answer == "Label: Cat words."
    assert progress == [(1, 2), (2, 2)]
    assert len(fake_openai.requests) == 2


def test_429_then_success_through_label_concepts(fake_openai):
    fake_openai.fail_429(2, retry_after="0")
    (r,) = label_concepts([concept(1, ["cat"])], openai_llm(fake_openai, max_retries=4))
    assert r.label == "Test label" and r.error is None
    assert [q.status for q in fake_openai.requests] == [429, 429, 200]


def test_500_storm_for_some_concepts_leaves_the_others_labelled(fake_openai):
    def responder(messages):
        if marker_of(messages) in ("bad", "worse"):
            raise FakeHTTPError(500, "The server had an error")
        return "Good words"
    fake_openai.responder = responder
    concepts = [concept(0, ["ok"]), concept(1, ["bad"]), concept(2, ["fine"]), concept(3, ["worse"])]
    results = {r.concept_index: r for r in label_concepts(concepts, openai_llm(fake_openai, max_retries=2),
                                                          max_concurrency=4)}
    assert results[0].label == results[2].label == "Good words"
    for i in (1, 3):
        assert results[i].label is None
        assert results[i].error.code == "UNAVAILABLE"
        assert "HTTP 500" in results[i].error.message and "after 3 attempts" in results[i].error.message
        assert results[i].prompt  # what was sent is still inspectable
    assert len(fake_openai.requests) == 2 + 2 * 3


def test_500_always_gives_every_concept_an_error(fake_openai):
    fake_openai.fail_500_always()
    results = list(label_concepts([concept(0, ["a"]), concept(1, ["b"])], openai_llm(fake_openai, max_retries=1)))
    assert [r.error.code for r in results] == ["UNAVAILABLE", "UNAVAILABLE"]


def test_slow_concept_times_out_others_are_labelled(fake_openai):
    def responder(messages):
        if marker_of(messages) == "slow":
            time.sleep(3.0)
        return "Quick words"
    fake_openai.responder = responder
    t0 = time.monotonic()
    results = {r.concept_index: r for r in label_concepts(
        [concept(0, ["slow"]), concept(1, ["fast"])],
        openai_llm(fake_openai, timeout_seconds=0.25, max_retries=1), max_concurrency=2)}
    assert time.monotonic() - t0 < 2.5  # did not wait for the slow answer
    assert results[1].label == "Quick words"
    assert results[0].label is None and results[0].error.code == "DEADLINE_EXCEEDED"
    assert "timed out after 0.25s" in results[0].error.message


def test_globally_slow_server_times_out(fake_openai):
    fake_openai.slow(1.0)
    (r,) = label_concepts([concept(0, ["x"])], openai_llm(fake_openai, timeout_seconds=0.2, max_retries=0))
    assert r.error.code == "DEADLINE_EXCEEDED" and r.label is None


def test_malformed_json_is_a_per_concept_error(fake_openai):
    fake_openai.malformed()
    (r,) = label_concepts([concept(0, ["x"])], openai_llm(fake_openai))
    assert r.label is None and r.error.code == "INTERNAL" and "malformed" in r.error.message


def test_empty_answer_is_a_per_concept_error(fake_openai):
    fake_openai.responder = lambda m: "Label:" if marker_of(m) == "x" else "Fine"
    results = {r.concept_index: r for r in label_concepts([concept(0, ["x"]), concept(1, ["y"])],
                                                          openai_llm(fake_openai))}
    assert results[0].error.code == "INTERNAL" and "no usable label" in results[0].error.message
    assert results[0].raw_answer == "Label:"
    assert results[1].label == "Fine"


def test_dead_concepts_get_none_without_any_call(fake_openai):
    results = list(label_concepts([concept(0, ["x"], active=False), concept(1, ["y"], active=False)],
                                  openai_llm(fake_openai)))
    assert [(r.concept_index, r.label, r.error, r.prompt) for r in results] == [(0, None, None, ""), (1, None, None, "")]
    assert fake_openai.requests == []


def test_active_concept_without_examples_is_an_error():
    calls = []
    llm = CallableLLM(lambda m: calls.append(m) or "x", "stub")
    (r,) = label_concepts([ConceptExamples(5, num_active_rows=3, max_activation=1.0, examples=[])], llm)
    assert r.error.code == "FAILED_PRECONDITION" and not calls


def test_concurrency_overlaps_and_is_bounded_on_the_server(fake_openai):
    def responder(messages):
        time.sleep(0.15)
        return "Words"
    fake_openai.responder = responder
    concepts = [concept(i, [f"w{i}"]) for i in range(8)]
    results = list(label_concepts(concepts, openai_llm(fake_openai), max_concurrency=3))
    assert len(results) == 8 and all(r.label == "Words" for r in results)
    assert 2 <= fake_openai.max_in_flight <= 3  # overlapping, never more than the bound


def test_concurrency_exactly_bounded_with_a_barrier():
    n_workers = 3
    barrier = threading.Barrier(n_workers, timeout=5)
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def fn(messages):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        barrier.wait()  # only passes when 3 calls are in flight together
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return "Label"

    results = list(label_concepts([concept(i, ["a"]) for i in range(6)], CallableLLM(fn, "stub"),
                                  max_concurrency=n_workers))
    assert all(r.error is None for r in results)
    assert state["max"] == n_workers


def test_results_stream_as_they_complete():
    release_first = threading.Event()

    def fn(messages):
        if marker_of(messages) == "first":
            release_first.wait(timeout=5)
            return "Slow one"
        return "Fast one"

    it = label_concepts([concept(0, ["first"]), concept(1, ["second"])], CallableLLM(fn, "stub"),
                        max_concurrency=2)
    first = next(it)
    assert first.concept_index == 1  # yielded while concept 0 is still running
    release_first.set()
    second = next(it)
    assert second.concept_index == 0 and second.label == "Slow one"
    with pytest.raises(StopIteration):
        next(it)


def test_dead_concepts_are_yielded_before_slow_live_ones():
    gate = threading.Event()
    it = label_concepts([concept(0, ["live"]), concept(1, ["x"], active=False)],
                        CallableLLM(lambda m: gate.wait(5) and "L", "stub"))
    assert next(it).concept_index == 1
    gate.set()
    assert next(it).label == "L"


def test_should_stop_cancels_the_run():
    calls = []
    stop = threading.Event()

    def fn(messages):
        calls.append(1)
        stop.set()
        return "Label"

    with pytest.raises(Cancelled):
        list(label_concepts([concept(i, ["a"]) for i in range(20)], CallableLLM(fn, "stub"),
                            max_concurrency=2, should_stop=stop.is_set))
    time.sleep(0.05)
    assert len(calls) < 20


def test_custom_system_prompt_is_sent(fake_openai):
    list(label_concepts([concept(0, ["a"])], openai_llm(fake_openai), system_prompt="You name patterns."))
    assert fake_openai.requests[0].messages[0] == {"role": "system", "content": "You name patterns."}
