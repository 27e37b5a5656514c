"""Perturbation attribution methods: Occlusion, Lime, KernelShap, Sobol.

All of them turn element keep-masks into row scores through `MaskScorer`
(one teacher-forced forward per perturbation scores every target; see
scoring.py for how each attribution row's sub-game over its covered elements
C_t is evaluated). Each returns float64 [T, E] with NaN outside each row's
coverage. Random draws come from numpy's PCG64 seeded by `seed`, so the same
seed gives the same attribution. The exact definitions are in
docs/attribution-methods.md.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.special import gammaln

from .options import SobolIndex, SobolSampler
from .scoring import MaskScorer

# Largest element count for which KernelShap enumerates all coalitions.
MAX_ENUMERATED_ELEMENTS = 20


def _empty(scorer: MaskScorer) -> np.ndarray:
    p = scorer.problem
    return np.full((p.n_rows, p.n_elements), np.nan)


# ------------------------------------------------------------------ Occlusion


def occlusion(scorer: MaskScorer, *, window: int = 1) -> np.ndarray:
    """Sliding windows of `window` consecutive elements (stride 1); for row t
    a window hides its elements that t covers, and element i gets the mean of
    f_t(all) - f_t(without the window) over the windows that contain it
    (window 1: f_t(all) - f_t(all but i))."""
    p = scorer.problem
    E = p.n_elements
    w = max(1, min(int(window), E))
    starts = range(0, E - w + 1)
    masks = np.ones((1 + len(starts), E), dtype=bool)
    for j, s in enumerate(starts):
        masks[1 + j, s : s + w] = False
    hidden = ~masks[1:]  # [W, E]
    need = np.zeros((len(masks), p.n_rows), dtype=bool)
    need[0] = True
    need[1:] = (hidden[:, None, :] & p.coverage[None, :, :]).any(axis=2)
    vals = scorer.evaluate(masks, need)
    out = _empty(scorer)
    for t in range(p.n_rows):
        cov = p.coverage[t]
        rows = np.flatnonzero(need[1:, t])
        diffs = vals[0, t] - vals[1 + rows, t]  # [W_t]
        h = hidden[rows][:, cov].astype(np.float64)  # [W_t, m]
        counts = h.sum(axis=0)
        out[t, cov] = (h * diffs[:, None]).sum(axis=0) / np.maximum(counts, 1)
    return out


# ----------------------------------------------------------------------- Lime


def lime(
    scorer: MaskScorer,
    *,
    n_perturbations: int,
    keep_probability: float,
    kernel_width: float,
    regularization: float,
    seed: int,
) -> np.ndarray:
    """Masks: the unperturbed input plus n_perturbations masks keeping each
    element independently with probability keep_probability. For row t, on
    the masks whose forward is valid for it (scoring.py), z = the mask on C_t,
    weight pi = exp(-d^2 / kernel_width^2) with d = 1 - cos(z, 1) (d = 1 for
    an empty z), then a weighted ridge regression y ~ b + z . phi (intercept
    not penalised); the attribution is phi."""
    p = scorer.problem
    E = p.n_elements
    rng = np.random.default_rng(seed)
    masks = np.concatenate([np.ones((1, E), dtype=bool), rng.random((n_perturbations, E)) < keep_probability])
    valid = scorer.valid(masks)
    vals = scorer.evaluate(masks, valid)
    out = _empty(scorer)
    for t in range(p.n_rows):
        cov = p.coverage[t]
        rows = np.flatnonzero(valid[:, t])
        z = masks[rows][:, cov].astype(np.float64)
        y = vals[rows, t]
        m = z.shape[1]
        size = z.sum(axis=1)
        cos = np.where(size > 0, np.sqrt(size / m), 0.0)
        pi = np.exp(-((1.0 - cos) ** 2) / kernel_width**2)
        out[t, cov] = _weighted_ridge(z, y, pi, regularization)
    return out


def _weighted_ridge(z: np.ndarray, y: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    sw = w.sum()
    if sw <= 0 or len(y) == 0:
        return np.zeros(z.shape[1])
    zm = (w[:, None] * z).sum(axis=0) / sw
    ym = (w * y).sum() / sw
    zc, yc = z - zm, y - ym
    a = (zc * w[:, None]).T @ zc + lam * np.eye(z.shape[1])
    b = (zc * w[:, None]).T @ yc
    return np.linalg.lstsq(a, b, rcond=None)[0]


# ----------------------------------------------------------------- KernelShap


def _log_comb(n: np.ndarray | int, k: np.ndarray | int) -> np.ndarray:
    n = np.asarray(n, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    ok = (k >= 0) & (k <= n) & (n >= 0)
    res = gammaln(np.where(ok, n, 0) + 1) - gammaln(np.where(ok, k, 0) + 1) - gammaln(np.where(ok, n - k, 0) + 1)
    return np.where(ok, res, -np.inf)


def _size_distribution(E: int) -> np.ndarray:
    """q(s), s = 0..E: the Shapley kernel's mass per coalition size,
    (E-1) / (s (E-s)) for 0 < s < E, normalised; 0 for s = 0 and E."""
    q = np.zeros(E + 1)
    s = np.arange(1, E)
    q[1:E] = (E - 1) / (s * (E - s))
    return q / q.sum()


def _shapley_kernel(m: int, a: np.ndarray) -> np.ndarray:
    """The Shapley kernel of an m-player game at coalition sizes 0 < a < m."""
    a = np.asarray(a, dtype=np.float64)
    return (m - 1) / (np.exp(_log_comb(m, a)) * a * (m - a))


def _sub_coalition_log_prob(E: int, m: int, a: np.ndarray, conditioned: bool) -> np.ndarray:
    """log P(mask ∩ C = A) for one given A ⊆ C, |C| = m, |A| = a, when masks
    are drawn as size s ~ q(s) then a uniform subset of that size; when
    `conditioned`, the joint probability with one given element outside C
    being kept."""
    q = _size_distribution(E)
    u = E - m
    s = np.arange(1, E)
    a = np.asarray(a)[:, None]
    if conditioned:
        lc = _log_comb(u - 1, s[None, :] - a - 1)
    else:
        lc = _log_comb(u, s[None, :] - a)
    terms = np.log(q[s])[None, :] + lc - _log_comb(E, s)[None, :]
    mx = np.max(terms, axis=1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    return (mx + np.log(np.exp(terms - mx).sum(axis=1, keepdims=True)))[:, 0]


def kernel_shap(
    scorer: MaskScorer,
    *,
    n_perturbations: int,
    regularization: float,
    seed: int,
    exact: bool | None = None,
) -> np.ndarray:
    """Shapley values of each row's masked-input game v_t(S) = f_t(S) over its
    covered elements (see docs/attribution-methods.md).

    exact=None: enumerate every coalition when n_perturbations >= 2^E (and
    E <= 20), else sample. Enumeration gives the exact Shapley values.
    Sampling draws n_perturbations masks (in complementary pairs) with a
    size s ~ (E-1)/(s(E-s)) and a uniform subset of that size, i.e. the
    Shapley kernel of the full E-element game; each row re-weights the
    sub-coalitions A = mask ∩ C_t it sees by k_m(|A|) / P(A) (its own
    m-player Shapley kernel over the exact probability that the sampling
    gives A), so its weighted least squares converges to its own exact
    kernel regression, i.e. its exact Shapley values. The empty and full
    coalitions are always scored and enter as the efficiency constraint
    sum(phi) = v(C) - v(empty), solved with the KKT system of the
    constrained (ridge-regularised) weighted least squares.
    """
    p = scorer.problem
    E = p.n_elements
    if exact is None:
        exact = E <= MAX_ENUMERATED_ELEMENTS and n_perturbations >= 2**E
    if exact:
        return _kernel_shap_exact(scorer)
    rng = np.random.default_rng(seed)
    masks = _kernel_masks(E, n_perturbations, rng)
    # empty coalition of each row, full coalition
    empties = np.stack([p.coverage[t] == False for t in range(p.n_rows)])  # noqa: E712
    all_masks = np.concatenate([np.ones((1, E), dtype=bool), empties, masks])
    valid = scorer.valid(masks)
    need = np.zeros((len(all_masks), p.n_rows), dtype=bool)
    need[0] = True
    need[1 + np.arange(p.n_rows), np.arange(p.n_rows)] = True
    off = 1 + p.n_rows
    need[off:] = valid
    vals = scorer.evaluate(all_masks, need)
    out = _empty(scorer)
    for t in range(p.n_rows):
        cov = p.coverage[t]
        m = int(cov.sum())
        v_full, v_empty = vals[0, t], vals[1 + t, t]
        delta = v_full - v_empty
        if m == 1:
            out[t, cov] = delta
            continue
        rows = np.flatnonzero(valid[:, t])
        z = masks[rows][:, cov]
        a = z.sum(axis=1)
        keep = (a > 0) & (a < m)
        z, a, y = z[keep].astype(np.float64), a[keep], vals[off + rows[keep], t] - v_empty
        conditioned = bool(p.is_generation and not scorer.self_independent[t])
        sizes = np.arange(1, m)
        logp = _sub_coalition_log_prob(E, m, sizes, conditioned)
        w_size = _shapley_kernel(m, sizes) / np.exp(logp - logp.max())
        w = w_size[a - 1] if len(a) else np.zeros(0)
        if len(w):
            w = w / w.mean()
        out[t, cov] = _constrained_wls(z, y, w, delta, regularization)
    return out


def _kernel_masks(E: int, n: int, rng: np.random.Generator) -> np.ndarray:
    masks = np.zeros((n, E), dtype=bool)
    if E < 2:
        return rng.random((n, E)) < 0.5
    q = _size_distribution(E)
    n_pairs = (n + 1) // 2
    sizes = rng.choice(E + 1, size=n_pairs, p=q)
    keys = rng.random((n_pairs, E))
    order = np.argsort(keys, axis=1)
    for j in range(n_pairs):
        row = np.zeros(E, dtype=bool)
        row[order[j, : sizes[j]]] = True
        masks[2 * j] = row
        if 2 * j + 1 < n:
            masks[2 * j + 1] = ~row
    return masks


def _constrained_wls(z: np.ndarray, y: np.ndarray, w: np.ndarray, total: float, lam: float) -> np.ndarray:
    """argmin sum w (y - z.phi)^2 + lam |phi|^2  s.t.  sum(phi) = total."""
    m = z.shape[1]
    kkt = np.zeros((m + 1, m + 1))
    rhs = np.zeros(m + 1)
    if len(y):
        kkt[:m, :m] = (z * w[:, None]).T @ z
        rhs[:m] = (z * w[:, None]).T @ y
    kkt[:m, :m] += lam * np.eye(m)
    kkt[:m, m] = 1.0
    kkt[m, :m] = 1.0
    rhs[m] = total
    return np.linalg.lstsq(kkt, rhs, rcond=None)[0][:m]


def _kernel_shap_exact(scorer: MaskScorer) -> np.ndarray:
    p = scorer.problem
    E = p.n_elements
    codes = np.arange(2**E, dtype=np.int64)
    masks = ((codes[:, None] >> np.arange(E)[None, :]) & 1).astype(bool)
    canonical = np.stack([masks[:, ~p.coverage[t]].all(axis=1) for t in range(p.n_rows)], axis=1)
    vals = scorer.evaluate(masks, canonical)
    out = _empty(scorer)
    for t in range(p.n_rows):
        cov = np.flatnonzero(p.coverage[t])
        m = len(cov)
        rows = np.flatnonzero(canonical[:, t])
        sub = (masks[rows][:, cov].astype(np.int64) << np.arange(m)[None, :]).sum(axis=1)
        v = np.empty(2**m)
        v[sub] = vals[rows, t]
        out[t, cov] = exact_shapley(v, m)
    return out


def exact_shapley(v: np.ndarray, m: int) -> np.ndarray:
    """Shapley values from a game's values v[bitmask] over m players."""
    codes = np.arange(2**m, dtype=np.int64)
    size = np.zeros(2**m, dtype=np.int64)
    for i in range(m):
        size += (codes >> i) & 1
    weight = np.array([1.0 / (m * math.comb(m - 1, s)) if s < m else 0.0 for s in range(m + 1)])
    phi = np.zeros(m)
    for i in range(m):
        without = codes[((codes >> i) & 1) == 0]
        phi[i] = (weight[size[without]] * (v[without | (1 << i)] - v[without])).sum()
    return phi


