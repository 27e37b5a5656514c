"""Inputs -> concepts: attributions of concept activations instead of model outputs.

Definition (docs/inputs-to-concepts.md). A request carrying a
`ConceptEncoder` explains, for each of the encoder's concepts j, the pooled
activation s_j(x) that the model-server reads at the encoder's split point
(model.proto ConceptEncoder). Every method works unchanged on it: the
explanation is a classification-like problem whose "classes" are the
concept indices (one attribution row per concept, every row covering every
element), and `ConceptReadoutBackend` answers the methods' Score and
ComputeGradients calls with concept activations. Scores are raw
activations (inference mode LOGITS: a row's value is its one column).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

from .backend import EmbeddingSamples, ModelBackend, ModelDescription, Replacement


@dataclass(frozen=True)
class ConceptEncoder:
    """model.proto ConceptEncoder in plain types. activation: "identity" |
    "relu" | "top_k" | "jump_relu"; pooling: "max" | "mean" | "sum" |
    "first" | "last"; concepts: the concept indices explained (columns of
    weight), in row order."""

    split_point: str
    weight: np.ndarray  # float32 [width, k]
    bias: np.ndarray  # float32 [k]
    activation: str = "identity"
    top_k: int = 0
    thresholds: np.ndarray | None = None  # float32 [k]
    pooling: str = "max"
    concepts: tuple[int, ...] = ()

    @property
    def nb_concepts(self) -> int:
        return int(self.weight.shape[1])

    def explained(self) -> list[int]:
        """The concept indices explained (all when `concepts` is empty), checked against the encoder."""
        k = self.nb_concepts
        if k < 1:
            raise InvalidArgument("the concept encoder's weight has no column (no concept)",
                                  field="concept_encoder.weight")
        ids = [int(c) for c in self.concepts] or list(range(k))
        bad = [c for c in ids if not 0 <= c < k]
        if bad:
            raise InvalidArgument(f"concept index {bad[0]} is out of range: the concept model has {k} concepts "
                                  f"(0..{k - 1})", field="concept_encoder.concepts")
        if len(set(ids)) != len(ids):
            raise InvalidArgument("concept_encoder.concepts repeats a concept", field="concept_encoder.concepts")
        return ids


def check_concept_request(desc: ModelDescription, inference_mode: Any) -> None:
    """What a concept explanation asks of the model and the request."""
    if desc.task == "seq2seq_lm":
        raise FailedPrecondition(
            f"model {desc.model_id!r} is an encoder-decoder: inputs -> concepts attributions are defined for causal "
            "LMs and sequence classifiers (docs/inputs-to-concepts.md); use one of those", field="model")
    if inference_mode not in (None, 0, "", "unspecified"):
        raise InvalidArgument("an inputs -> concepts attribution explains raw concept activations: leave "
                              "inference_mode unset", field="inference_mode")


def concept_labels(encoder: ConceptEncoder) -> list[str]:
    """Row names, indexed by concept index."""
    return [f"concept {j}" for j in range(encoder.nb_concepts)]


class ConceptReadoutBackend:
    """A ModelBackend whose "classes" are the encoder's concepts: Score and
    ComputeGradients of target_classes [j...] are the pooled activations of
    concepts j (the inner backend's `concept_scores` / `concept_gradients`).
    Everything else is the inner backend's."""

    def __init__(self, inner: ModelBackend, encoder: ConceptEncoder) -> None:
        self.inner = inner
        self.encoder = encoder

    def __getattr__(self, name: str) -> Any:  # describe, tokenize, max_in_flight, cancel...
        return getattr(self.inner, name)

    def _for(self, target_classes: Sequence[int] | None) -> ConceptEncoder:
        """The encoder of these concepts: only their columns travel, unless TOP_K needs every pre-activation."""
        ids = [int(c) for c in target_classes or ()] or list(range(self.encoder.nb_concepts))
        if self.encoder.activation == "top_k":
            return replace(self.encoder, concepts=tuple(ids))
        thresholds = self.encoder.thresholds
        return replace(self.encoder, weight=np.ascontiguousarray(self.encoder.weight[:, ids]),
                       bias=self.encoder.bias[ids], thresholds=None if thresholds is None else thresholds[ids],
                       concepts=())

    def score(self, input_ids: Sequence[int], keep_mask: np.ndarray | None, replacement: Replacement, *,
              target_positions: Sequence[int] | None = None, target_classes: Sequence[int] | None = None,
              inference_mode: str = "logits", source_length: int = 0) -> np.ndarray:
        return self.inner.concept_scores(input_ids, keep_mask, replacement, self._for(target_classes))

    def gradients(self, input_ids: Sequence[int], *, target_positions: Sequence[int] | None = None,
                  target_classes: Sequence[int] | None = None, inference_mode: str = "logits",
                  samples: EmbeddingSamples, outputs: Sequence[str] = ("dot_delta",),
                  source_length: int = 0) -> dict[str, np.ndarray]:
        return self.inner.concept_gradients(input_ids, self._for(target_classes), samples=samples, outputs=outputs)


__all__ = ["ConceptEncoder", "ConceptReadoutBackend", "check_concept_request", "concept_labels"]
