"""Shared prefixes of Score rows computed once (causal LMs).

A Score request is one base sequence and keep-masks; every row replaces
some tokens of the base. A causal model's keys and values at position i
depend on tokens 0..i only, so rows that begin with the same tokens have the
same keys and values there: one forward of that common prefix (batch 1)
gives a key/value cache that serves every such row, and each row's forward
only has to run from there on.

    plans, plain = plan_shared(loaded, items)  # plain: items scored the plain way
    results = score_shared(loaded, plan, items, limits)  # {item index: scores}

Planning, per request (rows of one base): the rows are put in token order
(rows with a common prefix are then next to each other) and form a trie:
each node is a run of rows with the same leading `depth` tokens, its
children the longer common prefixes inside it (the intervals of the
longest-common-prefix array). Dynamic programming over the trie picks the
nodes whose prefix is computed (a forward of its tokens from its parent's
cache, batch 1), minimising the token positions run: computing a node costs
its tokens beyond the parent's + `2 x FORWARD_COST_POSITIONS` (its forward
and its rows' forward), and each row then runs from the deepest computed
node above it (its length minus that depth); a row under no computed node
is plain (its whole length). A row's shareable prefix stops at its first
target's logit position (every logit it needs must come from its own
suffix). Occlusion rows (one element replaced each) share the base's tokens
before their element; Deletion's nested masks and KernelShap's random masks
share, in token order, with their neighbours at several depths
(`docs/benchmarks.md`, "Long inputs"). It applies to rows that replace
tokens (not ZERO_EMBEDDING, whose rows are embeddings, nor REMOVE, whose rows
are shorter), of models whose forward takes a key/value cache and that have
no sliding-window layer (Gemma2: a windowed cache cannot be cut back), and
only when the plan saves at least `MIN_SAVING` of the token positions the
plain forwards would run. Classifiers and bidirectional encoders never
share: every position sees every token.

Running a plan walks its trie depth first with one cache: a child's prefix
extends it in place, and it is cut back when the child is done, so the
caches held are one sequence's plus the rows' of one forward
(`Limits.prefix_cache_bytes`). On a CPU every forward holds at most
`Limits.cpu_forward_tokens` tokens: a longer prefix or suffix runs in
spans, each over the cache of the span before.

Correctness: target scores equal the plain path's within float rounding
(tests/unit/model_server/test_ms_prefix.py: max relative difference ≤ 1e-4 on
the causal families of the family matrix).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..loading import TASK_CAUSAL_LM, LoadedModel
from .forward import forward_params, forward_token_budget, target_values
from .limits import Limits

__all__ = ["MIN_SAVING", "SharedPlan", "plan_shared", "score_shared"]

# Share only when at least this fraction of the plain path's token positions
# is saved: the plan counts its forwards (FORWARD_COST_POSITIONS) but not the
# cache copies, and a saving this small is within the timing's noise.
MIN_SAVING = 0.1
# What one more forward costs, in token positions: its weights are read once
# per forward whatever its size, which on a CPU is the price of about this
# many positions of SmolLM2 (a 2-row forward of 15 tokens takes 0.25 s, a
# 100-row one 6 s). A group whose rows save fewer positions is not worth its
# forward, and the seed's 15-token occlusion rows stay on the plain path.
# (Forwards of many tokens cost more per position on a CPU, which the CPU's
# split of a batch, Limits.cpu_forward_tokens, keeps away.)
FORWARD_COST_POSITIONS = 64


@dataclass
class SharedPlan:
    """A prefix computed once: the rows that run from it, and the longer
    prefixes computed from it."""

    depth: int  # tokens every row below has in common
    row: int  # an item whose first `depth` tokens are them
    rows: list[int]  # item indices run from this prefix
    children: list["SharedPlan"]

    def nodes(self) -> list["SharedPlan"]:
        """This prefix and every one computed from it, parents first (no
        recursion: a chain of nested prefixes is as deep as the batch is long)."""
        out, pending = [], [self]
        while pending:
            out.append(pending.pop())
            pending += out[-1].children
        return out

    def members(self) -> list[int]:
        """Every item index the plan scores."""
        return [i for node in self.nodes() for i in node.rows]

    def positions(self, length: int) -> int:
        """Token positions its forwards run (rows of ``length`` tokens)."""
        parent_depth = {id(child): node.depth for node in self.nodes() for child in node.children}
        return sum(node.depth - parent_depth.get(id(node), 0) + len(node.rows) * (length - node.depth)
                   for node in self.nodes())


def _cache_arg(loaded: LoadedModel) -> str | None:
    """The forward's key/value cache argument (transformers 5 calls it
    ``cache``, earlier versions ``past_key_values``), None when it has none."""
    params = forward_params(loaded)
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def _full_attention_only(config: Any) -> bool:
    """No sliding-window layer: their caches keep only the window and cannot
    be cropped back to a shorter prefix."""
    types = getattr(config, "layer_types", None)
    if types is not None:
        return all(t == "full_attention" for t in types)
    return getattr(config, "sliding_window", None) is None or getattr(config, "use_sliding_window", True) is False


def can_share(loaded: LoadedModel) -> bool:
    return (loaded.task == TASK_CAUSAL_LM and _cache_arg(loaded) is not None
            and _full_attention_only(loaded.model.config))


def plan_shared(loaded: LoadedModel, items: list[Any]) -> tuple[list[SharedPlan], list[int]]:
    """The computed prefixes worth having (trees of them), and the indices
    of the other items (scored the plain way)."""
    if not can_share(loaded):
        return [], list(range(len(items)))
    by_base: dict[int, list[int]] = defaultdict(list)
    plain: list[int] = []
    for i, it in enumerate(items):
        eligible = (it.base is not None and it.zero is None and it.gather is not None and len(it.gather)
                    and it.ids.shape == it.base.shape)
        (by_base[id(it.base)] if eligible else plain).append(i)
    plans = []
    for indices in by_base.values():
        found, rest = _plan_trie(items, indices)
        plans += found
        plain += rest
    return plans, sorted(plain)


@dataclass
class _TrieNode:
    depth: int  # tokens its rows have in common (capped at their first logit position)
    row: int  # its first item index in token order
    children: list["_TrieNode | int"]  # sub-runs with a longer common prefix, or single rows
    ancestors: tuple[int, ...] = ()  # the depths above it, root first


def _trie(items: list[Any], indices: list[int]) -> _TrieNode:
    """The rows' trie of common prefixes (longest-common-prefix intervals)."""
    order = sorted(indices, key=lambda i: items[i].ids.numpy().tobytes())  # a common prefix: adjacent rows
    length = int(items[order[0]].ids.shape[0])
    rows = torch.stack([items[i].ids for i in order])
    differs = rows[1:] != rows[:-1]
    adjacent = torch.where(differs.any(1), differs.int().argmax(1), length).tolist()
    cap = [int(items[i].gather.min()) for i in order]
    # common[k]: what rows k and k + 1 can share (both stop at their first logit position)
    common = [min(adjacent[k], cap[k], cap[k + 1]) for k in range(len(order) - 1)]

    def node(lo: int, hi: int, ancestors: tuple[int, ...]) -> _TrieNode:  # rows order[lo:hi], hi - lo >= 2
        return _TrieNode(min(common[lo:hi - 1]), order[lo], [], ancestors)

    root = node(0, len(order), ())
    pending = [(root, 0, len(order))]
    while pending:
        parent, lo, hi = pending.pop()
        below = parent.ancestors + (parent.depth,)
        cuts = [lo] + [k + 1 for k in range(lo, hi - 1) if common[k] == parent.depth] + [hi]
        for a, b in zip(cuts, cuts[1:]):
            if b - a == 1:
                parent.children.append(order[a])
            else:
                child = node(a, b, below)
                parent.children.append(child)
                pending.append((child, a, b))
    return root


