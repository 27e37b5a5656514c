"""Option values of the attribution explainers and metrics.

Each option is a `str` Enum made from the contract's proto enum by
`xaimesh_contracts.enums` (`Granularity.WORD == "word"`), so the SDK and the
contract cannot disagree, and plain strings work wherever an enum is
expected: `granularity="word"`, `"WORD"` or the proto name
`"GRANULARITY_WORD"`. `InferenceModes` is an alias of `InferenceMode` (the
name other toolkits use).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import grpc

from xaimesh.errors import FieldViolation, InvalidArgumentError
from xaimesh_contracts.enums import EnumValueError, short_names, str_enum, to_name, to_number
from xaimesh_contracts.v1 import attribution_pb2, model_pb2, tensor_pb2

__all__ = [
    "Aggregation",
    "BaselineKind",
    "Granularity",
    "GradientReduction",
    "InferenceMode",
    "InferenceModes",
    "ReplacementPolicy",
    "SobolIndex",
    "SobolSampler",
    "invalid",
    "to_proto_enum",
]

# Granularities of activations only: attributions refuse them.
ACTIVATION_ONLY_GRANULARITIES = ("sample", "cls_token")

#: What an attribution is over: ALL_TOKENS (special tokens included), TOKEN, WORD, SENTENCE.
Granularity = Enum("Granularity", [(s.upper(), s) for s in short_names(tensor_pb2.Granularity)
                                   if s not in ACTIVATION_ONLY_GRANULARITIES], type=str, module=__name__)
#: What number a target is scored by (SOFTMAX: its probability, the default of perturbation methods and metrics).
InferenceMode = str_enum("InferenceMode", tensor_pb2.InferenceMode, module=__name__)
InferenceModes = InferenceMode
#: How a gradient method combines token values into word / sentence values (default SUM).
Aggregation = str_enum("Aggregation", tensor_pb2.Aggregation, module=__name__)
#: What a removed element becomes (perturbation methods and metrics).
ReplacementPolicy = str_enum("ReplacementPolicy", model_pb2.ReplacementPolicy, module=__name__)
#: Baseline of Integrated Gradients and GradientShap.
BaselineKind = str_enum("BaselineKind", model_pb2.BaselineKind, module=__name__)
#: How a token's gradient vector becomes one number (Saliency, SmoothGrad, SquareGrad, VarGrad).
GradientReduction = str_enum("GradientReduction", attribution_pb2.GradientReduction, module=__name__)
SobolSampler = str_enum("SobolSampler", attribution_pb2.SobolSampler, module=__name__)
SobolIndex = str_enum("SobolIndex", attribution_pb2.SobolIndex, module=__name__)

#: option enum -> the proto enum it is made from
PROTO_ENUMS: dict[type[Enum], Any] = {
    Granularity: tensor_pb2.Granularity,
    InferenceMode: tensor_pb2.InferenceMode,
    Aggregation: tensor_pb2.Aggregation,
    ReplacementPolicy: model_pb2.ReplacementPolicy,
    BaselineKind: model_pb2.BaselineKind,
    GradientReduction: attribution_pb2.GradientReduction,
    SobolSampler: attribution_pb2.SobolSampler,
    SobolIndex: attribution_pb2.SobolIndex,
}


def invalid(message: str, field: str) -> InvalidArgumentError:
    """The error the SDK raises for a bad argument, before any call."""
    return InvalidArgumentError(grpc.StatusCode.INVALID_ARGUMENT, "", message, [FieldViolation(field, message)])


def parse_enum(enum: type[Enum], value: Any, field: str) -> Enum | None:
    """The member named by `value` (member, name in any case, proto name or
    number); None for None."""
    if value is None or isinstance(value, enum):
        return value
    choices = ", ".join(repr(m.value) for m in enum)
    try:
        short = to_name(PROTO_ENUMS[enum], to_number(PROTO_ENUMS[enum], value, field=field, allow_unspecified=False))
        return enum(short)
    except (EnumValueError, ValueError):
        raise invalid(f"{field}: unknown value {value!r}; use one of {choices} (or {enum.__name__}.X)",
                      field) from None


def to_proto_enum(enum: type[Enum], value: Any, field: str) -> int:
    """The proto number of an option value (0 = unspecified = the default)."""
    member = parse_enum(enum, value, field)
    return 0 if member is None else to_number(PROTO_ENUMS[enum], member.value)


def from_proto_enum(enum: type[Enum], number: int) -> str:
    """The option value string of a proto number ("" for unspecified / unknown)."""
    try:
        return to_name(PROTO_ENUMS[enum], int(number))
    except EnumValueError:
        return ""
