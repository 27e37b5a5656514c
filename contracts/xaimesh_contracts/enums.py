"""One way to read and write the contract's enums.

A proto enum ``Granularity`` has values ``GRANULARITY_UNSPECIFIED = 0``,
``GRANULARITY_WORD = 3``, ... Its *short name* is the value name without the
enum's prefix, in lower case ("word"). Python callers may give a value as
the number, the short name in any case, the full proto name, or a member of
any Python ``Enum`` whose name (tried first) or value is one of those::

    to_number(tensor_pb2.Granularity, "word")              # 3
    to_number(tensor_pb2.Granularity, "GRANULARITY_WORD")  # 3
    to_name(tensor_pb2.Granularity, 3)                     # "word"
    short_names(tensor_pb2.Granularity)                    # ["all_tokens", "token", ...]
    Granularity = str_enum("Granularity", tensor_pb2.Granularity)   # Granularity.WORD == "word"

UNSPECIFIED (0) is never a short name: on the wire it means "the documented
default"; ``to_number(enum, None)`` gives it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

__all__ = ["EnumValueError", "prefix", "short_names", "str_enum", "to_name", "to_number"]


class EnumValueError(ValueError):
    """A value that is not one of the enum's; ``field`` names where it was given."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def prefix(proto_enum: EnumTypeWrapper) -> str:
    """"GRANULARITY_" for Granularity: the name of value 0 minus "UNSPECIFIED"."""
    return proto_enum.Name(0).removesuffix("UNSPECIFIED")


def short_names(proto_enum: EnumTypeWrapper) -> list[str]:
    """The short names of every value but UNSPECIFIED, in contract order."""
    cut = len(prefix(proto_enum))
    return [name[cut:].lower() for name, number in proto_enum.items() if number != 0]


def to_name(proto_enum: EnumTypeWrapper, number: int) -> str:
    """The short name of ``number`` ("" for UNSPECIFIED)."""
    if number == 0:
        return ""
    try:
        return proto_enum.Name(number)[len(prefix(proto_enum)):].lower()
    except ValueError:
        raise EnumValueError(f"{number} is not a {proto_enum.DESCRIPTOR.name} value; "
                             f"known: {', '.join(short_names(proto_enum))}") from None


def to_number(proto_enum: EnumTypeWrapper, value: Any, *, field: str = "value", allow_unspecified: bool = True) -> int:
    """The number of ``value`` (see the module doc); ``None`` is UNSPECIFIED
    when ``allow_unspecified``. Raises :class:`EnumValueError` naming
    ``field`` and the known names otherwise."""
    known = short_names(proto_enum)
    if value is None and allow_unspecified:
        return 0
    candidates: list[Any] = [value]
    if isinstance(value, Enum):  # by name first: another toolkit's numbers may differ from ours
        candidates = [value.name, value.value]
    for candidate in candidates:
        if isinstance(candidate, bool):
            continue
        if isinstance(candidate, int):
            if candidate in proto_enum.values() and (candidate != 0 or allow_unspecified):
                return int(candidate)
            continue
        if isinstance(candidate, str):
            name = candidate.strip().upper()
            full = name if name.startswith(prefix(proto_enum)) else prefix(proto_enum) + name
            if full in proto_enum.keys() and (proto_enum.Value(full) != 0 or allow_unspecified):
                return proto_enum.Value(full)
    raise EnumValueError(f"{field}: {value!r} is not one of {', '.join(known)}", field=field)


def str_enum(name: str, proto_enum: EnumTypeWrapper, *, module: str | None = None) -> type[Enum]:
    """A ``str`` Enum with one member per value but UNSPECIFIED
    (``Granularity.WORD == "word"``), generated from the contract so the two
    can never disagree."""
    members = [(short.upper(), short) for short in short_names(proto_enum)]
    return Enum(name, members, type=str, module=module)  # type: ignore[return-value]
