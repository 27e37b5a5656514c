"""Concept encoders in closed form, for the model-server (GetConceptEncoder).

Inputs -> concepts attributions (docs/inputs-to-concepts.md) need each
concept's activation of perturbed inputs, and gradient methods need it to be
differentiable, so the model-server applies the encoder at the split point.
A fitted method's encoding is written as

    z = activation(x @ weight + bias)

with any standardisation (``standardize``) and centring folded into
weight and bias:

=====================  ===================================  ==========
method                 weight, bias                         activation
=====================  ===================================  ==========
PCA, SVD               components^T, -center @ components^T identity
ICA                    unmixing^T, -mean @ unmixing^T       identity
NEURONS_AS_CONCEPTS    identity, 0                          identity
LINEAR_PROBE           weight, bias                         identity
SAE_VANILLA            W_enc, b_enc - b_dec @ W_enc          relu
SAE_TOPK               same                                 top_k
SAE_BATCH_TOPK         same                                 jump_relu (one threshold)
SAE_JUMP_RELU          same                                 jump_relu (exp(log_theta))
=====================  ===================================  ==========

Methods whose codes come from an optimisation per row (the NMF family,
dictionary learning, sparse PCA) or a nearest-centroid assignment (KMeans)
have no such form: FailedPrecondition, naming the methods that have one.
Each entry reads the fitted method's state; the test checks every entry
against the method's own ``encode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from xaimesh_runtime.errors import FailedPrecondition

from .methods import ConceptMethod


@dataclass
class ClosedFormEncoder:
    weight: np.ndarray  # float32 [hidden, k]
    bias: np.ndarray  # float32 [k]
    activation: str  # "identity" | "relu" | "top_k" | "jump_relu"
    top_k: int = 0
    thresholds: np.ndarray | None = None  # float32 [k]


def _numpy(t) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype=np.float64)


def _affine(weight, center=None) -> tuple[np.ndarray, np.ndarray]:
    """(x - center) @ weight as (weight, bias)."""
    w = _numpy(weight)
    bias = np.zeros(w.shape[1]) if center is None else -_numpy(center) @ w
    return w, bias


def _sae(m) -> tuple[np.ndarray, np.ndarray]:
    weight, bias = _affine(m.W_enc, m.b_dec)
    return weight, bias + _numpy(m.b_enc)


# method name -> (weight, bias, activation, top_k, thresholds) of a fitted method
_FORMS: dict[str, Callable[[ConceptMethod], tuple]] = {
    "PCA": lambda m: (*_affine(m.components_.T, m.center_), "identity", 0, None),
    "SVD": lambda m: (*_affine(m.components_.T), "identity", 0, None),
    "ICA": lambda m: (*_affine(m.unmixing_.T, m.center_), "identity", 0, None),
    "NEURONS_AS_CONCEPTS": lambda m: (np.eye(m.hidden_size_), np.zeros(m.hidden_size_), "identity", 0, None),
    "LINEAR_PROBE": lambda m: (_numpy(m.weight_), _numpy(m.bias_), "identity", 0, None),
    "SAE_VANILLA": lambda m: (*_sae(m), "relu", 0, None),
    "SAE_TOPK": lambda m: (*_sae(m), "top_k", int(m.top_k), None),
    # inference: relu(pre) kept where > threshold, i.e. pre where pre > max(threshold, 0)
    "SAE_BATCH_TOPK": lambda m: (*_sae(m), "jump_relu", 0, np.full(m.nb_concepts, max(float(m.threshold_), 0.0))),
    "SAE_JUMP_RELU": lambda m: (*_sae(m), "jump_relu", 0, _numpy(m.log_theta.exp())),
}

#: The methods whose encoder the model-server can apply (and differentiate).
CLOSED_FORM_METHODS = tuple(sorted(_FORMS))


def closed_form_encoder(method: ConceptMethod) -> ClosedFormEncoder:
    """The fitted method's encoder as weight / bias / activation, standardisation folded in."""
    form = _FORMS.get(method.method_name)
    if form is None:
        raise FailedPrecondition(
            f"{method.method_name} encodes by solving an optimisation per row, which has no closed form the "
            "model-server can apply at the split point: inputs -> concepts attributions need one of "
            f"{', '.join(CLOSED_FORM_METHODS)} (docs/inputs-to-concepts.md)", field="name")
    weight, bias, activation, top_k, thresholds = form(method)
    if method.mean_ is not None:  # standardize: x' = (x - mean) / scale
        scale = np.asarray(method.scale_, np.float64)
        bias = bias - (np.asarray(method.mean_, np.float64) / scale) @ weight
        weight = weight / scale[:, None]
    return ClosedFormEncoder(np.ascontiguousarray(weight, np.float32), np.ascontiguousarray(bias, np.float32),
                             activation, top_k,
                             None if thresholds is None else np.ascontiguousarray(thresholds, np.float32))


__all__ = ["CLOSED_FORM_METHODS", "ClosedFormEncoder", "closed_form_encoder"]
