"""interpreto.attributions.base over the mesh: `AttributionOutput` with
interpreto's fields, `ModelTask`, and the explainer base that turns
interpreto's arguments into a native explainer's options.

Each compatible explainer is a thin adapter: it builds the native
explainer (``xaimesh.attributions.X``) with interpreto's defaults, calls it,
and converts each native output into interpreto's `AttributionOutput`
(torch tensors; generation rows with NaN for the target elements not yet
generated, as interpreto 0.5.2 returns them; a single explained class as a
1-D row).
The native output stays in ``.xaimesh_output`` (plots, metrics, JSON).
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, Callable, ClassVar

from .._compat import (
    Granularity,
    GranularityAggregationStrategy,
    InferenceModes,
    MeshPlacement,
    accept_noop,
    member,
    native_aggregation,
    native_granularity,
    native_inference_mode,
    refuse,
)

__all__ = ["AttributionExplainer", "AttributionOutput", "InferenceModes", "ModelTask"]


class ModelTask(Enum):
    CLASSIFICATION = "classification"
    GENERATION = "generation"
    CONCEPTS = "concepts"


@dataclasses.dataclass
class AttributionOutput:
    """interpreto's AttributionOutput (same fields, same order)."""

    attributions: Any  # torch.Tensor: (l) one class, (c, l) classes, (l_g, l) generation
    elements: list[str]
    model_inputs_to_explain: dict[str, Any]
    targets: Any  # torch.Tensor
    model_task: ModelTask
    classes: Any = None
    granularity: Granularity = Granularity.DEFAULT
    granularity_aggregation_strategy: GranularityAggregationStrategy = GranularityAggregationStrategy.MEAN
    inference_mode: Callable = InferenceModes.LOGITS
    #: The native SDK's output this one was made from (plots, metrics, JSON).
    xaimesh_output: Any = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_native(cls, out: Any, granularity: Granularity, strategy: GranularityAggregationStrategy,
                    inference_mode: InferenceModes, scale: float = 1.0, concepts: bool = False) -> AttributionOutput:
        import numpy as np
        import torch

        values = out.attributions * np.float32(scale)  # NaN where a row does not cover an element, as interpreto
        if concepts:  # interpreto: (concepts, elements), targets the concept indices
            return cls(attributions=torch.from_numpy(values), elements=list(out.elements),
                       model_inputs_to_explain={"text": out.text},
                       targets=torch.tensor(out.target_classes, dtype=torch.long), model_task=ModelTask.CONCEPTS,
                       granularity=granularity, granularity_aggregation_strategy=strategy,
                       inference_mode=inference_mode, xaimesh_output=out)
        generation = out.task != "sequence_classification"
        if generation:
            attributions = torch.from_numpy(values)
            targets = torch.tensor(out.target_token_ids, dtype=torch.long)
        else:
            attributions = torch.from_numpy(values[0] if values.shape[0] == 1 else values)
            targets = torch.tensor(out.target_classes, dtype=torch.long)
        return cls(attributions=attributions, elements=list(out.elements), model_inputs_to_explain={"text": out.text},
                   targets=targets, model_task=ModelTask.GENERATION if generation else ModelTask.CLASSIFICATION,
                   granularity=granularity, granularity_aggregation_strategy=strategy, inference_mode=inference_mode,
                   xaimesh_output=out)

    def to_native(self) -> Any:
        """The native output with this output's attributions (which a user
        may have changed): what the mesh's metrics and plots take."""
        import numpy as np

        if self.xaimesh_output is None:
            raise TypeError("this AttributionOutput was not made by an xaimesh.interpreto explainer: the mesh's "
                            "metrics and plots need the explained text and its elements")
        native = self.xaimesh_output
        values = np.asarray(self.attributions.detach().cpu().numpy() if hasattr(self.attributions, "detach")
                            else self.attributions, dtype=np.float32)
        values = values.reshape(native.attributions.shape)
        values = np.where(np.isnan(native.attributions), np.nan, values)  # cells a row does not cover
        return dataclasses.replace(native, attributions=values)


