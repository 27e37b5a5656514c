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
(rows with a common prefix are then next to each other) and cut into
segments of consecutive rows by dynamic programming, each segment either
shared or plain, minimising the token positions run: a shared segment of k
rows whose common prefix is P tokens costs P (its prefix) + k x (length - P)
(its suffixes) + 2 forwards, a plain row its length. A row's shareable
prefix stops at its first target's logit position (every logit it needs must
come from its own suffix). Occlusion rows (one element replaced each) share
the base's tokens before their element; Deletion's nested masks and
KernelShap's random masks share, in token order, with their neighbours, not
only with the base (`docs/benchmarks.md`, "Long inputs"). It applies to rows
that replace tokens (not ZERO_EMBEDDING, whose rows are embeddings, nor
REMOVE, whose rows are shorter), of models whose forward takes a key/value
cache and that have no sliding-window layer (Gemma2: a windowed cache cannot
be cut back), and only when the plan saves at least `MIN_SAVING` of the
token positions the plain forwards would run, counting each extra forward as
`FORWARD_COST_POSITIONS` positions. Classifiers and bidirectional encoders
never share: every position sees every token.

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
from .forward import forward_params, target_values
from .limits import Limits

__all__ = ["MIN_SAVING", "SharedPlan", "plan_shared", "score_shared"]

# Share only when at least this fraction of the plain path's token positions
# is saved: a shared forward costs a cache copy and one more (smaller) forward.
MIN_SAVING = 0.2
# What one more forward costs, in token positions: its weights are read once
# per forward whatever its size, which on a CPU is the price of about this
# many positions of SmolLM2 (a 2-row forward of 15 tokens takes 0.25 s, a
# 100-row one 6 s). A group whose rows save fewer positions is not worth its
# forward, and the seed's 15-token occlusion rows stay on the plain path.
FORWARD_COST_POSITIONS = 64


@dataclass
class _Group:
    start: int  # positions before it come from the base's cache
    members: list[int]  # item indices


@dataclass
class SharedPlan:
    base: torch.Tensor  # [L]: a sequence whose first `start` tokens every member has
    groups: list[_Group]


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
    """The bases whose rows are worth sharing, and the indices of the other
    items (scored the plain way)."""
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
        found, rest = _segments(items, indices)
        plans += found
        plain += rest
    return plans, sorted(plain)


def _segments(items: list[Any], indices: list[int]) -> tuple[list[SharedPlan], list[int]]:
    """The rows of one base cut into shared segments (token order, dynamic
    programming over the positions run) and the rows left plain."""
    order = sorted(indices, key=lambda i: items[i].ids.numpy().tobytes())  # a common prefix: adjacent rows
    n, length = len(order), int(items[order[0]].ids.shape[0])
    rows = torch.stack([items[i].ids for i in order])
    differs = rows[1:] != rows[:-1]
    # adjacent[k]: tokens rows k and k + 1 have in common; cap[k]: row k's first logit position
    adjacent = torch.where(differs.any(1), differs.int().argmax(1), length).tolist()
    cap = [int(items[i].gather.min()) for i in order]
    best = [0] * (n + 1)  # positions run by the best plan of the first i rows
    cut: list[tuple[int, int]] = [(0, 0)] * (n + 1)  # (segment start, shared prefix; 0: the row is plain)
    for i in range(1, n + 1):
        best[i], cut[i] = best[i - 1] + length, (i - 1, 0)
        common = cap[i - 1]
        for j in range(i - 2, -1, -1):  # segment order[j:i], at least two rows
            common = min(common, adjacent[j], cap[j])
            if common == 0:
                break
            cost = best[j] + common + (i - j) * (length - common) + 2 * FORWARD_COST_POSITIONS
            if cost < best[i]:
                best[i], cut[i] = cost, (j, common)
    if best[n] > (1 - MIN_SAVING) * n * length:
        return [], list(indices)
    plans, plain, i = [], [], n
    while i > 0:
        j, common = cut[i]
        members = order[j:i]
        if common:
            plans.append(SharedPlan(items[members[0]].ids, [_Group(common, members)]))
        else:
            plain += members
        i = j
    return plans, plain


