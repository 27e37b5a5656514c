"""`AttributionOutput`: the explanation of one input, as the SDK returns it.

    out = KernelShap(model)(model_inputs="Alice and Bob enter the bar, ", targets="then Alice ...")[0]
    out.attributions          # float32 [n_targets, n_elements], NaN where a row does not cover an element
    out.elements              # the input elements' texts (prompt elements, then target elements)
    out.target_elements       # the explained outputs (target elements or class names)
    print(out)                # plain-terminal rendering
    out                       # in a notebook: the interactive HTML view (see plot_attributions)
    out.save_json("attr.json"); AttributionOutput.load_json("attr.json")

JSON is strict (NaN written as null) and exact: float32 values survive a
round trip bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xaimesh_contracts.enums import EnumValueError, to_name, to_number
from xaimesh_contracts.v1 import attribution_pb2, model_pb2, tensor_pb2

from ._methods import METHOD_CLASS_NAMES, decode_parameters, encode_parameters
from .options import Aggregation, Granularity, InferenceMode, from_proto_enum, to_proto_enum

__all__ = ["AttributionOutput", "Segment", "METHOD_CLASS_NAMES", "load_json"]

FORMAT = "xaimesh.attribution/v1"

_TASKS = {model_pb2.MODEL_TASK_CAUSAL_LM: "causal_lm",
          model_pb2.MODEL_TASK_SEQUENCE_CLASSIFICATION: "sequence_classification",
          model_pb2.MODEL_TASK_SEQ2SEQ_LM: "seq2seq_lm"}


def method_number(method: str) -> int:
    return to_number(attribution_pb2.AttributionMethod, method or None)


def method_name(number: int) -> str:
    try:
        return to_name(attribution_pb2.AttributionMethod, number)
    except EnumValueError:
        return ""


@dataclass
class Segment:
    """An element: its text, character span in `AttributionOutput.text` and
    token span in the model's input sequence (end exclusive)."""

    text: str
    start_char: int = 0
    end_char: int = 0
    start_token: int = 0
    end_token: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start_char": self.start_char, "end_char": self.end_char,
                "start_token": self.start_token, "end_token": self.end_token}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        return cls(str(d.get("text", "")), int(d.get("start_char", 0)), int(d.get("end_char", 0)),
                   int(d.get("start_token", 0)), int(d.get("end_token", 0)))


def _nan_list(a: np.ndarray) -> list:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 1:
        return [None if np.isnan(x) else float(x) for x in a]
    return [_nan_list(row) for row in a]


def _from_nan_list(v: list, n_cols: int | None = None) -> np.ndarray:
    if not v:
        return np.zeros((0, n_cols) if n_cols is not None else (0,), dtype=np.float32)
    if isinstance(v[0], list):
        return np.array([[np.nan if x is None else x for x in row] for row in v], dtype=np.float32)
    return np.array([np.nan if x is None else x for x in v], dtype=np.float32)


