"""The replacement a removed element becomes, by default the model's own:
its mask token, else its pad token, else its unk token, and the output says
which token was used."""

from __future__ import annotations

import numpy as np
import pytest

from xaimesh_attribution import explain
from xaimesh_attribution.backend import ModelDescription, Replacement
from xaimesh_attribution.methods.base import resolve_replacement
from xaimesh_attribution.options import ReplacementPolicy
from xaimesh_runtime.errors import InvalidArgument


def desc(mask=-1, pad=-1, unk=-1) -> ModelDescription:
    return ModelDescription("m", "sequence_classification", mask_token_id=mask, pad_token_id=pad,
                            unk_token_id=unk, vocab_size=1000)


@pytest.mark.parametrize("model, policy, token_id", [
    (desc(mask=103, pad=0, unk=100), ReplacementPolicy.MASK_TOKEN, 103),  # BERT-like: the mask token
    (desc(pad=2, unk=0), ReplacementPolicy.PAD_TOKEN, 2),  # a causal LM with a pad token
    (desc(unk=0), ReplacementPolicy.UNK_TOKEN, 0),
])
def test_the_default_is_the_models_mask_then_pad_then_unk_token(model, policy, token_id):
    assert resolve_replacement(Replacement(), model, "parameters.replacement") == Replacement(policy, token_id)


def test_a_model_without_any_of_them_gets_an_error_naming_the_options():
    with pytest.raises(InvalidArgument) as info:
        resolve_replacement(Replacement(), desc(), "parameters.replacement")
    assert info.value.field == "parameters.replacement.policy"
    assert "token_id" in info.value.message and "zero_embedding" in info.value.message


def test_an_explicit_policy_is_kept_and_its_token_named():
    bert = desc(mask=103, pad=0, unk=100)
    assert resolve_replacement(Replacement(ReplacementPolicy.PAD_TOKEN), bert, "r") == \
        Replacement(ReplacementPolicy.PAD_TOKEN, 0)
    assert resolve_replacement(Replacement(ReplacementPolicy.UNK_TOKEN), bert, "r") == \
        Replacement(ReplacementPolicy.UNK_TOKEN, 100)
    assert resolve_replacement(Replacement(ReplacementPolicy.TOKEN_ID, 7), bert, "r") == \
        Replacement(ReplacementPolicy.TOKEN_ID, 7)
    assert resolve_replacement(Replacement(ReplacementPolicy.ZERO_EMBEDDING), bert, "r").policy == \
        ReplacementPolicy.ZERO_EMBEDDING


def test_the_output_names_the_token_used_and_equals_that_explicit_choice(lm_backend):
    described = lm_backend.describe()
    expected = resolve_replacement(Replacement(), described, "parameters.replacement")
    default = explain(lm_backend, "occlusion", {}, "Alice and Bob enter the bar,", " then Alice smiles.")
    assert default.parameters.replacement == expected and expected.policy is not None
    explicit = explain(lm_backend, "occlusion", {"replacement": {"policy": expected.policy.value}},
                       "Alice and Bob enter the bar,", " then Alice smiles.")
    np.testing.assert_array_equal(default.scores, explicit.scores)  # NaN where both are NaN
