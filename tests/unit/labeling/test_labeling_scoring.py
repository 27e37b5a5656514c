"""Label scoring: detection and fuzzing with a vocabulary-checking scorer stub."""

import json
import random
import re

import pytest

from xaimesh_labeling.errors import LabelParseError
from xaimesh_runtime.errors import InvalidArgument
from xaimesh_labeling.examples import ConceptExample, ContextToken
from xaimesh_labeling.llm import CallableLLM
from xaimesh_labeling.scoring import (
    DETECTION,
    FUZZING,
    LabelScoreResult,
    ScoringInput,
    balanced_accuracy,
    parse_selection,
    same_llm,
    score_labels,
    summarize_scores,
)

ANIMALS = ["cat", "dog", "horse", "cow", "lion", "tiger", "rabbit", "sheep", "goat", "mouse"]
THINGS = ["table", "chair", "car", "house", "river", "computer", "window", "paper", "spoon", "lamp"]
VOCAB = {"animals": set(ANIMALS), "furniture": {"table", "chair", "lamp"}, "vehicles": {"car", "bus", "train"},
         "weather": {"rain", "snow", "wind"}}


def sentence(words, hi=None, acts=None):
    toks = [("" if i == 0 else " ") + w for i, w in enumerate(words)]
    return tuple(ContextToken(t, i == hi, (acts or {}).get(i, 0.0)) for i, t in enumerate(toks))


def animal_concept(index=0, n=8, seed=1):
    """The concept fires on animal words; non-activating rows hold only things."""
    rng = random.Random(seed)
    act, non = [], []
    for j in range(n):
        a, t1, t2 = rng.choice(ANIMALS), rng.choice(THINGS), rng.choice(THINGS)
        words = ["The", a, "sat", "near", "the", t1]
        act.append(ConceptExample(a, 1.0, 1.0, sentence(words, hi=1, acts={1: 1.0}), sample_index=j))
        words = ["The", t1, "was", "on", "the", t2]
        non.append(ConceptExample(t2, 0.0, 0.0, sentence(words, hi=5), sample_index=100 + j))
    return act, non


def vocab_scorer(calls=None):
    """Answers like a careful reader with a fixed vocabulary per label keyword:
    detection -> excerpts containing a vocabulary word; fuzzing -> excerpts whose
    marked tokens are vocabulary words."""
    def fn(messages):
        user = messages[-1]["content"]
        if calls is not None:
            calls.append(messages)
        label = re.search(r"^Label: (.*)$", user, re.M).group(1).lower()
        vocab = set().union(*(v for k, v in VOCAB.items() if k in label))
        fuzzing = "<<" in user.split("Excerpts:")[1]
        picked = []
        for num, text in re.findall(r"^(\d+)\. (.*)$", user, re.M):
            words = re.findall(r"<<(.*?)>>", text) if fuzzing else [text]
            found = {w for chunk in words for w in re.findall(r"\w+", chunk.lower())}
            if found & vocab:
                picked.append(int(num))
        return json.dumps(picked)
    return CallableLLM(fn, "openai:scorer-model@https://api.openai.com/v1")


def test_true_label_beats_random_label():
    act, non = animal_concept()
    inputs = [ScoringInput(0, "Words about animals", act, non), ScoringInput(1, "Kitchen furniture", act, non)]
    results = list(score_labels(inputs, vocab_scorer(), n_examples=5, seed=3))
    assert len(results) == 4 and all(r.error is None for r in results)
    score = {(r.concept_index, r.method): r for r in results}
    assert score[0, DETECTION].balanced_accuracy == 1.0
    assert score[0, FUZZING].balanced_accuracy == 1.0
    assert score[1, DETECTION].balanced_accuracy < score[0, DETECTION].balanced_accuracy
    assert score[1, FUZZING].balanced_accuracy < score[0, FUZZING].balanced_accuracy
    assert score[0, DETECTION].n_examples == 10 and sum(score[0, DETECTION].truth) == 5
    assert score[0, FUZZING].n_examples == 10 and sum(score[0, FUZZING].truth) == 5


