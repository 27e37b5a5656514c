"""interpreto's splitters over the mesh: `ModelWithSplitPoints` (both API
generations), `SplitterForGeneration`, `SplitterForClassification` (heads
that read token states; pooled heads are refused with the reason) and
`AllLayersSplitter` (every block boundary in one forward).

API generation: constructed with ``split_points=`` (interpreto 0.4's
argument), a `ModelWithSplitPoints` behaves as 0.4's — several split points,
``get_activations`` returns ``{module_path: tensor}``; otherwise as 0.5.2's —
one split point (a list keeps its first element, with interpreto's warning),
``get_activations`` returns ``(activations, predictions)``.

Activations come back as torch tensors, as interpreto returns them; each
remembers the activation set the concept-service stores, so passing it back
unchanged to a concept explainer or metric uses the stored set.
"""

from __future__ import annotations

import warnings
from typing import Any

from xaimesh.split_model import ModelWithSplitPoints as NativeSplitModel

from ..._compat import (
    ActivationGranularity,
    GranularityAggregationStrategy,
    MeshPlacement,
    accept_noop,
    activations_tensor,
    member,
    refuse,
)

__all__ = ["AllLayersSplitter", "BaseSplitter", "ModelWithSplitPoints", "SplitterForClassification",
           "SplitterForGeneration"]

#: interpreto / nnsight loading arguments that mean nothing when the model-server holds the model.
_LOADING_NOOPS = ("automodel", "config", "batch_size", "device_map", "dispatch", "torch_dtype", "dtype",
                  "output_tuple_index", "trust_remote_code", "attn_implementation")


def _check_loading(who: str, args: tuple, kwargs: dict) -> None:
    if args:
        raise refuse(who, "*args", f"extra positional arguments {args!r} would go to nnsight's model loading, "
                     "which the model-server does (start it with --model for another model)")
    for name, value in kwargs.items():
        if name not in _LOADING_NOOPS:
            raise refuse(who, name, "not an argument the mesh can use: the model-server loads and places the "
                         f"model (accepted and ignored: {', '.join(_LOADING_NOOPS)})")
        accept_noop(who, name, value)


def _texts(inputs: Any, tokenizer: Any) -> list[str]:
    from ...attributions.base import _texts as texts_of

    texts = texts_of(inputs, tokenizer)
    return [texts] if isinstance(texts, str) else list(texts)


def _per_sample(tensor: Any, activation_set: Any, n_texts: int) -> list[Any]:
    """interpreto's flatten_activations=False: one tensor per input text."""
    rows = [p.sample_index for p in activation_set.provenance()]
    return [tensor[[i for i, s in enumerate(rows) if s == sample]] for sample in range(n_texts)]


class BaseSplitter(MeshPlacement):
    """What the compatible splitters share: the native split model and the
    activations as torch tensors."""

    activation_granularities = ActivationGranularity
    aggregation_strategies = GranularityAggregationStrategy

    def _build(self, who: str, model_or_repo_id: Any, split_points: list[Any], tokenizer: Any) -> None:
        self.native = NativeSplitModel(model_or_repo_id, tokenizer=tokenizer, split_points=split_points)
        self.model = self.native.model
        self.tokenizer = tokenizer if tokenizer is not None else self.model.tokenizer
        self._who = who

    def _module_path(self, split_point: Any) -> str:
        paths = list(self.model.info.split_points)
        key = str(split_point)
        return paths[int(key)] if key.lstrip("-").isdigit() else key

    def _activations(self, inputs: Any, granularity: Any, aggregation: Any, *, tqdm_bar: bool,
                     forward_kwargs: dict | None, flatten_activations: bool) -> dict[str, Any]:
        accept_noop(self._who, "tqdm_bar", tqdm_bar)  # the services' progress is shown when XAIMESH_PROGRESS allows
        if forward_kwargs:
            raise refuse(self._who, "forward_kwargs", "the model-server runs the forward pass; extra forward "
                         "arguments are not sent")
        texts = _texts(inputs, self.tokenizer)
        sets = self.native.get_activations(texts, activation_granularity=member(
            ActivationGranularity, granularity, "activation_granularity").name,
            aggregation_strategy=member(GranularityAggregationStrategy, aggregation, "aggregation_strategy").name,
            show_progress=bool(tqdm_bar))
        if not isinstance(sets, dict):
            sets = {self.native.split_points[0]: sets}
        out = {}
        for split_point, activation_set in sets.items():
            tensor = activations_tensor(activation_set)
            out[self._module_path(split_point)] = (tensor if flatten_activations
                                                   else _per_sample(tensor, activation_set, len(texts)))
        return out

    def _predictions(self, inputs: Any) -> Any:
        """The predicted class of each input (classifiers): argmax of the
        served model's class logits."""
        import numpy as np
        import torch

        from xaimesh_contracts.tensors import to_numpy
        from xaimesh_contracts.v1 import model_pb2

        if not self.model.is_classifier:
            raise refuse(self._who, "include_predicted_classes", f"only for classification models; "
                         f"{self.model.model_id!r} is a {self.model.info.architecture}")
        client = self.model.mesh.client("model")
        predicted = []
        for ids in self.model.tokenizer(_texts(inputs, self.tokenizer), add_special_tokens=True)["input_ids"]:
            response = client.call("Score", model_pb2.ScoreRequest(model=self.model.model_id, input_ids=ids))
            predicted.append(int(np.argmax(to_numpy(response.scores, field="scores")[0])))
        return torch.tensor(predicted, dtype=torch.long)

    def get_latent_shape(self, inputs: Any = None) -> Any:
        import torch

        del inputs
        return torch.Size([self.model.hidden_size])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.model_id!r}, split_points={self.native.split_points})"


