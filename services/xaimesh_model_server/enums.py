"""Enums mirroring model.proto / tensor.proto, with the same integer values.

The adapter converts a proto enum with `Granularity(request.granularity)`;
Python callers may also pass the member, its name ("WORD", "word") or the
full proto name ("GRANULARITY_WORD"). UNSPECIFIED (0) means the documented
default of each call.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, TypeVar

from xaimesh_runtime.errors import InvalidArgument


class InferenceMode(IntEnum):
    UNSPECIFIED = 0
    LOGITS = 1
    SOFTMAX = 2
    LOG_SOFTMAX = 3


class ReplacementPolicy(IntEnum):
    UNSPECIFIED = 0
    PAD_TOKEN = 1
    UNK_TOKEN = 2
    MASK_TOKEN = 3
    TOKEN_ID = 4
    ZERO_EMBEDDING = 5
    REMOVE = 6


class BaselineKind(IntEnum):
    UNSPECIFIED = 0
    ZERO = 1
    PAD_TOKEN = 2
    UNK_TOKEN = 3
    MASK_TOKEN = 4
    TOKEN_ID = 5


class GradientOutput(IntEnum):
    UNSPECIFIED = 0
    FULL = 1
    DOT_DELTA = 2
    ABS_SUM = 3
    SQUARE_SUM = 4
    L2_NORM = 5
    DOT_INPUT = 6

    @property
    def key(self) -> str:
        """Key of this output in the dict returned by engine.gradients()."""
        return self.name.lower()


class Granularity(IntEnum):
    UNSPECIFIED = 0
    ALL_TOKENS = 1
    TOKEN = 2
    WORD = 3
    SENTENCE = 4
    SAMPLE = 5
    CLS_TOKEN = 6


class Aggregation(IntEnum):
    UNSPECIFIED = 0
    MEAN = 1
    MAX = 2
    MIN = 3
    SUM = 4
    SIGNED_MAX = 5


_PREFIX = {
    InferenceMode: "INFERENCE_MODE_",
    ReplacementPolicy: "REPLACEMENT_POLICY_",
    BaselineKind: "BASELINE_KIND_",
    GradientOutput: "GRADIENT_OUTPUT_",
    Granularity: "GRANULARITY_",
    Aggregation: "AGGREGATION_",
}

E = TypeVar("E", bound=IntEnum)


def coerce(cls: type[E], value: Any, *, field: str, default: E | None = None) -> E:
    """value (member, int, or name) as a member of cls; UNSPECIFIED -> default."""
    if value is None:
        member = cls(0)
    elif isinstance(value, cls):
        member = value
    elif isinstance(value, str):
        name = value.strip().upper().removeprefix(_PREFIX.get(cls, ""))
        try:
            member = cls[name]
        except KeyError:
            valid = ", ".join(m.name for m in cls if m.value)
            raise InvalidArgument(f"unknown {field} {value!r}: use one of {valid}", field=field) from None
    else:
        try:
            member = cls(int(value))
        except (ValueError, TypeError):
            valid = ", ".join(f"{m.name} ({m.value})" for m in cls if m.value)
            raise InvalidArgument(f"unknown {field} {value!r}: use one of {valid}", field=field) from None
    if member.value == 0 and default is not None:
        return default
    return member