def _base_cache(loaded: LoadedModel, base: torch.Tensor, length: int) -> Any:
    kwargs: dict[str, Any] = {"input_ids": base[:length].unsqueeze(0).to(loaded.device), "use_cache": True}
    if "logits_to_keep" in forward_params(loaded):
        kwargs["logits_to_keep"] = 1  # the prefix's logits are not needed
    return getattr(loaded.model(**kwargs), _cache_arg(loaded))


def _cache_bytes(cache: Any) -> int:
    layers = getattr(cache, "layers", None)  # transformers 5; 4.x keeps key_cache / value_cache lists
    if layers is not None:
        tensors = [t for layer in layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))]
    else:
        tensors = list(cache.key_cache) + list(cache.value_cache)
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _chunks(members: list[int], batch_items: list[Any], start: int, max_logits: int, vocab: int,
            max_rows: int) -> list[list[int]]:
    """Rows of a group split so that one forward keeps at most ``max_logits``
    logits (rows x kept positions x vocab) and ``max_rows`` rows (each row
    holds a whole key/value cache during its forward)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    kept: set[int] = set()
    for i in members:
        new = kept | set((batch_items[i].gather - start).tolist())
        if current and ((len(current) + 1) * len(new) * vocab > max_logits or len(current) >= max_rows):
            chunks.append(current)
            current, new = [], set((batch_items[i].gather - start).tolist())
        current.append(i)
        kept = new
    return chunks + [current]


def score_shared(loaded: LoadedModel, plan: SharedPlan, batch_items: list[Any], limits: Limits) -> dict[int, np.ndarray]:
    """Scores of the plan's rows, by their index in ``batch_items``."""
    prefix = max(g.start for g in plan.groups)
    cache = _base_cache(loaded, plan.base, prefix)
    # a row's forward holds the cache of its whole sequence, twice while each
    # layer appends the suffix's keys and values (a concatenation copies)
    row_bytes = 2 * _cache_bytes(cache) / prefix * int(plan.base.shape[0])
    max_rows = max(1, int(limits.prefix_cache_bytes // row_bytes))
    out: dict[int, np.ndarray] = {}
    for group in plan.groups:
        for chunk in _chunks(group.members, batch_items, group.start, limits.max_logits_elements,
                             loaded.vocab_size, max_rows):
            out.update(_score_suffixes(loaded, cache, group.start, chunk, batch_items))
    return out


def _score_suffixes(loaded: LoadedModel, cache: Any, start: int, indices: list[int],
                    batch_items: list[Any]) -> dict[int, np.ndarray]:
    """One forward of the rows' tokens from ``start`` on, over the base's
    cache cropped to ``start`` and repeated per row."""
    dev = loaded.device
    members = [batch_items[i] for i in indices]
    past = copy.deepcopy(cache)
    extra = past.get_seq_length() - start
    if extra > 0:
        past.crop(-extra)  # a negative count removes that many positions (transformers 4 and 5)
    past.batch_repeat_interleave(len(members))
    counts = [int(it.targets.shape[0]) for it in members]
    batch_idx = torch.repeat_interleave(torch.arange(len(members)), torch.tensor(counts)).to(dev)
    pos = torch.cat([it.gather - start for it in members])
    kwargs: dict[str, Any] = {"input_ids": torch.stack([it.ids[start:] for it in members]).to(dev),
                              _cache_arg(loaded): past, "use_cache": True}
    if "logits_to_keep" in forward_params(loaded):
        keep, inverse = torch.unique(pos, return_inverse=True)
        rows = loaded.model(logits_to_keep=keep.to(dev), **kwargs).logits[batch_idx, inverse.to(dev)]
    else:
        rows = loaded.model(**kwargs).logits[batch_idx, pos.to(dev)]
    targets = torch.cat([it.targets for it in members]).to(dev)
    modes = torch.tensor([int(it.mode) for it, c in zip(members, counts) for _ in range(c)], device=dev)
    vals = target_values(rows, targets, modes).cpu().numpy().astype(np.float32, copy=False)
    return dict(zip(indices, np.split(vals, np.cumsum(counts)[:-1])))
