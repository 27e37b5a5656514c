"""Deletion and Insertion curves of an attribution.

For each attribution row t, the elements it covers (C_t, m_t of them) are
ranked by the row's attribution, highest first (ties: lower element index
first; NaN last). The curve has points at fractions f_j = j / S, j = 0..S
(S = n_steps, or the largest m_t when n_steps is 0: one element per step);
at f_j the top k = floor(f_j m_t + 1/2) elements of the ranking are

- removed from the input (Deletion; starts from the unperturbed input), or
- the only ones of C_t present, all others of C_t replaced (Insertion;
  starts from the fully replaced input),

elements outside C_t staying as they are, and the point is the row's
target score (default SOFTMAX: the target element's probability). Every
(row, point) mask is one teacher-forced forward that scores every target;
identical masks are scored once (see scoring.py).

The curve is the mean over rows; its AUC is the trapezoid over the
fractions on [0, 1] (so the AUC of a probability curve is in [0, 1]).
Deletion: a good attribution makes the score drop early: LOWER is better.
Insertion: a good attribution makes the score rise early: HIGHER is better.
The random curve is the same, averaged over n_random_orders uniformly random
rankings per row (numpy PCG64 seeded by `seed`); an attribution beats chance
when its Deletion AUC is below (Insertion AUC above) the random one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .elements import Problem
from .options import Metric
from .scoring import MaskScorer


@dataclass
class Curve:
    fractions: np.ndarray  # float32 [P]
    scores: np.ndarray  # float32 [P]
    auc: float


def ranking(values: np.ndarray) -> np.ndarray:
    """Indices sorting values from highest to lowest (stable; NaN last)."""
    v = np.where(np.isnan(values), -np.inf, values)
    return np.argsort(-v, kind="stable")


def _masks_for_order(problem: Problem, t: int, order: np.ndarray, counts: np.ndarray, metric: Metric) -> np.ndarray:
    cov = np.flatnonzero(problem.coverage[t])
    E = problem.n_elements
    masks = np.ones((len(counts), E), dtype=bool)
    ranked = cov[order]
    for j, k in enumerate(counts):
        if metric == Metric.DELETION:
            masks[j, ranked[:k]] = False
        else:
            masks[j, cov] = False
            masks[j, ranked[:k]] = True
    return masks


def curve_points(problem: Problem, n_steps: int) -> tuple[np.ndarray, list[np.ndarray]]:
    m = problem.coverage.sum(axis=1)
    S = int(n_steps) if n_steps and n_steps > 0 else int(m.max())
    S = max(S, 1)
    fractions = np.arange(S + 1) / S
    counts = [np.floor(fractions * int(m_t) + 0.5).astype(np.int64) for m_t in m]
    return fractions, counts


def deletion_insertion(
    scorer: MaskScorer,
    attribution: np.ndarray,
    metric: Metric,
    *,
    n_steps: int,
    n_random_orders: int,
    seed: int,
) -> tuple[Curve, Curve | None, np.ndarray]:
    """(curve, random curve or None, per-target scores float32 [T, P])."""
    p = scorer.problem
    T = p.n_rows
    fractions, counts = curve_points(p, n_steps)
    P = len(fractions)
    rng = np.random.default_rng(seed)
    blocks: list[np.ndarray] = []
    owners: list[int] = []
    for t in range(T):
        cov = np.flatnonzero(p.coverage[t])
        blocks.append(_masks_for_order(p, t, ranking(attribution[t, cov]), counts[t], metric))
        owners.append(t)
    n_rand = max(0, int(n_random_orders))
    for _ in range(n_rand):
        for t in range(T):
            m = int(p.coverage[t].sum())
            blocks.append(_masks_for_order(p, t, rng.permutation(m), counts[t], metric))
            owners.append(t)
    masks = np.concatenate(blocks)
    need = np.zeros((len(masks), T), dtype=bool)
    for b, t in enumerate(owners):
        need[b * P : (b + 1) * P, t] = True
    vals = scorer.evaluate(masks, need)
    per = np.stack([vals[b * P : (b + 1) * P, owners[b]] for b in range(len(owners))])  # [blocks, P]
    per_target = per[:T]
    mean = per_target.mean(axis=0)
    curve = Curve(fractions.astype(np.float32), mean.astype(np.float32), float(np.trapezoid(mean, fractions)))
    random_curve = None
    if n_rand:
        rmean = per[T:].mean(axis=0)
        random_curve = Curve(
            fractions.astype(np.float32), rmean.astype(np.float32), float(np.trapezoid(rmean, fractions))
        )
    return curve, random_curve, per_target.astype(np.float32)


__all__ = ["Curve", "ranking", "curve_points", "deletion_insertion"]
