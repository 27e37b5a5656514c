"""The contract package's enum and rich-status helpers: one way to read and
write enums and statuses, on both sides of the wire."""

from __future__ import annotations

import enum

import grpc
import pytest
from google.rpc import status_pb2

from xaimesh_contracts.enums import EnumValueError, prefix, short_names, str_enum, to_name, to_number
from xaimesh_contracts.status import code_number, field_violations, make_status, status_code
from xaimesh_contracts.v1 import attribution_pb2, concept_pb2, labeling_pb2, model_pb2, tensor_pb2

ALL_ENUMS = [getattr(module, name) for module in (tensor_pb2, model_pb2, attribution_pb2, concept_pb2, labeling_pb2)
             for name in module.DESCRIPTOR.enum_types_by_name]


def test_every_contract_enum_has_an_unspecified_zero_and_one_prefix():
    for proto_enum in ALL_ENUMS:
        assert proto_enum.Name(0).endswith("_UNSPECIFIED"), proto_enum.DESCRIPTOR.name
        assert all(name.startswith(prefix(proto_enum)) for name in proto_enum.keys())


@pytest.mark.parametrize("proto_enum", ALL_ENUMS, ids=lambda e: e.DESCRIPTOR.name)
def test_every_value_round_trips_by_number_short_and_full_name(proto_enum):
    for short in short_names(proto_enum):
        number = to_number(proto_enum, short)
        assert number != 0 and to_name(proto_enum, number) == short
        assert to_number(proto_enum, short.upper()) == number
        assert to_number(proto_enum, prefix(proto_enum) + short.upper()) == number
        assert to_number(proto_enum, number) == number


def test_unspecified_none_and_bad_values():
    g = tensor_pb2.Granularity
    assert to_number(g, None) == 0 and to_name(g, 0) == ""
    with pytest.raises(EnumValueError, match="granularity: 'words' is not one of all_tokens, token, word"):
        to_number(g, "words", field="granularity")
    with pytest.raises(EnumValueError) as info:
        to_number(g, None, field="granularity", allow_unspecified=False)
    assert info.value.field == "granularity"
    for bad in (True, 99, 2.0, "UNSPECIFIED", b"word"):
        with pytest.raises(EnumValueError):
            to_number(g, bad, allow_unspecified=False)
    with pytest.raises(EnumValueError, match="not a Granularity value"):
        to_name(g, 99)


def test_python_enums_are_read_by_name_first():
    class Theirs(enum.Enum):  # another toolkit numbers its members differently
        TOKEN = 1
        WORD = 2

    assert to_number(tensor_pb2.Granularity, Theirs.WORD) == tensor_pb2.GRANULARITY_WORD
    Granularity = str_enum("Granularity", tensor_pb2.Granularity)
    assert Granularity.WORD == "word" and [m.value for m in Granularity] == short_names(tensor_pb2.Granularity)
    assert to_number(tensor_pb2.Granularity, Granularity.SENTENCE) == tensor_pb2.GRANULARITY_SENTENCE


def test_status_encodes_and_decodes_field_violations():
    status = make_status(grpc.StatusCode.INVALID_ARGUMENT, "bad", {"parameters.n_steps": "must be >= 1"})
    assert status.code == code_number(grpc.StatusCode.INVALID_ARGUMENT) == 3
    assert field_violations(status) == [("parameters.n_steps", "must be >= 1")]
    assert field_violations(make_status(grpc.StatusCode.NOT_FOUND, "gone")) == []
    assert status_code(5) == grpc.StatusCode.NOT_FOUND and status_code(12345) == grpc.StatusCode.UNKNOWN
    assert field_violations(status_pb2.Status()) == []
