"""Attributions through the attribution-service, with the in-process toolkit's API.

    import xaimesh
    from xaimesh.attributions import KernelShap, Granularity, plot_attributions
    from xaimesh.attributions.metrics import Deletion

    mesh = xaimesh.connect()
    model = mesh.model()
    attributions = KernelShap(model, granularity=Granularity.WORD)(
        model_inputs="Alice and Bob enter the bar, ", targets="then Alice offers a drink to Bob.")
    plot_attributions(attributions[0])          # HTML in a notebook, text in a terminal; .save_html(path)
    auc, detailed = Deletion(model).evaluate(attributions)   # lower is better (Insertion: higher)

Explainers: Occlusion, Lime, KernelShap, Sobol (perturbation); Saliency,
InputXGradient, IntegratedGradients, GradientShap, SmoothGrad, SquareGrad,
VarGrad (gradient). Each returns one `AttributionOutput` per input.
"""

from .explainers import (
    AttributionExplainer,
    GradientExplainer,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Lime,
    Occlusion,
    PerturbationExplainer,
    Saliency,
    SmoothGrad,
    Sobol,
    SquareGrad,
    VarGrad,
)
from .options import (
    Aggregation,
    BaselineKind,
    Granularity,
    GradientReduction,
    InferenceMode,
    InferenceModes,
    ReplacementPolicy,
    SobolIndex,
    SobolSampler,
)
from ._methods import EXPLAINER_NAMES
from .output import AttributionOutput, Segment, load_json
from .plots import AttributionPlot, plot_attributions

__all__ = [
    "AttributionExplainer",
    "PerturbationExplainer",
    "GradientExplainer",
    *EXPLAINER_NAMES,  # one per row of the method table (_methods.py)
    "AttributionOutput",
    "Segment",
    "load_json",
    "AttributionPlot",
    "plot_attributions",
    "Aggregation",
    "BaselineKind",
    "Granularity",
    "GradientReduction",
    "InferenceMode",
    "InferenceModes",
    "ReplacementPolicy",
    "SobolIndex",
    "SobolSampler",
]
