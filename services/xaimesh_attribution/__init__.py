"""xaimesh attribution-service logic (see protos/xaimesh/v1/attribution.proto).

Plain modules that know nothing of gRPC; `server.py` adapts them. The
service never holds a model: everything model-related goes through a
`ModelBackend` (backend.py).

- `explainer`: `explain`, `evaluate`, `list_methods` (the facade).
- `backend`: the `ModelBackend` protocol and its plain data types.
- `elements`: attribution elements by granularity, targets, attribution rows.
- `scoring`: keep-masks -> target scores, batched, with progress / cancel.
- `perturbation`: Occlusion, Lime, KernelShap, Sobol.
- `gradient`: Saliency, InputXGradient, IntegratedGradients, GradientShap,
  SmoothGrad, SquareGrad, VarGrad.
- `metrics`: Deletion / Insertion curves.
- `results`: `AttributionResult`, `MetricResult` (JSON round-trips).
- `errors`: `InvalidArgument`, `Cancelled`, ...
"""

from .backend import EmbeddingSamples, ModelBackend, ModelDescription, Replacement, Segment, Tokenized
from xaimesh_runtime.errors import ServiceError, Cancelled, FailedPrecondition, InvalidArgument
from .explainer import MethodInfo, evaluate, explain, list_methods, resolve_parameters
from .results import AttributionResult, MetricCurve, MetricResult

__all__ = [
    "ModelBackend",
    "ModelDescription",
    "Tokenized",
    "Segment",
    "Replacement",
    "EmbeddingSamples",
    "ServiceError",
    "InvalidArgument",
    "FailedPrecondition",
    "Cancelled",
    "MethodInfo",
    "explain",
    "evaluate",
    "list_methods",
    "resolve_parameters",
    "AttributionResult",
    "MetricCurve",
    "MetricResult",
]
