"""Hypothesis strategies for malformed and hostile protobuf requests.

Built from the message descriptors, so every RPC of every service is covered
without a hand-written generator per message: empty and huge strings,
invalid UTF-8 in bytes fields, negative and enormous numbers, NaN / Inf,
unknown enum values, unknown ids, deep nesting, and tensors whose dtype,
shape and byte length disagree.

``known`` (field name -> valid values) mixes real values into the fields of
that name (a real model id, activation set, concept model, token ids...) so
that requests get past the "not found" checks and reach the deeper
validation: counts, ranges, shapes, enum values. For a repeated field, the
known values are whole lists.
"""

from __future__ import annotations

import math
import struct

from google.protobuf.descriptor import FieldDescriptor
from hypothesis import strategies as st

from xaimesh_contracts.v1 import tensor_pb2

F = FieldDescriptor
INT_TYPES = {F.TYPE_INT32, F.TYPE_INT64, F.TYPE_SINT32, F.TYPE_SINT64, F.TYPE_SFIXED32, F.TYPE_SFIXED64}
UINT_TYPES = {F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_FIXED32, F.TYPE_FIXED64}
INT_BOUNDS = {F.TYPE_INT32: 31, F.TYPE_SINT32: 31, F.TYPE_SFIXED32: 31}

short_hostile_text = st.one_of(
    st.just(""),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12),
    st.sampled_from(["../../etc/passwd", "activationSets/../x", "conceptModels/", "models/none",
                     "\x00", "a/b", "nan", "-1", "9" * 30, " ", "\u202e\u0000", "8", "model.layers.99"]),
)
hostile_text = st.one_of(short_hostile_text, st.integers(10_000, 200_000).map(lambda n: "x" * n))


def hostile_int(bits: int, unsigned: bool = False):
    low = 0 if unsigned else -(2 ** bits)
    high = 2 ** (bits + (1 if unsigned else 0)) - 1
    return st.one_of(st.sampled_from([0, 1, -1 if not unsigned else 2, 2 ** 20, high, low, 7]),
                     st.integers(low, high)).filter(lambda v: low <= v <= high)


hostile_float = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 1e30, 1e-30]),
                          st.floats(width=32, allow_nan=True, allow_infinity=True))


@st.composite
def hostile_tensor(draw):
    dtype = draw(st.sampled_from(list(tensor_pb2.DataType.values()) + [99]))
    shape = draw(st.lists(st.sampled_from([0, 1, 2, 3, 7, 64, -1, 2 ** 40]), max_size=4))
    kind = draw(st.sampled_from(["consistent", "random", "nan"]))
    itemsize = {1: 4, 2: 2, 3: 2, 4: 8, 5: 8, 6: 4, 7: 1, 8: 1, 9: 1}.get(dtype, 1)
    count = 1
    for s in shape:
        count *= max(s, 0)
    if kind == "consistent" and count * itemsize <= 1 << 16:
        raw = draw(st.binary(min_size=count * itemsize, max_size=count * itemsize))
    elif kind == "nan" and dtype == tensor_pb2.DATA_TYPE_FLOAT32 and count <= 1 << 14:
        raw = struct.pack(f"<{count}f", *([math.nan] * count))
    else:
        raw = draw(st.binary(max_size=64))
    return tensor_pb2.Tensor(dtype=dtype, shape=shape, raw_contents=raw)


def message_strategy(descriptor, depth: int = 0, known: dict | None = None):
    """Partial messages of `descriptor` with hostile field values (real
    values from `known` mixed into the fields of those names)."""
    if descriptor.full_name == "xaimesh.v1.Tensor":
        return hostile_tensor()
    if descriptor.full_name in ("google.protobuf.Any",):
        return st.just(None)
    fields = {}
    for field in descriptor.fields:
        value = field_strategy(field, depth, known)
        if value is not None:
            fields[field.name] = value
    names = sorted(fields)

    @st.composite
    def build(draw):
        message = descriptor._concrete_class()
        chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names))) if names else []
        for name in chosen:
            field = descriptor.fields_by_name[name]
            value = draw(fields[name])
            if value is None:
                continue
            try:
                if field.is_repeated:
                    if field.type == F.TYPE_MESSAGE and not field.message_type.GetOptions().map_entry:
                        getattr(message, name).extend(v for v in value if v is not None)
                    elif field.type == F.TYPE_MESSAGE:
                        continue  # maps: left empty
                    else:
                        getattr(message, name).extend(value)
                elif field.type == F.TYPE_MESSAGE:
                    getattr(message, name).CopyFrom(value)
                else:
                    setattr(message, name, value)
            except (TypeError, ValueError):
                continue  # a value the Python protobuf runtime itself refuses
        return message

    return build()


