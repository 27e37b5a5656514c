"""interpreto's public API, computed by the mesh: change ``interpreto`` into
``xaimesh.interpreto`` in a notebook's import lines and it runs against the
services.

    from xaimesh.interpreto import KernelShap, ModelWithSplitPoints, plot_attributions
    from xaimesh.interpreto.attributions.metrics import Deletion
    from xaimesh.interpreto.concepts import SemiNMFConcepts, LLMLabels
    from xaimesh.interpreto.concepts.metrics import MSE, Sparsity

The module tree is interpreto's (0.5.2: ``attributions``,
``attributions.metrics``, ``commons``, ``commons.llm_interface``,
``concepts``, ``concepts.metrics``, ``concepts.methods.overcomplete``,
``concepts.interpretations``, ``concepts.splitters``, ``lens``, ``visualizations``; 0.4:
``model_wrapping``, ``model_wrapping.llm_interface``), the classes, argument
names, defaults (0.5.2's where the versions differ), enums and return types
are interpreto's. Models are what interpreto takes — a Hugging Face model
object and its tokenizer, or a name or path — matched to the model-server's
models, or served by a local stack (``xaimesh.models``); mesh handles work
too. Arguments that mean nothing on a mesh (``device``, ``device_map``,
``batch_size``, ``tqdm_bar``...) are accepted and ignored; values the mesh
cannot honour are refused naming the argument and why. Every difference
from interpreto is in docs/interpreto-compat.md. Lenses (LogitLens,
TunedLens), probes and Cockatiel are not provided here.

Each class is a thin adapter over the native SDK (``xaimesh.attributions``,
``xaimesh.concepts``, ``xaimesh.split_model``); its native object is in
``.native``.
"""

from __future__ import annotations

from ._compat import Granularity
from .attributions import (
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
from .concepts.splitters import (
    AllLayersSplitter,
    ModelWithSplitPoints,
    SplitterForClassification,
    SplitterForGeneration,
)
from .lens import LogitLens, TunedLens
from .visualizations import AttributionVisualization, plot_attributions, plot_lens

#: The interpreto release whose API (and defaults) this module follows.
INTERPRETO_VERSION = "0.5.2"


def get_version() -> str:
    """The interpreto version this API follows (interpreto's get_version returns its own)."""
    return INTERPRETO_VERSION


__all__ = ["AllLayersSplitter", "AttributionVisualization", "GradientShap", "Granularity", "IntegratedGradients",
           "KernelShap", "Lime", "LogitLens", "ModelWithSplitPoints", "Occlusion", "Saliency", "SmoothGrad", "Sobol",
           "SplitterForClassification", "SplitterForGeneration", "SquareGrad", "TunedLens", "VarGrad", "get_version",
           "plot_attributions", "plot_lens"]