# ---------------------------------------------------------------------- Sobol


def sobol_design(sampler: SobolSampler, dim: int, n: int, seed: int) -> np.ndarray:
    """n points of a scrambled `dim`-dimensional design on [0, 1)."""
    from scipy.stats import qmc

    rng = np.random.default_rng(seed)
    if sampler == SobolSampler.SOBOL:
        engine = qmc.Sobol(d=dim, scramble=True, seed=rng)
    elif sampler == SobolSampler.HALTON:
        engine = qmc.Halton(d=dim, scramble=True, seed=rng)
    else:
        engine = qmc.LatinHypercube(d=dim, seed=rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sobol' balance warning for n not a power of 2
        return engine.random(n)


def sobol(
    scorer: MaskScorer,
    *,
    n_perturbations: int,
    sampler: SobolSampler,
    index: SobolIndex,
    keep_probability: float,
    seed: int,
) -> np.ndarray:
    """Sobol indices of the elements as independent Bernoulli(keep_probability)
    inputs. A design of n base points in 2E dimensions gives A = U[:, :E] <
    keep_probability, B = U[:, E:] < keep_probability (thresholded: a
    coordinate u keeps its element iff u < keep_probability), and AB_i = A
    with column i from B: n (E + 2) masks. With V = var([f(A), f(B)])
    (ddof 1): first order S_i = mean(f(B) (f(AB_i) - f(A))) / V (Saltelli
    2010), total order S_Ti = mean((f(A) - f(AB_i))^2) / (2 V) (Jansen
    1999). A row t uses the columns i in C_t; V = 0 gives 0."""
    p = scorer.problem
    E, n, T = p.n_elements, n_perturbations, p.n_rows
    u = sobol_design(sampler, 2 * E, n, seed)
    a = u[:, :E] < keep_probability
    b = u[:, E:] < keep_probability
    ab = np.repeat(a[None], E, axis=0)  # [E, n, E]
    ab[np.arange(E), :, np.arange(E)] = b.T
    masks = np.concatenate([a, b, ab.reshape(E * n, E)])
    need = np.ones((len(masks), T), dtype=bool)
    need[2 * n :] = np.repeat(p.coverage.T, n, axis=0)  # AB_i rows: rows covering i
    vals = scorer.evaluate(masks, need)
    fa, fb = vals[:n], vals[n : 2 * n]
    fab = vals[2 * n :].reshape(E, n, T)
    out = _empty(scorer)
    for t in range(T):
        cov = np.flatnonzero(p.coverage[t])
        both = np.concatenate([fa[:, t], fb[:, t]])
        var = np.var(both, ddof=1)
        # constant (to float32 precision) on the design: no variance to explain
        if not np.isfinite(var) or np.sqrt(var) <= 1e-7 * float(np.abs(both).max()):
            out[t, cov] = 0.0
            continue
        if index == SobolIndex.FIRST:
            num = (fb[:, t][None, :] * (fab[cov, :, t] - fa[:, t][None, :])).mean(axis=1)
        else:
            num = ((fa[:, t][None, :] - fab[cov, :, t]) ** 2).mean(axis=1) / 2.0
        out[t, cov] = num / var
    return out


__all__ = ["occlusion", "lime", "kernel_shap", "sobol", "exact_shapley", "sobol_design"]
