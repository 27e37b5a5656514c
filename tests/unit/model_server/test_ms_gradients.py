import numpy as np
import pytest
import torch

from xaimesh_model_server import engine
from xaimesh_model_server.engine import EmbeddingSamples, GradWork, Limits, gradients, score
from xaimesh_model_server.engine.gradients import GradItem
from xaimesh_runtime.errors import InvalidArgument

ALL = ["FULL", "DOT_DELTA", "ABS_SUM", "SQUARE_SUM", "L2_NORM", "DOT_INPUT"]


def _embed(loaded, ids):
    with torch.no_grad():
        return loaded.model.get_input_embeddings()(torch.tensor(ids)).float()


def _autograd(loaded, ids, point, positions=None, classes=None, mode="logits"):
    """Direct torch.autograd: scores [T] and gradients [T, L, D] at one point."""
    scores, grads = [], []
    targets = positions if positions is not None else classes
    for k in range(len(targets)):
        e = point.clone().requires_grad_(True)
        out = loaded.model(inputs_embeds=e[None]).logits[0]
        if positions is not None:
            row = out[positions[k] - 1]
            tok = ids[positions[k]]
        else:
            row = out
            tok = classes[k]
        s = row[tok]
        if mode == "log_softmax":
            s = s - torch.logsumexp(row, -1)
        (g,) = torch.autograd.grad(s, e)
        scores.append(float(s.detach()))
        grads.append(g)
    return np.array(scores), torch.stack(grads)


def test_gradients_match_autograd_on_explicit_embeddings(lm, sentence_ids):
    x = _embed(lm, sentence_ids)
    gen = torch.Generator().manual_seed(0)
    points = torch.stack([x, 0.5 * x, x + 0.1 * torch.randn(x.shape, generator=gen)])
    pos = [5, 9, 12]
    out = gradients(lm, sentence_ids, target_positions=pos, embeddings=points.numpy(),
                    outputs=ALL, inference_mode="LOG_SOFTMAX")
    L, D = x.shape
    assert out["full"].shape == (3, 3, L, D)
    for key in ("dot_delta", "abs_sum", "square_sum", "l2_norm", "dot_input"):
        assert out[key].shape == (3, 3, L)
    for i in range(3):
        s, g = _autograd(lm, sentence_ids, points[i], positions=pos, mode="log_softmax")
        np.testing.assert_allclose(out["scores"][i], s, atol=1e-5)
        np.testing.assert_allclose(out["full"][i], g.numpy(), atol=1e-6)
        np.testing.assert_allclose(out["dot_delta"][i], (g * x).sum(-1).numpy(), atol=1e-5)  # zero baseline
        np.testing.assert_allclose(out["dot_input"][i], (g * points[i]).sum(-1).numpy(), atol=1e-5)
        np.testing.assert_allclose(out["abs_sum"][i], g.abs().sum(-1).numpy(), atol=1e-5)
        np.testing.assert_allclose(out["square_sum"][i], g.square().sum(-1).numpy(), atol=1e-6)
        np.testing.assert_allclose(out["l2_norm"][i], g.square().sum(-1).sqrt().numpy(), atol=1e-5)


def test_default_point_is_x_and_scores_match_score(lm, sentence_ids):
    out = gradients(lm, sentence_ids, target_positions=[3, 7])
    assert set(out) == {"scores", "dot_delta"}
    np.testing.assert_allclose(out["scores"], score(lm, sentence_ids, target_positions=[3, 7]), atol=1e-5)
    x = _embed(lm, sentence_ids)
    _, g = _autograd(lm, sentence_ids, x, positions=[3, 7])
    np.testing.assert_allclose(out["dot_delta"][0], (g * x).sum(-1).numpy(), atol=1e-5)
    # tokens after the target get no gradient (causal)
    assert np.all(out["dot_delta"][0, 0, 3:] == 0)


def test_samples_semantics(lm, sentence_ids):
    ids = torch.tensor(sentence_ids)
    x = _embed(lm, sentence_ids)
    L = len(sentence_ids)
    mask = [i % 2 == 0 for i in range(L)]
    spec = EmbeddingSamples(baseline="TOKEN_ID", baseline_token_id=42, alphas=[0.0, 0.25, 1.0], position_mask=mask)
    points, deltas = engine.make_samples(lm, ids, spec)
    base = _embed(lm, [42])[0].expand_as(x)
    m = torch.tensor(mask)[:, None]
    for i, a in enumerate([0.0, 0.25, 1.0]):
        want = torch.where(m, base + a * (x - base), x)
        torch.testing.assert_close(points[i], want)
        torch.testing.assert_close(deltas[i], torch.where(m, x - base, torch.zeros_like(x)))
    # noise: seeded and deterministic, only on moved positions
    spec = EmbeddingSamples(alphas=[1.0, 1.0], noise_stddev=0.1, baseline_noise_stddev=0.2, seed=7, position_mask=mask)
    p1, d1 = engine.make_samples(lm, ids, spec)
    p2, d2 = engine.make_samples(lm, ids, spec)
    torch.testing.assert_close(p1, p2)
    torch.testing.assert_close(d1, d2)
    assert not torch.allclose(p1[0], p1[1])
    assert torch.equal(p1[:, 1], x[1].expand(2, -1))  # unmoved position keeps x
    p3, _ = engine.make_samples(lm, ids, EmbeddingSamples(alphas=[1.0, 1.0], noise_stddev=0.1, seed=8))
    assert not torch.allclose(p1, p3)
    # no alphas: one sample at x
    p, d = engine.make_samples(lm, ids, EmbeddingSamples())
    torch.testing.assert_close(p[0], x)
    torch.testing.assert_close(d[0], x)


