"""ConSim's prompt, parsing and score (xaimesh_labeling.simulatability) on
scripted simulators whose right score is known."""

from __future__ import annotations

import re

import pytest

from xaimesh_labeling.llm import CallableLLM
from xaimesh_labeling.simulatability import (PROMPT_PARTS, SimulatabilityInput, build_messages, parse_reply,
                                             quantize, score_simulatability, shown_concepts)
from xaimesh_runtime.errors import InvalidArgument

CLASSES = ["negative", "positive"]
# 4 learning + 4 evaluation samples; the model's classes are NOT the sentiment
# for samples 2 and 6, so a simulator that guesses the sentiment is not the model.
SAMPLES = ["I loved it", "Awful film", "Great acting", "Boring plot",
           "A joy to watch", "Terrible sound", "Wonderful cast", "Dull and slow"]
PREDICTIONS = [1, 0, 0, 0, 1, 0, 0, 0]
LABELS = ["praise words", "complaint words", ""]  # concept 2 has no label: never shown
CLASS_IMPORTANCES = [[-0.5, 2.0, 0.01], [3.0, -0.4, 0.02]]
CONTRIBUTIONS = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.8, 0.0], [0.0, -1.0, 0.0],
                 [1.0, -0.1, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]


def data(prompt_type="e3_global_and_local_concepts_with_lp", **changes):
    fields = dict(samples=SAMPLES, predictions=PREDICTIONS, classes=CLASSES, concept_labels=LABELS,
                  class_importances=CLASS_IMPORTANCES, sample_contributions=CONTRIBUTIONS[:4],
                  prompt_type=prompt_type)
    fields.update(changes)
    return SimulatabilityInput(**fields)


def asked(messages):
    """The sample indices the user message asks about."""
    return [int(i) for i in re.findall(r"^Sample_(\d+):", messages[-1]["content"], re.MULTILINE)]


def oracle(messages):
    """Answers the model's class of every asked sample (it knows the model)."""
    return "\n".join(f"Sample_{i}: {CLASSES[PREDICTIONS[i]]}" for i in asked(messages))


def test_a_simulator_that_knows_the_model_scores_one():
    result = score_simulatability(data(), CallableLLM(oracle, "oracle"))
    assert result.score == 1.0 and result.n_answered == 4 and result.llm == "oracle"
    assert result.model_predictions == ["positive", "negative", "negative", "negative"]


def test_a_simulator_that_always_errs_scores_zero():
    def wrong(messages):
        return "\n".join(f"Sample_{i}: {CLASSES[1 - PREDICTIONS[i]]}" for i in asked(messages))

    assert score_simulatability(data(), CallableLLM(wrong, "wrong")).score == 0.0


def test_a_simulator_that_ignores_explanations_scores_the_baseline_with_or_without_them():
    """It answers the majority class of the examples it is shown: the same
    answers (3 of 4 right: samples 5, 6, 7 are negative) whatever explanation
    is in the prompt, so E3 = L2."""
    def majority(messages):
        shown = re.findall(r"^Class of Sample_\d+: (\w+)", messages[0]["content"], re.MULTILINE)
        top = max(CLASSES, key=shown.count)
        return "\n".join(f"Sample_{i}: {top}" for i in asked(messages))

    llm = CallableLLM(majority, "majority")
    baseline = score_simulatability(data("l2_baseline_with_lp"), llm).score
    assert baseline == 0.75
    assert score_simulatability(data("e3_global_and_local_concepts_with_lp"), llm).score == baseline
    assert score_simulatability(data("e2_global_concepts_with_lp"), llm).score == baseline


def test_unanswered_or_unparsable_samples_count_as_wrong():
    def partial(messages):
        return "Here you go:\n**Sample_4**: Positive.\nSample_5 - negative\nI am unsure about the rest."

    result = score_simulatability(data(), CallableLLM(partial, "partial"))
    assert result.simulator_predictions == ["Positive.", "negative", "", ""]
    assert result.score == 0.5 and result.n_answered == 2
    assert score_simulatability(data(), CallableLLM(lambda m: "", "mute")).score == 0.0


def test_parse_reply_keeps_the_first_answer_per_sample_and_only_the_asked_ones():
    reply = "Sample_3: x\nSample_4: dog\nSample_4: cat\nsample 5 = bird\nPrediction_6: fish fillet"
    assert parse_reply(reply, 4, 3) == ["dog", "bird", "fish fillet"]


def test_quantize_matches_interpretos_literals():
    assert [quantize(v, 0.05) for v in (0.31, 0.29, 0.06, 0.04, -0.04, -0.06, -0.31)] == \
        ["++", "+", "+", None, None, "-", "--"]


