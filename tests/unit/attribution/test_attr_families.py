"""Every attribution method, and Deletion / Insertion, on representative model
families (tiny random models with tokenizers of their own kind,
tests/fixtures/family_models.py) through the in-process model-server engine.

Checks: each method runs and gives finite scores of the right shape, special
tokens ([CLS] / [SEP], <s> / </s>, BOS) are never attribution elements, and
both metrics return finite curves. Few perturbations / steps: it is a matrix
of "does it run and is it well-formed", the numbers are checked elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.family_models import BY_NAME, CAUSAL, missing_class

FAMILIES = ["gpt2", "llama-bos", "qwen2", "gemma2", "gpt2-classifier", "bert", "roberta", "deberta-v2", "modernbert"]
TEXT = "Alice offers a drink to Bob. The cat sat."
CONTINUATION = " Bob says thanks."

SMALL = {
    "occlusion": {},
    "lime": {"n_perturbations": 8},
    "kernel_shap": {"n_perturbations": 8},
    "sobol": {"n_perturbations": 2},
    "saliency": {},
    "input_x_gradient": {},
    "integrated_gradients": {"n_steps": 3},
    "gradient_shap": {"n_steps": 2},
    "smooth_grad": {"n_steps": 2},
    "square_grad": {"n_steps": 2},
    "var_grad": {"n_steps": 2},
}

_BACKENDS: dict[str, object] = {}


def _backend(name: str, torch_single_thread):
    fam = BY_NAME[name]
    reason = missing_class(fam)
    if reason:  # the matrix has no skips: a family this transformers lacks is a failure to look at
        pytest.fail(f"{reason}; requirements-pins.txt pins the transformers the matrix is checked with")
    if name not in _BACKENDS:
        from attr_backends import engine_backend

        from tests.fixtures.family_models import family_dir

        _BACKENDS[name] = engine_backend(family_dir(name), name)
    return _BACKENDS[name]


def _targets(fam):
    return CONTINUATION if fam.task == CAUSAL else None


def _no_special_elements(backend, result):
    special = set(backend.describe().all_special_ids)
    ids = result.input_ids
    for el in result.input_elements:
        covered = ids[el.start_token : el.end_token]
        assert covered, el
        assert not any(i in special for i in covered), (el, covered)
    # and every non-special prompt token is covered by a prompt element
    prompt_els = result.input_elements[: result.num_prompt_elements]
    n_prompt = max(el.end_token for el in prompt_els)
    covered = {k for el in prompt_els for k in range(el.start_token, el.end_token)}
    assert covered == {k for k in range(n_prompt) if ids[k] not in special}


def test_family_tokenizer_adds_specials_as_the_real_one(torch_single_thread):
    """The fixture's premise: BERT-like add [CLS] / [SEP], RoBERTa <s> / </s>,
    Llama-3 / Gemma BOS, GPT-2 / Qwen2 nothing."""
    expect = {"gpt2": ([], []), "qwen2": ([], []), "llama-bos": (["<|begin_of_text|>"], []),
              "gemma2": (["<bos>"], []), "gpt2-classifier": ([], []), "bert": (["[CLS]"], ["[SEP]"]), "roberta": (["<s>"], ["</s>"]),
              "deberta-v2": (["[CLS]"], ["[SEP]"]), "modernbert": (["[CLS]"], ["[SEP]"])}
    for name in FAMILIES:
        backend = _backend(name, torch_single_thread)
        tok = backend.tokenize(TEXT, add_special_tokens=True)
        first, last = expect[name]
        specials = [t for t, s in zip(tok.tokens, tok.special_mask) if s]
        assert specials == first + last, name
        if first:
            assert tok.tokens[: len(first)] == first
        if last:
            assert tok.tokens[-len(last) :] == last


@pytest.mark.parametrize("method", sorted(SMALL))
@pytest.mark.parametrize("name", FAMILIES)
def test_every_method_runs_on_every_family(name, method, torch_single_thread):
    from xaimesh_attribution import explain

    fam = BY_NAME[name]
    backend = _backend(name, torch_single_thread)
    result = explain(backend, method, SMALL[method], TEXT, _targets(fam))
    scores = np.asarray(result.scores)
    assert scores.ndim == 2 and scores.shape[1] == len(result.input_elements) and scores.shape[0] >= 1
    if fam.task == CAUSAL:  # target row t is explained by the prompt and the targets before it; NaN after
        P = result.num_prompt_elements
        for row in range(scores.shape[0]):
            assert np.isfinite(scores[row, : P + row]).all(), row
            assert np.isnan(scores[row, P + row :]).all(), row
    else:
        assert np.isfinite(scores).all()
    assert np.isfinite(np.asarray(result.target_scores)).all()
    _no_special_elements(backend, result)
    if fam.task != CAUSAL:
        assert result.num_prompt_elements == len(result.input_elements)


@pytest.mark.parametrize("name", FAMILIES)
def test_deletion_insertion_on_every_family(name, torch_single_thread):
    from xaimesh_attribution import evaluate, explain

    fam = BY_NAME[name]
    backend = _backend(name, torch_single_thread)
    result = explain(backend, "occlusion", {}, TEXT, _targets(fam))
    for metric in ("deletion", "insertion"):
        m = evaluate(backend, metric, result, n_steps=3, n_random_orders=1)
        assert m.metric == metric
        assert np.isfinite(m.curve.scores).all() and np.isfinite(m.curve.auc)
        assert m.random_curve is not None and np.isfinite(m.random_curve.auc)
        assert np.isfinite(np.asarray(m.per_target_scores)).all()
