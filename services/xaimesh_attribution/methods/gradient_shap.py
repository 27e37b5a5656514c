"""GradientShap: expected gradients between a noisy baseline and the input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import Baseline
from ..gradient import SamplePlan, dot_attribution
from .base import MAX_STEPS, AttributionMethod, Job, Parameters, baseline, batch_size, count, real, seed


@dataclass(frozen=True)
class GradientShapParameters(Parameters):
    n_steps: int = count(10, "number of samples", maximum=MAX_STEPS)
    noise_std: float = real(0.1, "std of the Gaussian noise added to the baseline", low=0.0)
    seed: int = seed()
    baseline: Baseline = baseline()
    batch_size: int = batch_size("gradient samples per model-server request")


class GradientShap(AttributionMethod):
    name = "gradient_shap"
    family = "gradient"
    doc = ("Expected gradients: mean over n_steps samples of grad * (x - b_s) at b_s + alpha (x - b_s), "
           "alpha ~ U[0,1), b_s = baseline + N(0, noise_std).")
    Parameters = GradientShapParameters

    def attribute(self, job: Job, params: GradientShapParameters) -> np.ndarray:
        n = params.n_steps
        plan = SamplePlan(np.random.default_rng(params.seed).random(n), np.full(n, 1.0 / n),
                          baseline_noise_stddev=params.noise_std, baseline=params.baseline, seed=params.seed)
        return dot_attribution(job, plan, "dot_delta", params.batch_size)


METHODS = (GradientShap(),)
