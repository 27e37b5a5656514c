"""Occlusion: hide sliding windows of consecutive elements."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import Replacement
from .base import MAX_WINDOW, AttributionMethod, Job, Parameters, batch_size, count, replacement


@dataclass(frozen=True)
class OcclusionParameters(Parameters):
    window: int = count(1, "number of consecutive elements hidden at once", maximum=MAX_WINDOW)
    batch_size: int = batch_size()
    replacement: Replacement = replacement()


class Occlusion(AttributionMethod):
    name = "occlusion"
    family = "perturbation"
    doc = ("Hides sliding windows of `window` consecutive elements; an element's attribution is the mean drop "
           "f(all) - f(without the window) over the windows containing it.")
    Parameters = OcclusionParameters

    def attribute(self, job: Job, params: OcclusionParameters) -> np.ndarray:
        """Sliding windows of `window` consecutive elements (stride 1); for row t
        a window hides its elements that t covers, and element i gets the mean of
        f_t(all) - f_t(without the window) over the windows that contain it
        (window 1: f_t(all) - f_t(all but i))."""
        scorer, p = job.scorer, job.problem
        E = p.n_elements
        w = max(1, min(int(params.window), E))
        starts = range(0, E - w + 1)
        masks = np.ones((1 + len(starts), E), dtype=bool)
        for j, s in enumerate(starts):
            masks[1 + j, s : s + w] = False
        hidden = ~masks[1:]  # [W, E]
        need = np.zeros((len(masks), p.n_rows), dtype=bool)
        need[0] = True
        need[1:] = (hidden[:, None, :] & p.coverage[None, :, :]).any(axis=2)
        vals = scorer.evaluate(masks, need)
        out = job.empty()
        for t in range(p.n_rows):
            cov = p.coverage[t]
            rows = np.flatnonzero(need[1:, t])
            diffs = vals[0, t] - vals[1 + rows, t]  # [W_t]
            h = hidden[rows][:, cov].astype(np.float64)  # [W_t, m]
            counts = h.sum(axis=0)
            out[t, cov] = (h * diffs[:, None]).sum(axis=0) / np.maximum(counts, 1)
        return out


METHODS = (Occlusion(),)
