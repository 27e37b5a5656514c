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
    split_model = concept_explainer.model_with_split_points
    if split_model is None or not _unfitted_neurons(concept_explainer):
        concept_explainer._require_fitted()
    if split_model is not None:
        return split_model.model
    return concept_explainer.mesh.model(concept_explainer._info().model or None)


def concept_encoder(concept_explainer: ConceptExplainer, concepts: Any = None, pooling: str = "max", *,
                    timeout: float | None = None) -> concept_pb2.GetConceptEncoderResponse:
    """GetConceptEncoder: the fitted model's encoder in closed form, for these concepts (None: all),
    and the concept model's record."""
    from xaimesh.concepts import _rpc

    if concepts is None:
        indices: list[int] = []
    elif isinstance(concepts, int):
        indices = [int(concepts)]
    else:
        indices = [int(c) for c in concepts]
    pooling_number = to_number(tensor_pb2.Aggregation, pooling, field="pooling")
    if _unfitted_neurons(concept_explainer):
        return _neurons_encoder(concept_explainer, indices, pooling_number)
    request = concept_pb2.GetConceptEncoderRequest(name=concept_explainer._require_fitted(), concepts=indices,
                                                   pooling=pooling_number)
    return _rpc.concept_client(concept_explainer.mesh).call("GetConceptEncoder", request, timeout=timeout)


def _unfitted_neurons(concept_explainer: ConceptExplainer) -> bool:
    """NeuronsAsConcepts needs no fit for its encoder (interpreto uses it unfitted): the identity."""
    return concept_explainer.method == concept_pb2.CONCEPT_METHOD_NEURONS_AS_CONCEPTS and \
        not concept_explainer.is_fitted and concept_explainer.model_with_split_points is not None


def _neurons_encoder(concept_explainer: ConceptExplainer, indices: list[int],
                     pooling: int) -> concept_pb2.GetConceptEncoderResponse:
    """Every neuron of a layer's output is a concept: weight = I [hidden, hidden] (the model's hidden size;
    a module of another width is refused by the model-server with the widths)."""
    import numpy as np
    from xaimesh_contracts.tensors import to_tensor
    from xaimesh_contracts.v1 import model_pb2

    width = int(concept_explainer.model_with_split_points.model.info.hidden_size)
    encoder = model_pb2.ConceptEncoder(
        split_point=concept_explainer._split_point_str(), weight=to_tensor(np.eye(width, dtype=np.float32)),
        bias=to_tensor(np.zeros(width, np.float32)), activation=model_pb2.CONCEPT_ACTIVATION_IDENTITY,
        pooling=pooling, concepts=indices)
    return concept_pb2.GetConceptEncoderResponse(encoder=encoder)


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


def vocabulary_top_tokens(concept_explainer: ConceptExplainer, concepts: list[int] | None, k: int, *,
                          cls_token: bool = False, timeout: float | None = None) -> dict[int, dict[str, float] | None]:
    """TopKInputs(use_vocab=True): for each concept, the k vocabulary tokens
    whose activation is highest when each token runs alone through the model
    (``cls_token``: wrapped in the tokenizer's special tokens, the first
    position read), as ``{concept: {token text: activation}}``, highest
    first; a concept's list stops at the first zero activation (None when
    empty), as interpreto (docs/inputs-to-concepts.md, "Vocabulary")."""
    from xaimesh_contracts.v1 import model_pb2

    exported = concept_encoder(concept_explainer, concepts, "first" if cls_token else "max", timeout=timeout)
    model = fitted_model(concept_explainer)
    # tokens that decode alike (byte pieces) keep their best activation: ask for a few more
    request = model_pb2.VocabularyConceptsRequest(model=model.model_id, concept_encoder=exported.encoder,
                                                  k=min(2 * int(k), 1000), add_special_tokens=cls_token)
    response = model.mesh.client("model").call("VocabularyConcepts", request, timeout=timeout)
    out: dict[int, dict[str, float] | None] = {}
    for row in response.concepts:
        best: dict[str, float] = {}
        for text, value in zip(row.tokens, row.activations):
            if value == 0 or len(best) == k:
                break
            best.setdefault(text, float(value))
        out[int(row.concept)] = best or None
    return out
