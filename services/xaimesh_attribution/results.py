"""Result dataclasses of the attribution logic, with JSON round-trips.

`AttributionResult` mirrors attribution.proto `Attribution`;
`MetricResult` mirrors `AttributionMetricResult`. Arrays are numpy float32;
JSON writes NaN as null (strict JSON) and float32 values exactly (the
shortest repr of their float64 widening), so from_json(to_json(r)) == r.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import Segment


def _parameters_from_dict(method: str, params: Any) -> Any:
    """The typed parameters of a stored attribution (a dict when the method
    is unknown or empty)."""
    from .methods import REGISTRY

    if isinstance(params, str):
        params = json.loads(params) if params else {}
    if method in REGISTRY:
        return REGISTRY[method].parameters(dict(params or {}))
    return dict(params or {})


def _parameters_to_dict(params: Any) -> dict[str, Any]:
    return params.to_dict() if hasattr(params, "to_dict") else dict(params or {})


def _matrix_to_json(a: np.ndarray) -> list:
    return [[None if np.isnan(x) else float(x) for x in row] for row in np.asarray(a, dtype=np.float32)]


def _vector_to_json(a: np.ndarray) -> list:
    return [None if np.isnan(x) else float(x) for x in np.asarray(a, dtype=np.float32)]


def _matrix_from_json(rows: list, n_cols: int | None = None) -> np.ndarray:
    if not rows:
        return np.zeros((0, n_cols or 0), dtype=np.float32)
    return np.array([[np.nan if x is None else x for x in row] for row in rows], dtype=np.float32)


def _vector_from_json(v: list) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in v], dtype=np.float32)


@dataclass
class AttributionResult:
    """The explanation of one input (attribution.proto Attribution).

    scores: float32 [n_targets, n_input_elements]; for generation, row t
    covers the prompt elements and the target elements before t, the other
    entries are NaN. target_scores: float32 [n_targets], each target's score
    on the unperturbed input (in `inference_mode`). input_ids / prompt_text
    are not in the proto (the adapter may drop them; `evaluate` rebuilds
    them by tokenizing when they are empty).
    """

    model: str
    task: str  # "causal_lm" | "sequence_classification"
    method: str  # e.g. "kernel_shap"
    parameters: Any  # the method's typed Parameters actually used (defaults filled in)
    granularity: str  # "all_tokens" | "token" | "word" | "sentence"
    aggregation: str  # gradient methods: "sum" | "mean" | ...; "" for perturbation methods
    inference_mode: str  # "logits" | "softmax" | "log_softmax"
    input_elements: list[Segment]
    num_prompt_elements: int
    target_elements: list[str]  # target element texts (generation) or class names
    target_classes: list[int]  # classification
    target_token_ids: list[int]  # generation
    target_element_token_ends: list[int]  # generation: ends of each element's span in target_token_ids
    scores: np.ndarray
    target_scores: np.ndarray
    text: str  # the full text the model saw (prompt + target text)
    prompt_text: str = ""
    input_ids: list[int] = field(default_factory=list)
    explains_concepts: bool = False  # rows are concepts (concepts.py); target_classes are concept indices

    @property
    def parameters_json(self) -> str:
        return json.dumps(_parameters_to_dict(self.parameters), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "method": self.method,
            "parameters": _parameters_to_dict(self.parameters),
            "granularity": self.granularity,
            "aggregation": self.aggregation,
            "inference_mode": self.inference_mode,
            "input_elements": [s.to_dict() for s in self.input_elements],
            "num_prompt_elements": self.num_prompt_elements,
            "target_elements": list(self.target_elements),
            "target_classes": [int(c) for c in self.target_classes],
            "target_token_ids": [int(i) for i in self.target_token_ids],
            "target_element_token_ends": [int(e) for e in self.target_element_token_ends],
            "scores": _matrix_to_json(self.scores),
            "target_scores": _vector_to_json(self.target_scores),
            "text": self.text,
            "prompt_text": self.prompt_text,
            "explains_concepts": self.explains_concepts,
            "input_ids": [int(i) for i in self.input_ids],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AttributionResult":
        elements = [Segment.from_dict(s) for s in d.get("input_elements", [])]
        params = _parameters_from_dict(str(d.get("method", "")), d.get("parameters", {}))
        return cls(
            model=str(d.get("model", "")),
            task=str(d.get("task", "")),
            method=str(d.get("method", "")),
            parameters=params,
            granularity=str(d.get("granularity", "")),
            aggregation=str(d.get("aggregation", "")),
            inference_mode=str(d.get("inference_mode", "")),
            input_elements=elements,
            num_prompt_elements=int(d.get("num_prompt_elements", 0)),
            target_elements=[str(x) for x in d.get("target_elements", [])],
            target_classes=[int(x) for x in d.get("target_classes", [])],
            target_token_ids=[int(x) for x in d.get("target_token_ids", [])],
            target_element_token_ends=[int(x) for x in d.get("target_element_token_ends", [])],
            scores=_matrix_from_json(d.get("scores", []), len(elements)),
            target_scores=_vector_from_json(d.get("target_scores", [])),
            text=str(d.get("text", "")),
            prompt_text=str(d.get("prompt_text", "")),
            input_ids=[int(x) for x in d.get("input_ids", [])],
            explains_concepts=bool(d.get("explains_concepts", False)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_json(cls, s: str) -> "AttributionResult":
        return cls.from_dict(json.loads(s))


@dataclass
class MetricCurve:
    """attribution.proto MetricCurve."""

    fractions: np.ndarray  # float32 [P], 0..1
    scores: np.ndarray  # float32 [P], mean over targets
    auc: float

    def to_dict(self) -> dict[str, Any]:
        return {"fractions": _vector_to_json(self.fractions), "scores": _vector_to_json(self.scores), "auc": self.auc}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MetricCurve":
        return cls(_vector_from_json(d["fractions"]), _vector_from_json(d["scores"]), float(d["auc"]))


@dataclass
class MetricResult:
    """attribution.proto AttributionMetricResult (without input_index)."""

    metric: str  # "deletion" | "insertion"
    curve: MetricCurve
    random_curve: MetricCurve | None
    per_target_scores: np.ndarray  # float32 [n_targets, P]
    parameters: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "curve": self.curve.to_dict(),
            "random_curve": None if self.random_curve is None else self.random_curve.to_dict(),
            "per_target_scores": _matrix_to_json(self.per_target_scores),
            "parameters": self.parameters,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MetricResult":
        rc = d.get("random_curve")
        curve = MetricCurve.from_dict(d["curve"])
        return cls(
            metric=str(d["metric"]),
            curve=curve,
            random_curve=None if rc is None else MetricCurve.from_dict(rc),
            per_target_scores=_matrix_from_json(d.get("per_target_scores", []), len(curve.fractions)),
            parameters=dict(d.get("parameters", {})),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_json(cls, s: str) -> "MetricResult":
        return cls.from_dict(json.loads(s))


__all__ = ["AttributionResult", "MetricCurve", "MetricResult"]