class ModelWithSplitPoints(BaseSplitter):
    """interpreto's ModelWithSplitPoints (0.5.2 with ``split_point``, 0.4 with
    ``split_points``); the model is a Hugging Face model object with its
    tokenizer, a name or path, or a mesh handle."""

    def __init__(self, model_or_repo_id: Any, split_point: Any = None, *args: Any, split_points: Any = None,
                 automodel: Any = None, tokenizer: Any = None, config: Any = None, batch_size: int = 1,
                 device_map: Any = None, **kwargs: Any) -> None:
        _check_loading("ModelWithSplitPoints", args, {"automodel": automodel, "config": config,
                                                      "batch_size": batch_size, "device_map": device_map, **kwargs})
        if split_point is not None and split_points is not None:
            raise ValueError("Specify only one of `split_point` or deprecated `split_points`.")
        #: 0.4's API: several split points, dict returns keyed by module path.
        self.legacy_api = split_points is not None
        if self.legacy_api:
            points = list(split_points) if isinstance(split_points, (list, tuple)) else [split_points]
        else:
            if split_point is None:
                raise TypeError("Missing required argument `split_point`.")
            if isinstance(split_point, (list, tuple)):
                if not split_point:
                    raise ValueError("At least one split point must be provided.")
                if len(split_point) > 1:
                    warnings.warn("Multiple split points are deprecated. Only a single split point is supported. "
                                  f"Using the first element: '{split_point[0]}'.", DeprecationWarning, stacklevel=2)
                split_point = split_point[0]
            points = [split_point]
        self._build("ModelWithSplitPoints", model_or_repo_id, points, tokenizer)

    @property
    def split_point(self) -> str:
        return self._module_path(self.native.split_points[0])

    @property
    def split_points(self) -> list[str]:
        return [self._module_path(s) for s in self.native.split_points]

    def get_activations(self, inputs: Any, activation_granularity: Any = None, aggregation_strategy: Any =
                        GranularityAggregationStrategy.MEAN, pad_side: str | None = None, tqdm_bar: bool = False,
                        include_predicted_classes: bool = False, flatten_activations: bool = True,
                        forward_kwargs: dict | None = None, model_forward_kwargs: dict | None = None) -> Any:
        """0.5.2: ``(activations, predictions)``; 0.4: ``{module_path: activations}``."""
        if activation_granularity is None:
            raise TypeError("get_activations() missing required argument: 'activation_granularity' "
                            "(e.g. ModelWithSplitPoints.activation_granularities.TOKEN)")
        accept_noop("get_activations", "pad_side", pad_side)  # the model-server pads
        by_path = self._activations(inputs, activation_granularity, aggregation_strategy, tqdm_bar=tqdm_bar,
                                    forward_kwargs=forward_kwargs or model_forward_kwargs,
                                    flatten_activations=flatten_activations)
        predictions = self._predictions(inputs) if include_predicted_classes else None
        if self.legacy_api:
            if predictions is not None:
                by_path["predictions"] = predictions
            return by_path
        return next(iter(by_path.values())), predictions

    def get_split_activations(self, activations: dict[str, Any], split_point: str | None = None) -> Any:
        """0.4: the activations of one split point from get_activations' dict."""
        key = self._module_path(split_point) if split_point is not None else self.split_points[0]
        if key not in activations:
            raise ValueError(f"no activations for split point {key!r} (have {list(activations)})")
        return activations[key]


