"""Lime: a weighted ridge regression of the score on random keep-masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import Replacement
from .base import MAX_PERTURBATIONS, AttributionMethod, Job, Parameters, batch_size, count, real, replacement, seed


@dataclass(frozen=True)
class LimeParameters(Parameters):
    n_perturbations: int = count(256, "number of random keep-masks", maximum=MAX_PERTURBATIONS)
    keep_probability: float = real(0.5, "probability of keeping an element in a mask", low=0.0, high=1.0,
                                   open_low=True, open_high=True)
    kernel_width: float = real(0.25, "width of the exponential kernel on the cosine distance", low=0.0,
                               open_low=True)
    regularization: float = real(1.0, "ridge (L2) regularisation of the weighted fit; 0 = none", low=0.0)
    seed: int = seed()
    batch_size: int = batch_size()
    replacement: Replacement = replacement()


class Lime(AttributionMethod):
    name = "lime"
    family = "perturbation"
    doc = ("Weighted ridge regression of the target score on random keep-masks (each element kept with "
           "keep_probability), weights exp(-d^2/kernel_width^2) of the cosine distance d to the full input.")
    Parameters = LimeParameters

    def attribute(self, job: Job, params: LimeParameters) -> np.ndarray:
        """Masks: the unperturbed input plus n_perturbations masks keeping each
        element independently with probability keep_probability. For row t, on
        the masks whose forward is valid for it (scoring.py), z = the mask on C_t,
        weight pi = exp(-d^2 / kernel_width^2) with d = 1 - cos(z, 1) (d = 1 for
        an empty z), then a weighted ridge regression y ~ b + z . phi (intercept
        not penalised); the attribution is phi."""
        scorer, p = job.scorer, job.problem
        E = p.n_elements
        rng = np.random.default_rng(params.seed)
        masks = np.concatenate([np.ones((1, E), dtype=bool),
                                rng.random((params.n_perturbations, E)) < params.keep_probability])
        valid = scorer.valid(masks)
        vals = scorer.evaluate(masks, valid)
        out = job.empty()
        for t in range(p.n_rows):
            cov = p.coverage[t]
            rows = np.flatnonzero(valid[:, t])
            z = masks[rows][:, cov].astype(np.float64)
            y = vals[rows, t]
            m = z.shape[1]
            size = z.sum(axis=1)
            cos = np.where(size > 0, np.sqrt(size / m), 0.0)
            pi = np.exp(-((1.0 - cos) ** 2) / params.kernel_width**2)
            out[t, cov] = weighted_ridge(z, y, pi, params.regularization)
        return out


def weighted_ridge(z: np.ndarray, y: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    sw = w.sum()
    if sw <= 0 or len(y) == 0:
        return np.zeros(z.shape[1])
    zm = (w[:, None] * z).sum(axis=0) / sw
    ym = (w * y).sum() / sw
    zc, yc = z - zm, y - ym
    a = (zc * w[:, None]).T @ zc + lam * np.eye(z.shape[1])
    b = (zc * w[:, None]).T @ yc
    return np.linalg.lstsq(a, b, rcond=None)[0]


METHODS = (Lime(),)
