"""interpreto.attributions over the mesh (see xaimesh.interpreto)."""

from .base import AttributionOutput, InferenceModes, ModelTask
from .methods import (
    GradientShap,
    IntegratedGradients,
    KernelShap,
    Lime,
    Occlusion,
    Saliency,
    SmoothGrad,
    Sobol,
    SquareGrad,
    VarGrad,
)

__all__ = ["AttributionOutput", "GradientShap", "InferenceModes", "IntegratedGradients", "KernelShap", "Lime",
           "ModelTask", "Occlusion", "Saliency", "SmoothGrad", "Sobol", "SquareGrad", "VarGrad"]
