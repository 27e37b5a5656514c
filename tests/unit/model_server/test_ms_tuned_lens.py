"""Tuned lens (engine/tuned_lens.py, LogitLens with translators; docs/lenses.md).

- zero translators are the logit lens bit for bit;
- the fit equals an independent re-implementation of interpreto 0.5.2's
  TunedLens.fit on the bare model (zero-initialised nn.Linear translators,
  AdamW, the mean over rows and positions of KL(final || row), one step per
  text);
- a planted affine map (the last block made h -> h + b) is recovered: the
  translator of the row before it brings that row's KL to the final
  distribution near zero, on training and held-out texts;
- bad requests are refused with their field.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.fixtures.family_models import FAMILIES, family_dir
from tests.unit.model_server.test_ms_families import _family, _ids
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

FAMILY = {f.name: f for f in FAMILIES}
TRAIN = ["Alice offers a drink to Bob.", "The cat sat on the mat, then it slept.", "Bob and Alice enter the bar.",
         "It rained all day in the little town.", "My brother called me this morning.",
         "We walked home after the party ended.", "She felt happy and a little tired.",
         "The door of the old house was open."]
HELD_OUT = ["Alice slept on the mat.", "The party in the town ended this morning.", "My sister walked to the bar."]


def _fit(loaded, texts, held_out=(), **options):
    from xaimesh_model_server import engine

    events = list(engine.fit_lens_translators(loaded, texts, held_out, **options))
    assert isinstance(events[-1], engine.FittedTranslators)
    return events[:-1], events[-1]


@pytest.mark.parametrize("name", ["gpt2", "llama-spm", "gemma2"])
def test_zero_translators_are_the_logit_lens_bit_for_bit(name):
    from xaimesh_model_server import engine

    loaded, _ = _family(FAMILY[name])
    ids = _ids(loaded, TRAIN[0])
    zero = engine.Translators(torch.zeros(loaded.num_layers, loaded.hidden_size, loaded.hidden_size),
                              torch.zeros(loaded.num_layers, loaded.hidden_size))
    logit, tuned = engine.logit_lens(loaded, ids, top_k=5), engine.logit_lens(loaded, ids, top_k=5, translators=zero)
    assert np.array_equal(logit.top_token_ids, tuned.top_token_ids)
    assert np.array_equal(logit.top_probabilities, tuned.top_probabilities)
    assert np.array_equal(logit.next_token_probabilities, tuned.next_token_probabilities, equal_nan=True)
    assert logit.layers == tuned.layers and logit.top_tokens == tuned.top_tokens


def _interpreto_fit(bare, norm_path: str, texts_ids, epochs: int, lr: float, wd: float):
    """interpreto 0.5.2's TunedLens.fit written against the bare model: rows are
    hidden_states[:-1] plus the last block's output, the head the final norm
    then lm_head, translators nn.Linear initialised at zero, AdamW."""
    hidden = bare.config.hidden_size
    translators = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(bare.config.num_hidden_layers)])
    for t in translators:
        nn.init.zeros_(t.weight)
        nn.init.zeros_(t.bias)
    optimizer = torch.optim.AdamW(translators.parameters(), lr=lr, weight_decay=wd)
    norm = bare.get_submodule(norm_path)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for ids in texts_ids:
            with torch.no_grad():
                out = bare(torch.tensor([ids]), output_hidden_states=True)
            rows = list(out.hidden_states[:-1])  # the input of block 0, then every block's output but the last
            logits = [bare.lm_head(norm(h + t(h)))[0] for t, h in zip(translators, rows, strict=True)]
            target = out.logits[0].softmax(-1).detach()
            lens = torch.stack(logits)
            loss = F.kl_div(lens.log_softmax(-1), target.expand_as(lens), reduction="none").sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total / len(texts_ids))
    weight = torch.stack([t.weight.detach() for t in translators]).numpy()
    bias = torch.stack([t.bias.detach() for t in translators]).numpy()
    return weight, bias, losses


def test_the_fit_is_interpretos_tuned_lens_fit():
    loaded, bare = _family(FAMILY["llama-spm"])
    texts = TRAIN[:3]
    _, fit = _fit(loaded, texts, epochs=2, learning_rate=1e-2, weight_decay=0.01)
    flags = [p.requires_grad for p in bare.parameters()]
    bare.requires_grad_(False)
    try:
        weight, bias, losses = _interpreto_fit(bare, "model.norm", [_ids(loaded, t) for t in texts], 2, 1e-2, 0.01)
    finally:
        for p, flag in zip(bare.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    # Adam divides by the root of the squared gradients: where a gradient is rounding noise, float
    # rounding moves its step by up to the learning rate, so the bound is a hundredth of it.
    for ours, theirs in ((fit.weight, weight), (fit.bias, bias)):
        assert np.abs(ours - theirs).max() < 1e-2 * 1e-2
        assert np.median(np.abs(ours - theirs)) < 1e-6
    assert np.allclose(fit.epoch_losses, losses, rtol=1e-4)
    assert np.abs(weight).max() > 1e-3  # the translators moved


def _planted_gpt2(shift: np.ndarray):
    """A fresh tiny GPT-2 whose last block is h -> h + shift exactly (attention and
    MLP projections zeroed, the MLP's output bias set to the shift)."""
    from xaimesh_model_server.loading import load_model

    loaded = load_model(family_dir("gpt2"), device="cpu", model_id="gpt2-planted")
    last = loaded.layers[-1]
    with torch.no_grad():
        last.attn.c_proj.weight.zero_()
        last.attn.c_proj.bias.zero_()
        last.mlp.c_proj.weight.zero_()
        last.mlp.c_proj.bias.copy_(torch.as_tensor(shift))
    return loaded


def test_a_planted_affine_last_block_is_recovered_on_held_out_texts():
    from xaimesh_model_server import engine

    hidden = _family(FAMILY["gpt2"])[0].hidden_size
    shift = np.random.default_rng(0).normal(0, 3.0, size=hidden).astype(np.float32)
    loaded = _planted_gpt2(shift)
    events, fit = _fit(loaded, TRAIN, HELD_OUT, epochs=30, learning_rate=3e-2)
    last = loaded.num_layers - 1  # the row the planted block reads
    assert fit.layers == ["embeddings", *loaded.split_points[:last]]
    # Before: the logit lens of that row is far from the final distribution; after: the translator closes the gap.
    for logit, tuned in ((fit.train_kl_logit_lens, fit.train_kl_tuned_lens),
                         (fit.held_out_kl_logit_lens, fit.held_out_kl_tuned_lens)):
        assert logit[last] > 0.1, logit
        assert tuned[last] < 0.05 * logit[last], (logit, tuned)
        assert (tuned < logit).all(), (logit, tuned)
    # The recovered map is the planted one on the states that matter: LayerNorm ignores shifts
    # along the all-ones direction, so compare the centred translated states.
    ids = _ids(loaded, HELD_OUT[0])
    h = engine.tuned_lens._row_states(loaded, torch.tensor(ids))[last]
    translated = engine.Translators(torch.as_tensor(fit.weight), torch.as_tensor(fit.bias)).apply(last, h)
    planted = h + torch.as_tensor(shift)

    def centred_unit(x):
        x = x - x.mean(-1, keepdim=True)
        return x / x.norm(dim=-1, keepdim=True)

    cosine = (centred_unit(translated) * centred_unit(planted)).sum(-1)
    untranslated = (centred_unit(h) * centred_unit(planted)).sum(-1)
    assert cosine.min() > 0.97 and untranslated.max() < 0.8
    assert fit.epoch_losses[-1] < 0.2 * fit.epoch_losses[0]
    assert fit.train_tokens == sum(len(_ids(loaded, t)) for t in TRAIN)
    training = [e for e in events if e.stage == "training"]
    assert [e.done for e in training] == list(range(1, 30 * len(TRAIN) + 1))
    assert training[-1].total == 30 * len(TRAIN) and training[-1].message.startswith("epoch 30 loss=")
    assert events[-1].stage == "evaluating" and events[-1].done == len(TRAIN) + len(HELD_OUT)

    # The fitted translators through LogitLens: that row's probability of the following token is the model's own.
    tuned = engine.logit_lens(loaded, ids, top_k=1, translators=engine.check_translators(loaded, fit.weight, fit.bias))
    logit = engine.logit_lens(loaded, ids, top_k=1)
    gap = [np.abs(out.next_token_probabilities[last, :-1] - out.next_token_probabilities[-1, :-1]).mean()
           for out in (tuned, logit)]
    assert gap[0] < 0.5 * gap[1], gap


def test_bad_requests_are_refused_with_their_field(lm, clf):
    from xaimesh_model_server import engine

    with pytest.raises(FailedPrecondition, match="not a causal LM") as info:
        engine.fit_lens_translators(clf, TRAIN)
    assert info.value.field == "model"
    seq2seq, _ = _family(FAMILY["t5"])
    with pytest.raises(FailedPrecondition, match="not a causal LM"):
        engine.fit_lens_translators(seq2seq, TRAIN)
    cases = [({"texts": []}, "texts"), ({"texts": ["ok", ""]}, "texts"), ({"epochs": 0}, "epochs"),
             ({"learning_rate": 0.0}, "learning_rate"), ({"learning_rate": float("nan")}, "learning_rate"),
             ({"weight_decay": -1.0}, "weight_decay"), ({"held_out_texts": [""]}, "held_out_texts")]
    for options, field in cases:
        options = {"texts": TRAIN[:1], **options}
        texts = options.pop("texts")
        with pytest.raises(InvalidArgument) as info:
            engine.fit_lens_translators(lm, texts, **options)
        assert info.value.field == field, (options, info.value)
    blocks, hidden = lm.num_layers, lm.hidden_size
    for weight, bias, field in ((np.zeros((blocks + 1, hidden, hidden)), np.zeros((blocks + 1, hidden)),
                                 "translator_weights"),
                                (np.zeros((blocks, hidden, hidden)), np.zeros((blocks, hidden + 1)), "translator_biases"),
                                (np.full((blocks, hidden, hidden), np.nan), np.zeros((blocks, hidden)),
                                 "translator_weights")):
        with pytest.raises(InvalidArgument, match=field) as info:
            engine.check_translators(lm, weight, bias)
        assert info.value.field == field
