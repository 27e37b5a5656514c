"""xaimesh.concepts.ConSim and interpreto's ConSim: what they send (no service)."""

from __future__ import annotations

import numpy as np
import pytest

from xaimesh.concepts.simulatability import PROMPT_TYPES, ConSim, concept_label_list
from xaimesh.interpreto.concepts.metrics.consim import PromptTypes, _class_rows
from xaimesh.mesh import Mesh
from xaimesh_contracts.v1 import labeling_pb2


def test_the_request_carries_every_part_in_concept_order():
    consim = ConSim(Mesh({"labeling": "127.0.0.1:1"}), classes=["neg", "pos"])
    request = consim.request(["a", "b"], np.array([1, 0]), concept_labels={2: "two", 0: "zero"},
                             class_importances=np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]),
                             sample_contributions=[[1.0, 2.0, 3.0]], prompt_type="l2_baseline_with_lp",
                             anonymize_classes=True, importance_threshold=0.1)
    assert list(request.concept_labels) == ["zero", "", "two"]
    assert [list(r.values) for r in request.class_importances] == [[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
    assert [list(r.values) for r in request.sample_contributions] == [[1.0, 2.0, 3.0]]
    assert list(request.predictions) == [1, 0] and list(request.classes) == ["neg", "pos"]
    assert request.prompt_type == labeling_pb2.SIMULATABILITY_PROMPT_L2_BASELINE_WITH_LP
    assert request.anonymize_classes and request.importance_threshold == pytest.approx(0.1)
    with pytest.raises(ValueError):
        consim.request(["a", "b"], [0, 1], prompt_type="e9")


def test_prompt_types_match_interpretos_names():
    assert PROMPT_TYPES == tuple(p.value for p in PromptTypes)
    assert [p.name.lower() for p in PromptTypes] == list(PROMPT_TYPES)


def test_interpretos_dicts_become_rows():
    assert concept_label_list(["a", None]) == ["a", ""]
    assert _class_rows({"pos": {1: 2.0}}, ["neg", "pos"], 3) == [[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    with pytest.raises(ValueError, match="cat"):
        _class_rows({"cat": {0: 1.0}}, ["neg", "pos"], 1)