def _values(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


class AttributionExplainer(MeshPlacement):
    """Base of the compatible explainers: interpreto's common arguments."""

    #: The native explainer class (xaimesh.attributions).
    native_class: ClassVar[type]
    #: Gradient methods reduce the hidden dimension (interpreto: mean |.| over it).
    gradient: ClassVar[bool] = False

    def _setup(self, model: Any, tokenizer: Any, *, batch_size: int, granularity: Any,
               granularity_aggregation_strategy: Any, inference_mode: Any, device: Any,
               **native_options: Any) -> None:
        who = type(self).__name__
        accept_noop(who, "batch_size", batch_size)  # the model-server batches across callers
        accept_noop(who, "device", device)  # placement is the model-server's
        self.tokenizer = tokenizer
        self.granularity = member(Granularity, granularity, "granularity")
        self.granularity_aggregation_strategy = member(GranularityAggregationStrategy,
                                                       granularity_aggregation_strategy,
                                                       "granularity_aggregation_strategy")
        self.inference_mode = member(InferenceModes, inference_mode, "inference_mode")
        options = {"granularity": native_granularity(self.granularity),
                   "inference_mode": native_inference_mode(self.inference_mode), **native_options}
        if self.gradient:
            options["aggregation"] = native_aggregation(self.granularity_aggregation_strategy)
        #: A ModelForInputsToConcepts: explain its concepts' activations (interpreto's
        #: InputsToConceptsAttributionsExplainer), the options going to input_concept_attribution.
        self.concepts_model = model if hasattr(model, "native_concept_explainer") else None
        if self.concepts_model is not None:
            if self.inference_mode is not InferenceModes.LOGITS:
                raise refuse(who, "inference_mode", "concept activations are explained as they are: leave "
                             "inference_mode at LOGITS")
            del options["inference_mode"]
            model = self.concepts_model.remote_model
        self._native_options = _values(options)
        self.native = self.native_class(model, tokenizer, **self._native_options)
        self.model = self.native.model

    #: Factor applied to the native values (1/hidden size where the mesh's
    #: sum over the hidden dimension is interpreto's mean).
    def _scale(self) -> float:
        return 1.0

    def explain(self, model_inputs: Any, targets: Any = None) -> list[AttributionOutput]:
        """interpreto's explain: one AttributionOutput per input."""
        texts = _texts(model_inputs, self.tokenizer)
        if self.concepts_model is not None:  # targets: concept indices (None: every concept)
            from xaimesh.concepts.inputs import input_concept_attribution

            outs = input_concept_attribution(self.concepts_model.native_concept_explainer, texts, self.native_class,
                                             _targets(targets, self.tokenizer), pooling=self.concepts_model.pooling,
                                             show_progress=self.native.show_progress, **self._native_options)
        else:
            outs = self.native(texts, _targets(targets, self.tokenizer))
        return [AttributionOutput.from_native(o, self.granularity, self.granularity_aggregation_strategy,
                                              self.inference_mode, self._scale(),
                                              concepts=self.concepts_model is not None) for o in outs]

    def __call__(self, model_inputs: Any, targets: Any = None, **kwargs: Any) -> list[AttributionOutput]:
        if kwargs:
            raise TypeError(f"{type(self).__name__}() takes model_inputs and targets; got {', '.join(kwargs)}")
        return self.explain(model_inputs, targets)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(over {self.native!r})"


def _decode(ids: Any, tokenizer: Any) -> str:
    if tokenizer is None or not hasattr(tokenizer, "decode"):
        raise TypeError("token-id inputs need the tokenizer they were made with (the mesh explains texts)")
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)


def _texts(model_inputs: Any, tokenizer: Any) -> Any:
    """interpreto's ModelInputs as the texts the mesh explains: a text, a list
    of texts, or token ids / a BatchEncoding (decoded with the user's tokenizer)."""
    if isinstance(model_inputs, str):
        return model_inputs
    if hasattr(model_inputs, "keys") and "input_ids" in model_inputs:
        model_inputs = model_inputs["input_ids"]
    if hasattr(model_inputs, "tolist") and not isinstance(model_inputs, list):
        model_inputs = model_inputs.tolist()
        if model_inputs and isinstance(model_inputs[0], int):
            model_inputs = [model_inputs]
        return [_decode(ids, tokenizer) for ids in model_inputs]
    if isinstance(model_inputs, (list, tuple)):
        return [m if isinstance(m, str) else _texts(m, tokenizer)[0] for m in model_inputs]
    raise TypeError(f"model_inputs: a text, a list of texts or token ids, not {type(model_inputs).__name__}")


def _targets(targets: Any, tokenizer: Any) -> Any:
    """interpreto's targets for the native call: texts stay texts, tensors become lists."""
    del tokenizer
    if targets is None or isinstance(targets, str):
        return targets
    if hasattr(targets, "tolist"):
        return targets.tolist()
    if isinstance(targets, (list, tuple)):
        return [t.tolist() if hasattr(t, "tolist") else t for t in targets]
    return targets
