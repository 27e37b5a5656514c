"""LINEAR_PROBE and CENTROID_PROBE: fitted supervised probes stored as concept models.

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

from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

from .base import ConceptMethod, register


class _StoredProbe(ConceptMethod):
    """What LINEAR_PROBE and CENTROID_PROBE share: fitted from labels by
    FitProbe, never by FitConceptModel (which has none)."""

    supervised = True
    needs_rows_ge_concepts = False
    sdk_class = ""  # the SDK class whose fit(activations, labels) fits it

    def _fit(self, source, log, should_stop):
        raise FailedPrecondition(f"a {self.method_name} is fitted from labels: use FitProbe (xaimesh "
                                 f"{self.sdk_class}.fit(activations, labels)), not FitConceptModel", field="method")


@register
class LinearProbe(_StoredProbe):
    method_name = "LINEAR_PROBE"
    sdk_class = "LinearProbe"

    @classmethod
    def from_weights(cls, weight: np.ndarray, bias: np.ndarray) -> "LinearProbe":
        """A fitted probe from its raw-space weights [hidden, concepts] and intercepts [concepts]."""
        probe = cls(int(weight.shape[1]))
        probe._load_tensors({"weight": weight, "bias": bias}, {})
        probe.hidden_size_ = int(weight.shape[0])
        probe.fitted_ = True
        return probe

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


#: The similarities of CENTROID_PROBE (FitProbe's PROBE_METHOD_CENTROID_<metric>).
CENTROID_METRICS = ("DOT_PRODUCT", "COSINE", "SQ_L2", "DIAGONAL_MAHALANOBIS", "SVDD")
_EPS = 1e-8


def centroid_similarity(metric: str, xn: np.ndarray, centroids: np.ndarray, inv_var: np.ndarray) -> np.ndarray:
    """The raw (unbiased) score [n, concepts] of normalised rows xn [n, d]
    against centroids [concepts, d] (interpreto 0.5.2's centroid probes;
    `inv_var` [concepts, d] is used by DIAGONAL_MAHALANOBIS only; COSINE
    centroids are unit vectors already)."""
    if metric == "DOT_PRODUCT":
        return xn @ centroids.T
    if metric == "COSINE":
        return (xn / np.maximum(np.linalg.norm(xn, axis=1, keepdims=True), _EPS)) @ centroids.T
    if metric == "DIAGONAL_MAHALANOBIS":
        diff = xn[:, None, :] - centroids[None, :, :]
        return -(diff * diff * inv_var[None]).sum(-1)
    # SQ_L2, SVDD: minus the squared distance
    return -((xn * xn).sum(1, keepdims=True) + (centroids * centroids).sum(1)[None, :] - 2.0 * xn @ centroids.T)


@register
class CentroidProbe(_StoredProbe):
    """A fitted centroid probe (probes.py fits it; docs/probes.md):

    * encode: s_j = similarity((x - m) M, c_j) + b_j, the metric one of
      CENTROID_METRICS (m, M the probe's normalisation);
    * dictionary: the unit direction from the mean of the training rows to
      concept j's centroid, in raw activation space;
    * decode: none — a score is a similarity to a point, not a coordinate
      along a direction (FAILED_PRECONDITION).
    """

    method_name = "CENTROID_PROBE"
    sdk_class = "CentroidProbe"

    @classmethod
    def from_fit(cls, metric: str, mean: np.ndarray, transform: np.ndarray, centroids: np.ndarray,
                 inv_var: np.ndarray, bias: np.ndarray, raw_centroids: np.ndarray, train_mean: np.ndarray
                 ) -> "CentroidProbe":
        """`mean`, `transform`: the normalisation x' = (x - mean) transform; `raw_centroids` the centroids in
        activation space and `train_mean` the training rows' mean (for the dictionary)."""
        probe = cls(int(centroids.shape[0]))
        probe._load_tensors({"mean": mean, "transform": transform, "centroids": centroids, "inv_var": inv_var,
                             "bias": bias, "raw_centroids": raw_centroids, "train_mean": train_mean},
                            {"metric": metric})
        probe.hidden_size_ = int(mean.shape[0])
        probe.fitted_ = True
        return probe

    def _encode(self, X: np.ndarray) -> np.ndarray:
        xn = (X.astype(np.float64) - self.center_) @ self.transform_
        return centroid_similarity(self.metric_, xn, self.centroids_, self.inv_var_) + self.bias_

    def _dictionary(self) -> np.ndarray:
        d = self.raw_centroids_ - self.train_mean_
        norms = np.linalg.norm(d, axis=1, keepdims=True)
        return (d / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        raise FailedPrecondition(f"a CENTROID_PROBE ({self.metric_}) has no decoder: its scores are similarities "
                                 "to centroids, not coordinates along directions", field="concept_model")

    def _state_extra(self) -> dict:
        return {"metric": self.metric_}

    def _state_tensors(self) -> dict:
        return {"mean": self.center_, "transform": self.transform_, "centroids": self.centroids_,
                "inv_var": self.inv_var_, "bias": self.bias_, "raw_centroids": self.raw_centroids_,
                "train_mean": self.train_mean_}

    def _load_tensors(self, tensors: dict, extra: dict) -> None:
        metric = extra.get("metric")
        if metric not in CENTROID_METRICS:
            raise InvalidArgument(f"unknown centroid metric {metric!r}; known: {list(CENTROID_METRICS)}",
                                  field="data")
        t = {k: np.asarray(tensors[k], np.float64) for k in ("mean", "transform", "centroids", "inv_var", "bias",
                                                              "raw_centroids", "train_mean")}
        c, d = self.nb_concepts, t["mean"].shape[0] if t["mean"].ndim == 1 else -1
        shapes = {"mean": (d,), "transform": (d, d), "centroids": (c, d), "inv_var": (c, d), "bias": (c,),
                  "raw_centroids": (c, d), "train_mean": (d,)}
        bad = [k for k, shape in shapes.items() if t[k].shape != shape]
        if d < 1 or bad:
            raise InvalidArgument(f"the CENTROID_PROBE tensors {bad or ['mean']} do not fit {c} concepts of width {d}",
                                  field="data")
        self.metric_ = metric
        self.center_, self.transform_, self.centroids_ = t["mean"], t["transform"], t["centroids"]
        self.inv_var_, self.bias_, self.raw_centroids_ = t["inv_var"], t["bias"], t["raw_centroids"]
        self.train_mean_ = t["train_mean"]