class SplitterForGeneration(BaseSplitter):
    """interpreto 0.5's SplitterForGeneration: the split point's output at
    every token of a causal LM, special tokens left out
    (``include_special_tokens=False``: TOKEN rows) or kept (ALL_TOKENS rows;
    padding never)."""

    def __init__(self, model_or_repo_id: Any, split_point: Any, *, automodel: Any = None, tokenizer: Any = None,
                 config: Any = None, batch_size: int = 1, device_map: Any = None, **kwargs: Any) -> None:
        _check_loading("SplitterForGeneration", (), {"automodel": automodel, "config": config,
                                                     "batch_size": batch_size, "device_map": device_map, **kwargs})
        self._build("SplitterForGeneration", model_or_repo_id, [split_point], tokenizer)
        if self.model.is_classifier or self.model.info.num_encoder_layers:
            raise TypeError("The provided model is not a causal language model. Please provide a model that "
                            "inherits from `transformers.*ForCausalLM` or `*LMHeadModel`.")

    @property
    def split_point(self) -> str:
        return self._module_path(self.native.split_points[0])

    def get_activations(self, inputs: Any, include_special_tokens: bool = False, flatten_activations: bool = True,
                        tqdm_bar: bool = False, forward_kwargs: dict | None = None, **kwargs: Any) -> tuple[Any, None]:
        if kwargs:
            raise refuse("SplitterForGeneration.get_activations", next(iter(kwargs)), "not an argument of "
                         "interpreto's SplitterForGeneration.get_activations")
        granularity = ActivationGranularity.ALL_TOKENS if include_special_tokens else ActivationGranularity.TOKEN
        by_path = self._activations(inputs, granularity, GranularityAggregationStrategy.MEAN, tqdm_bar=tqdm_bar,
                                    forward_kwargs=forward_kwargs, flatten_activations=flatten_activations)
        return next(iter(by_path.values())), None


#: interpreto's classification-head names, searched in this order.
_HEAD_NAMES = ("classifier", "classification_head", "score")


class SplitterForClassification(BaseSplitter):
    """interpreto 0.5.2's SplitterForClassification: the input of the
    classification head ("classifier", "classification_head" or "score", or
    ``split_point``), one row per text — the split point ``<head>.input`` on
    the model-server; when the head receives every token's state (RoBERTa,
    ELECTRA, decoder classifiers), interpreto's row: the first token's with a
    right-padding tokenizer, the last token's with a left-padding one.

    Heads that receive one pooled vector per text (BERT, DistilBERT,
    DeBERTa-v2, ModernBERT: the pooler's output) are refused: the
    model-server streams one row per token, and the pooled vector is not
    one of them."""

    def __init__(self, model_or_repo_id: Any, split_point: str | None = None, tokenizer: Any = None,
                 config: Any = None, batch_size: int = 1, device_map: Any = None, **kwargs: Any) -> None:
        from xaimesh.models import resolve_model

        _check_loading("SplitterForClassification", (), {"config": config, "batch_size": batch_size,
                                                         "device_map": device_map, **kwargs})
        self.model = resolve_model(model_or_repo_id, tokenizer, who="SplitterForClassification")
        self.tokenizer = tokenizer if tokenizer is not None else self.model.tokenizer
        self._who = "SplitterForClassification"
        if not self.model.is_classifier:
            raise ValueError("The provided model is not a sequence classification model. Please provide a model "
                             "that inherits from `transformers.ForSequenceClassification`.")
        self._split_point = self._find_head(_HEAD_NAMES if split_point is None else (str(split_point),),
                                            explicit=split_point is not None)
        # what concept explainers and probes tag their uploads with
        self.native = NativeSplitModel(self.model, tokenizer=self.tokenizer,
                                       split_points=[f"{self._split_point}.input"])

    def _head_rows(self, texts: list[str], head: str) -> list[Any]:
        """Per text, the rows [tokens, width] the head receives (ALL_TOKENS: special tokens included)."""
        from xaimesh.mesh import fetch_activations

        fetched = fetch_activations(self.model, texts, [f"{head}.input"], granularity="ALL_TOKENS",
                                    show_progress=False)[f"{head}.input"]
        samples = fetched.sample_index
        return [fetched.rows[[i for i, s in enumerate(samples) if s == n]] for n in range(len(texts))]

    def _find_head(self, names: tuple[str, ...], *, explicit: bool) -> str:
        from xaimesh.errors import InvalidArgumentError

        for name in names:
            try:
                self._head_rows(["scan"], name)
            except InvalidArgumentError as error:
                if "unknown split point" in str(error):
                    continue
                if "one row per token" in str(error):
                    raise refuse(self._who, "split_point", f"the head {name!r} of {self.model.model_id!r} receives "
                                 "one pooled vector per text (the pooler's output), and the model-server streams "
                                 "one row per token; use ModelWithSplitPoints(model, split_point=<last layer>, "
                                 "tokenizer=tokenizer) with activation_granularity=CLS_TOKEN for the [CLS] row "
                                 "the pooler reads") from None
                raise
            return name
        if explicit:
            raise ValueError(f"The provided classification head name {names[0]!r} is not valid.")
        raise ValueError("No classification head found in the model. Please specify the classification head name "
                         "using the `split_point` parameter.")

    @property
    def split_point(self) -> str:
        return self._split_point

    def inputs_to_activations(self, inputs: Any = None, **kwargs: Any) -> Any:
        """The head's input row of each text, [n, width] (interpreto's CLS-token extraction)."""
        import numpy as np
        import torch

        if kwargs:
            raise refuse(f"{self._who}.inputs_to_activations", next(iter(kwargs)), "the model-server runs the "
                         "forward pass; extra forward arguments are not sent")
        last = getattr(self.tokenizer, "padding_side", "right") == "left"
        rows = self._head_rows(_texts(inputs, self.tokenizer), self._split_point)
        return torch.from_numpy(np.stack([r[-1] if last else r[0] for r in rows]).astype(np.float32))

    def get_activations(self, inputs: Any, tqdm_bar: bool = False, forward_kwargs: dict | None = None,
                        **kwargs: Any) -> tuple[Any, Any]:
        """``(activations [n, width], predicted classes [n])``."""
        accept_noop(self._who, "tqdm_bar", tqdm_bar)
        del kwargs  # interpreto: "unused, kept for API compatibility"
        if forward_kwargs:
            raise refuse(self._who, "forward_kwargs", "the model-server runs the forward pass; extra forward "
                         "arguments are not sent")
        return self.inputs_to_activations(inputs), self._predictions(inputs)

    def activations_to_outputs(self, activations: Any) -> Any:
        raise refuse(self._who, "activations_to_outputs", "the classification head runs on the model-server, which "
                     "takes texts, not head inputs")

    def get_latent_shape(self, inputs: Any = None) -> Any:
        import torch

        del inputs
        return torch.Size([1, int(self.inputs_to_activations(["scan"]).shape[-1])])

    def __repr__(self) -> str:
        return f"SplitterForClassification({self.model.model_id!r}, split_point={self._split_point!r})"


