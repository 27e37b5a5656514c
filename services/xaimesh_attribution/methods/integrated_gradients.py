"""IntegratedGradients: the path integral of the gradient from a baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import Baseline
from ..gradient import SamplePlan, dot_attribution, gauss_legendre
from .base import MAX_STEPS, AttributionMethod, Job, Parameters, baseline, batch_size, count


@dataclass(frozen=True)
class IntegratedGradientsParameters(Parameters):
    n_steps: int = count(50, "Gauss-Legendre quadrature points on [0, 1]", maximum=MAX_STEPS)
    baseline: Baseline = baseline()
    batch_size: int = batch_size("gradient samples per model-server request")


class IntegratedGradients(AttributionMethod):
    name = "integrated_gradients"
    family = "gradient"
    doc = ("Integrated gradients from the baseline to the input, n_steps-point Gauss–Legendre quadrature on "
           "[0, 1]; per token sum_d (x - b)_d * integral of grad_d.")
    Parameters = IntegratedGradientsParameters

    def attribute(self, job: Job, params: IntegratedGradientsParameters) -> np.ndarray:
        alphas, weights = gauss_legendre(params.n_steps)
        return dot_attribution(job, SamplePlan(alphas, weights, baseline=params.baseline), "dot_delta",
                               params.batch_size)


METHODS = (IntegratedGradients(),)
