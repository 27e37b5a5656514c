"""Option values shared by the attribution logic, as plain strings.

Each option is a `str` Enum made from the proto enum of the contract: one
member per proto value but UNSPECIFIED, valued with the lower-case name
without its prefix (`GRANULARITY_WORD` -> `Granularity.WORD == "word"`). `parse(...)` accepts an
Enum member, that string in any case, the full proto name
("GRANULARITY_WORD") or the proto number (3), so the gRPC adapter can pass
proto enum values straight through. The proto's UNSPECIFIED (0, "", None)
means "the default" and parses to None.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from xaimesh_contracts.v1 import attribution_pb2, model_pb2, tensor_pb2

from xaimesh_runtime.errors import InvalidArgument

# enum -> (proto enum, proto name prefix); filled by _from_proto
_PROTO: dict[type[Enum], tuple[Any, str]] = {}


def _from_proto(name: str, proto_enum: Any, prefix: str) -> Any:
    """A str Enum with one member per proto value but UNSPECIFIED:
    ``GRANULARITY_WORD`` -> ``Granularity.WORD == "word"``. The contract is
    the one list of values; the logic reads it."""
    members = [v.name[len(prefix):] for v in proto_enum.DESCRIPTOR.values if v.number != 0]
    enum = Enum(name, [(m, m.lower()) for m in members], type=str, module=__name__)
    _PROTO[enum] = (proto_enum, prefix)
    return enum


# ALL_TOKENS: every token, special tokens included; TOKEN: every non-special
# token; SAMPLE and CLS_TOKEN are activation granularities (attribution refuses them).
Granularity = _from_proto("Granularity", tensor_pb2.Granularity, "GRANULARITY_")
Aggregation = _from_proto("Aggregation", tensor_pb2.Aggregation, "AGGREGATION_")
InferenceMode = _from_proto("InferenceMode", tensor_pb2.InferenceMode, "INFERENCE_MODE_")
ReplacementPolicy = _from_proto("ReplacementPolicy", model_pb2.ReplacementPolicy, "REPLACEMENT_POLICY_")
BaselineKind = _from_proto("BaselineKind", model_pb2.BaselineKind, "BASELINE_KIND_")
GradientReduction = _from_proto("GradientReduction", attribution_pb2.GradientReduction, "GRADIENT_REDUCTION_")
SobolSampler = _from_proto("SobolSampler", attribution_pb2.SobolSampler, "SOBOL_SAMPLER_")
SobolIndex = _from_proto("SobolIndex", attribution_pb2.SobolIndex, "SOBOL_INDEX_")
Metric = _from_proto("Metric", attribution_pb2.AttributionMetric, "ATTRIBUTION_METRIC_")
Task = _from_proto("Task", model_pb2.ModelTask, "MODEL_TASK_")

E = TypeVar("E", bound=Enum)


def parse(enum: type[E], value: Any, *, field: str) -> E | None:
    """The enum member named by `value`, or None for "unspecified"."""
    if value is None or isinstance(value, enum):
        return value
    if isinstance(value, bool):
        raise InvalidArgument(f"{field}: expected one of {names(enum)}, got {value!r}", field=field)
    if isinstance(value, int):
        if value == 0:
            return None
        proto_enum, prefix = _PROTO[enum]
        if value in proto_enum.values():
            return enum(proto_enum.Name(value)[len(prefix):].lower())
        raise InvalidArgument(f"{field}: unknown value {value}; expected one of {names(enum)}", field=field)
    if isinstance(value, str):
        key = value.strip().lower()
        prefix = _PROTO[enum][1].lower()
        if key in ("", "unspecified", prefix + "unspecified"):
            return None
        if key.startswith(prefix):
            key = key[len(prefix) :]
        key = key.replace("-", "_")
        for member in enum:
            if member.value == key or member.value.replace("_", "") == key.replace("_", ""):
                return member
        raise InvalidArgument(f"{field}: unknown value {value!r}; expected one of {names(enum)}", field=field)
    raise InvalidArgument(f"{field}: expected one of {names(enum)}, got {type(value).__name__}", field=field)


def to_proto(enum: type[Enum], value: Any) -> int:
    """The proto number of anything `parse` accepts (None, "" = 0, unspecified)."""
    member = parse(enum, value, field=enum.__name__)
    if member is None:
        return 0
    proto_enum, prefix = _PROTO[enum]
    return proto_enum.Value(prefix + member.name)


def from_proto(enum: type[Enum], number: int) -> str:
    """The option string of a proto number ("" for unspecified or unknown)."""
    proto_enum, prefix = _PROTO[enum]
    if not number or number not in proto_enum.values():
        return ""
    return proto_enum.Name(number)[len(prefix):].lower()


def names(enum: type[Enum]) -> str:
    return ", ".join(repr(m.value) for m in enum)


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
    "from_proto",
    "parse",
    "to_proto",
]
