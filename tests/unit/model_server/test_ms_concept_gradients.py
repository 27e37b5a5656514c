"""ConceptGradients against autograd on the bare model with the same decoder,
finite differences, causality, and the identity decoder (docs/concept-gradients.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fixtures.family_models import FAMILIES
from tests.unit.model_server.test_ms_families import _family, _ids
from xaimesh_runtime.errors import InvalidArgument

TEXT = "Alice offers a drink to Bob."
K = 5
PARAMS = [pytest.param(f, id=f.name) for f in FAMILIES if f.name in ("llama-spm", "gpt2", "gpt-neox", "bert")]


def _problem(loaded, seed=0):
    ids = _ids(loaded, TEXT)
    rng = np.random.default_rng(seed)
    width = loaded.hidden_size
    codes = rng.normal(size=(len(ids), K)).astype(np.float32)
    decoder = (rng.normal(size=(K, width)) / np.sqrt(K)).astype(np.float32)
    offset = rng.normal(size=width).astype(np.float32) * 0.1
    targets = {"target_positions": [2, len(ids) - 1]} if loaded.task == "causal_lm" else {"target_classes": [0, 2]}
    return ids, codes, decoder, offset, targets


def _bare_scores(bare, loaded, ids, codes, decoder, offset, targets, split):
    """Scores of the bare model with the split point's output replaced (autograd-ready)."""
    rec = codes @ torch.from_numpy(decoder).double() + torch.from_numpy(offset).double()

    def swap(module, args, output):
        first = output[0] if isinstance(output, tuple) else output
        new = rec[None].to(first.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = bare.get_submodule(split).register_forward_hook(swap)
    try:
        logits = bare(torch.tensor([ids])).logits[0]
    finally:
        handle.remove()
    if "target_positions" in targets:
        return torch.stack([logits[p - 1, ids[p]] for p in targets["target_positions"]])
    return logits[targets["target_classes"]]


@pytest.mark.parametrize("fam", PARAMS)
def test_gradients_equal_autograd_and_finite_differences_on_the_bare_model(fam):
    from xaimesh_model_server import engine

    loaded, bare = _family(fam)
    ids, codes, decoder, offset, targets = _problem(loaded)
    split = loaded.split_points[0]
    out = engine.concept_gradients(loaded, ids, "0", codes, decoder, offset, **targets)
    assert out["gradients"].shape == (2, len(ids), K)
    c = torch.from_numpy(codes).double().requires_grad_(True)
    scores = _bare_scores(bare, loaded, ids, c, decoder, offset, targets, split)
    expected = torch.stack([torch.autograd.grad(s, c, retain_graph=True)[0] for s in scores]).numpy()
    assert np.abs(out["scores"] - scores.detach().numpy()).max() < 1e-4
    assert np.abs(out["gradients"] - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
    # Central differences on the entries of largest gradient.
    t, p, j = np.unravel_index(np.abs(expected).argmax(), expected.shape)
    eps = 1e-3
    with torch.no_grad():
        hi, lo = codes.astype(np.float64), codes.astype(np.float64)
        hi = hi.copy(); lo = lo.copy()
        hi[p, j] += eps
        lo[p, j] -= eps
        diff = (_bare_scores(bare, loaded, ids, torch.from_numpy(hi), decoder, offset, targets, split)
                - _bare_scores(bare, loaded, ids, torch.from_numpy(lo), decoder, offset, targets, split))[t] / (2 * eps)
    assert float(diff) == pytest.approx(float(out["gradients"][t, p, j]), rel=2e-2, abs=1e-4)
    if loaded.task == "causal_lm":  # a next-token score depends only on the positions before it
        assert np.all(out["gradients"][0, 2:] == 0)


def test_the_identity_decoder_gives_the_model_its_own_scores(lm, sentence_ids):
    from xaimesh_model_server import engine

    ids = sentence_ids
    job = engine.activations(lm, [lm.tokenizer.decode(ids)], ["1"], "ALL_TOKENS")
    (batch,) = list(job)
    rows = batch.rows["model.layers.1"].numpy()
    assert rows.shape[0] == len(ids)
    width = rows.shape[1]
    targets = list(range(1, len(ids)))
    out = engine.concept_gradients(lm, ids, "model.layers.1", rows, np.eye(width, dtype=np.float32),
                                   target_positions=targets, inference_mode="LOG_SOFTMAX")
    own = engine.score(lm, ids, target_positions=targets, inference_mode="LOG_SOFTMAX")[0]
    assert np.abs(out["scores"] - own).max() < 1e-4


def test_bad_requests_name_their_field(lm, sentence_ids):
    from xaimesh_model_server import engine

    ids = sentence_ids
    n, w = len(ids), lm.hidden_size
    good = dict(codes=np.zeros((n, 2), np.float32), decoder=np.zeros((2, w), np.float32))
    cases = [
        (dict(good, codes=np.zeros((n - 1, 2), np.float32)), "codes"),
        (dict(good, decoder=np.zeros((3, w), np.float32)), "decoder"),
        (dict(good, decoder=np.zeros((2, w + 1), np.float32)), "decoder"),
        (dict(good, offset=np.zeros(w + 2, np.float32)), "offset"),
        (dict(good, codes=np.full((n, 2), np.nan, np.float32)), "codes"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidArgument) as info:
            engine.concept_gradients(lm, ids, "1", target_positions=[1], **kwargs)
        assert info.value.field == field, kwargs
    with pytest.raises(InvalidArgument) as info:
        engine.concept_gradients(lm, ids, "model.layers.99", target_positions=[1], **good)
    assert info.value.field == "split_point"
    with pytest.raises(InvalidArgument) as info:
        engine.concept_gradients(lm, ids, "1", target_positions=[0], **good)
    assert info.value.field == "target_positions"