def test_detection_prompt_has_no_highlights_and_mixes_kinds():
    act, non = animal_concept()
    (r,) = score_labels([ScoringInput(0, "Animals", act, non)], vocab_scorer(), methods=[DETECTION], n_examples=4)
    assert "<<" not in r.prompt.split("Excerpts:")[1]
    assert "Label: Animals" in r.prompt
    assert sorted(r.truth) == [False] * 4 + [True] * 4
    assert r.truth != sorted(r.truth, reverse=True)  # shuffled (fixed seed: not all true first)


def test_fuzzing_prompt_has_true_and_random_highlights():
    act, non = animal_concept()
    (r,) = score_labels([ScoringInput(0, "Animals", act, non)], vocab_scorer(), methods=[FUZZING], n_examples=4)
    lines = re.findall(r"^\d+\. (.*)$", r.prompt.split("Excerpts:")[1], re.M)
    assert len(lines) == 8
    for line, truth in zip(lines, r.truth):
        (marked,) = re.findall(r"<<(.*?)>>", line)
        assert (marked in ANIMALS) == truth


def test_scoring_is_deterministic_with_a_seed():
    act, non = animal_concept()
    inputs = [ScoringInput(i, "Animals", act, non) for i in range(3)]
    run = lambda seed: sorted((r.concept_index, r.method, r.prompt, r.truth) for r in
                              score_labels(inputs, vocab_scorer(), seed=seed, max_concurrency=3))
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_fuzzing_without_context_is_a_per_result_error_detection_still_works():
    act = [ConceptExample(a, 1.0, 1.0) for a in ANIMALS[:5]]
    non = [ConceptExample(t, 0.0, 0.0) for t in THINGS[:5]]
    results = {r.method: r for r in score_labels([ScoringInput(0, "Animals", act, non)], vocab_scorer())}
    assert results[DETECTION].error is None and results[DETECTION].balanced_accuracy == 1.0
    assert results[FUZZING].error.code == "FAILED_PRECONDITION" and "k_context" in results[FUZZING].error.message
    assert results[FUZZING].balanced_accuracy is None


def test_missing_examples_empty_label_and_scorer_failures_are_per_result():
    act, non = animal_concept()

    def fn(messages):
        if "Label: broken" in messages[-1]["content"]:
            return "I cannot say."
        return "[1]"
    inputs = [ScoringInput(0, "Animals", act, []), ScoringInput(1, "  ", act, non),
              ScoringInput(2, "broken", act, non), ScoringInput(3, "Animals", act, non)]
    results = {(r.concept_index, r.method): r for r in score_labels(inputs, CallableLLM(fn, "s"), methods=[DETECTION])}
    assert results[0, DETECTION].error.code == "FAILED_PRECONDITION"
    assert results[1, DETECTION].error.code == "INVALID_ARGUMENT"
    assert results[2, DETECTION].error.code == "INTERNAL" and "could not read" in results[2, DETECTION].error.message
    assert results[3, DETECTION].error is None


def test_unknown_method_is_rejected():
    with pytest.raises(InvalidArgument):
        list(score_labels([], vocab_scorer(), methods=["vibes"]))


def test_progress_and_bounded_concurrency():
    act, non = animal_concept()
    progress = []
    results = list(score_labels([ScoringInput(i, "Animals", act, non) for i in range(3)], vocab_scorer(),
                                max_concurrency=2, progress=lambda d, t: progress.append((d, t))))
    assert len(results) == 6 and progress[-1] == (6, 6) and [d for d, _ in progress] == list(range(1, 7))


@pytest.mark.parametrize("truth,pred,ba", [
    ([1, 1, 0, 0], [1, 1, 0, 0], 1.0),
    ([1, 1, 0, 0], [0, 0, 1, 1], 0.0),
    ([1, 1, 0, 0], [1, 0, 0, 1], 0.5),
    ([1, 1, 1, 0], [1, 1, 1, 1], 0.5),       # always "yes": chance, whatever the class balance
    ([1, 1, 1, 0], [1, 1, 0, 0], (2 / 3 + 1) / 2),
    ([1, 0, 0, 0, 0], [1, 1, 0, 0, 0], (1 + 0.75) / 2),
    ([1, 1], [1, 0], 0.5),                   # one class only: its recall
])
def test_balanced_accuracy(truth, pred, ba):
    assert balanced_accuracy([bool(t) for t in truth], [bool(p) for p in pred]) == pytest.approx(ba)


