"""LogitLens against a bare-transformers oracle on every causal family.

The oracle is written independently of the engine: the bare model's
`hidden_states` (the input of block 0, then the output of each block), the
final norm named per family below (where it lives differs), the model's
lm_head and, for Gemma 2, the final soft-capping from the config; its last
row is the bare model's own logits. Definition: docs/lenses.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fixtures.family_models import CAUSAL, FAMILIES
from tests.unit.model_server.test_ms_families import OneBatch, _family, _ids
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

# Where each family keeps its final norm (the oracle does not use the engine's search).
FINAL_NORM = {
    "gpt2": "transformer.ln_f",
    "gpt-neox": "gpt_neox.final_layer_norm",
}
TEXT = "Alice offers a drink to Bob, then the cat sat."
ATOL = 1e-5

CAUSAL_FAMILIES = [pytest.param(f, id=f.name) for f in FAMILIES if f.task == CAUSAL]


def oracle_probabilities(fam, bare, ids: list[int]) -> np.ndarray:
    """float64 probabilities [layers, positions, vocab] of the bare model's lens."""
    with torch.no_grad():
        out = bare(torch.tensor([ids]), output_hidden_states=True)
        norm = bare.get_submodule(FINAL_NORM.get(fam.name, "model.norm"))
        rows = []
        for hidden in out.hidden_states[:-1]:  # the last entry is already normed in most families
            logits = bare.lm_head(norm(hidden[0])).double()
            cap = getattr(bare.config, "final_logit_softcapping", None)
            if cap:
                logits = torch.tanh(logits / cap) * cap
            rows.append(logits)
        rows.append(out.logits[0].double())
        return torch.softmax(torch.stack(rows), dim=-1).numpy()


@pytest.mark.parametrize("fam", CAUSAL_FAMILIES)
def test_lens_equals_the_bare_model_oracle(fam):
    from xaimesh_model_server import engine

    loaded, bare = _family(fam)
    ids = _ids(loaded, TEXT)
    lens = engine.logit_lens(loaded, ids, top_k=5)
    expected = oracle_probabilities(fam, bare, ids)
    n_layers = loaded.num_layers + 1
    assert lens.layers == ["embeddings", *loaded.split_points]
    assert lens.top_token_ids.shape == lens.top_probabilities.shape == (n_layers, len(ids), 5)
    # The top-k probabilities are the oracle's k largest, in order ...
    assert np.abs(lens.top_probabilities - -np.sort(-expected, axis=-1)[..., :5]).max() < ATOL
    # ... and they belong to the ids returned (robust to ties in a random model).
    at_ids = np.take_along_axis(expected, lens.top_token_ids, axis=-1)
    assert np.abs(lens.top_probabilities - at_ids).max() < ATOL
    follow = expected[:, np.arange(len(ids) - 1), ids[1:]]
    assert np.abs(lens.next_token_probabilities[:, :-1] - follow).max() < ATOL
    assert np.isnan(lens.next_token_probabilities[:, -1]).all()
    # The last row is the model's own prediction.
    assert (lens.top_token_ids[-1, :, 0] == expected[-1].argmax(-1)).all()
    assert lens.top_tokens[0] == loaded.tokenizer.decode([int(lens.top_token_ids[0, 0, 0])])
    assert "".join(lens.input_tokens) == loaded.tokenizer.decode(ids)


@pytest.mark.parametrize("fam", [p for p in CAUSAL_FAMILIES if p.id in ("llama-spm", "gpt2")])
def test_a_padded_batch_gives_each_sequence_its_own_lens(fam):
    from xaimesh_model_server import engine

    loaded, _ = _family(fam)
    texts = ["the cat sat", TEXT]
    alone = [engine.logit_lens(loaded, _ids(loaded, t), top_k=3) for t in texts]
    kind = engine.LensWork(3)
    seqs = [engine.lens.LensItem(torch.tensor(_ids(loaded, t))) for t in texts]
    batched = OneBatch(loaded).run(kind, seqs, [len(s.ids) for s in seqs])
    for one, both in zip(alone, batched, strict=True):
        assert np.abs(one.top_probabilities - both["top_probabilities"]).max() < ATOL
        assert np.allclose(one.next_token_probabilities, both["next_token_probabilities"], atol=ATOL,
                           equal_nan=True)