@dataclass(eq=False)
class AttributionOutput:
    """The attribution of one input: a matrix of target rows x input elements.

    Generation (causal LM; encoder-decoder, whose prompt is the source): one
    row per target element; row t covers the prompt elements and the target
    elements before t (NaN elsewhere).
    Classification: one row per explained class, covering every element.
    """

    attributions: np.ndarray  # float32 [n_targets, n_elements]
    elements: list[str]  # element texts: prompt elements, then target elements (generation)
    target_elements: list[str]  # target element texts (generation) or class names
    method: str = ""  # "kernel_shap", "integrated_gradients"...
    parameters: dict[str, Any] = field(default_factory=dict)  # the parameters the service used
    model_id: str = ""
    task: str = ""  # "causal_lm" | "sequence_classification" | "seq2seq_lm"
    granularity: str = ""
    aggregation: str = ""  # gradient methods only
    inference_mode: str = ""
    num_prompt_elements: int = 0
    segments: list[Segment] = field(default_factory=list)
    target_classes: list[int] = field(default_factory=list)  # classification
    target_token_ids: list[int] = field(default_factory=list)  # generation
    target_element_token_ends: list[int] = field(default_factory=list)  # generation
    target_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # on the full input
    text: str = ""  # the full text the model saw (prompt + targets)
    # the token ids the model saw (segments' token spans index them); metrics send them back
    input_ids: list[int] = field(default_factory=list)
    # rows are concepts (docs/inputs-to-concepts.md): target_classes are concept indices
    explains_concepts: bool = False

    def __post_init__(self) -> None:
        self.attributions = np.asarray(self.attributions, dtype=np.float32)
        self.target_scores = np.asarray(self.target_scores, dtype=np.float32)
        if not self.segments:
            self.segments = [Segment(e) for e in self.elements]
        if not self.num_prompt_elements:
            self.num_prompt_elements = len(self.elements)

    # ------------------------------------------------------------ views

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.attributions.shape)  # type: ignore[return-value]

    @property
    def is_classification(self) -> bool:
        return self.task == "sequence_classification"

    @property
    def prompt_elements(self) -> list[str]:
        return self.elements[: self.num_prompt_elements]

    @property
    def method_name(self) -> str:
        """The explainer's class name ("KernelShap")."""
        return METHOD_CLASS_NAMES.get(self.method, self.method)

    @property
    def input_text(self) -> str:
        """The explained input (the prompt, without the targets)."""
        if self.is_classification or self.explains_concepts or self.num_prompt_elements >= len(self.segments):
            return self.text
        return self.text[: self.segments[self.num_prompt_elements].start_char]

    @property
    def target_text(self) -> str:
        """Generation: the explained continuation; classification: ""."""
        return "" if self.is_classification or self.explains_concepts else self.text[len(self.input_text):]

    # ------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "method": self.method,
            "model_id": self.model_id,
            "task": self.task,
            "parameters": self.parameters,
            "granularity": self.granularity,
            "aggregation": self.aggregation,
            "inference_mode": self.inference_mode,
            "text": self.text,
            "elements": list(self.elements),
            "num_prompt_elements": self.num_prompt_elements,
            "segments": [s.to_dict() for s in self.segments],
            "target_elements": list(self.target_elements),
            "target_classes": [int(c) for c in self.target_classes],
            "target_token_ids": [int(i) for i in self.target_token_ids],
            "target_element_token_ends": [int(e) for e in self.target_element_token_ends],
            "target_scores": _nan_list(self.target_scores),
            "attributions": _nan_list(self.attributions),
            "input_ids": [int(i) for i in self.input_ids],
            "explains_concepts": self.explains_concepts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttributionOutput:
        fmt = d.get("format", FORMAT)
        if fmt != FORMAT:
            raise ValueError(f"not an xaimesh attribution (format {fmt!r}, expected {FORMAT!r})")
        elements = [str(e) for e in d.get("elements", [])]
        return cls(
            attributions=_from_nan_list(d.get("attributions", []), len(elements)),
            elements=elements,
            target_elements=[str(t) for t in d.get("target_elements", [])],
            method=str(d.get("method", "")),
            parameters=dict(d.get("parameters", {})),
            model_id=str(d.get("model_id", "")),
            task=str(d.get("task", "")),
            granularity=str(d.get("granularity", "")),
            aggregation=str(d.get("aggregation", "")),
            inference_mode=str(d.get("inference_mode", "")),
            num_prompt_elements=int(d.get("num_prompt_elements", 0)),
            segments=[Segment.from_dict(s) for s in d.get("segments", [])],
            target_classes=[int(c) for c in d.get("target_classes", [])],
            target_token_ids=[int(i) for i in d.get("target_token_ids", [])],
            target_element_token_ends=[int(e) for e in d.get("target_element_token_ends", [])],
            target_scores=_from_nan_list(d.get("target_scores", [])),
            text=str(d.get("text", "")),
            input_ids=[int(i) for i in d.get("input_ids", [])],
            explains_concepts=bool(d.get("explains_concepts", False)),
        )

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> AttributionOutput:
        return cls.from_dict(json.loads(text))

    def save_json(self, path: str | Path) -> Path:
        """Writes the JSON to `path` (UTF-8); returns the path."""
        path = Path(path)
        path.write_text(self.to_json(indent=1), encoding="utf-8")
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> AttributionOutput:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AttributionOutput):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    # ------------------------------------------------------------ proto

    def to_proto(self) -> attribution_pb2.Attribution:
        """The attribution.proto `Attribution` message (what metrics send back to the service)."""
        scores = np.ascontiguousarray(self.attributions, dtype=np.float32)
        return attribution_pb2.Attribution(
            model=self.model_id,
            task={v: k for k, v in _TASKS.items()}.get(self.task, 0),
            method=method_number(self.method),
            parameters=encode_parameters(self.method, self.parameters),
            granularity=to_proto_enum(Granularity, self.granularity or None, "granularity"),
            aggregation=to_proto_enum(Aggregation, self.aggregation or None, "aggregation"),
            inference_mode=to_proto_enum(InferenceMode, self.inference_mode or None, "inference_mode"),
            input_elements=[tensor_pb2.Segment(**s.to_dict()) for s in self.segments],
            num_prompt_elements=self.num_prompt_elements,
            target_elements=list(self.target_elements),
            target_classes=[int(c) for c in self.target_classes],
            target_token_ids=[int(i) for i in self.target_token_ids],
            target_element_token_ends=[int(e) for e in self.target_element_token_ends],
            scores=tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=list(scores.shape),
                                     raw_contents=scores.astype("<f4").tobytes()),
            target_scores=[float(x) for x in self.target_scores],
            text=self.text,
            input_ids=[int(i) for i in self.input_ids],
            explains_concepts=self.explains_concepts,
        )

    @classmethod
    def from_proto(cls, a: attribution_pb2.Attribution) -> AttributionOutput:
        from xaimesh_contracts.tensors import to_numpy

        segments = [Segment(s.text, s.start_char, s.end_char, s.start_token, s.end_token) for s in a.input_elements]
        parameters = decode_parameters(a.parameters)
        return cls(
            attributions=to_numpy(a.scores, field="scores").astype(np.float32, copy=False),
            elements=[s.text for s in segments],
            target_elements=list(a.target_elements),
            method=method_name(a.method),
            parameters=parameters,
            model_id=a.model,
            task=_TASKS.get(a.task, ""),
            granularity=from_proto_enum(Granularity, a.granularity),
            aggregation=from_proto_enum(Aggregation, a.aggregation),
            inference_mode=from_proto_enum(InferenceMode, a.inference_mode),
            num_prompt_elements=int(a.num_prompt_elements),
            segments=segments,
            target_classes=list(a.target_classes),
            target_token_ids=list(a.target_token_ids),
            target_element_token_ends=list(a.target_element_token_ends),
            target_scores=np.asarray(list(a.target_scores), dtype=np.float32),
            text=a.text,
            input_ids=[int(i) for i in a.input_ids],
            explains_concepts=a.explains_concepts,
        )

    # ------------------------------------------------------------ display

    def __str__(self) -> str:
        from .plots import render_text

        return render_text(self)

    def __repr__(self) -> str:
        t, e = self.shape
        return (f"AttributionOutput({self.method_name}, model={self.model_id!r}, {t} target(s) x {e} element(s), "
                f"granularity={self.granularity!r})")

    def _repr_html_(self) -> str:
        from .plots import render_html

        return render_html(self)


def load_json(path: str | Path) -> AttributionOutput:
    """`AttributionOutput.load_json(path)`."""
    return AttributionOutput.load_json(path)