class AllLayersSplitter(MeshPlacement):
    """interpreto 0.5.2's AllLayersSplitter: the residual stream entering the
    first block, then leaving every block — split points
    ``<first block>.input`` and every block, computed in one forward on the
    model-server and streamed back (every token, special tokens included).
    Names are interpreto's (nnsight's root "model." before the module path:
    ``model.transformer.h.0``); ``activation_names`` starts with the first
    block's ``.input``."""

    def __init__(self, model_or_repo_id: Any, *, automodel: Any = None, tokenizer: Any = None, config: Any = None,
                 device_map: Any = None, layer_path: str | None = None, **kwargs: Any) -> None:
        from xaimesh.models import resolve_model

        _check_loading("AllLayersSplitter", (), {"automodel": automodel, "config": config, "device_map": device_map,
                                                 **kwargs})
        self.model = resolve_model(model_or_repo_id, tokenizer, who="AllLayersSplitter")
        self.tokenizer = tokenizer if tokenizer is not None else self.model.tokenizer
        layers = list(self.model.info.split_points)
        if self.model.info.num_encoder_layers:
            raise refuse("AllLayersSplitter", "model_or_repo_id", f"{self.model.model_id!r} is an encoder-decoder: "
                         "its encoder and decoder blocks are two stacks, not one residual stream")
        served = layers[0].rsplit(".", 1)[0]
        if layer_path is not None and layer_path != served:
            raise refuse("AllLayersSplitter", "layer_path", f"the model-server found the blocks of "
                         f"{self.model.model_id!r} at {served!r}, not {layer_path!r}")
        self._layers = layers
        self.split_points = [f"model.{p}" for p in layers]

    @property
    def activation_names(self) -> list[str]:
        return [f"{self.split_points[0]}.input", *self.split_points]

    def get_activations(self, inputs: str) -> list[Any]:
        """One text -> the input of the first block, then every block's output,
        each ``(1, tokens, width)``."""
        import torch

        from xaimesh.mesh import fetch_activations

        if not isinstance(inputs, str):
            raise TypeError("AllLayersSplitter.get_activations takes one text (interpreto's signature); loop over "
                            "a list")
        points = [f"{self._layers[0]}.input", *self._layers]
        fetched = fetch_activations(self.model, [inputs], points, granularity="ALL_TOKENS", show_progress=False)
        return [torch.from_numpy(fetched[p].rows).unsqueeze(0) for p in points]

    def apply_head(self, activations: Any) -> Any:
        raise refuse("AllLayersSplitter", "apply_head", "the prediction head runs on the model-server, which does "
                     "not take residual states from the client; xaimesh.interpreto.LogitLens / TunedLens apply it "
                     "there")

    def __repr__(self) -> str:
        return f"AllLayersSplitter({self.model.model_id!r}, blocks={len(self._layers)})"
