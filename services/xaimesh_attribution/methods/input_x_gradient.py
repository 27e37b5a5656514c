"""InputXGradient: gradient . input embedding, per token."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..gradient import SamplePlan, dot_attribution
from .base import AttributionMethod, Job, Parameters, batch_size


@dataclass(frozen=True)
class InputXGradientParameters(Parameters):
    batch_size: int = batch_size("gradient samples per model-server request")


class InputXGradient(AttributionMethod):
    name = "input_x_gradient"
    family = "gradient"
    doc = "Per token, sum over the hidden dimension of gradient x input embedding."
    Parameters = InputXGradientParameters

    def attribute(self, job: Job, params: InputXGradientParameters) -> np.ndarray:
        return dot_attribution(job, SamplePlan.at_input(), "dot_input", params.batch_size)


METHODS = (InputXGradient(),)
