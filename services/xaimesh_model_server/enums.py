"""The contract's enums (model.proto / tensor.proto) as Python IntEnums.

Each IntEnum is built from the generated proto enum, so its members and
numbers are the contract's and cannot drift: member names are the value
names without the enum's prefix (``Granularity.WORD == 3`` for
``GRANULARITY_WORD = 3``), ``UNSPECIFIED`` (0) included.

The adapter converts a proto enum with `Granularity(request.granularity)`;
Python callers may also pass the member, its name ("WORD", "word") or the
full proto name ("GRANULARITY_WORD") to `coerce`, which reads every form
through `xaimesh_contracts.enums.to_number`. UNSPECIFIED (0) means the
documented default of each call.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, TypeVar

import numpy as np

from xaimesh_contracts import enums as contract_enums
from xaimesh_contracts.enums import EnumValueError
from xaimesh_contracts.v1 import model_pb2, tensor_pb2
from xaimesh_runtime.errors import InvalidArgument

E = TypeVar("E", bound=IntEnum)

# IntEnum class -> the proto enum it is built from.
_PROTO: dict[type[IntEnum], Any] = {}


def _from_contract(name: str, proto_enum: Any, base: type[IntEnum] = IntEnum) -> Any:
    cut = len(contract_enums.prefix(proto_enum))
    members = {value_name[cut:]: number for value_name, number in proto_enum.items()}
    cls = base(name, members, module=__name__)
    _PROTO[cls] = proto_enum
    return cls


class _GradientOutputBase(IntEnum):
    @property
    def key(self) -> str:
        """Key of this output in the dict returned by engine.gradients()."""
        return self.name.lower()


InferenceMode = _from_contract("InferenceMode", tensor_pb2.InferenceMode)
ReplacementPolicy = _from_contract("ReplacementPolicy", model_pb2.ReplacementPolicy)
BaselineKind = _from_contract("BaselineKind", model_pb2.BaselineKind)
GradientOutput = _from_contract("GradientOutput", model_pb2.GradientOutput, _GradientOutputBase)
Granularity = _from_contract("Granularity", tensor_pb2.Granularity)
Aggregation = _from_contract("Aggregation", tensor_pb2.Aggregation)
# Which special tokens activations run with (docs/models.md, "Token semantics").
SpecialTokensPolicy = _from_contract("SpecialTokensPolicy", model_pb2.SpecialTokensPolicy)
# How a concept encoder activates (inputs -> concepts, docs/inputs-to-concepts.md).
ConceptActivation = _from_contract("ConceptActivation", model_pb2.ConceptActivation)


def proto_enum_of(cls: type[IntEnum]) -> Any:
    """The generated proto enum an IntEnum of this module is built from."""
    return _PROTO[cls]


def coerce(cls: type[E], value: Any, *, field: str, default: E | None = None) -> E:
    """value (member, int, or name) as a member of cls; UNSPECIFIED -> default.

    Raises InvalidArgument naming `field` (and the valid names) for anything
    that is not a value of the contract's enum."""
    if isinstance(value, np.integer):
        value = int(value)
    try:
        member = cls(contract_enums.to_number(_PROTO[cls], value, field=field))
    except EnumValueError:
        valid = ", ".join(m.name for m in cls if m.value)
        raise InvalidArgument(f"unknown {field} {value!r}: use one of {valid}", field=field) from None
    if member.value == 0 and default is not None:
        return default
    return member
