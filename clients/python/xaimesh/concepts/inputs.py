"""Inputs -> concepts attributions: which input words switch a concept on.

`ConceptExplainer.input_concept_attribution` (docs/inputs-to-concepts.md):
the concept-service exports the fitted model's encoder in closed form
(GetConceptEncoder), and the attribution-service runs the chosen method on
the concepts' pooled activations, which the model-server reads at the
split point. One AttributionOutput per input, one row per concept; they
render with `plot_attributions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xaimesh_contracts.enums import to_number
from xaimesh_contracts.v1 import concept_pb2, tensor_pb2

if TYPE_CHECKING:
    from xaimesh.attributions.output import AttributionOutput
    from xaimesh.concepts.explainers import ConceptExplainer


def explainer_class(method: Any) -> type:
    """An attribution explainer class from itself or its name ("Occlusion", "integrated_gradients")."""
    from xaimesh.attributions import explainers

    if isinstance(method, type) and issubclass(method, explainers.AttributionExplainer) and method.spec is not None:
        return method
    if isinstance(method, str):
        key = method.replace("_", "").lower()
        for name in explainers.EXPLAINER_NAMES:
            if name.lower() == key:
                return getattr(explainers, name)
    raise ValueError(f"method must be an attribution explainer class or its name, one of "
                     f"{', '.join(explainers.EXPLAINER_NAMES)}; got {method!r}")


def fitted_model(concept_explainer: ConceptExplainer) -> Any:
    """The mesh's model the concepts were fitted on: the split model's, else the one its activations came from."""
    concept_explainer._require_fitted()
    split_model = concept_explainer.model_with_split_points
    if split_model is not None:
        return split_model.model
    return concept_explainer.mesh.model(concept_explainer._info().model or None)


def concept_encoder(concept_explainer: ConceptExplainer, concepts: Any = None, pooling: str = "max", *,
                    timeout: float | None = None) -> concept_pb2.GetConceptEncoderResponse:
    """GetConceptEncoder: the fitted model's encoder in closed form, for these concepts (None: all),
    and the concept model's record."""
    from xaimesh.concepts import _rpc

    name = concept_explainer._require_fitted()
    if concepts is None:
        indices: list[int] = []
    elif isinstance(concepts, int):
        indices = [int(concepts)]
    else:
        indices = [int(c) for c in concepts]
    request = concept_pb2.GetConceptEncoderRequest(
        name=name, concepts=indices, pooling=to_number(tensor_pb2.Aggregation, pooling, field="pooling"))
    return _rpc.concept_client(concept_explainer.mesh).call("GetConceptEncoder", request, timeout=timeout)


def input_concept_attribution(concept_explainer: ConceptExplainer, inputs: Any, method: Any = "Occlusion",
                              concepts: Any = None, *, pooling: str = "max", errors: str = "raise",
                              timeout: float | None = None, show_progress: bool = True,
                              **method_options: Any) -> list[AttributionOutput]:
    from xaimesh.attributions._calls import collect
    from xaimesh.attributions.explainers import _texts
    from xaimesh.attributions.output import AttributionOutput

    klass = explainer_class(method)
    exported = concept_encoder(concept_explainer, concepts, pooling, timeout=timeout)
    explainer = klass(fitted_model(concept_explainer), timeout=timeout, show_progress=show_progress,
                      **method_options)
    texts = _texts(inputs)
    request = explainer.request(texts, [None] * len(texts))
    request.concept_encoder.CopyFrom(exported.encoder)
    return collect(explainer.model.mesh.client("attribution"), "Explain", request, len(texts), what="input",
                   description=f"{type(explainer).__name__} -> concepts", show_progress=show_progress,
                   timeout=timeout, errors=errors, convert=lambda _, r: AttributionOutput.from_proto(r.attribution))
