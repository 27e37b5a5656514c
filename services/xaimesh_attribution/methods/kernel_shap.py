"""KernelShap: Shapley values by the Shapley-kernel weighted regression."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from xaimesh_runtime.errors import InvalidArgument

from ..backend import Replacement
from ..scoring import MaskScorer
from .base import (
    MAX_PERTURBATIONS,
    AttributionMethod,
    Job,
    Parameters,
    batch_size,
    count,
    flag,
    real,
    replacement,
    seed,
)

# Largest element count for which KernelShap enumerates all coalitions.
MAX_ENUMERATED_ELEMENTS = 20


@dataclass(frozen=True)
class KernelShapParameters(Parameters):
    n_perturbations: int = count(256, "number of sampled coalitions", maximum=MAX_PERTURBATIONS)
    regularization: float = real(0.0, "ridge (L2) regularisation of the constrained fit", low=0.0)
    seed: int = seed()
    batch_size: int = batch_size()
    replacement: Replacement = replacement()
    exact: bool | None = flag("unset: enumerate every coalition when n_perturbations >= 2^elements (up to "
                              f"{MAX_ENUMERATED_ELEMENTS} elements); false: sample; true: enumerate")


class KernelShap(AttributionMethod):
    name = "kernel_shap"
    family = "perturbation"
    doc = ("Shapley values of the masked-input game by the Shapley-kernel weighted least squares with the "
           "efficiency constraint; exact enumeration when n_perturbations >= 2^elements.")
    Parameters = KernelShapParameters

    def attribute(self, job: Job, params: KernelShapParameters) -> np.ndarray:
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
        scorer, p = job.scorer, job.problem
        n_perturbations, regularization, exact = params.n_perturbations, params.regularization, params.exact
        E = p.n_elements
        if exact and E > MAX_ENUMERATED_ELEMENTS:
            raise InvalidArgument(
                f"exact KernelShap enumerates 2^elements coalitions, at most {MAX_ENUMERATED_ELEMENTS} elements; "
                f"this input has {E}: leave exact unset or use a coarser granularity", field="parameters.exact")
        if exact is None:
            exact = E <= MAX_ENUMERATED_ELEMENTS and n_perturbations >= 2**E
        if exact:
            return _kernel_shap_exact(scorer)
        rng = np.random.default_rng(params.seed)
        masks = _kernel_masks(E, n_perturbations, rng)
        # Full coalition, then the empty coalition of each row: its covered elements masked, the others
        # kept. Where a row's value reads neither its own element (scorer.self_independent) nor later ones
        # (teacher forcing: a target is scored from the tokens before it), masking them too gives the same
        # value, so those rows' empty coalitions are one all-masked forward instead of one per row.
        empties = np.stack([np.zeros(E, dtype=bool) if scorer.self_independent[t] else ~p.coverage[t]
                            for t in range(p.n_rows)])
        all_masks = np.concatenate([np.ones((1, E), dtype=bool), empties, masks])
        valid = scorer.valid(masks)
        need = np.zeros((len(all_masks), p.n_rows), dtype=bool)
        need[0] = True
        need[1 + np.arange(p.n_rows), np.arange(p.n_rows)] = True
        off = 1 + p.n_rows
        need[off:] = valid
        vals = scorer.evaluate(all_masks, need)
        out = job.empty()
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
    out = np.full((p.n_rows, p.n_elements), np.nan)
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


METHODS = (KernelShap(),)
