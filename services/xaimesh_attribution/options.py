"""Option values shared by the attribution logic, as plain strings.

Each option is a `str` Enum made from the proto enum of the contract by
`xaimesh_contracts.enums.str_enum` (`GRANULARITY_WORD` ->
`Granularity.WORD == "word"`): the contract is the one list of values.
`parse(...)` accepts a member, the short name in any case, the full proto
name ("GRANULARITY_WORD") or the proto number (3), so the gRPC adapter can
pass proto enum values straight through; UNSPECIFIED (0, "", None) means
"the default" and parses to None. Conversions are
`xaimesh_contracts.enums`'s; this module only turns its errors into
`InvalidArgument`.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from xaimesh_contracts.enums import EnumValueError, short_names, str_enum, to_name, to_number
from xaimesh_contracts.v1 import attribution_pb2, model_pb2, tensor_pb2

from xaimesh_runtime.errors import InvalidArgument

# ALL_TOKENS: every token, special tokens included; TOKEN: every non-special
# token; SAMPLE and CLS_TOKEN are activation granularities (attribution refuses them).
Granularity = str_enum("Granularity", tensor_pb2.Granularity, module=__name__)
Aggregation = str_enum("Aggregation", tensor_pb2.Aggregation, module=__name__)
InferenceMode = str_enum("InferenceMode", tensor_pb2.InferenceMode, module=__name__)
ReplacementPolicy = str_enum("ReplacementPolicy", model_pb2.ReplacementPolicy, module=__name__)
BaselineKind = str_enum("BaselineKind", model_pb2.BaselineKind, module=__name__)
GradientReduction = str_enum("GradientReduction", attribution_pb2.GradientReduction, module=__name__)
SobolSampler = str_enum("SobolSampler", attribution_pb2.SobolSampler, module=__name__)
SobolIndex = str_enum("SobolIndex", attribution_pb2.SobolIndex, module=__name__)
Metric = str_enum("Metric", attribution_pb2.AttributionMetric, module=__name__)
Task = str_enum("Task", model_pb2.ModelTask, module=__name__)

#: option enum -> the proto enum it is made from
PROTO_ENUMS: dict[type[Enum], Any] = {
    Granularity: tensor_pb2.Granularity,
    Aggregation: tensor_pb2.Aggregation,
    InferenceMode: tensor_pb2.InferenceMode,
    ReplacementPolicy: model_pb2.ReplacementPolicy,
    BaselineKind: model_pb2.BaselineKind,
    GradientReduction: attribution_pb2.GradientReduction,
    SobolSampler: attribution_pb2.SobolSampler,
    SobolIndex: attribution_pb2.SobolIndex,
    Metric: attribution_pb2.AttributionMetric,
    Task: model_pb2.ModelTask,
}

E = TypeVar("E", bound=Enum)


def parse(enum: type[E], value: Any, *, field: str) -> E | None:
    """The enum member named by `value`, or None for "unspecified"."""
    if value is None or isinstance(value, enum):
        return value
    if isinstance(value, str) and value.strip() == "":
        return None
    proto_enum = PROTO_ENUMS[enum]
    try:
        number = to_number(proto_enum, value, field=field)
    except EnumValueError:
        raise InvalidArgument(f"{field}: unknown value {value!r}; expected one of {names(enum)}",
                              field=field) from None
    return enum(to_name(proto_enum, number)) if number else None


def to_proto(enum: type[Enum], value: Any) -> int:
    """The proto number of anything `parse` accepts (None, "" = 0, unspecified)."""
    member = parse(enum, value, field=enum.__name__)
    return 0 if member is None else to_number(PROTO_ENUMS[enum], member.value)


def from_proto(enum: type[Enum], number: int) -> str:
    """The option string of a proto number ("" for unspecified or unknown)."""
    try:
        return to_name(PROTO_ENUMS[enum], int(number))
    except EnumValueError:
        return ""


def names(enum: type[Enum]) -> str:
    return ", ".join(repr(s) for s in short_names(PROTO_ENUMS[enum]))


__all__ = [
    "Granularity",
    "Aggregation",
    "InferenceMode",
    "ReplacementPolicy",
    "BaselineKind",
    "GradientReduction",
    "SobolSampler",
    "SobolIndex",
    "Metric",
    "Task",
    "PROTO_ENUMS",
    "from_proto",
    "parse",
    "to_proto",
]
