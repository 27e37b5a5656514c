"""Saliency: the gradient at the input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gradient import SamplePlan, Statistic, vector_attribution
from ..options import GradientReduction
from .base import AttributionMethod, Job, Parameters, batch_size, choice

REDUCTION_DOC = "how a token's per-dimension values become one number: sum_d |a_d| or sqrt(sum_d a_d^2)"


@dataclass(frozen=True)
class SaliencyParameters(Parameters):
    gradient_reduction: GradientReduction = choice(GradientReduction, GradientReduction.ABS_SUM, REDUCTION_DOC)
    batch_size: int = batch_size("gradient samples per model-server request")


class Saliency(AttributionMethod):
    name = "saliency"
    family = "gradient"
    doc = ("Gradient of the target score with respect to the input embeddings, reduced per token by "
           "sum |grad| (ABS_SUM, default) or its L2 norm.")
    Parameters = SaliencyParameters

    def attribute(self, job: Job, params: SaliencyParameters) -> np.ndarray:
        return vector_attribution(job, SamplePlan.at_input(), Statistic.ABS_MEAN, params.gradient_reduction,
                                  params.batch_size)


METHODS = (Saliency(),)
