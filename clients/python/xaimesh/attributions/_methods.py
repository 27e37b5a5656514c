"""The ONE table of the SDK's attribution methods.

Per explainer class: the contract's method (its AttributionMethod value is
read from the generated enum by name), the family, a one-line doc, and its
parameters with their defaults and help. The explainer classes, their
docstrings and signatures, `METHOD_CLASS_NAMES` and the export lists are
made from it, and a test checks that it agrees with the attribution
service's registry (names, defaults), so the two cannot drift.

A parameter's name is the field of the method's message in
attribution.proto (`KernelShapParameters.n_perturbations`...). Defaults are
shown for help only: a parameter left to None is not sent, and the service
uses its default; any value given is sent, zero included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xaimesh_contracts.enums import to_number
from xaimesh_contracts.v1 import attribution_pb2

from .options import GradientReduction, SobolIndex, SobolSampler


@dataclass(frozen=True)
class Param:
    """One method parameter. kind: "count" (integer >= 1), "seed" (integer
    >= 0), "prob" (in (0, 1)), "positive" (> 0), "nonneg" (>= 0),
    "flag" (bool), "replacement", "baseline", or an option Enum."""

    name: str
    kind: Any
    default: Any
    doc: str


@dataclass(frozen=True)
class MethodSpec:
    class_name: str  # "KernelShap"
    method: str  # "kernel_shap": the contract's name (and MethodParameters field)
    family: str  # "perturbation" | "gradient"
    doc: str
    params: tuple[Param, ...]

    @property
    def number(self) -> int:
        """The contract's AttributionMethod value."""
        return to_number(attribution_pb2.AttributionMethod, self.method, allow_unspecified=False)

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def help(self) -> str:
        """The docstring: the doc, then each parameter with its default."""
        lines = [self.doc, "", "Parameters (None: the service's default, shown in brackets):", ""]
        for p in self.params:
            default = p.default
            if isinstance(default, dict):
                default = default.get("policy", default.get("kind"))
            lines.append(f"- {p.name} [{'unset' if default is None else getattr(default, 'value', default)}]: "
                         f"{p.doc}")
        return "\n".join(lines)


_BATCH = Param("batch_size", "count", 32, "rows (perturbations or gradient samples) per model-server request")
_SEED = Param("seed", "seed", 0, "seed of every random draw: the same seed gives the same attribution")
_REPLACEMENT = Param("replacement", "replacement", {"policy": None, "token_id": 0},
                     "what a removed element becomes: unset = the model's default (its mask token, else its pad "
                     "token, else its unk token; the output's parameters say which), or 'pad_token', 'unk_token', "
                     "'mask_token', 'zero_embedding', 'remove', or a token id")
_BASELINE = Param("baseline", "baseline", {"kind": "zero", "token_id": 0},
                  "the baseline: 'zero', 'pad_token', 'unk_token', 'mask_token' or a token id")
_REDUCTION = Param("gradient_reduction", GradientReduction, "abs_sum",
                   "how a token's per-dimension values become one number: 'abs_sum' (sum |a_d|) or 'l2_norm'")
_NOISE_TUNNEL = (
    Param("n_steps", "count", 10, "number of noisy copies of the input"),
    Param("noise_std", "nonneg", 0.1, "std of the Gaussian noise added to the input embeddings"),
    _SEED,
    _REDUCTION,
    _BATCH,
)