@pytest.mark.parametrize("baseline,start", [("TOKEN_ID", 0.0), ("ZERO", 0.05)])
def test_integrated_gradients_completeness(lm, sentence_ids, baseline, start):
    """Sum of DOT_DELTA averaged over the path = score(x) - score(path start).

    The path runs from baseline + start * (x - baseline) to x. With a zero
    baseline it starts at 0.05: every layer of the tiny Llama is RMS-normed
    and its embeddings are small, so right next to an all-zero input the
    score jumps (RMSNorm's eps is 1e-6); the gradients are right there too,
    but no fixed-step rule integrates such a jump.
    """
    n = 64
    alphas = start + (1 - start) * (np.arange(n) + 0.5) / n  # midpoint rule
    pos = [9, 12]
    spec = EmbeddingSamples(baseline=baseline, baseline_token_id=100, alphas=alphas.tolist())
    out = gradients(lm, sentence_ids, target_positions=pos, samples=spec)
    attributions = out["dot_delta"].sum(-1).mean(0) * (1 - start)  # [T]
    x = _embed(lm, sentence_ids)
    base = torch.zeros_like(x) if baseline == "ZERO" else _embed(lm, [100])[0].expand_as(x)
    first = base + start * (x - base)
    at_start = gradients(lm, sentence_ids, target_positions=pos, embeddings=first[None])["scores"][0]
    at_x = score(lm, sentence_ids, target_positions=pos)[0]
    diff = at_x - at_start
    assert np.all(np.abs(diff) > 1e-2)
    np.testing.assert_allclose(attributions, diff, rtol=0.03, atol=2e-3)


def test_zero_baseline_start_is_the_all_zero_input(lm, sentence_ids):
    out = gradients(lm, sentence_ids, target_positions=[9], samples=EmbeddingSamples(alphas=[0.0]))
    keep_none = np.zeros((1, len(sentence_ids)), bool)
    at_zero = score(lm, sentence_ids, keep_none, "ZERO_EMBEDDING", target_positions=[9])
    np.testing.assert_allclose(out["scores"], at_zero, atol=1e-6)


def test_classifier_gradients(clf, sentence_ids):
    x = _embed(clf, sentence_ids)
    out = gradients(clf, sentence_ids, target_classes=[2, 0], embeddings=torch.stack([x, 0.3 * x]), outputs=["FULL"])
    for i, p in enumerate([x, 0.3 * x]):
        s, g = _autograd(clf, sentence_ids, p, classes=[2, 0])
        np.testing.assert_allclose(out["scores"][i], s, atol=1e-5)
        np.testing.assert_allclose(out["full"][i], g.numpy(), atol=1e-6)


@pytest.mark.parametrize("which", ["lm", "clf"])
def test_coalesced_gradient_batch_with_padding(request, sentence_ids, which):
    """Items of different lengths and target counts in one batch == run alone."""
    loaded = request.getfixturevalue(which)
    a_ids, b_ids = sentence_ids, sentence_ids[:7]
    items = []
    for ids, targets in ((a_ids, [4, 9, 12]), (b_ids, [6])):
        ids_t = torch.tensor(ids)
        x = _embed(loaded, ids)
        if loaded.task == "causal_lm":
            gather, tg = torch.tensor(targets) - 1, ids_t[torch.tensor(targets)]
        else:
            gather, tg = None, torch.tensor([0, 1, 2][: len(targets)])
        items.append(GradItem(0.7 * x, x, gather, tg, engine.InferenceMode.LOGITS, ("full", "dot_delta")))
    together = engine.run_rows(loaded, GradWork(loaded.task), items)
    for item, res in zip(items, together):
        alone = engine.run_rows(loaded, GradWork(loaded.task), [item])[0]
        for key in ("scores", "full", "dot_delta"):
            np.testing.assert_allclose(res[key], alone[key], atol=1e-5)
    # and the small sub-batch budget gives the same
    split = engine.run_rows(loaded, GradWork(loaded.task), items, limits=Limits(grad_batch_tokens=8))
    for r1, r2 in zip(together, split):
        np.testing.assert_allclose(r1["full"], r2["full"], atol=1e-6)


