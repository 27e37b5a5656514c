"""Closed-form concept encoders (encoders.py, GetConceptEncoder): each equals
the method's own encode, standardisation included; optimisation-based
methods are refused with FAILED_PRECONDITION."""

from __future__ import annotations

import numpy as np
import pytest

from xaimesh_concept.encoders import CLOSED_FORM_METHODS, closed_form_encoder
from xaimesh_concept.methods import LinearProbe, build_method
from xaimesh_runtime.errors import FailedPrecondition

D, K = 12, 4


def _apply(form, X):
    pre = X.astype(np.float64) @ form.weight + form.bias
    if form.activation == "relu":
        return np.maximum(pre, 0)
    if form.activation == "top_k":
        out = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=1)[:, : form.top_k]
        rows = np.arange(len(pre))[:, None]
        out[rows, idx] = np.maximum(pre[rows, idx], 0)
        return out
    if form.activation == "jump_relu":
        return pre * (pre > form.thresholds)
    return pre


def _fitted(name, standardize):
    X = np.random.default_rng(0).normal(size=(300, D)).astype(np.float32) * 2 + 1
    if name == "LINEAR_PROBE":
        rng = np.random.default_rng(1)
        return LinearProbe.from_weights(rng.normal(size=(D, K)).astype(np.float32),
                                        rng.normal(size=K).astype(np.float32)), X
    k = D if name == "NEURONS_AS_CONCEPTS" else K
    options = {"seed": 0, "standardize": standardize}
    if name.startswith("SAE"):
        options.update(epochs=2, batch_size=64, learning_rate=1e-2)
        if name in ("SAE_TOPK", "SAE_BATCH_TOPK"):
            options["top_k"] = 2
    return build_method(name, k, options).fit(X), X


# A probe is fitted by FitProbe, whose normalisation is folded into its weights: no standardize option.
CASES = [(name, standardize) for name in CLOSED_FORM_METHODS for standardize in (False, True)
         if not (name == "LINEAR_PROBE" and standardize)]


@pytest.mark.parametrize("name,standardize", CASES)
def test_the_closed_form_equals_the_methods_encode(name, standardize):
    method, X = _fitted(name, standardize)
    form = closed_form_encoder(method)
    expected = method.encode(X).astype(np.float64)
    got = _apply(form, X)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    if name.startswith("SAE"):
        assert (expected != 0).any()  # the activation is exercised, not all-zero


@pytest.mark.parametrize("name", ["SEMI_NMF", "NMF", "DICTIONARY_LEARNING", "KMEANS"])
def test_optimisation_encoders_are_refused(name):
    X = np.abs(np.random.default_rng(0).normal(size=(60, D))).astype(np.float32)
    method = build_method(name, K, {"seed": 0, "max_iterations": 20}).fit(X)
    with pytest.raises(FailedPrecondition) as e:
        closed_form_encoder(method)
    assert "SAE_TOPK" in e.value.message and name in e.value.message
