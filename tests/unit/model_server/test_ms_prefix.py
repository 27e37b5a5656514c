"""Shared prefixes (engine/prefix.py): Score rows that keep the base's
leading tokens share the forward of that prefix, with the same target scores
as the plain path (max relative difference ≤ 1e-4), on every causal family
of the family matrix (learned positions: GPT-2; rotary: Llama, Qwen2, ...);
Gemma2, whose sliding-window caches cannot be cut back, is never shared."""

from __future__ import annotations

import dataclasses
import sys
import warnings

import numpy as np
import pytest
import torch

from tests.fixtures.family_models import CAUSAL, FAMILIES, family_dir, missing_class

# Long enough that occlusion rows save more than a forward costs (prefix.FORWARD_COST_POSITIONS)
TEXT = " ".join(["i had to give away my cat because of the new lease and i miss him terribly every day"] * 3)
RTOL = 1e-4


@pytest.fixture(scope="module")
def loaded_families():
    from xaimesh_model_server.loading import load_model

    cache: dict[str, object] = {}

    def get(fam):
        reason = missing_class(fam)
        if reason:
            pytest.fail(reason)
        if fam.name not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[fam.name] = load_model(family_dir(fam.name), device="cpu", model_id=fam.name)
        return cache[fam.name]

    return get


def _masks(n_tokens: int, first_target: int) -> np.ndarray:
    """Occlusion rows (one prompt token masked each: long shared prefixes),
    rows masking a late run of tokens, and random rows (short prefixes)."""
    rows = []
    for i in range(first_target):
        row = np.ones(n_tokens, bool)
        row[i] = False
        rows.append(row)
    for start in range(max(first_target - 4, 1), first_target):
        row = np.ones(n_tokens, bool)
        row[start:first_target] = False
        rows.append(row)
    rng = np.random.default_rng(0)
    rows += list(rng.random((6, n_tokens)) < 0.6)
    return np.stack(rows)