def test_gradient_validation(lm, sentence_ids):
    L, D = len(sentence_ids), lm.hidden_size
    bad = np.zeros((1, L, D), np.float32)
    bad[0, 2, 3] = np.nan
    with pytest.raises(InvalidArgument, match="NaN"):
        gradients(lm, sentence_ids, target_positions=[1], embeddings=bad)
    bad[0, 2, 3] = np.inf
    with pytest.raises(InvalidArgument, match="NaN or infinite"):
        gradients(lm, sentence_ids, target_positions=[1], embeddings=bad)
    with pytest.raises(InvalidArgument, match=rf"shape \[n_samples, {L}, {D}\]"):
        gradients(lm, sentence_ids, target_positions=[1], embeddings=np.zeros((1, L - 1, D)))
    with pytest.raises(InvalidArgument, match="either samples or embeddings"):
        gradients(lm, sentence_ids, target_positions=[1], embeddings=np.zeros((1, L, D)), samples=EmbeddingSamples())
    with pytest.raises(InvalidArgument, match="position_mask"):
        gradients(lm, sentence_ids, target_positions=[1], samples=EmbeddingSamples(position_mask=[True]))
    with pytest.raises(InvalidArgument, match="finite"):
        gradients(lm, sentence_ids, target_positions=[1], samples=EmbeddingSamples(alphas=[float("nan")]))
    with pytest.raises(InvalidArgument, match="non-negative"):
        gradients(lm, sentence_ids, target_positions=[1], samples=EmbeddingSamples(noise_stddev=-1))
    with pytest.raises(InvalidArgument, match="instead of FULL"):
        gradients(lm, sentence_ids, target_positions=[1], outputs=["FULL"], limits=Limits(max_output_bytes=1000))
    with pytest.raises(InvalidArgument, match="no mask token"):
        gradients(lm, sentence_ids, target_positions=[1], samples=EmbeddingSamples(baseline="MASK_TOKEN"))
    with pytest.raises(InvalidArgument, match="out of range"):
        gradients(lm, sentence_ids, target_positions=[L])


# ----------------------------------------------------------------- long inputs: blocks recomputed in the backward


def _long_gradients(loaded, limits, length=200):
    ids = [int(i) for i in torch.randint(10, 1000, (length,), generator=torch.Generator().manual_seed(3))]
    return gradients(loaded, ids, target_positions=[length - 3, length - 2, length - 1],
                     samples=EmbeddingSamples(alphas=[0.25, 1.0], noise_stddev=0.01, seed=2),
                     outputs=["FULL", "DOT_DELTA", "L2_NORM"], limits=limits)


def _relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_recomputed_blocks_give_the_plain_gradients(lm):
    plain = _long_gradients(lm, Limits(grad_recompute_tokens=0))
    recomputed = _long_gradients(lm, Limits(grad_recompute_tokens=64))  # 2 x 200 tokens > 64
    for key in ("scores", "full", "dot_delta", "l2_norm"):
        assert _relative(recomputed[key], plain[key]) <= 1e-5, key


def test_long_gradients_recompute_each_block_per_backward_and_store_less(lm):
    """Structural: with recomputation each block's MLP starts once in the forward
    and once more in each of the 3 backward passes (one per target; a pre-hook:
    the recomputation stops as soon as it has what the backward needs), the
    blocks' own forwards are restored afterwards, and the tensors kept for the
    backward are fewer bytes."""
    runs, stored = [0], {}

    def count(*_):
        runs[0] += 1

    def keep(t):
        stored[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    hooks = [block.mlp.register_forward_pre_hook(count) for block in lm.layers]
    try:
        measured = {}
        for name, threshold in (("plain", 0), ("recomputed", 64)):
            runs[0] = 0
            stored.clear()
            with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
                _long_gradients(lm, Limits(grad_recompute_tokens=threshold))
            measured[name] = (runs[0], sum(stored.values()))
    finally:
        for hook in hooks:
            hook.remove()
    n_blocks = len(lm.layers)
    assert measured["plain"][0] == n_blocks
    assert measured["recomputed"][0] == n_blocks * (1 + 3)
    assert measured["recomputed"][1] < 0.8 * measured["plain"][1]
    assert all("forward" not in block.__dict__ for block in lm.layers)
    # below the threshold nothing is recomputed
    runs[0] = 0
    hooks = [block.mlp.register_forward_pre_hook(count) for block in lm.layers]
    try:
        _long_gradients(lm, Limits(grad_recompute_tokens=400))  # 2 x 200 tokens: not above
    finally:
        for hook in hooks:
            hook.remove()
    assert runs[0] == n_blocks


def test_recomputed_blocks_on_a_classifier(clf):
    ids = [int(i) for i in torch.randint(10, 1000, (150,), generator=torch.Generator().manual_seed(4))]
    out = {threshold: gradients(clf, ids, target_classes=[0, 2], outputs=["FULL"],
                                limits=Limits(grad_recompute_tokens=threshold)) for threshold in (0, 16)}
    assert _relative(out[16]["full"], out[0]["full"]) <= 1e-5
