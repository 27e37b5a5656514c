"""xaimesh attribution-service logic (see protos/xaimesh/v1/attribution.proto).

Plain modules that know nothing of gRPC; `server.py` adapts them. The
service never holds a model: everything model-related goes through a
`ModelBackend` (backend.py).

- `explainer`: `prepare` / `explain_input` / `explain`, `evaluate`,
  `list_methods` (the facade).
- `methods`: the ONE registry of methods (`REGISTRY`), one module per
  method or family: occlusion, lime, kernel_shap, sobol (perturbation);
  saliency, input_x_gradient, integrated_gradients, gradient_shap,
  noise_tunnel (SmoothGrad, SquareGrad, VarGrad) (gradient). Each holds its
  name, contract value, typed parameters, doc and algorithm.
- `backend`: the `ModelBackend` protocol and its plain data types.
- `elements`: attribution elements by granularity, targets, attribution rows.
- `scoring`: keep-masks -> target scores, batched (pipelined), with progress / cancel.
- `gradient`: gradient sample plans and their reductions (the gradient methods' machinery).
- `metrics`: Deletion / Insertion curves.
- `results`: `AttributionResult`, `MetricResult` (JSON round-trips).
"""
from xaimesh_runtime.errors import ServiceError, Cancelled, FailedPrecondition, InvalidArgument

from .backend import Baseline, EmbeddingSamples, ModelBackend, ModelDescription, Replacement, Segment, Tokenized
from .explainer import evaluate, explain, explain_input, list_methods, prepare
from .methods import REGISTRY, AttributionMethod, Parameters, resolve_method
from .results import AttributionResult, MetricCurve, MetricResult

__all__ = [
    "ModelBackend",
    "ModelDescription",
    "Tokenized",
    "Segment",
    "Replacement",
    "Baseline",
    "EmbeddingSamples",
    "ServiceError",
    "InvalidArgument",
    "FailedPrecondition",
    "Cancelled",
    "REGISTRY",
    "AttributionMethod",
    "Parameters",
    "resolve_method",
    "prepare",
    "explain_input",
    "explain",
    "evaluate",
    "list_methods",
    "AttributionResult",
    "MetricCurve",
    "MetricResult",
]
