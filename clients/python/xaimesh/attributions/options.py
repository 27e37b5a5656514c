"""Option values of the attribution explainers and metrics.

Each option is a `str` Enum (`Granularity.WORD == "word"`), so plain strings
work wherever an enum is expected: `granularity="word"`, `"WORD"` or the
proto name `"GRANULARITY_WORD"`. `InferenceModes` is an alias of
`InferenceMode` (the name other toolkits use).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import grpc

from xaimesh.errors import FieldViolation, InvalidArgumentError
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


class Granularity(str, Enum):
    """What an attribution is over."""

    ALL_TOKENS = "all_tokens"  # every token, special tokens included
    TOKEN = "token"  # every token except special tokens
    WORD = "word"
    SENTENCE = "sentence"


class InferenceMode(str, Enum):
    """What number a target is scored by."""

    LOGITS = "logits"
    SOFTMAX = "softmax"  # the target's probability (default of perturbation methods and metrics)
    LOG_SOFTMAX = "log_softmax"


InferenceModes = InferenceMode


class Aggregation(str, Enum):
    """How a gradient method combines token values into word / sentence values."""

    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    SUM = "sum"  # the default: keeps Integrated Gradients' completeness per word
    SIGNED_MAX = "signed_max"


class ReplacementPolicy(str, Enum):
    """What a removed element becomes (perturbation methods and metrics)."""

    PAD_TOKEN = "pad_token"
    UNK_TOKEN = "unk_token"
    MASK_TOKEN = "mask_token"
    TOKEN_ID = "token_id"
    ZERO_EMBEDDING = "zero_embedding"
    REMOVE = "remove"


class BaselineKind(str, Enum):
    """Baseline of Integrated Gradients and GradientShap."""

    ZERO = "zero"
    PAD_TOKEN = "pad_token"
    UNK_TOKEN = "unk_token"
    MASK_TOKEN = "mask_token"
    TOKEN_ID = "token_id"


class GradientReduction(str, Enum):
    """How a token's gradient vector becomes one number (Saliency, SmoothGrad, SquareGrad, VarGrad)."""

    DEFAULT = "default"
    L2_NORM = "l2_norm"
    ABS_SUM = "abs_sum"


class SobolSampler(str, Enum):
    SOBOL = "sobol"
    HALTON = "halton"
    LATIN_HYPERCUBE = "latin_hypercube"


class SobolIndex(str, Enum):
    TOTAL = "total"
    FIRST = "first"


# enum -> (proto enum type, proto name prefix)
_PROTO = {
    Granularity: (tensor_pb2.Granularity, "GRANULARITY_"),
    InferenceMode: (tensor_pb2.InferenceMode, "INFERENCE_MODE_"),
    Aggregation: (tensor_pb2.Aggregation, "AGGREGATION_"),
    ReplacementPolicy: (model_pb2.ReplacementPolicy, "REPLACEMENT_POLICY_"),
    BaselineKind: (model_pb2.BaselineKind, "BASELINE_KIND_"),
    GradientReduction: (attribution_pb2.GradientReduction, "GRADIENT_REDUCTION_"),
    SobolSampler: (attribution_pb2.SobolSampler, "SOBOL_SAMPLER_"),
    SobolIndex: (attribution_pb2.SobolIndex, "SOBOL_INDEX_"),
}


def invalid(message: str, field: str) -> InvalidArgumentError:
    """The error the SDK raises for a bad argument, before any call."""
    return InvalidArgumentError(grpc.StatusCode.INVALID_ARGUMENT, "", message, [FieldViolation(field, message)])


def parse_enum(enum: type[Enum], value: Any, field: str) -> Enum | None:
    """The member named by `value` (member, name in any case, value, proto
    name); None for None."""
    if value is None or isinstance(value, enum):
        return value
    if isinstance(value, str):
        prefix = _PROTO[enum][1].lower()
        key = value.strip().lower().replace("-", "_").replace(" ", "_")
        if key.startswith(prefix):
            key = key[len(prefix):]
        for member in enum:
            if key in (member.value, member.name.lower()):
                return member
    choices = ", ".join(repr(m.value) for m in enum)
    raise invalid(f"{field}: unknown value {value!r}; use one of {choices} (or {enum.__name__}.X)", field)


def to_proto_enum(enum: type[Enum], value: Any, field: str) -> int:
    """The proto number of an option value (0 = unspecified = the default)."""
    member = parse_enum(enum, value, field)
    if member is None:
        return 0
    proto_type, prefix = _PROTO[enum]
    return proto_type.Value(prefix + member.name)


def from_proto_enum(enum: type[Enum], number: int) -> str:
    """The option value string of a proto number ("" for unspecified / unknown)."""
    if not number:
        return ""
    proto_type, prefix = _PROTO[enum]
    try:
        return proto_type.Name(number)[len(prefix):].lower()
    except ValueError:
        return ""
