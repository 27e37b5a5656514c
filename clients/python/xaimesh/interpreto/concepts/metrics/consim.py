"""interpreto.concepts.metrics.ConSim over the mesh: the labeling-service's
ScoreSimulatability with interpreto's signature (docs/concept-metrics.md
says where the definitions differ).

``evaluate`` takes interpreto's ``concepts_interpretation`` ({concept:
text}) and ``global_importances`` ({class: {concept: importance}}). The
local importances of E3 / U1 are not computed from ``concept_explainer``
here: pass them as ``local_importances`` ([samples, concepts], the first
half or every sample).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from xaimesh.concepts import simulatability as native

from ..._compat import accept_noop, member, refuse
from ...commons.llm_interface import Role
from ..interpretations import native_llm

__all__ = ["ConSim", "PromptTypes"]


class PromptTypes(Enum):
    """interpreto's prompt types; the value is the service's name."""

    L1_baseline_without_lp = "l1_baseline_without_lp"
    E1_global_concepts_without_lp = "e1_global_concepts_without_lp"
    L2_baseline_with_lp = "l2_baseline_with_lp"
    E2_global_concepts_with_lp = "e2_global_concepts_with_lp"
    E3_global_and_local_concepts_with_lp = "e3_global_and_local_concepts_with_lp"
    U1_upper_bound_concepts_at_ep = "u1_upper_bound_concepts_at_ep"


_LOCAL = (PromptTypes.E3_global_and_local_concepts_with_lp, PromptTypes.U1_upper_bound_concepts_at_ep)


def _class_rows(global_importances: dict | None, classes: list[str], n_concepts: int) -> list[list[float]] | None:
    """{class: {concept: importance}} -> [class][concept] in ``classes`` order (missing = 0)."""
    if global_importances is None:
        return None
    unknown = sorted(set(global_importances) - set(classes))
    if unknown:
        raise refuse("ConSim.evaluate", "global_importances", f"classes {unknown} are not in {classes}")
    rows = []
    for name in classes:
        row = [0.0] * n_concepts
        for concept, value in (global_importances.get(name) or {}).items():
            row[int(concept)] = float(value)
        rows.append(row)
    return rows


class ConSim:
    def __init__(self, splitter: Any, user_llm: Any, classes: list[str] | None = None) -> None:
        self.splitter = splitter
        self.user_llm = native_llm(user_llm, "ConSim", "user_llm")
        self.classes = list(classes) if classes is not None else None

    def evaluate(self, interesting_samples: list[str], predictions: Any, concept_explainer: Any = None,
                 concepts_interpretation: dict[int, str] | None = None,
                 global_importances: dict[str, dict[int, float]] | None = None,
                 prompt_type: Any = PromptTypes.E3_global_and_local_concepts_with_lp,
                 anonymize_classes: bool = False, importance_threshold: float = 0.05, *,
                 local_importances: Any = None) -> float | None | tuple[list[tuple[Role, str]], list[str]]:
        """The simulator's accuracy on the second half of the samples; None
        when it answered none of them. Without ``user_llm``: (the prompt as
        (Role, text) pairs, the model's classes of the evaluated samples)."""
        accept_noop("ConSim.evaluate", "concept_explainer", concept_explainer)
        kind = member(PromptTypes, prompt_type, "prompt_type")
        if kind in _LOCAL and local_importances is None:
            raise refuse("ConSim.evaluate", "local_importances",
                         f"{kind.name} shows per-sample concept contributions: pass local_importances "
                         "([samples, concepts], e.g. from concept_explainer.concept_output_gradient reduced to "
                         "one row per sample); they are not computed from concept_explainer here")
        labels = native.concept_label_list(concepts_interpretation)
        n_concepts = max([len(labels)] + [int(c) + 1 for row in (global_importances or {}).values() for c in row])
        labels += [""] * (n_concepts - len(labels))
        classes = self.classes or [f"Class_{i}" for i in range(int(max(_as_list(predictions))) + 1)]
        consim = native.ConSim(getattr(self.splitter, "native", self.splitter), self.user_llm, classes)
        kwargs = dict(concept_labels=labels, class_importances=_class_rows(global_importances, classes, n_concepts),
                      sample_contributions=local_importances if kind in _LOCAL else None, prompt_type=kind.value,
                      anonymize_classes=anonymize_classes, importance_threshold=importance_threshold)
        if self.user_llm is None:
            result = consim.prompt(interesting_samples, _as_list(predictions), **kwargs)
            prompt = [(Role(m["role"]), m["content"]) for m in result.prompt] + [(Role.ASSISTANT, "")]
            return prompt, result.model_predictions
        result = consim.evaluate(interesting_samples, _as_list(predictions), **kwargs)
        return result.score if result.n_answered else None


def _as_list(predictions: Any) -> list[int]:
    values = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
    return [int(v) for v in values]
