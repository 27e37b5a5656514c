"""The attribution methods: ONE registry that the explainer, the server and
ListMethods use.

Each module defines its method(s) and lists them in `METHODS`; `MODULES`
below is the one list of method modules. A method's contract value is read
from the generated `AttributionMethod` enum by its name
(`ATTRIBUTION_METHOD_<NAME>`), and `register` refuses a name registered
twice or missing from the contract. See docs/contributing-attribution.md
("Adding an attribution method").
"""

from __future__ import annotations

from typing import Any

from xaimesh_contracts.enums import EnumValueError, to_number
from xaimesh_contracts.v1 import attribution_pb2
from xaimesh_runtime.errors import InvalidArgument

from . import (
    gradient_shap,
    input_x_gradient,
    integrated_gradients,
    kernel_shap,
    lime,
    noise_tunnel,
    occlusion,
    saliency,
    sobol,
)
from .base import ATTRIBUTION_GRANULARITIES, AttributionMethod, Job, Parameters

#: The method modules, in contract order.
MODULES = (occlusion, lime, kernel_shap, sobol, saliency, input_x_gradient, integrated_gradients, gradient_shap,
           noise_tunnel)

#: name ("kernel_shap") -> method, in contract order.
REGISTRY: dict[str, AttributionMethod] = {}


def register(method: AttributionMethod) -> AttributionMethod:
    if not method.name or method.name in REGISTRY:
        raise ValueError(f"attribution method {method.name!r} is registered twice (or has no name)")
    if method.enum_name not in attribution_pb2.AttributionMethod.keys():
        raise ValueError(f"attribution method {method.name!r} has no {method.enum_name} in attribution.proto")
    if method.family not in ("perturbation", "gradient"):
        raise ValueError(f"attribution method {method.name!r}: unknown family {method.family!r}")
    if method.name not in attribution_pb2.MethodParameters.DESCRIPTOR.fields_by_name:
        raise ValueError(f"attribution method {method.name!r} has no field in attribution.proto MethodParameters")
    REGISTRY[method.name] = method
    return method


for _module in MODULES:
    for _method in _module.METHODS:
        register(_method)
REGISTRY = dict(sorted(REGISTRY.items(), key=lambda kv: kv[1].number))


def list_methods() -> list[AttributionMethod]:
    return list(REGISTRY.values())


def _valid() -> str:
    return ", ".join(repr(n) for n in REGISTRY)


def resolve_method(method: Any) -> AttributionMethod:
    """A method by name ("kernel_shap"), class name ("KernelShap"), proto
    name ("ATTRIBUTION_METHOD_KERNEL_SHAP") or proto number (3)."""
    if isinstance(method, AttributionMethod):
        return method
    if isinstance(method, str):
        key = method.strip().replace("-", "_").replace(" ", "")
        for m in REGISTRY.values():
            if key.lower() == m.name or key == _class_name(m.name):
                return m
    if isinstance(method, (int, str)) and not isinstance(method, bool):
        try:
            number = to_number(attribution_pb2.AttributionMethod, method, field="method", allow_unspecified=False)
        except EnumValueError:
            number = None
        for m in REGISTRY.values():
            if m.number == number:
                return m
    if method in (0, None, "") and not isinstance(method, bool):
        raise InvalidArgument(f"method is unspecified: use one of {_valid()}", field="method")
    raise InvalidArgument(f"unknown attribution method {method!r}; expected one of {_valid()}", field="method")


def _class_name(name: str) -> str:
    """"kernel_shap" -> "KernelShap"; "input_x_gradient" -> "InputXGradient"."""
    return "".join(part.capitalize() for part in name.split("_"))


__all__ = ["ATTRIBUTION_GRANULARITIES", "AttributionMethod", "Job", "MODULES", "Parameters", "REGISTRY",
           "list_methods", "register", "resolve_method"]