def scalar_strategy(field):
    t = field.type
    if t in INT_TYPES:
        return hostile_int(INT_BOUNDS.get(t, 63))
    if t in UINT_TYPES:
        return hostile_int(31 if t in (F.TYPE_UINT32, F.TYPE_FIXED32) else 63, unsigned=True)
    if t in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        return hostile_float
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_STRING:
        return hostile_text
    if t == F.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\xff\xfe\x00\xc3("), st.just(b"PK\x03\x04" * 8))
    if t == F.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(values), st.sampled_from([-1, 99, 2 ** 31 - 1]))
    return None


def field_strategy(field, depth: int, known: dict | None = None):
    if field.type == F.TYPE_MESSAGE:
        if depth >= 3:
            return None
        inner = st.deferred(lambda: message_strategy(field.message_type, depth + 1, known))
    else:
        inner = scalar_strategy(field)
    if inner is None:
        return None
    if field.is_repeated:
        # many items, or a few huge ones (not hundreds of huge ones: 60 MB of
        # text is real work, not a hostile request)
        many = short_hostile_text if field.type == F.TYPE_STRING else inner
        strategy = st.one_of(st.lists(inner, max_size=4),
                             st.lists(many, min_size=200, max_size=300) if field.type != F.TYPE_MESSAGE
                             else st.lists(inner, max_size=2))
    else:
        strategy = inner
    real = (known or {}).get(field.name)
    if real and field.type != F.TYPE_MESSAGE:
        # half the time a real value, so the request gets past "not found"
        strategy = st.one_of(st.sampled_from(list(real)), strategy)
    return strategy


def field_paths(descriptor, max_depth: int = 3, _prefix: tuple = ()) -> list[tuple]:
    """Every field reachable from `descriptor` (as a tuple of field
    descriptors), maps and google.protobuf.Any excluded."""
    out = []
    for field in descriptor.fields:
        if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            continue
        if field.type == F.TYPE_MESSAGE and field.message_type.full_name == "google.protobuf.Any":
            continue
        path = (*_prefix, field)
        out.append(path)
        if (field.type == F.TYPE_MESSAGE and len(path) < max_depth
                and field.message_type.full_name != "xaimesh.v1.Tensor"):
            out += field_paths(field.message_type, max_depth, path)
    return out


def _set_path(message, path: tuple, value) -> None:
    target = message
    for field in path[:-1]:
        if field.is_repeated:
            items = getattr(target, field.name)
            target = items[0] if len(items) else items.add()
        else:
            target = getattr(target, field.name)
    field = path[-1]
    if field.is_repeated:
        items = getattr(target, field.name)
        del items[:]
        items.extend(v for v in value if v is not None)
    elif field.type == F.TYPE_MESSAGE:
        getattr(target, field.name).CopyFrom(value)
    else:
        setattr(target, field.name, value)


def mutation_strategy(base, max_depth: int = 3, max_fields: int = 2):
    """A valid request `base` with one or two of its fields (at any depth)
    given a hostile value: the deep validation of every field is reached."""
    paths = field_paths(base.DESCRIPTOR, max_depth)
    values = {path: field_strategy(path[-1], len(path)) for path in paths}
    paths = [p for p in paths if values[p] is not None]

    @st.composite
    def build(draw):
        message = type(base)()
        message.CopyFrom(base)
        for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=max_fields, unique=True)):
            value = draw(values[path])
            if value is None:
                continue
            try:
                _set_path(message, path, value)
            except (TypeError, ValueError):
                continue  # a value the Python protobuf runtime itself refuses
        return message

    return build()
