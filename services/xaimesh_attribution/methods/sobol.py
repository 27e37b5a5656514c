"""Sobol indices of the elements as Bernoulli inputs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..backend import Replacement
from ..options import SobolIndex, SobolSampler
from .base import AttributionMethod, Job, Parameters, batch_size, choice, count, real, replacement, seed

# Sobol scores n_perturbations * (elements + 2) rows, hence its own bound.
SOBOL_MAX_PERTURBATIONS = 8_192


@dataclass(frozen=True)
class SobolParameters(Parameters):
    n_perturbations: int = count(32, "number of base samples; the design has n * (elements + 2) masks",
                                 maximum=SOBOL_MAX_PERTURBATIONS)
    sobol_sampler: SobolSampler = choice(SobolSampler, SobolSampler.SOBOL, "quasi-random design")
    sobol_index: SobolIndex = choice(SobolIndex, SobolIndex.TOTAL, "total-order or first-order indices")
    keep_probability: float = real(0.5, "probability of keeping an element", low=0.0, high=1.0, open_low=True,
                                   open_high=True)
    seed: int = seed()
    batch_size: int = batch_size()
    replacement: Replacement = replacement()


class Sobol(AttributionMethod):
    name = "sobol"
    family = "perturbation"
    doc = ("Sobol indices (total order by default, Jansen; first order, Saltelli 2010) of the elements as "
           "Bernoulli(keep_probability) inputs, from a quasi-random design of n_perturbations * (E + 2) masks.")
    Parameters = SobolParameters

    def attribute(self, job: Job, params: SobolParameters) -> np.ndarray:
        """Sobol indices of the elements as independent Bernoulli(keep_probability)
        inputs. A design of n base points in 2E dimensions gives A = U[:, :E] <
        keep_probability, B = U[:, E:] < keep_probability (thresholded: a
        coordinate u keeps its element iff u < keep_probability), and AB_i = A
        with column i from B: n (E + 2) masks. With V = var([f(A), f(B)])
        (ddof 1): first order S_i = mean(f(B) (f(AB_i) - f(A))) / V (Saltelli
        2010), total order S_Ti = mean((f(A) - f(AB_i))^2) / (2 V) (Jansen
        1999). A row t uses the columns i in C_t; V = 0 gives 0."""
        scorer, p = job.scorer, job.problem
        E, n, T = p.n_elements, params.n_perturbations, p.n_rows
        index, keep_probability = params.sobol_index, params.keep_probability
        u = sobol_design(params.sobol_sampler, 2 * E, n, params.seed)
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
        out = job.empty()
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


METHODS = (Sobol(),)
