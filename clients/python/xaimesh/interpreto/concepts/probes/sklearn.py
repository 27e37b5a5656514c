"""interpreto.concepts.probes.sklearn over the mesh: like interpreto, the
scikit-learn estimator runs in this process on the activations (as a
notebook's own LLM does, D9 of docs/interpreto-compat.md): it is the
user's own class, which the services cannot run."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._compat import mesh_activations
from .base import check_fit_shapes

__all__ = ["SklearnProbe", "SklearnProbeExplainer"]


def _rows(x: Any) -> np.ndarray:
    from xaimesh.split_model import ActivationSet

    x = mesh_activations(x)
    if isinstance(x, ActivationSet):
        return x.numpy()
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)


class SklearnProbe:
    """A scikit-learn classifier with `decision_function`; one binary concept."""

    nb_concepts = 1

    def __init__(self, sklearn_class: Any, sklearn_kwargs: dict[str, Any]) -> None:
        self.model = sklearn_class(**sklearn_kwargs)
        self.fitted = False

    def fit(self, X: Any, y: Any) -> None:  # noqa: N803 (interpreto's names)
        self.model.fit(_rows(X), np.asarray(y))
        self.fitted = True

    def encode(self, X: Any) -> Any:  # noqa: N803
        import torch

        if not self.fitted:
            raise RuntimeError("Model is not fitted or loaded (self.fitted is False).")
        return torch.from_numpy(np.asarray(self.model.decision_function(_rows(X)))).unsqueeze(1)


class SklearnProbeExplainer:
    def __init__(self, splitter: Any, sklearn_class: Any = None, sklearn_kwargs: dict[str, Any] | None = None) -> None:
        if sklearn_class is None:
            from sklearn.svm import SVC

            sklearn_class = SVC
        self.splitter = splitter
        self.concept_model = SklearnProbe(sklearn_class, dict(sklearn_kwargs or {}))

    @property
    def is_fitted(self) -> bool:
        return self.concept_model.fitted

    def fit(self, activations: Any, labels: Any) -> None:
        check_fit_shapes(activations, labels)
        self.concept_model.fit(activations, labels)

    def activations_to_concepts(self, activations: Any) -> Any:
        return self.concept_model.encode(activations)