def test_balanced_accuracy_errors():
    with pytest.raises(ValueError):
        balanced_accuracy([True], [True, False])
    with pytest.raises(ValueError):
        balanced_accuracy([], [])


@pytest.mark.parametrize("answer,n,picked", [
    ("[1, 3]", 4, [1, 3]),
    ("[]", 3, []),
    ("```json\n[2,4]\n```", 4, [2, 4]),
    ("The matching excerpts are [2] and that's it.", 3, [2]),
    ("For example [1, 4] was the format.\nAnswer: [3]", 4, [3]),
    ('["1", "2"]', 3, [1, 2]),
    ("[1, 0, 1, 0]", 4, [1, 3]),             # a 0/1 mask
    ("[0, 2]", 4, [1, 3]),                   # 0-based numbers
    ("[2, 9]", 4, [2]),                      # out of range ignored
    ("1 0 0 1", 4, [1, 4]),
    ("Answers:\n1,1,0,0,1", 5, [1, 2, 5]),
    ("None of them.", 4, []),
    ("No excerpt matches.", 4, []),
    ("Excerpts 2 and 3 match.", 4, [2, 3]),
    ("<think>maybe [1,2,3]</think>[4]", 4, [4]),
])
def test_parse_selection(answer, n, picked):
    assert parse_selection(answer, n) == [i + 1 in picked for i in range(n)]


@pytest.mark.parametrize("answer", ["", "I cannot tell.", "<think>hmm"])
def test_parse_selection_unreadable(answer):
    with pytest.raises(LabelParseError):
        parse_selection(answer, 4)


def test_summary_means_and_scorer_is_labeller():
    rs = [LabelScoreResult(0, "a", DETECTION, 1.0, 10), LabelScoreResult(1, "b", DETECTION, 0.5, 10),
          LabelScoreResult(0, "a", FUZZING, 0.8, 10),
          LabelScoreResult(2, "c", FUZZING, None, 0, error=None),
          LabelScoreResult(3, "d", DETECTION, 0.0, 10, error=object())]
    scorer = "openai:gpt-4.1-nano@https://api.openai.com/v1"
    s = summarize_scores(rs, scorer, labeller=scorer + "/")
    assert s.mean_detection == pytest.approx(0.75) and s.mean_fuzzing == pytest.approx(0.8)
    assert (s.n_detection, s.n_fuzzing) == (2, 1)
    assert s.scorer == scorer and s.scorer_is_labeller
    assert not summarize_scores(rs, scorer, labeller="model-server:smollm2-135m-instruct").scorer_is_labeller
    assert not summarize_scores(rs, scorer, labeller="").scorer_is_labeller
    assert summarize_scores([], scorer).mean_detection is None
    assert same_llm("Model-Server:X", "model-server:x") and not same_llm("", "")


def test_scorer_is_labeller_end_to_end():
    act, non = animal_concept()
    scorer = vocab_scorer()
    results = list(score_labels([ScoringInput(0, "Animals", act, non)], scorer))
    assert summarize_scores(results, scorer.describe(), labeller=scorer.describe()).scorer_is_labeller
    assert summarize_scores(results, scorer.describe(), labeller="model-server:other").scorer_is_labeller is False


def test_scoring_through_the_openai_client(fake_openai):
    from xaimesh_labeling.llm import OpenAIChatLLM

    stub = vocab_scorer()
    fake_openai.responder = stub.complete
    scorer = OpenAIChatLLM("scorer", "sk-test-scoring-0123456789", base_url=fake_openai.base_url, timeout_seconds=5)
    act, non = animal_concept()
    results = list(score_labels([ScoringInput(0, "Animals", act, non)], scorer, n_examples=3))
    assert sorted(r.balanced_accuracy for r in results) == [1.0, 1.0]
    assert len(fake_openai.requests) == 2
    assert summarize_scores(results, scorer.describe()).scorer == f"openai:scorer@{fake_openai.base_url}"
