"""Option values shared by the attribution logic, as plain strings.

Each option is a `str` Enum whose values are the lower-case proto enum names
without their prefix (`GRANULARITY_WORD` -> "word"). `parse(...)` accepts an
Enum member, that string in any case, the full proto name
("GRANULARITY_WORD") or the proto number (3), so the gRPC adapter can pass
proto enum values straight through. The proto's UNSPECIFIED (0, "", None)
means "the default" and parses to None.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from .errors import InvalidArgument


class Granularity(str, Enum):
    ALL_TOKENS = "all_tokens"  # every token, special tokens included
    TOKEN = "token"  # every non-special token
    WORD = "word"
    SENTENCE = "sentence"
    SAMPLE = "sample"  # activations only: rejected by attribution
    CLS_TOKEN = "cls_token"  # activations only: rejected by attribution


class Aggregation(str, Enum):
    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    SUM = "sum"
    SIGNED_MAX = "signed_max"


class InferenceMode(str, Enum):
    LOGITS = "logits"
    SOFTMAX = "softmax"
    LOG_SOFTMAX = "log_softmax"


class ReplacementPolicy(str, Enum):
    PAD_TOKEN = "pad_token"
    UNK_TOKEN = "unk_token"
    MASK_TOKEN = "mask_token"
    TOKEN_ID = "token_id"
    ZERO_EMBEDDING = "zero_embedding"
    REMOVE = "remove"


class BaselineKind(str, Enum):
    ZERO = "zero"
    PAD_TOKEN = "pad_token"
    UNK_TOKEN = "unk_token"
    MASK_TOKEN = "mask_token"
    TOKEN_ID = "token_id"


class GradientReduction(str, Enum):
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


class Metric(str, Enum):
    DELETION = "deletion"
    INSERTION = "insertion"


class Task(str, Enum):
    CAUSAL_LM = "causal_lm"
    SEQUENCE_CLASSIFICATION = "sequence_classification"


# Proto enum prefixes and numbers (declaration order = proto numbers 1..n).
_PREFIX = {
    Granularity: "GRANULARITY_",
    Aggregation: "AGGREGATION_",
    InferenceMode: "INFERENCE_MODE_",
    ReplacementPolicy: "REPLACEMENT_POLICY_",
    BaselineKind: "BASELINE_KIND_",
    GradientReduction: "GRADIENT_REDUCTION_",
    SobolSampler: "SOBOL_SAMPLER_",
    SobolIndex: "SOBOL_INDEX_",
    Metric: "ATTRIBUTION_METRIC_",
    Task: "MODEL_TASK_",
}
# Proto numbers where they do not follow declaration order.
_NUMBERS = {
    Aggregation: {1: "mean", 2: "max", 3: "min", 4: "sum", 5: "signed_max"},
}

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
        numbers = _NUMBERS.get(enum)
        if numbers is not None:
            if value in numbers:
                return enum(numbers[value])
        else:
            members = list(enum)
            if 1 <= value <= len(members):
                return members[value - 1]
        raise InvalidArgument(f"{field}: unknown value {value}; expected one of {names(enum)}", field=field)
    if isinstance(value, str):
        key = value.strip().lower()
        if key in ("", "unspecified", _PREFIX[enum].lower() + "unspecified"):
            return None
        prefix = _PREFIX[enum].lower()
        if key.startswith(prefix):
            key = key[len(prefix) :]
        key = key.replace("-", "_")
        for member in enum:
            if member.value == key or member.value.replace("_", "") == key.replace("_", ""):
                return member
        raise InvalidArgument(f"{field}: unknown value {value!r}; expected one of {names(enum)}", field=field)
    raise InvalidArgument(f"{field}: expected one of {names(enum)}, got {type(value).__name__}", field=field)


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
    "parse",
]
