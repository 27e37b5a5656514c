"""CreateActivationSets without gRPC: ``ConceptWorkspace.create_activation_sets``
over plain model-server events, and the proto-enum helper of the service."""

from __future__ import annotations

import os

import numpy as np
import pytest

from xaimesh_concept.common import (ActivationRows, ActivationsHeader, ActivationsSummary, ItemFailure, Progress,
                                    Provenance, enum_key, enum_number)
from xaimesh_concept.methods import REGISTRY, method_class
from xaimesh_concept.workspace import ConceptWorkspace
from xaimesh_contracts.enums import short_names
from xaimesh_contracts.v1 import concept_pb2, tensor_pb2
from xaimesh_runtime.errors import Cancelled, InvalidArgument, ServiceError

HIDDEN = 4


@pytest.fixture()
def ws(tmp_path):
    return ConceptWorkspace(str(tmp_path / "data"), default_device="cpu")


def rows(sample: int, n: int, layer: int) -> np.ndarray:
    return (np.arange(n * HIDDEN, dtype=np.float32).reshape(n, HIDDEN) + 100 * sample + 10 * layer)


def events(split_points=("a", "b"), texts=("x y z", "", "u v")):
    yield ActivationsHeader(split_points=list(split_points), model="lm", granularity=tensor_pb2.GRANULARITY_TOKEN,
                            aggregation=tensor_pb2.AGGREGATION_MEAN, hidden_size=HIDDEN, num_samples=len(texts))
    for i, text in enumerate(texts):
        words = text.split()
        if not words:
            yield ItemFailure(i, "no tokens")
            continue
        for layer, sp in enumerate(split_points):
            prov = [Provenance(i, j, j + 1, w) for j, w in enumerate(words)]
            yield ActivationRows(sp, rows(i, len(words), layer), prov)
        yield Progress("activations", i + 1, len(texts))
    yield ActivationsSummary(num_rows=5, num_samples=2)


def test_one_set_per_split_point_and_the_events_in_order(ws):
    emitted = []
    infos = ws.create_activation_sets(events(), n_texts=3, display_name="acts", granularity=0, emit=emitted.append)
    assert [i.split_point for i in infos] == ["a", "b"]
    for layer, info in enumerate(infos):
        assert (info.num_rows, info.hidden_size, info.num_samples) == (5, HIDDEN, 2)
        assert (info.model, info.granularity, info.aggregation, info.display_name) == ("lm", "TOKEN", "MEAN", "acts")
        (chunk,) = ws.read_activation_set(info.name, include_provenance=True)
        np.testing.assert_array_equal(chunk.rows, np.concatenate([rows(0, 3, layer), rows(2, 2, layer)]))
        assert [p.text for p in chunk.provenance] == ["x", "y", "z", "u", "v"]
    assert [type(e).__name__ for e in emitted] == ["Progress", "ItemFailure", "Progress", "Progress", "Progress"]
    assert [(e.stage, e.done, e.total) for e in emitted if isinstance(e, Progress)] == [
        ("pulling", 1, 3), ("pulling", 3, 3), ("storing", 1, 2), ("storing", 2, 2)]


def _stored(ws):
    return ws.list_activation_sets()[0], os.listdir(os.path.join(ws.store.root, "tmp"))


def test_all_or_nothing(ws):
    def failing():
        yield from list(events())[:-1]
        raise ServiceError("the model-server went away", code="UNAVAILABLE")

    with pytest.raises(ServiceError, match="went away"):
        ws.create_activation_sets(failing(), n_texts=3)
    with pytest.raises(InvalidArgument, match="none of the 1 texts") as error:
        ws.create_activation_sets(events(texts=("",)), n_texts=1)
    assert error.value.field == "texts"
    polls = iter([False] * 10 + [True] * 100)  # 9 events, one set committed, then cancelled: removed again
    with pytest.raises(Cancelled):
        ws.create_activation_sets(events(), n_texts=3, should_stop=lambda: next(polls))
    assert _stored(ws) == ([], [])


def test_a_model_server_that_breaks_the_contract_is_an_internal_error(ws):
    def unannounced():
        yield ActivationsHeader(split_points=["a"], hidden_size=HIDDEN)
        yield ActivationRows("zz", rows(0, 2, 0))

    with pytest.raises(ServiceError, match="did not announce") as error:
        ws.create_activation_sets(unannounced(), n_texts=1)
    assert error.value.code.name == "INTERNAL"
    with pytest.raises(ServiceError, match="no activations header") as error:
        ws.create_activation_sets(iter([]), n_texts=1)
    assert error.value.code.name == "INTERNAL"
    assert _stored(ws) == ([], [])


# ---------------------------------------------------------------------------
# proto enums


def test_enum_key_and_number_round_trip_every_value():
    for proto_enum in (tensor_pb2.Granularity, tensor_pb2.Aggregation, concept_pb2.ConceptMethod,
                       concept_pb2.ConceptMetric, concept_pb2.ExampleSampling):
        for name, number in proto_enum.items():
            key = enum_key(proto_enum, number, "f")
            assert key == ("UNSPECIFIED" if number == 0 else name[len(name) - len(key):])
            assert enum_key(proto_enum, name, "f") == enum_key(proto_enum, key.lower(), "f") == key
            assert enum_number(proto_enum, key) == number
    assert enum_key(tensor_pb2.Granularity, None, "f") == enum_key(tensor_pb2.Granularity, "", "f") == "UNSPECIFIED"
    with pytest.raises(InvalidArgument, match="unknown granularity 99; choose among") as error:
        enum_key(tensor_pb2.Granularity, 99, "granularity")
    assert error.value.field == "granularity"
    with pytest.raises(InvalidArgument, match="unknown example sampling 'BEST'"):
        enum_key(concept_pb2.ExampleSampling, "BEST", "sampling", what="example sampling")


def test_every_concept_method_of_the_contract_is_registered():
    """A method needs both: its ConceptMethod value (how callers name it) and
    its class in the registry (see docs/contributing-concept.md)."""
    assert sorted(REGISTRY) == sorted(n.upper() for n in short_names(concept_pb2.ConceptMethod))
    for name, number in concept_pb2.ConceptMethod.items():
        if number:
            assert method_class(number) is method_class(name) is REGISTRY[name.removeprefix("CONCEPT_METHOD_")]
