"""interpreto.concepts.base over the mesh: `ModelForInputsToConcepts`, the
model a fitted concept explainer's ``get_inputs_to_concepts_model()``
returns, which interpreto's attribution classes take in place of a model
to explain concept activations (docs/inputs-to-concepts.md).

interpreto reads one vector per sample (the input of a classifier's head)
and runs perturbation methods only; the mesh encodes every position of a
layer's output and pools them (``pooling``, default "max"), for causal LMs
and classifiers, and gradient methods work too (docs/interpreto-compat.md).
"""

from __future__ import annotations

from typing import Any

from .._compat import warn_once

__all__ = ["ModelForInputsToConcepts"]


class ModelForInputsToConcepts:
    """Inputs -> concept activations of a fitted compatible concept explainer."""

    def __init__(self, concept_explainer: Any, pooling: str = "max") -> None:
        native = getattr(concept_explainer, "native", concept_explainer)
        if not native.is_fitted:
            raise RuntimeError(f"{type(concept_explainer).__name__} is not fitted; call fit() first")
        warn_once("ModelForInputsToConcepts", "xaimesh.interpreto: inputs -> concepts pools the concept "
                  f"activations of every position of the split point's output ({pooling!r}); interpreto reads the "
                  "classification head's input, one vector per sample; see docs/inputs-to-concepts.md")
        self.concept_explainer = concept_explainer
        self.native_concept_explainer = native
        self.pooling = pooling
        self.nb_concepts = native.nb_concepts_

    @property
    def remote_model(self) -> Any:
        """The mesh's model the concepts were fitted on."""
        from xaimesh.concepts.inputs import fitted_model

        return fitted_model(self.native_concept_explainer)

    def eval(self) -> ModelForInputsToConcepts:
        return self

    def __repr__(self) -> str:
        return f"ModelForInputsToConcepts({self.native_concept_explainer!r}, pooling={self.pooling!r})"