@pytest.mark.parametrize("fam", [f for f in FAMILIES if f.task == CAUSAL], ids=lambda f: f.name)
@pytest.mark.parametrize("mode", ["log_softmax", "logits"])
def test_shared_prefixes_give_the_plain_scores(loaded_families, fam, mode):
    from xaimesh_model_server import engine
    from xaimesh_model_server.engine.limits import DEFAULT_LIMITS
    from xaimesh_model_server.engine.prefix import plan_shared
    from xaimesh_model_server.engine.score import ScoreItem

    loaded = loaded_families(fam)
    ids = loaded.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    first_target = len(ids) - 5
    targets = list(range(first_target, len(ids)))
    masks = _masks(len(ids), first_target)
    plain = engine.score(loaded, ids, masks, target_positions=targets, inference_mode=mode,
                         limits=dataclasses.replace(DEFAULT_LIMITS, share_prefixes=False))
    shared = engine.score(loaded, ids, masks, target_positions=targets, inference_mode=mode)
    scale = np.maximum(np.abs(plain), 1e-2)  # a logit within 0.01 of zero: compared absolutely (1e-6)
    assert float((np.abs(shared - plain) / scale).max()) <= RTOL
    # forwards of at most 7 tokens: prefixes and suffixes run in spans, each over the cache of the one
    # before; a dozen such forwards round differently (measured: at most 2.6e-6 absolute, on logits up
    # to 4), so near zero the comparison is absolute at 5e-6 (logits: the mode does not change the path)
    if mode == "logits":
        spans = engine.score(loaded, ids, masks, target_positions=targets, inference_mode=mode,
                             limits=dataclasses.replace(DEFAULT_LIMITS, cpu_forward_tokens=7))
        assert float((np.abs(spans - plain) / np.maximum(np.abs(plain), 5e-2)).max()) <= RTOL

    # and the rows were shared indeed: occlusion rows of the second half go to shared groups
    base = torch.tensor(ids)
    gather = torch.tensor(targets) - 1
    items = [ScoreItem(torch.where(torch.from_numpy(m), base, torch.tensor(0)), None, gather,
                       base[targets], engine.InferenceMode.LOGITS, base=base) for m in masks]
    plans, rest = plan_shared(loaded, items)
    if fam.name == "gemma2":  # sliding-window layers: never shared
        assert plans == [] and rest == list(range(len(items)))
        return
    grouped = {i for plan in plans for i in plan.members()}
    assert set(range(len(ids) // 2, first_target)) <= grouped and len(grouped) + len(rest) == len(items)


def test_no_sharing_where_it_cannot_apply_or_does_not_pay(loaded_families):
    from xaimesh_model_server import engine
    from xaimesh_model_server.engine.prefix import plan_shared
    from xaimesh_model_server.engine.score import ScoreItem

    lm = loaded_families(next(f for f in FAMILIES if f.name == "llama-bos"))
    classifier = loaded_families(next(f for f in FAMILIES if f.task != CAUSAL))
    base = torch.arange(3, 203)
    gather = torch.tensor([197, 198])

    def item(row, **kw):
        return ScoreItem(row, None, gather, base[[198, 199]], engine.InferenceMode.LOGITS, **kw)

    late = base.clone()
    late[190] = 0  # only the last few positions differ: worth sharing
    early = [base.clone() for _ in range(4)]
    for k, row in enumerate(early):
        row[1] = k  # rows with one token in common (with the base and with each other) save nothing
    assert plan_shared(lm, [item(late, base=base)] * 4)[0]
    assert plan_shared(lm, [item(row, base=base) for row in early]) == ([], [0, 1, 2, 3])
    assert plan_shared(lm, [item(late)] * 4) == ([], [0, 1, 2, 3])  # no base: rows of another kind
    assert plan_shared(classifier, [item(late, base=base)] * 4) == ([], [0, 1, 2, 3])  # every position sees all


def test_a_small_cache_budget_splits_the_rows_and_changes_nothing(loaded_families, monkeypatch):
    """prefix_cache_bytes bounds the caches one forward holds: a budget of
    one row's cache runs the rows one by one, with the same scores."""
    from xaimesh_model_server import engine
    from xaimesh_model_server.engine import prefix
    from xaimesh_model_server.engine.limits import DEFAULT_LIMITS

    loaded = loaded_families(next(f for f in FAMILIES if f.name == "qwen2"))
    ids = loaded.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    targets = list(range(len(ids) - 5, len(ids)))
    masks = _masks(len(ids), targets[0])
    forwards: list[int] = []
    real = prefix._score_suffixes

    def counting(loaded_, cache, start, indices, *rest):
        forwards.append(len(indices))
        return real(loaded_, cache, start, indices, *rest)

    monkeypatch.setattr(prefix, "_score_suffixes", counting)
    roomy = engine.score(loaded, ids, masks, target_positions=targets)
    roomy_forwards, forwards[:] = list(forwards), []
    tight = engine.score(loaded, ids, masks, target_positions=targets,
                         limits=dataclasses.replace(DEFAULT_LIMITS, prefix_cache_bytes=1))
    assert max(roomy_forwards) > 1 and set(forwards) == {1} and sum(forwards) == sum(roomy_forwards)
    np.testing.assert_allclose(tight, roomy, rtol=1e-5, atol=1e-6)


def test_rows_share_their_common_prefix_with_each_other(loaded_families):
    """Rows that differ from the base early but agree with each other for
    long (Deletion's nested masks, KernelShap's masks in token order) share
    that common prefix, not only the base's: planned over the trie of the
    rows in token order, with the plain scores."""
    from xaimesh_model_server import engine
    from xaimesh_model_server.engine.limits import DEFAULT_LIMITS
    from xaimesh_model_server.engine.prefix import plan_shared
    from xaimesh_model_server.engine.score import ScoreItem

    loaded = loaded_families(next(f for f in FAMILIES if f.name == "llama-bos"))
    ids = loaded.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    n = len(ids)
    targets = list(range(n - 5, n))
    rng = np.random.default_rng(1)
    masks = []
    for family in range(2):  # two families of rows: an early token removed, then a late one more each
        head = np.ones(n, bool)
        head[rng.choice(5, 2, replace=False) + 1] = False
        for k in range(6):
            row = head.copy()
            row[n - 8 - k : n - 6] = False
            masks.append(row)
    masks = np.stack(masks)[rng.permutation(12)]  # out of order: the planner sorts them
    base = torch.tensor(ids)
    items = [ScoreItem(torch.where(torch.from_numpy(m), base, torch.tensor(0)), None, torch.tensor(targets) - 1,
                       base[targets], engine.InferenceMode.LOGITS, base=base) for m in masks]
    plans, rest = plan_shared(loaded, items)
    assert rest == [] and len(plans) == 2
    for plan in plans:  # each computed prefix: one family, far beyond the base's first few tokens
        assert len(plan.members()) == 6 and plan.depth >= n - 13
        assert len({tuple(items[i].ids[: plan.depth].tolist()) for i in plan.members()}) == 1
    plain = engine.score(loaded, ids, masks, target_positions=targets,
                         limits=dataclasses.replace(DEFAULT_LIMITS, share_prefixes=False))
    shared = engine.score(loaded, ids, masks, target_positions=targets)
    scale = np.maximum(np.abs(plain), 1e-2)
    assert float((np.abs(shared - plain) / scale).max()) <= RTOL


def test_nested_prefixes_extend_their_parents_cache(loaded_families, monkeypatch):
    """Rows that share a prefix, and within it longer ones, run from a tree
    of computed prefixes (each extends its parent's cache in place and is cut
    back after), with the plain scores; a forward made nearly free here so the
    tiny rows plan deep trees."""
    from xaimesh_model_server import engine
    from xaimesh_model_server.engine import prefix
    from xaimesh_model_server.engine.limits import DEFAULT_LIMITS
    from xaimesh_model_server.engine.score import ScoreItem

    monkeypatch.setattr(prefix, "FORWARD_COST_POSITIONS", 1)
    loaded = loaded_families(next(f for f in FAMILIES if f.name == "gpt2"))
    ids = loaded.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    n = len(ids)
    targets = list(range(n - 4, n))
    masks = []
    for first in (10, 20):  # two halves: every row agrees up to position 10
        for second in (30, 40):  # and within a half, up to 30 or 40
            for last in range(3):  # then they part near the end
                row = np.ones(n, bool)
                row[[first, second, n - 6 - last]] = False
                masks.append(row)
    masks = np.stack(masks)[np.random.default_rng(2).permutation(len(masks))]
    base = torch.tensor(ids)
    items = [ScoreItem(torch.where(torch.from_numpy(m), base, torch.tensor(0)), None, torch.tensor(targets) - 1,
                       base[targets], engine.InferenceMode.LOGITS, base=base) for m in masks]
    plans, rest = prefix.plan_shared(loaded, items)
    assert rest == [] and len(plans) == 1
    (root,) = plans
    assert root.depth == 10 and sorted(root.members()) == list(range(len(items)))
    # halves part at 10 or 20 and agree up to 30; the rows of a (first, second) pair, up to n - 8
    assert [child.depth for child in root.children] == [30, 30]
    assert [grand.depth for child in root.children for grand in child.children] == [n - 8] * 4
    assert root.positions(n) < len(items) * n
    plain = engine.score(loaded, ids, masks, target_positions=targets,
                         limits=dataclasses.replace(DEFAULT_LIMITS, share_prefixes=False))
    shared = engine.score(loaded, ids, masks, target_positions=targets)
    scale = np.maximum(np.abs(plain), 1e-2)
    assert float((np.abs(shared - plain) / scale).max()) <= RTOL


def test_a_chain_of_nested_prefixes_deeper_than_python_recursion(loaded_families, monkeypatch):
    """Occlusion rows form a chain (row k parts from the others at token k):
    with forwards made nearly free most links are computed, and planning,
    counting and listing a chain deeper than the recursion limit work."""
    from xaimesh_model_server import engine
    from xaimesh_model_server.engine import prefix
    from xaimesh_model_server.engine.score import ScoreItem

    monkeypatch.setattr(prefix, "FORWARD_COST_POSITIONS", 1)
    loaded = loaded_families(next(f for f in FAMILIES if f.name == "gpt2"))
    n = 800
    base = torch.arange(n) % 50 + 10
    gather = torch.tensor([n - 2])
    rows = []
    for k in range(n - 2):
        row = base.clone()
        row[k] = 0
        rows.append(ScoreItem(row, None, gather, base[[n - 1]], engine.InferenceMode.LOGITS, base=base))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(250)  # below the chain's depth
    try:
        plans, rest = prefix.plan_shared(loaded, rows)
        (root,) = plans
        members, positions = sorted(root.members()), root.positions(n)
    finally:
        sys.setrecursionlimit(limit)
    depth, node = 0, root
    while node.children:
        (node,) = node.children
        depth += 1
    assert depth > 250 and sorted(members + rest) == list(range(len(rows))) and len(rest) < 5
    assert positions < 0.55 * len(rows) * n  # row k runs from token k on: half of all, plus the chain's own