METHODS: tuple[MethodSpec, ...] = (
    MethodSpec("Occlusion", "occlusion", "perturbation",
               "Hides windows of `window` consecutive elements; an element's attribution is the mean score drop "
               "over the windows holding it.",
               (Param("window", "count", 1, "number of consecutive elements hidden at once"), _BATCH, _REPLACEMENT)),
    MethodSpec("Lime", "lime", "perturbation",
               "Weighted ridge regression of the score on random keep-masks (kernel on the cosine distance).",
               (Param("n_perturbations", "count", 256, "number of random keep-masks"),
                Param("keep_probability", "prob", 0.5, "probability of keeping an element in a mask"),
                Param("kernel_width", "positive", 0.25, "width of the exponential kernel on the cosine distance"),
                Param("regularization", "nonneg", 1.0, "ridge (L2) regularisation of the fit; 0 = none"),
                _SEED, _BATCH, _REPLACEMENT)),
    MethodSpec("KernelShap", "kernel_shap", "perturbation",
               "Shapley values by the Shapley-kernel weighted regression with the efficiency constraint (exact "
               "enumeration when n_perturbations >= 2^elements).",
               (Param("n_perturbations", "count", 256, "number of sampled coalitions"),
                Param("regularization", "nonneg", 0.0, "ridge (L2) regularisation of the constrained fit"),
                _SEED, _BATCH, _REPLACEMENT,
                Param("exact", "flag", None, "None: enumerate when n_perturbations >= 2^elements (up to 20 "
                      "elements); False: always sample; True: always enumerate"))),
    MethodSpec("Sobol", "sobol", "perturbation",
               "Sobol indices of the elements as Bernoulli(keep_probability) inputs, from a quasi-random design of "
               "n_perturbations * (elements + 2) masks.",
               (Param("n_perturbations", "count", 32, "number of base samples"),
                Param("sobol_sampler", SobolSampler, "sobol", "the design: 'sobol', 'halton' or 'latin_hypercube'"),
                Param("sobol_index", SobolIndex, "total", "'total' (total-order) or 'first' (first-order) indices"),
                Param("keep_probability", "prob", 0.5, "probability of keeping an element"),
                _SEED, _BATCH, _REPLACEMENT)),
    MethodSpec("Saliency", "saliency", "gradient",
               "The gradient of the target's score with respect to the input embeddings, |gradient| summed over "
               "the hidden dimension (or its L2 norm).",
               (_REDUCTION, _BATCH)),
    MethodSpec("InputXGradient", "input_x_gradient", "gradient",
               "Per token, sum over the hidden dimension of gradient x input embedding.",
               (_BATCH,)),
    MethodSpec("IntegratedGradients", "integrated_gradients", "gradient",
               "Integrated gradients from `baseline` to the input, Gauss-Legendre quadrature.",
               (Param("n_steps", "count", 50, "Gauss-Legendre quadrature points"), _BASELINE, _BATCH)),
    MethodSpec("GradientShap", "gradient_shap", "gradient",
               "Expected gradients: samples at random points between a noisy baseline and the input.",
               (Param("n_steps", "count", 10, "number of samples"),
                Param("noise_std", "nonneg", 0.1, "std of the Gaussian noise added to the baseline"),
                _SEED, _BASELINE, _BATCH)),
    MethodSpec("SmoothGrad", "smooth_grad", "gradient",
               "Noise tunnel: mean |gradient| over n_steps noisy copies of the input.", _NOISE_TUNNEL),
    MethodSpec("SquareGrad", "square_grad", "gradient",
               "Noise tunnel: mean squared gradient over n_steps noisy copies of the input.", _NOISE_TUNNEL),
    MethodSpec("VarGrad", "var_grad", "gradient",
               "Noise tunnel: variance of the gradient over n_steps noisy copies of the input.", _NOISE_TUNNEL),
)

#: explainer class name -> spec
BY_CLASS: dict[str, MethodSpec] = {m.class_name: m for m in METHODS}
#: contract method name ("kernel_shap") -> spec
BY_METHOD: dict[str, MethodSpec] = {m.method: m for m in METHODS}
#: method (snake case) -> explainer class name
METHOD_CLASS_NAMES: dict[str, str] = {m.method: m.class_name for m in METHODS}
EXPLAINER_NAMES: tuple[str, ...] = tuple(m.class_name for m in METHODS)

__all__ = ["BY_CLASS", "BY_METHOD", "EXPLAINER_NAMES", "METHODS", "METHOD_CLASS_NAMES", "MethodSpec", "Param"]


# --------------------------------------------------------------------------- parameters <-> contract


def encode_parameters(method: str, values: dict[str, Any]) -> attribution_pb2.MethodParameters:
    """A MethodParameters holding the method's message with the given fields
    set (zero included); names the method does not take are left out."""
    from .options import BaselineKind, ReplacementPolicy, to_proto_enum

    message = attribution_pb2.MethodParameters()
    spec = BY_METHOD.get(method)
    if spec is None:
        return message
    sub = getattr(message, method)
    sub.SetInParent()  # the oneof names the method even with no field set
    kinds = {p.name: p.kind for p in spec.params}
    for name, value in values.items():
        kind = kinds.get(name)
        if kind is None or value is None:
            continue
        if kind in ("replacement", "baseline"):
            key, enum = ("policy", ReplacementPolicy) if kind == "replacement" else ("kind", BaselineKind)
            target = getattr(sub, name)
            setattr(target, key, to_proto_enum(enum, value.get(key), name))
            target.token_id = int(value.get("token_id", 0) or 0)
        elif isinstance(kind, type):
            setattr(sub, name, to_proto_enum(kind, value, name))
        elif kind == "flag":
            setattr(sub, name, bool(value))
        elif kind in ("count", "seed"):
            setattr(sub, name, int(value))
        else:
            setattr(sub, name, float(value))
    return message


def decode_parameters(message: attribution_pb2.MethodParameters) -> dict[str, Any]:
    """The fields set in a MethodParameters' method message, as plain values
    (enums as short names, replacement / baseline as dicts)."""
    import numpy as np
    from xaimesh_contracts.enums import to_name

    which = message.WhichOneof("method")
    if which is None:
        return {}
    out: dict[str, Any] = {}
    for fd, value in getattr(message, which).ListFields():
        if fd.message_type is not None:
            out[fd.name] = {sub.name: to_name(_enum_of(sub), getattr(value, sub.name)) if sub.enum_type is not None
                            else int(getattr(value, sub.name)) for sub in fd.message_type.fields}
        elif fd.enum_type is not None:
            out[fd.name] = to_name(_enum_of(fd), value)
        elif fd.type == fd.TYPE_FLOAT:  # float32 on the wire: its shortest decimal form (0.1, not 0.100000001)
            out[fd.name] = float(str(np.float32(value)))
        else:
            out[fd.name] = value
    return out


def _enum_of(fd: Any) -> Any:
    from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

    return EnumTypeWrapper(fd.enum_type)


__all__ += ["decode_parameters", "encode_parameters"]
