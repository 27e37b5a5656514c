"""The facade: targets, batching, progress, cancellation, JSON, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from attr_backends import SyntheticBackend

from xaimesh_attribution import (
    AttributionResult,
    Cancelled,
    InvalidArgument,
    MetricResult,
    evaluate,
    explain,
    list_methods,
)
from xaimesh_attribution.methods import resolve_method


def causal(keep, ids, positions, mode):
    k = keep.astype(float)
    return np.stack([1 / (1 + np.exp(-(k[:, :p] @ np.linspace(-1, 1, p)))) for p in positions], axis=1)


def classes(keep, ids, cls, mode):
    k = keep.astype(float)
    return np.stack([(k @ np.linspace(-1, 1, k.shape[1]) + 1) * (c + 1) for c in cls], axis=1)


@pytest.fixture()
def lm():
    return SyntheticBackend(causal, piece=2, max_len=40)


@pytest.fixture()
def clf():
    return SyntheticBackend(classes, task="sequence_classification", labels=["neg", "neu", "pos"], max_len=20)


# ----------------------------------------------------------------- targets and rows


def test_generation_text_targets_elements_and_rows(lm):
    r = explain(lm, "occlusion", {}, "Alice and Bob. They", " drink tea.", granularity="sentence")
    assert [s.text for s in r.input_elements] == ["Alice and Bob.", "They", "drink tea."]
    assert r.num_prompt_elements == 2 and r.target_elements == ["drink tea."]
    assert r.text == "Alice and Bob. They drink tea."
    seg = r.input_elements[-1]
    assert r.text[seg.start_char : seg.end_char] == "drink tea."
    assert r.scores.shape == (1, 3) and np.isnan(r.scores[0, 2]) and not np.isnan(r.scores[0, :2]).any()
    # TOKEN: every target token is a row; row t covers the prompt tokens and targets before t
    t = explain(lm, "occlusion", {}, "Alice and Bob", " drink tea", granularity="token")
    P = len(t.input_ids) - len(t.target_token_ids)
    for row in range(len(t.target_token_ids)):
        assert not np.isnan(t.scores[row, : P + row]).any()
        assert np.isnan(t.scores[row, P + row :]).all()
    assert t.target_element_token_ends == list(range(1, len(t.target_token_ids) + 1))


def test_generation_token_id_targets_and_generated_targets(lm):
    ref = explain(lm, "occlusion", {}, "Alice and Bob", " drink tea", granularity="word")
    by_ids = explain(lm, "occlusion", {}, "Alice and Bob", ref.target_token_ids, granularity="word")
    assert by_ids.target_elements == ref.target_elements == ["drink", "tea"]
    np.testing.assert_allclose(by_ids.scores, ref.scores, equal_nan=True)
    # no targets: the backend generates, trailing EOS dropped
    lm.generated = list(ref.target_token_ids) + [2]
    gen = explain(lm, "occlusion", {}, "Alice and Bob", None, granularity="word", max_new_tokens=10)
    assert gen.target_token_ids == ref.target_token_ids
    assert gen.text == "Alice and Bob drink tea"


def test_classification_targets_by_index_name_and_prediction(clf):
    r = explain(clf, "occlusion", {}, "a b c d", ["pos", "neg"])
    assert r.target_classes == [2, 0] and r.target_elements == ["pos", "neg"]
    r2 = explain(clf, "occlusion", {}, "a b c d", 1)
    assert r2.target_classes == [1]
    r3 = explain(clf, "occlusion", {}, "a b c d", None)  # predicted: the largest score
    assert r3.target_classes == [2]
    np.testing.assert_allclose(r.scores[0], 3 * np.linspace(-1, 1, 4), rtol=1e-6)


def test_batches_progress_and_should_stop(clf):
    events = []
    clf.score_calls.clear()
    explain(
        clf,
        "lime",
        {"n_perturbations": 20, "batch_size": 8},
        "a b c d",
        0,
        progress=lambda d, t, s: events.append((d, t, s)),
    )
    sizes = [c["n"] for c in clf.score_calls]
    assert max(sizes) <= 8
    scoring = [e for e in events if e[2] == "scoring"]
    assert scoring[0][0] == 0 and scoring[-1][0] == scoring[-1][1]
    assert [d for d, _, _ in scoring] == sorted(d for d, _, _ in scoring)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        explain(clf, "lime", {"n_perturbations": 40, "batch_size": 4}, "a b c d", 0, should_stop=stop)
    assert len(calls) == 3


def test_list_methods():
    methods = {m.name: m for m in list_methods()}
    assert set(methods) == {
        "occlusion",
        "lime",
        "kernel_shap",
        "sobol",
        "saliency",
        "input_x_gradient",
        "integrated_gradients",
        "gradient_shap",
        "smooth_grad",
        "square_grad",
        "var_grad",
    }
    assert methods["kernel_shap"].family == "perturbation" and methods["saliency"].family == "gradient"
    assert methods["kernel_shap"].number == 3 and methods["var_grad"].number == 11
    assert methods["integrated_gradients"].defaults.n_steps == 50
    assert methods["sobol"].granularities == ("all_tokens", "token", "word", "sentence", "part_sentence")
    json.dumps([m.defaults.to_dict() for m in methods.values()])
    # proto-style names, class names and numbers resolve to the same method
    assert resolve_method("ATTRIBUTION_METHOD_KERNEL_SHAP") is resolve_method(3) is resolve_method("KernelShap")
    ks = resolve_method("kernel_shap")
    assert ks.parameters({}) == ks.parameters(None) == ks.defaults and ks.defaults.n_perturbations == 256
    with pytest.raises(InvalidArgument, match="unknown parameter"):  # another method's parameter
        ks.parameters({"sobol_sampler": "SOBOL_SAMPLER_HALTON"})
    sobol = resolve_method("sobol").parameters({"sobol_sampler": 2, "sobol_index": "SOBOL_INDEX_FIRST"})
    assert sobol.sobol_sampler == "halton" and sobol.sobol_index == "first"


# ----------------------------------------------------------------- JSON


def test_attribution_json_round_trip(lm):
    r = explain(lm, "kernel_shap", {"n_perturbations": 16}, "Alice and Bob", " drink tea", granularity="token")
    s = r.to_json()
    json.loads(s)  # strict JSON: NaN written as null
    assert "NaN" not in s
    back = AttributionResult.from_json(s)
    assert back.scores.dtype == np.float32
    np.testing.assert_array_equal(back.scores, r.scores)  # bit-exact, NaN included
    np.testing.assert_array_equal(back.target_scores, r.target_scores)
    assert back.input_elements == r.input_elements
    for f in (
        "model",
        "task",
        "method",
        "parameters",
        "granularity",
        "aggregation",
        "inference_mode",
        "num_prompt_elements",
        "target_elements",
        "target_classes",
        "target_token_ids",
        "target_element_token_ends",
        "text",
        "prompt_text",
        "input_ids",
    ):
        assert getattr(back, f) == getattr(r, f), f
    assert json.loads(r.parameters_json)["n_perturbations"] == 16 and r.parameters.n_perturbations == 16
    m = evaluate(lm, "deletion", back, n_random_orders=2)
    m2 = MetricResult.from_json(m.to_json())
    np.testing.assert_array_equal(m2.curve.scores, m.curve.scores)
    np.testing.assert_array_equal(m2.random_curve.fractions, m.random_curve.fractions)
    np.testing.assert_array_equal(m2.per_target_scores, m.per_target_scores)
    assert m2.curve.auc == m.curve.auc and m2.metric == "deletion"


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, field, words",
    [
        ({"text": ""}, "text", "empty"),
        ({"method": "shapley_magic"}, "method", "kernel_shap"),
        ({"params": {"n_perturbations": 0}}, "parameters.n_perturbations", ">= 1"),
        ({"params": {"n_perturbations": -3}}, "parameters.n_perturbations", ">= 1"),
        ({"params": {"batch_size": 0}}, "parameters.batch_size", ">= 1"),
        ({"params": {"keep_probability": 1.5}}, "parameters.keep_probability", "(0, 1)"),
        ({"params": {"kernel_width": -1}}, "parameters.kernel_width", "> 0"),
        ({"params": {"n_perturbation": 5}}, "parameters.n_perturbation", "unknown parameter"),
        ({"params": {"replacement": {"policy": "bogus"}}}, "parameters.replacement.policy", "pad_token"),
        ({"params": {"replacement": {"policy": "mask_token"}}}, "parameters.replacement.policy", "no mask token"),
        ({"granularity": "sample"}, "granularity", "activations"),
        ({"granularity": "GRANULARITY_CLS_TOKEN"}, "granularity", "activations"),
        ({"granularity": "paragraph"}, "granularity", "unknown"),
        ({"inference_mode": "probits"}, "inference_mode", "softmax"),
        ({"targets": ""}, "targets", "empty"),
        ({"targets": " x" * 40}, "targets", "context"),
        ({"targets": [1.5]}, "targets", "token ids"),
    ],
)
def test_explain_validation_errors(lm, kwargs, field, words):
    args = {"method": "lime", "params": {}, "text": "Alice and Bob", "targets": " drink"} | kwargs
    with pytest.raises(InvalidArgument) as info:
        explain(
            lm,
            args["method"],
            args["params"],
            args["text"],
            args["targets"],
            granularity=args.get("granularity"),
            inference_mode=args.get("inference_mode"),
        )
    assert info.value.field == field
    assert words in info.value.message


def test_classifier_validation_errors(clf):
    with pytest.raises(InvalidArgument) as info:
        explain(clf, "occlusion", {}, "a b c", ["positive"])
    assert info.value.field == "targets"
    assert "'neg', 'neu', 'pos'" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        explain(clf, "occlusion", {}, "a b c", [3])
    assert info.value.field == "targets" and "3 classes" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        explain(clf, "occlusion", {}, " ".join("w" for _ in range(30)), 0)
    assert info.value.field == "text" and "maximum" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        explain(clf, "integrated_gradients", {"gradient_reduction": "l2_norm"}, "a b", 0)
    assert info.value.field == "parameters.gradient_reduction"


def test_evaluate_validation_errors(lm):
    r = explain(lm, "occlusion", {}, "Alice and Bob", " drink tea")
    with pytest.raises(InvalidArgument) as info:
        evaluate(lm, "area_over_curve", r)
    assert info.value.field == "metric"
    with pytest.raises(InvalidArgument) as info:
        evaluate(lm, "deletion", r, n_steps=-1)
    assert info.value.field == "n_steps"
    with pytest.raises(InvalidArgument) as info:
        evaluate(lm, "deletion", r, replacement={"policy": "token_id", "token_id": -4})
    assert info.value.field == "replacement.token_id"
    bad = AttributionResult.from_dict({**r.to_dict(), "scores": [[0.0]]})
    with pytest.raises(InvalidArgument) as info:
        evaluate(lm, "insertion", bad)
    assert info.value.field == "attribution.scores"
    clf_like = AttributionResult.from_dict({**r.to_dict(), "task": "sequence_classification"})
    with pytest.raises(InvalidArgument) as info:
        evaluate(lm, "deletion", clf_like)
    assert info.value.field == "attribution.task"


def test_token_id_targets_with_a_non_canonical_split(lm):
    # " drink" canonically tokenizes as " d" "ri" "nk" (pieces of 2); give " dr" "i" "nk" instead
    ids = [lm._id(" dr"), lm._id("i"), lm._id("nk"), lm._id(" tea")]
    r = explain(lm, "occlusion", {}, "Alice and Bob", ids, granularity="word")
    assert r.text == "Alice and Bob drink tea"
    assert r.target_elements == ["drink", "tea"]
    assert r.target_element_token_ends == [3, 4]
    seg = r.input_elements[r.num_prompt_elements]
    assert (seg.start_token, seg.end_token) == (len(r.input_ids) - 4, len(r.input_ids) - 1)
    assert r.text[seg.start_char : seg.end_char] == "drink"


def test_special_target_tokens_are_elements_of_their_own():
    from xaimesh_attribution.backend import Segment, Tokenized
    from xaimesh_attribution.elements import target_segments
    from xaimesh_attribution.options import Granularity

    tok = Tokenized(
        [5, 6, 2],
        [" a", "b", "</s>"],
        [0, 2, 3],
        [2, 3, 3],
        [False, False, True],
        [0, 0, -1],
        [0, 0, -1],
        [Segment("ab", 1, 3, 0, 2)],
        [Segment("ab", 1, 3, 0, 2)],
    )
    segs = target_segments(tok, Granularity.WORD)
    assert [(s.text, s.start_token, s.end_token) for s in segs] == [("ab", 0, 2), ("</s>", 2, 3)]
    assert len(target_segments(tok, Granularity.TOKEN)) == 3


def test_remove_replacement_that_empties_the_prompt_is_rejected(lm):
    with pytest.raises(InvalidArgument) as info:
        explain(lm, "kernel_shap", {"replacement": {"policy": "REPLACEMENT_POLICY_REMOVE"}}, "Alice and Bob", " drink")
    assert info.value.field == "parameters.replacement.policy"
    # occlusion never removes the whole prompt: fine
    r = explain(lm, "occlusion", {"replacement": {"policy": 6}}, "Alice and Bob", " drink")
    assert r.parameters.replacement.to_dict() == {"policy": "remove", "token_id": 0}
