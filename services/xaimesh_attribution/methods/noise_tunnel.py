"""The noise tunnel (SmoothGrad, SquareGrad, VarGrad): one wrapper over a
gradient sample plan, like captum's NoiseTunnel.

The base plan is Saliency's (the gradient at the input); the tunnel repeats
it `n_steps` times with N(0, noise_std) noise on the input embeddings
(`SamplePlan.noisy`) and takes a statistic of the gradient vectors over the
noisy samples: mean |g| (SmoothGrad), mean g^2 (SquareGrad) or their
population variance (VarGrad), reduced per token by `gradient_reduction`.
The three methods share one parameter message (NoiseTunnelParameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gradient import SamplePlan, Statistic, vector_attribution
from ..options import GradientReduction
from .base import MAX_STEPS, AttributionMethod, Job, Parameters, batch_size, choice, count, real, seed
from .saliency import REDUCTION_DOC


@dataclass(frozen=True)
class NoiseTunnelParameters(Parameters):
    n_steps: int = count(10, "number of noisy copies of the input", maximum=MAX_STEPS)
    noise_std: float = real(0.1, "std of the Gaussian noise added to the input embeddings", low=0.0)
    seed: int = seed()
    gradient_reduction: GradientReduction = choice(GradientReduction, GradientReduction.ABS_SUM, REDUCTION_DOC)
    batch_size: int = batch_size("gradient samples per model-server request")


class NoiseTunnel(AttributionMethod):
    """One noise-tunnel method: a name, a statistic and its doc."""

    family = "gradient"
    Parameters = NoiseTunnelParameters

    def __init__(self, name: str, statistic: Statistic, doc: str, base: SamplePlan | None = None) -> None:
        self.name = name  # type: ignore[misc]
        self.statistic = statistic
        self.doc = doc  # type: ignore[misc]
        self.base = base if base is not None else SamplePlan.at_input()

    def attribute(self, job: Job, params: NoiseTunnelParameters) -> np.ndarray:
        plan = self.base.noisy(params.n_steps, params.noise_std, params.seed)
        return vector_attribution(job, plan, self.statistic, params.gradient_reduction, params.batch_size)


METHODS = (
    NoiseTunnel("smooth_grad", Statistic.ABS_MEAN,
                "Mean of |grad| over n_steps copies of the input embeddings with N(0, noise_std) noise, "
                "reduced per token by ABS_SUM (default) or L2 norm."),
    NoiseTunnel("square_grad", Statistic.SQUARE_MEAN,
                "Mean of grad^2 over n_steps noisy copies of the input embeddings, summed over the hidden "
                "dimension (or its L2 norm)."),
    NoiseTunnel("var_grad", Statistic.VARIANCE,
                "Variance of grad over n_steps noisy copies of the input embeddings, summed over the hidden "
                "dimension (or its L2 norm)."),
)
