"""xaimesh: interpretability for language models, served as gRPC microservices.

    import xaimesh
    mesh = xaimesh.connect()
    model = mesh.model()

Attributes are imported lazily so that `import xaimesh.v1` (the generated
stubs, which the services use too) stays light.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "connect": "xaimesh.mesh",
    "Mesh": "xaimesh.mesh",
    "XaimeshError": "xaimesh.errors",
    "ModelWithSplitPoints": "xaimesh.split_model",
    "Occlusion": "xaimesh.attributions",
    "Lime": "xaimesh.attributions",
    "KernelShap": "xaimesh.attributions",
    "Sobol": "xaimesh.attributions",
    "Saliency": "xaimesh.attributions",
    "InputXGradient": "xaimesh.attributions",
    "IntegratedGradients": "xaimesh.attributions",
    "GradientShap": "xaimesh.attributions",
    "SmoothGrad": "xaimesh.attributions",
    "SquareGrad": "xaimesh.attributions",
    "VarGrad": "xaimesh.attributions",
    "plot_attributions": "xaimesh.attributions",
    "load_texts": "xaimesh.datasets",
    "sample_texts": "xaimesh.datasets",
    "Report": "xaimesh.report",
    "LogitLens": "xaimesh.lens",
    "TunedLens": "xaimesh.lens",
    "plot_lens": "xaimesh.lens",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xaimesh' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