def test_a_classifier_is_refused(clf):
    from xaimesh_model_server import engine

    with pytest.raises(FailedPrecondition, match="not a causal LM") as info:
        engine.logit_lens(clf, [1, 2, 3])
    assert info.value.field == "model"


def test_bad_requests_name_their_field(lm, sentence_ids):
    from xaimesh_model_server import engine

    assert engine.logit_lens(lm, sentence_ids[:4], top_k=0).top_token_ids.shape[-1] == engine.lens.DEFAULT_TOP_K
    for top_k in (-1, engine.lens.MAX_TOP_K + 1):
        with pytest.raises(InvalidArgument, match="top_k") as info:
            engine.logit_lens(lm, sentence_ids, top_k=top_k)
        assert info.value.field == "top_k"
    with pytest.raises(InvalidArgument, match="empty") as info:
        engine.logit_lens(lm, [])
    assert info.value.field == "input_ids"
    with pytest.raises(InvalidArgument, match="out of the vocabulary"):
        engine.logit_lens(lm, [lm.vocab_size])


def test_a_model_whose_output_is_not_norm_plus_unembedding_is_refused(tiny_lm_path):
    """A logit transform the lens does not know (here a soft-capping the config
    names but Llama's forward ignores) must be refused, not lensed wrongly."""
    from xaimesh_model_server import engine
    from xaimesh_model_server.loading import load_model

    loaded = load_model(tiny_lm_path, device="cpu", model_id="tiny-lm-capped")
    loaded.model.config.final_logit_softcapping = 0.01
    with pytest.raises(FailedPrecondition, match="does not compute its output"):
        engine.logit_lens(loaded, [1, 2, 3, 4])


@pytest.mark.parametrize("fam", [p for p in CAUSAL_FAMILIES if p.id in ("llama-spm", "gpt2", "gemma2")])
def test_unembedded_directions_are_the_top_and_bottom_of_the_unembedding(fam):
    from xaimesh_model_server import engine

    loaded, bare = _family(fam)
    directions = np.random.default_rng(0).normal(size=(3, loaded.hidden_size)).astype(np.float32)
    out = engine.unembed_directions(loaded, directions, top_k=4)
    values = directions.astype(np.float64) @ bare.lm_head.weight.detach().double().numpy().T  # [3, vocabulary]
    assert np.abs(out.promoted_values - -np.sort(-values, axis=-1)[:, :4]).max() < 1e-4
    assert np.abs(out.suppressed_values - np.sort(values, axis=-1)[:, :4]).max() < 1e-4
    assert np.abs(np.take_along_axis(values, out.promoted_ids, -1) - out.promoted_values).max() < 1e-4
    assert out.promoted_tokens[0] == loaded.tokenizer.decode([int(out.promoted_ids[0, 0])])
    assert len(out.suppressed_tokens) == 12


def test_unembedding_bad_requests(lm, clf):
    from xaimesh_model_server import engine

    with pytest.raises(FailedPrecondition, match="not a causal LM"):
        engine.unembed_directions(clf, np.zeros((1, clf.hidden_size)))
    for directions, top_k, field in [(np.zeros((1, lm.hidden_size + 1)), 0, "directions"),
                                     (np.zeros((0, lm.hidden_size)), 0, "directions"),
                                     (np.full((1, lm.hidden_size), np.nan), 0, "directions"),
                                     (np.zeros((1, lm.hidden_size)), 101, "top_k")]:
        with pytest.raises(InvalidArgument) as info:
            engine.unembed_directions(lm, directions, top_k=top_k)
        assert info.value.field == field