def _plan_trie(items: list[Any], indices: list[int]) -> tuple[list[SharedPlan], list[int]]:
    """The computed prefixes of one base's rows (dynamic programming over
    their trie) and the rows left plain."""
    length = int(items[indices[0]].ids.shape[0])
    if len(indices) < 2:
        return [], list(indices)
    root = _trie(items, indices)
    nodes: list[_TrieNode] = []  # parents before children
    pending = [root]
    while pending:
        nodes.append(pending.pop())
        pending += [c for c in nodes[-1].children if isinstance(c, _TrieNode)]
    # cost[id(v)][a]: positions run for v's rows with a cache of depth a (0: none) above it;
    # computed[id(v)][a]: whether v's prefix is computed then
    cost: dict[int, dict[int, int]] = {}
    computed: dict[int, dict[int, bool]] = {}

    def below(child: _TrieNode | int, a: int) -> int:
        return cost[id(child)][a] if isinstance(child, _TrieNode) else length - a

    for v in reversed(nodes):  # children before parents
        cost[id(v)], computed[id(v)] = {}, {}
        for a in {0, *v.ancestors}:
            skip = sum(below(c, a) for c in v.children)
            take = (v.depth - a + 2 * FORWARD_COST_POSITIONS + sum(below(c, v.depth) for c in v.children)
                    if v.depth > a else skip)
            cost[id(v)][a], computed[id(v)][a] = min(skip, take), take < skip
    if cost[id(root)][0] > (1 - MIN_SAVING) * len(indices) * length:
        return [], list(indices)
    plans: list[SharedPlan] = []
    plain: list[int] = []
    # (trie node, depth of the cache above it, the plan node its rows hang from: None = plain)
    walk: list[tuple[_TrieNode | int, int, SharedPlan | None]] = [(root, 0, None)]
    while walk:
        v, a, parent = walk.pop()
        if not isinstance(v, _TrieNode):
            (parent.rows if parent is not None else plain).append(v)
            continue
        if computed[id(v)][a]:
            plan = SharedPlan(v.depth, v.row, [], [])
            (parent.children if parent is not None else plans).append(plan)
            parent, a = plan, v.depth
        walk += [(c, a, parent) for c in v.children]
    return plans, plain


