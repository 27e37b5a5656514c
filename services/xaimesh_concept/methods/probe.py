"""LINEAR_PROBE: a fitted supervised linear probe stored as a concept model.

The probe is fitted by ``xaimesh_concept.probes.fit_probe`` (FitProbe, with
labels; docs/probes.md); FitConceptModel, which has no labels, is refused.
Whatever the probe method and normalisation, a fitted probe is an affine
map of the raw activations, so this class holds only that map:

* encode: s = x W + b (W [hidden, concepts], b [concepts]): the probe's
  score, > 0 meaning "the concept is present";
* dictionary: the unit directions W[:, j] / |W[:, j]| — the direction of
  concept j in activation space;
* decode: the minimum-norm activation with the given scores,
  (s - b) pinv(W), so encode(decode(s)) = s when W has full column rank.
"""

from __future__ import annotations

import numpy as np

from xaimesh_runtime.errors import FailedPrecondition

from .base import ConceptMethod, register


@register
class LinearProbe(ConceptMethod):
    method_name = "LINEAR_PROBE"
    supervised = True
    needs_rows_ge_concepts = False

    @classmethod
    def from_weights(cls, weight: np.ndarray, bias: np.ndarray) -> "LinearProbe":
        """A fitted probe from its raw-space weights [hidden, concepts] and intercepts [concepts]."""
        probe = cls(int(weight.shape[1]))
        probe._load_tensors({"weight": weight, "bias": bias}, {})
        probe.hidden_size_ = int(weight.shape[0])
        probe.fitted_ = True
        return probe

    def _fit(self, source, log, should_stop):
        raise FailedPrecondition("a LINEAR_PROBE is fitted from labels: use FitProbe (xaimesh LinearProbe.fit("
                                 "activations, labels)), not FitConceptModel", field="method")

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return X @ self.weight_ + self.bias_

    def _dictionary(self) -> np.ndarray:
        norms = np.linalg.norm(self.weight_, axis=0)
        return (self.weight_ / np.where(norms > 0, norms, 1.0)).T

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return (codes - self.bias_) @ self._pinv

    def _state_tensors(self) -> dict:
        return {"weight": self.weight_, "bias": self.bias_}

    def _load_tensors(self, tensors: dict, extra: dict) -> None:
        self.weight_ = np.asarray(tensors["weight"], np.float32)
        self.bias_ = np.asarray(tensors["bias"], np.float32)
        self._pinv = np.linalg.pinv(self.weight_.astype(np.float64)).astype(np.float32)