def test_shown_concepts_need_a_label_and_an_importance_above_the_threshold():
    assert shown_concepts(LABELS, CLASS_IMPORTANCES, 0.05) == ([0, 1], 0.05)
    # nothing above 0.5 once normalized: halved until something is
    assert shown_concepts(["a", "b"], [[1.0, 1.0]], 0.5) == ([0, 1], 0.25)
    assert shown_concepts(["a", "b"], [[0.0, 0.0]], 0.05) == ([], 0.05)


def test_the_e3_prompt_shows_labels_importances_and_learning_phase_only():
    messages, expected = build_messages(data())
    system, user = messages[0]["content"], messages[1]["content"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "Classes: negative, positive" in system
    assert "concept 0: praise words" in system and "concept 1: complaint words" in system
    assert "concept 2" not in system  # unlabelled
    # per-class importances, normalized then quantized: negative = [-0.5, 2, .01]/2.51
    assert "negative: concept 0: -, concept 1: ++" in system
    assert "positive: concept 0: ++, concept 1: -" in system
    assert "Concept contributions of Sample_2: concept 0: +, concept 1: ++" in system
    assert "Sample_0: I loved it" in system and "Class of Sample_0: positive" in system
    assert "Class of Sample_3: negative" in system and "Sample_4" not in system
    assert asked(messages) == [4, 5, 6, 7] and "Concept contributions" not in user
    assert "Wonderful cast" in user and "I loved it" not in user
    assert expected == ["positive", "negative", "negative", "negative"]


@pytest.mark.parametrize("prompt_type", sorted(PROMPT_PARTS))
def test_each_prompt_type_shows_exactly_its_parts(prompt_type):
    parts = PROMPT_PARTS[prompt_type]
    messages, _ = build_messages(data(prompt_type, sample_contributions=CONTRIBUTIONS))
    system, user = messages[0]["content"], messages[1]["content"]
    assert ("praise words" in system) == parts.global_explanation
    assert ("Class of Sample_0: positive" in system) == parts.learning_samples
    assert ("Concept contributions of Sample_0" in system) == parts.learning_contributions
    assert ("Concept contributions of Sample_4" in user) == parts.evaluation_contributions
    assert asked(messages) == [4, 5, 6, 7]


def test_anonymized_classes_hide_the_names():
    messages, expected = build_messages(data(anonymize_classes=True))
    text = messages[0]["content"] + messages[1]["content"]
    assert "positive" not in text and "Class of Sample_0: Class_1" in text
    assert expected == ["Class_1", "Class_0", "Class_0", "Class_0"]
    assert build_messages(data("l2_baseline_with_lp", classes=[], anonymize_classes=True))[1] == expected


@pytest.mark.parametrize("changes, field", [
    (dict(samples=SAMPLES[:7], predictions=PREDICTIONS[:7]), "samples"),
    (dict(samples=[], predictions=[]), "samples"),
    (dict(predictions=PREDICTIONS[:6]), "predictions"),
    (dict(predictions=[2] + PREDICTIONS[1:]), "predictions[0]"),
    (dict(classes=[]), "classes"),
    (dict(classes=[], anonymize_classes=True, predictions=[2 ** 31 - 1] + PREDICTIONS[1:]), "predictions[0]"),
    (dict(prompt_type="nope"), "prompt_type"),
    (dict(importance_threshold=0.0), "importance_threshold"),
    (dict(concept_labels=["", "", ""]), "concept_labels"),
    (dict(class_importances=CLASS_IMPORTANCES[:1]), "class_importances"),
    (dict(class_importances=[[1.0, 2.0], [1.0, 2.0]]), "class_importances[0]"),
    (dict(class_importances=[[1.0, float("nan"), 0.0], [1.0, 2.0, 0.0]]), "class_importances[0]"),
    (dict(sample_contributions=CONTRIBUTIONS[:3]), "sample_contributions"),
    (dict(sample_contributions=[[1.0]] * 4), "sample_contributions[0]"),
    (dict(prompt_type="u1_upper_bound_concepts_at_ep"), "sample_contributions"),
])
def test_bad_inputs_are_invalid_arguments_naming_the_field(changes, field):
    with pytest.raises(InvalidArgument) as info:
        build_messages(data(**changes))
    assert info.value.field == field, str(info.value)


def test_baselines_need_no_explanation():
    messages, _ = build_messages(data("l1_baseline_without_lp", concept_labels=[], class_importances=[],
                                      sample_contributions=[]))
    assert "Sample_0" not in messages[0]["content"] and asked(messages) == [4, 5, 6, 7]