def _spans(start: int, end: int, step: int | None) -> list[tuple[int, int]]:
    """[start, end) cut into spans of at most ``step`` positions (None: one)."""
    step = step or max(1, end - start)
    return [(a, min(a + step, end)) for a in range(start, end, step)]


def _extend(loaded: LoadedModel, cache: Any, ids: torch.Tensor, start: int, end: int, budget: int | None) -> Any:
    """The key/value cache of ids[:end], from ``cache`` of ids[:start] (None:
    start = 0); ``cache`` itself is extended. On a CPU in forwards of at most
    ``budget`` tokens: each extends the cache of the one before."""
    for a, b in _spans(start, end, budget):
        kwargs: dict[str, Any] = {"input_ids": ids[a:b].unsqueeze(0).to(loaded.device), "use_cache": True}
        if cache is not None:
            kwargs[_cache_arg(loaded)] = cache
        if "logits_to_keep" in forward_params(loaded):
            kwargs["logits_to_keep"] = 1  # the prefix's logits are not needed
        cache = getattr(loaded.model(**kwargs), _cache_arg(loaded))
    return cache


def _cache_bytes(cache: Any) -> int:
    layers = getattr(cache, "layers", None)  # transformers 5; 4.x keeps key_cache / value_cache lists
    if layers is not None:
        tensors = [t for layer in layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))]
    else:
        tensors = list(cache.key_cache) + list(cache.value_cache)
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _chunks(members: list[int], batch_items: list[Any], start: int, limits: Limits, vocab: int,
            max_rows: int, token_budget: int | None) -> list[list[int]]:
    """Rows run from ``start`` split so that one forward keeps at most
    ``max_logits_elements`` logits (rows x kept positions x vocab), at most
    ``max_rows`` rows (each row holds a whole key/value cache during its
    forward) and, on a CPU, at most ``token_budget`` suffix tokens (a row
    whose suffix is longer runs alone, in spans: _score_suffixes)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    kept: set[int] = set()
    for i in members:
        new = kept | set((batch_items[i].gather - start).tolist())
        rows = len(current) + 1
        over = (rows * len(new) * vocab > limits.max_logits_elements or rows > max_rows
                or (token_budget is not None and rows * (int(batch_items[i].ids.shape[0]) - start) > token_budget))
        if current and over:
            chunks.append(current)
            current, new = [], set((batch_items[i].gather - start).tolist())
        current.append(i)
        kept = new
    return chunks + ([current] if current else [])


def score_shared(loaded: LoadedModel, plan: SharedPlan, batch_items: list[Any], limits: Limits) -> dict[int, np.ndarray]:
    """Scores of the plan's rows, by their index in ``batch_items``."""
    budget = forward_token_budget(loaded, limits.cpu_forward_tokens)
    cache = _extend(loaded, None, batch_items[plan.row].ids, 0, plan.depth, budget)
    length = int(batch_items[plan.row].ids.shape[0])
    # a row's forward holds the cache of its whole sequence, twice while each
    # layer appends the suffix's keys and values (a concatenation copies)
    row_bytes = 2 * _cache_bytes(cache) / plan.depth * length
    max_rows = max(1, int(limits.prefix_cache_bytes // row_bytes))
    out: dict[int, np.ndarray] = {}
    # depth first; ("cut", depth) restores the cache to a parent's prefix once a child is done
    walk: list[tuple[str, Any]] = [("run", plan)]
    while walk:
        step, arg = walk.pop()
        if step == "cut":
            if cache.get_seq_length() > arg:  # a negative count removes that many positions (transformers 4 and 5)
                cache.crop(arg - cache.get_seq_length())
            continue
        node: SharedPlan = arg
        if cache.get_seq_length() < node.depth:
            cache = _extend(loaded, cache, batch_items[node.row].ids, cache.get_seq_length(), node.depth, budget)
        for chunk in _chunks(node.rows, batch_items, node.depth, limits, loaded.vocab_size, max_rows, budget):
            out.update(_score_suffixes(loaded, cache, node.depth, chunk, batch_items, budget))
        for child in reversed(node.children):
            walk += [("cut", node.depth), ("run", child)]
    return out


def _score_suffixes(loaded: LoadedModel, cache: Any, start: int, indices: list[int],
                    batch_items: list[Any], budget: int | None = None) -> dict[int, np.ndarray]:
    """The rows' tokens from ``start`` on, over ``cache`` (of their first
    ``start`` tokens) repeated per row: one forward, or on a CPU forwards of
    at most ``budget`` tokens in all (a row's suffix longer than that runs
    in spans, each over the cache of the one before: with a cache, attention
    takes an explicit mask over every query and key, which costs more per
    position the longer the span; docs/benchmarks.md, "Long inputs ... rerun")."""
    dev = loaded.device
    members = [batch_items[i] for i in indices]
    past = copy.deepcopy(cache)  # the walk goes on extending `cache`
    past.batch_repeat_interleave(len(members))
    counts = [int(it.targets.shape[0]) for it in members]
    batch_idx = torch.repeat_interleave(torch.arange(len(members)), torch.tensor(counts))
    pos = torch.cat([it.gather for it in members])
    targets = torch.cat([it.targets for it in members])
    modes = torch.tensor([int(it.mode) for it, c in zip(members, counts) for _ in range(c)])
    vals = np.empty(len(pos), np.float32)
    length = int(members[0].ids.shape[0])
    selective = "logits_to_keep" in forward_params(loaded)
    for a, b in _spans(start, length, max(1, budget // len(members)) if budget else None):
        here = ((pos >= a) & (pos < b)).nonzero().squeeze(1)
        kwargs: dict[str, Any] = {"input_ids": torch.stack([it.ids[a:b] for it in members]).to(dev),
                                  _cache_arg(loaded): past, "use_cache": True}
        if selective:
            keep, inverse = torch.unique(pos[here] - a, return_inverse=True)
            kwargs["logits_to_keep"] = keep.to(dev) if len(here) else 1
            logits = loaded.model(**kwargs).logits
            rows = logits[batch_idx[here].to(dev), inverse.to(dev)]
        else:
            rows = loaded.model(**kwargs).logits[batch_idx[here].to(dev), (pos[here] - a).to(dev)]
        if len(here):
            vals[here.numpy()] = target_values(rows, targets[here].to(dev), modes[here].to(dev)).cpu().numpy()
    return dict(zip(indices, np.split(vals, np.cumsum(counts)[:-1])))
