"""Concept explainers: concept models fitted and run by the concept-service.

    concepts = SemiNMFConcepts(split_model, nb_concepts=20)
    concepts.fit(activations)                 # an ActivationSet handle (or an array: uploaded first)
    codes = concepts.encode_activations(activations)      # numpy [rows, 20]
    recon = concepts.decode_concepts(codes)                # numpy [rows, hidden]
    concepts.get_dictionary()                              # numpy [20, hidden]
    concepts.concept_model_                                # "conceptModels/{id}"
    SemiNMFConcepts.load(mesh, concepts.concept_model_)    # later, elsewhere
    concepts.export("concepts.safetensors"); SemiNMFConcepts.load_file(mesh, "concepts.safetensors")

Scikit-learn style: the parameters are set in ``__init__``; what ``fit``
learns ends with an underscore (``concept_model_``, ``training_log_``,
``hidden_size_``, ``final_loss_``...). The options are the fields of
``ConceptFitOptions`` that apply to the method (unset = the service's
default). ``LinearProbe`` is fitted from labels too
(``probe.fit(activations, labels)``, docs/probes.md).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from xaimesh.concepts import _rpc
from xaimesh_contracts.v1 import concept_pb2

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "BatchTopKSAEConcepts", "ConceptExplainer", "ConvexNMFConcepts", "DictionaryLearningConcepts",
    "ICAConcepts", "JumpReLUSAEConcepts", "KMeansConcepts", "MatryoshkaSAEConcepts", "MpSAEConcepts",
    "NMFConcepts", "NeuronsAsConcepts",
    "PCAConcepts", "SVDConcepts", "SemiNMFConcepts", "SparsePCAConcepts", "TopKSAEConcepts",
    "VanillaSAEConcepts", "list_concept_models", "load_file",
]

# ConceptFitOptions field -> type (device is a constructor argument of its own).
OPTION_TYPES: dict[str, type] = {
    "seed": int, "max_iterations": int, "tolerance": float, "relu_negative_inputs": bool, "epochs": int,
    "batch_size": int, "learning_rate": float, "top_k": int, "l1_coefficient": float,
    "jump_threshold": float, "jump_bandwidth": float, "alpha": float, "standardize": bool,
    "loss": concept_pb2.SaeLoss, "optimizer": concept_pb2.SaeOptimizer, "scheduler": concept_pb2.SaeScheduler,
    "weight_decay": float, "clip_grad": float, "warmup_steps": int, "log_every_steps": int,
    "matryoshka_prefixes": list,
}
#: Integer options where 0 means "none" rather than "the default".
_ZERO_OK = ("seed", "warmup_steps", "log_every_steps")
# Names other toolkits use for the same options.
ALIASES = {
    "force_relu": "relu_negative_inputs", "random_state": "seed", "max_iter": "max_iterations",
    "n_iter": "max_iterations", "tol": "tolerance", "lr": "learning_rate", "n_epochs": "epochs",
    "nb_epochs": "epochs", "k": "top_k", "l1_coeff": "l1_coefficient", "l1": "l1_coefficient",
    "threshold": "jump_threshold", "bandwidth": "jump_bandwidth", "criterion": "loss",
}
_COMMON = ("seed", "standardize")
_ITERATIVE = _COMMON + ("max_iterations", "tolerance")
_SAE = _COMMON + ("epochs", "batch_size", "learning_rate", "loss", "optimizer", "scheduler", "weight_decay",
                  "clip_grad", "warmup_steps", "log_every_steps")


class ConceptExplainer:
    """Base class of the concept explainers (use a subclass).

    ``split_model_or_model``: a ``ModelWithSplitPoints`` (its split point is
    used; pass ``split_point`` when it has several), a remote model or a
    mesh. ``device``: where the service fits ("cpu", "cuda", "cuda:1";
    ``None`` = its default). ``options``: see the class's ``OPTIONS``.
    """

    method: ClassVar[int] = concept_pb2.CONCEPT_METHOD_UNSPECIFIED
    #: The ConceptFitOptions fields this method takes.
    OPTIONS: ClassVar[tuple[str, ...]] = _COMMON
    #: True when nb_concepts may be left out (taken from the data).
    nb_concepts_optional: ClassVar[bool] = False

    def __init__(self, split_model_or_model: Any, nb_concepts: int | None = None, split_point: Any = None,
                 device: str | None = None, *, display_name: str = "", show_progress: bool = True,
                 timeout: float | None = None, **options: Any):
        if type(self) is ConceptExplainer:
            raise TypeError("ConceptExplainer is abstract: use SemiNMFConcepts, PCAConcepts, ... "
                            "(or ConceptExplainer.load(mesh, name))")
        self.mesh = _rpc.mesh_of(split_model_or_model)
        self.model_with_split_points = _split_model(split_model_or_model)
        if nb_concepts is None:
            if not self.nb_concepts_optional:
                raise TypeError(f"{type(self).__name__} needs nb_concepts")
            nb_concepts = 0
        if isinstance(nb_concepts, bool) or not isinstance(nb_concepts, int) and not hasattr(nb_concepts, "__index__"):
            raise TypeError(f"nb_concepts must be an integer, not {nb_concepts!r}")
        nb_concepts = int(nb_concepts)
        if nb_concepts < (0 if self.nb_concepts_optional else 1):
            raise ValueError(f"nb_concepts must be >= 1, got {nb_concepts}")
        self.nb_concepts = nb_concepts
        self.split_point = self._pick_split_point(split_point)
        self.device = device or None
        self.display_name = display_name
        self.show_progress = show_progress
        self.timeout = timeout
        self.options = self._check_options(options)
        self._reset_fitted()

    # -- parameters -------------------------------------------------------
    def _reset_fitted(self) -> None:
        self.concept_model_: str | None = None
        self.concept_model_info_: concept_pb2.ConceptModel | None = None
        self.training_log_: list[dict] = []

    def _pick_split_point(self, split_point: Any) -> Any:
        sm = self.model_with_split_points
        if sm is None:
            return split_point
        points = sm.split_points
        if split_point is None:
            if len(points) == 1:
                return points[0]
            raise ValueError(f"the model has several split points {points}; say which one to explain "
                             "(split_point=...)")
        if split_point in points or str(split_point) in [str(p) for p in points]:
            return split_point
        raise ValueError(f"split point {split_point!r} is not one of the model's split points {points}")

    @classmethod
    def _check_options(cls, options: dict) -> dict:
        out: dict[str, Any] = {}
        for key, value in options.items():
            name = ALIASES.get(key, key)
            if name not in OPTION_TYPES:
                raise TypeError(f"{cls.__name__} got an unknown option {key!r}; it takes {list(cls.OPTIONS)}")
            if name not in cls.OPTIONS:
                raise TypeError(f"{cls.__name__} does not take option {key!r}; it takes {list(cls.OPTIONS)}")
            if value is None:
                continue
            kind = OPTION_TYPES[name]
            if kind is bool:
                value = bool(value)
            elif kind is list:
                if isinstance(value, (str, bytes)) or not all(
                        not isinstance(v, bool) and int(v) == v for v in value):
                    raise TypeError(f"option {key} must be a list of integers, got {value!r}")
                value = [int(v) for v in value]
            elif not isinstance(kind, type):  # a contract enum: "cosine", "SAE_SCHEDULER_COSINE" or its number
                from xaimesh_contracts.enums import short_names, to_number

                try:
                    value = to_number(kind, value, field=key)
                except ValueError:
                    raise ValueError(f"option {key} must be one of {short_names(kind)}, got {value!r}") from None
            elif kind is int:
                if isinstance(value, bool) or int(value) != value:
                    raise TypeError(f"option {key} must be an integer, got {value!r}")
                value = int(value)
                low = 0 if name in _ZERO_OK else 1
                if value < low:
                    raise ValueError(f"option {key} must be >= {low}, got {value}")
            else:
                value = float(value)
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"option {key} must be a finite number >= 0, got {value}")
            out[name] = value
        return out

    def get_params(self) -> dict:
        """The constructor parameters (scikit-learn style)."""
        return {"nb_concepts": self.nb_concepts, "split_point": self.split_point, "device": self.device,
                **self.options}

    def set_params(self, **params: Any) -> ConceptExplainer:
        for key in ("nb_concepts", "split_point", "device"):
            if key in params:
                value = params.pop(key)
                if key == "split_point":
                    value = self._pick_split_point(value)
                setattr(self, key, value)
        self.options.update(self._check_options(params))
        return self

    def _fit_options(self) -> concept_pb2.ConceptFitOptions:
        from xaimesh_contracts.enums import to_number

        # enum options of a loaded model are the names its options_json holds ("COSINE")
        options = {name: value if isinstance(OPTION_TYPES[name], type) else to_number(OPTION_TYPES[name], value)
                   for name, value in self.options.items()}
        return concept_pb2.ConceptFitOptions(device=self.device or "", **options)

    # -- fitted state -----------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.concept_model_ is not None

    def __sklearn_is_fitted__(self) -> bool:
        return self.is_fitted

    def _info(self) -> concept_pb2.ConceptModel:
        if self.concept_model_info_ is None:
            raise RuntimeError(f"this {type(self).__name__} is not fitted; call fit() first")
        return self.concept_model_info_

    @property
    def concept_model(self) -> str | None:
        """The fitted model's resource name (alias of ``concept_model_``)."""
        return self.concept_model_

    @property
    def id(self) -> str:
        return self._info().id

    @property
    def hidden_size_(self) -> int:
        return int(self._info().hidden_size)

    @property
    def nb_concepts_(self) -> int:
        return int(self._info().nb_concepts)

    @property
    def final_loss_(self) -> float:
        return float(self._info().final_loss)

    @property
    def fit_seconds_(self) -> float:
        return float(self._info().fit_seconds)

    @property
    def device_(self) -> str:
        return self._info().device

    @property
    def options_(self) -> dict:
        """The options the service used (defaults filled)."""
        text = self._info().options_json
        return json.loads(text) if text else {}

    @property
    def activation_set_(self) -> str:
        """The set the model was fitted on ("activationSets/{id}")."""
        return self._info().activation_set

    def __repr__(self) -> str:
        state = f"concept_model_={self.concept_model_!r}" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}(nb_concepts={self.nb_concepts}, split_point={self.split_point!r}, {state})"

    def _client(self):
        return _rpc.concept_client(self.mesh)

    def _require_fitted(self) -> str:
        if not self.is_fitted:
            raise RuntimeError(f"this {type(self).__name__} is not fitted; call fit() first")
        return self.concept_model_  # type: ignore[return-value]

    # -- fit --------------------------------------------------------------
    def fit(self, activations: Any, *, display_name: str | None = None, show_progress: bool | None = None,
            timeout: float | None = None) -> ConceptExplainer:
        """Fit on ``activations``: an ActivationSet handle (or
        ``{split_point: handle}``), or a numpy / torch array [rows, hidden]
        (uploaded first). Shows a progress bar; keeps the training log in
        ``training_log_``. Returns ``self``."""
        show = self.show_progress if show_progress is None else show_progress
        timeout = timeout if timeout is not None else self.timeout
        resolved = _rpc.resolve_activations(activations, self.split_point, self.mesh)
        uploaded = None
        if not _rpc._is_set(resolved):
            uploaded = _rpc.upload_activations(self.mesh, resolved, display_name="uploaded for a fit",
                                               model=self._model_id(), split_point=self._split_point_str(),
                                               timeout=timeout)
            resolved = uploaded
        request = concept_pb2.FitConceptModelRequest(
            activation_set=resolved.name, method=self.method, nb_concepts=self.nb_concepts,
            options=self._fit_options(), display_name=display_name if display_name is not None else
            (self.display_name or f"{type(self).__name__}({self.nb_concepts})"))
        log: list[dict] = []
        model = None
        for event in self._client().stream("FitConceptModel", request, timeout=timeout, show_progress=show,
                                           description=f"fitting {type(self).__name__}"):
            kind = event.WhichOneof("event")
            if kind == "log":
                log.append(_log_entry(event.log))
            elif kind == "model":
                model = event.model
        if model is None:
            raise RuntimeError("the concept-service ended the fit without returning the model")
        self.concept_model_info_ = model
        self.concept_model_ = model.name
        self.training_log_ = log
        return self

    @property
    def training_log(self) -> list[dict]:
        """The training log streamed by the last fit (alias of ``training_log_``):
        dicts with ``kind`` ("epoch", "step", "final"), ``epoch``, ``step``,
        ``loss``, ``learning_rate`` and ``values`` (the loss's components,
        ``l0``, ``dead_fraction``...). The "final" entry is the fitted model
        evaluated on every row; its loss is ``final_loss_``."""
        return self.training_log_

    def _model_id(self) -> str:
        sm = self.model_with_split_points
        return sm.model.model_id if sm is not None else ""

    def _split_point_str(self) -> str:
        return "" if self.split_point is None else str(self.split_point)

    # -- encode / decode --------------------------------------------------
    def encode_activations(self, activations: Any, *, timeout: float | None = None) -> np.ndarray:
        """Concept activations [rows, nb_concepts] (float32 numpy) of an
        ActivationSet (computed where it is stored) or of an array."""
        import numpy as np

        from xaimesh_contracts.tensors import iter_row_slices, to_numpy, to_tensor

        name = self._require_fitted()
        timeout = timeout if timeout is not None else self.timeout
        k = self.nb_concepts_
        resolved = _rpc.resolve_activations(activations, self.split_point, self.mesh)
        client = self._client()
        if _rpc._is_set(resolved):
            out = np.empty((len(resolved), k), np.float32)
            request = concept_pb2.EncodeRequest(concept_model=name, source=concept_pb2.ActivationSource(
                activation_set=concept_pb2.ActivationSetRange(name=resolved.name)), chunk_bytes=4 << 20)
            for msg in client.stream("Encode", request, timeout=timeout, show_progress=False):
                codes = to_numpy(msg.codes, field="codes")
                out[msg.row_start:msg.row_start + codes.shape[0]] = codes
            return out
        out = np.empty((resolved.shape[0], k), np.float32)
        for start, piece in iter_row_slices(resolved, _rpc.INLINE_BYTES):
            request = concept_pb2.EncodeRequest(concept_model=name, source=concept_pb2.ActivationSource(
                tensor=to_tensor(piece)), chunk_bytes=4 << 20)
            for msg in client.stream("Encode", request, timeout=timeout, show_progress=False):
                codes = to_numpy(msg.codes, field="codes")
                out[start + msg.row_start:start + msg.row_start + codes.shape[0]] = codes
        return out

    def decode_concepts(self, concepts: Any, *, timeout: float | None = None) -> np.ndarray:
        """Reconstructions [rows, hidden] (float32 numpy) of concept
        activations [rows, nb_concepts]."""
        import numpy as np

        from xaimesh_contracts.tensors import iter_row_slices, to_numpy, to_tensor

        name = self._require_fitted()
        timeout = timeout if timeout is not None else self.timeout
        codes = _rpc.as_array(concepts).astype(np.float32, copy=False)
        if codes.ndim == 1:
            codes = codes[None, :]
        if codes.ndim != 2 or codes.shape[1] != self.nb_concepts_:
            raise ValueError(f"concepts must be [rows, {self.nb_concepts_}]; got shape {tuple(codes.shape)}")
        out = np.empty((codes.shape[0], self.hidden_size_), np.float32)
        client = self._client()
        for start, piece in iter_row_slices(codes, _rpc.INLINE_BYTES):
            request = concept_pb2.DecodeRequest(concept_model=name, codes=to_tensor(piece), chunk_bytes=4 << 20)
            for msg in client.stream("Decode", request, timeout=timeout, show_progress=False):
                rec = to_numpy(msg.reconstructions, field="reconstructions")
                out[start + msg.row_start:start + msg.row_start + rec.shape[0]] = rec
        return out

    def get_dictionary(self, *, timeout: float | None = None) -> np.ndarray:
        """The dictionary [nb_concepts, hidden] (float32 numpy): concept i is row i."""
        from xaimesh_contracts.tensors import ChunkAssembler

        name = self._require_fitted()
        asm = ChunkAssembler(field="dictionary")
        for msg in self._client().stream("GetDictionary", concept_pb2.GetDictionaryRequest(concept_model=name),
                                         timeout=timeout or self.timeout, show_progress=False):
            asm.add(msg.chunk)
        return asm.numpy()

    def top_examples(self, activations: Any, concept_indices: Any = None, **kwargs: Any):
        """GetTopExamples on a stored set: ``ConceptExamples`` messages (see
        :func:`xaimesh.concepts._rpc.iter_top_examples` for the arguments)."""
        self._require_fitted()
        return list(_rpc.iter_top_examples(self, activations, concept_indices, **kwargs))

    # -- concepts to outputs ---------------------------------------------
    def _remote_model(self, what: str):
        self._require_fitted()
        sm = self.model_with_split_points
        if sm is None:
            raise ValueError(f"{what} needs the model: build the explainer from a ModelWithSplitPoints or a "
                             "remote model")
        return sm.model

    def _affine_decoder(self, timeout: float | None) -> tuple[np.ndarray, np.ndarray]:
        """(D [concepts, hidden], offset [hidden]) with decode(c) = c . D + offset in the
        activations' own space (standardisation folded in), read from Decode."""
        import numpy as np

        k = self.nb_concepts_
        offset = self.decode_concepts(np.zeros((1, k), np.float32), timeout=timeout)[0]
        return self.decode_concepts(np.eye(k, dtype=np.float32), timeout=timeout) - offset, offset

    def output_tokens(self, top_k: int = 10, *, timeout: float | None = None) -> list[dict[str, list[tuple[str, float]]]]:
        """Per concept, the output tokens its decoder direction D_j promotes
        and suppresses: the top / bottom ``top_k`` of U . D_j with U the
        model's unembedding ({"promoted": [(token, value)...], "suppressed":
        [...]}; causal LMs; docs/concept-gradients.md)."""
        from xaimesh_contracts.tensors import to_numpy, to_tensor
        from xaimesh_contracts.v1 import model_pb2

        model = self._remote_model("output_tokens")
        decoder, _ = self._affine_decoder(timeout)
        response = model.mesh.client("model").call("UnembedDirections", model_pb2.UnembedDirectionsRequest(
            model=model.model_id, directions=to_tensor(decoder.astype("float32")), top_k=top_k), timeout=timeout)
        up, down = to_numpy(response.promoted_values), to_numpy(response.suppressed_values)
        k = up.shape[1]
        return [{"promoted": list(zip(response.promoted_tokens[j * k:(j + 1) * k], up[j].tolist(), strict=True)),
                 "suppressed": list(zip(response.suppressed_tokens[j * k:(j + 1) * k], down[j].tolist(), strict=True))}
                for j in range(up.shape[0])]

    def concept_output_gradient(self, inputs: str | list[str], targets: list[int] | None = None, *,
                                concepts_x_gradients: bool = True, normalization: bool = True,
                                inference_mode: str = "logits", timeout: float | None = None) -> list[np.ndarray]:
        """For each text, the gradient of each target's score with respect to
        each concept's activation at each token, ``[targets, tokens, concepts]``
        (docs/concept-gradients.md): the model-server replaces the split
        point's output by this model's decoding of the text's own concept
        activations and differentiates the rest of the model.

        ``targets``: causal LM, the positions p whose token is scored from
        the logits at p - 1 (default: every position 1..tokens-1, the text's
        own next tokens); classifier, class indices (default: every class).
        ``concepts_x_gradients`` multiplies by the concept activations and
        ``normalization`` scales each target's row to a sum of absolute
        values of 1 (both on by default, as interpreto). Tokens are those the
        model sees (its tokenizer's special tokens included)."""
        import numpy as np

        from xaimesh_contracts.enums import to_number
        from xaimesh_contracts.tensors import to_numpy, to_tensor
        from xaimesh_contracts.v1 import model_pb2, tensor_pb2

        model, point = self._remote_model("concept_output_gradient"), self._split_point_str()
        decoder, offset = self._affine_decoder(timeout)
        out = []
        for text in [inputs] if isinstance(inputs, str) else list(inputs):
            ids = model.tokenizer.encode(text, add_special_tokens=True)
            (rows,) = model.activations([text], split_points=[point], granularity="ALL_TOKENS",
                                        show_progress=False).values()
            if rows.rows.shape[0] != len(ids):
                raise RuntimeError(f"the model-server gave {rows.rows.shape[0]} activation rows for {len(ids)} tokens")
            codes = self.encode_activations(rows.rows, timeout=timeout)
            linear = codes @ decoder + offset
            if not np.allclose(self.decode_concepts(codes, timeout=timeout), linear, rtol=1e-3,
                               atol=1e-4 * max(1.0, float(np.abs(linear).max()))):
                raise ValueError(f"{type(self).__name__}'s decoder is not linear: concept_output_gradient needs "
                                 "decode(c) = c . D + offset")
            request = model_pb2.ConceptGradientsRequest(
                model=model.model_id, input_ids=ids, split_point=point, codes=to_tensor(codes),
                decoder=to_tensor(decoder.astype(np.float32)), offset=to_tensor(offset.astype(np.float32)),
                inference_mode=to_number(tensor_pb2.InferenceMode, inference_mode, field="inference_mode"))
            if model.is_classifier:
                request.target_classes.extend(targets if targets is not None else range(len(model.info.labels)))
            else:
                request.target_positions.extend(targets if targets is not None else range(1, len(ids)))
            response = model.mesh.client("model").call("ConceptGradients", request, timeout=timeout)
            grads = to_numpy(response.gradients, field="gradients")
            if concepts_x_gradients:
                grads = grads * codes[None]
            if normalization:
                total = np.abs(grads).sum(axis=(1, 2), keepdims=True)
                grads = np.divide(grads, total, out=np.zeros_like(grads), where=total > 0)
            out.append(grads)
        return out

    # -- inputs to concepts -----------------------------------------------
    def input_concept_attribution(self, inputs: Any, method: Any = "Occlusion", concepts: Any = None, *,
                                  pooling: str = "max", errors: str = "raise", timeout: float | None = None,
                                  show_progress: bool = True, **method_options: Any) -> list:
        """Which input words switch each concept on (docs/inputs-to-concepts.md):
        ``method`` (an attribution explainer class such as ``Occlusion`` or
        ``IntegratedGradients``, or its name) explains each concept's
        activation, pooled over the text's positions (``pooling``: "max",
        "mean", "sum", "first" or "last"), instead of a model output.
        ``concepts``: an index or a list of indices (default: every concept),
        one attribution row each. ``method_options`` are the explainer's
        (granularity, n_perturbations, replacement...). Returns one
        AttributionOutput per input; ``plot_attributions`` renders it. The
        concept method needs an encoder in closed form (PCA, SVD, ICA,
        neurons, probes, SAEs); others are refused (FailedPrecondition)."""
        from xaimesh.concepts.inputs import input_concept_attribution

        return input_concept_attribution(self, inputs, method, concepts, pooling=pooling, errors=errors,
                                         timeout=timeout, show_progress=show_progress, **method_options)

    # -- persistence ------------------------------------------------------
    @classmethod
    def load(cls, mesh_or_model: Any, name: str) -> ConceptExplainer:
        """The stored concept model ``name`` ("conceptModels/{id}" or the id)
        as a fitted explainer. On the base class, the subclass of the
        model's method is returned."""
        mesh = _rpc.mesh_of(mesh_or_model)
        info = _rpc.concept_client(mesh).call("GetConceptModel", concept_pb2.GetConceptModelRequest(name=name)).model
        return cls._from_info(mesh_or_model, info)

    @classmethod
    def _from_info(cls, mesh_or_model: Any, info: concept_pb2.ConceptModel) -> ConceptExplainer:
        klass = METHOD_CLASSES.get(info.method)
        if klass is None:
            raise ValueError(f"{info.name} has an unknown method {info.method}")
        if cls is not ConceptExplainer and not issubclass(klass, cls):
            raise TypeError(f"{info.name} is a {klass.__name__} model, not a {cls.__name__}; "
                            f"use {klass.__name__}.load or ConceptExplainer.load")
        obj = klass.__new__(klass)
        obj.mesh = _rpc.mesh_of(mesh_or_model)
        obj.model_with_split_points = _split_model(mesh_or_model)
        obj.nb_concepts = int(info.nb_concepts)
        obj.split_point = _split_key(obj.model_with_split_points, info.split_point)
        used = json.loads(info.options_json) if info.options_json else {}
        obj.device = used.get("device") or None
        obj.display_name = info.display_name
        obj.show_progress = True
        obj.timeout = None
        obj.options = {k: v for k, v in used.items() if k in klass.OPTIONS}
        obj._reset_fitted()
        obj.concept_model_info_ = info
        obj.concept_model_ = info.name
        return obj

    def export(self, path: str | os.PathLike, *, timeout: float | None = None) -> Path:
        """Write the fitted model to ``path`` (a safetensors file whose
        metadata holds the model's description); written atomically."""
        name = self._require_fitted()
        path = Path(path)
        tmp = path.with_name(f".{path.name}.part")
        try:
            with open(tmp, "wb") as f:
                for msg in self._client().stream("ExportConceptModel",
                                                 concept_pb2.ExportConceptModelRequest(name=name),
                                                 timeout=timeout or self.timeout, show_progress=False):
                    f.write(msg.data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load_file(cls, mesh_or_model: Any, path: str | os.PathLike | None = None, *, display_name: str = "",
                  timeout: float | None = None) -> ConceptExplainer:
        """Import an exported file into the concept-service; returns the
        fitted explainer (a new model id). ``load_file(path)`` alone uses
        ``xaimesh.connect()``."""
        if path is None:
            mesh_or_model, path = None, mesh_or_model
        mesh = _rpc.mesh_of(mesh_or_model)
        data = Path(path).read_bytes()
        step = 1 << 20

        def requests():
            for i in range(0, max(len(data), 1), step):
                yield concept_pb2.ImportConceptModelRequest(data=data[i:i + step],
                                                            display_name=display_name if i == 0 else "")

        info = _rpc.client_stream(_rpc.concept_client(mesh), "ImportConceptModel", requests(), timeout=timeout).model
        return cls._from_info(mesh_or_model, info)

    def delete(self) -> None:
        """Delete the fitted model from the concept-service (the explainer
        becomes unfitted)."""
        name = self._require_fitted()
        self._client().call("DeleteConceptModel", concept_pb2.DeleteConceptModelRequest(name=name))
        self._reset_fitted()


def _split_model(obj: Any):
    from xaimesh.split_model import ModelWithSplitPoints

    return obj if isinstance(obj, ModelWithSplitPoints) else None


def _split_key(split_model: Any, stored: str) -> Any:
    """The split model's own name of a stored split point (module path)."""
    if split_model is None:
        return stored or None
    paths = list(split_model.model.info.split_points)
    for sp in split_model.split_points:
        s = str(sp)
        if s == stored or (s.isdigit() and int(s) < len(paths) and paths[int(s)] == stored):
            return sp
    if len(split_model.split_points) == 1:
        return split_model.split_points[0]
    return stored or None


def load_file(mesh_or_model: Any, path: str | os.PathLike | None = None, *, display_name: str = "",
              timeout: float | None = None) -> ConceptExplainer:
    """Import an exported concept model file; returns the fitted explainer of
    its method. ``load_file(mesh, path)`` or ``load_file(path)`` (then
    ``xaimesh.connect()`` finds the services)."""
    return ConceptExplainer.load_file(mesh_or_model, path, display_name=display_name, timeout=timeout)


def list_concept_models(mesh_or_model: Any) -> list[ConceptExplainer]:
    """Every concept model stored by the concept-service, as fitted explainers."""
    mesh = _rpc.mesh_of(mesh_or_model)
    client = _rpc.concept_client(mesh)
    out, token = [], ""
    while True:
        page = client.call("ListConceptModels", concept_pb2.ListConceptModelsRequest(page_size=1000,
                                                                                     page_token=token))
        out += [ConceptExplainer._from_info(mesh_or_model, m) for m in page.models]
        token = page.next_page_token
        if not token:
            return out


# ---------------------------------------------------------------------------
# the methods
# ---------------------------------------------------------------------------
class SemiNMFConcepts(ConceptExplainer):
    """Semi-NMF (Ding et al. 2010): X ≈ U V with U >= 0 (codes) and a free dictionary V."""

    method = concept_pb2.CONCEPT_METHOD_SEMI_NMF
    OPTIONS = _ITERATIVE


class NMFConcepts(ConceptExplainer):
    """NMF: non-negative codes and dictionary. Negative activations are
    refused unless ``relu_negative_inputs=True`` (alias ``force_relu``)."""

    method = concept_pb2.CONCEPT_METHOD_NMF
    OPTIONS = _ITERATIVE + ("relu_negative_inputs",)


class ConvexNMFConcepts(ConceptExplainer):
    """Convex NMF: dictionary atoms are convex combinations of activations."""

    method = concept_pb2.CONCEPT_METHOD_CONVEX_NMF
    OPTIONS = _ITERATIVE


class PCAConcepts(ConceptExplainer):
    """PCA: the leading principal directions (nb_concepts <= hidden size)."""

    method = concept_pb2.CONCEPT_METHOD_PCA


class SVDConcepts(ConceptExplainer):
    """Truncated SVD of the (uncentred) activations (nb_concepts <= hidden size)."""

    method = concept_pb2.CONCEPT_METHOD_SVD


class ICAConcepts(ConceptExplainer):
    """FastICA: statistically independent directions (nb_concepts <= hidden size)."""

    method = concept_pb2.CONCEPT_METHOD_ICA
    OPTIONS = _ITERATIVE


class KMeansConcepts(ConceptExplainer):
    """K-means: one concept per centroid; a row's code is non-zero only at its centroid."""

    method = concept_pb2.CONCEPT_METHOD_KMEANS
    OPTIONS = _ITERATIVE


class DictionaryLearningConcepts(ConceptExplainer):
    """Mini-batch dictionary learning with sparse codes (``alpha``: sparsity)."""

    method = concept_pb2.CONCEPT_METHOD_DICTIONARY_LEARNING
    OPTIONS = _COMMON + ("max_iterations", "batch_size", "alpha")


class SparsePCAConcepts(ConceptExplainer):
    """Sparse PCA (``alpha``: sparsity of the components)."""

    method = concept_pb2.CONCEPT_METHOD_SPARSE_PCA
    OPTIONS = _ITERATIVE + ("alpha",)


class NeuronsAsConcepts(ConceptExplainer):
    """Each neuron is a concept (identity dictionary); nb_concepts is the
    hidden size (leave it out)."""

    method = concept_pb2.CONCEPT_METHOD_NEURONS_AS_CONCEPTS
    nb_concepts_optional = True

    def __init__(self, split_model_or_model: Any, nb_concepts: int | None = None, split_point: Any = None,
                 device: str | None = None, **kwargs: Any):
        super().__init__(split_model_or_model, nb_concepts, split_point, device, **kwargs)


class VanillaSAEConcepts(ConceptExplainer):
    """Sparse autoencoder with a ReLU and an L1 penalty (``l1_coefficient``)."""

    method = concept_pb2.CONCEPT_METHOD_SAE_VANILLA
    OPTIONS = _SAE + ("l1_coefficient",)


class TopKSAEConcepts(ConceptExplainer):
    """Sparse autoencoder keeping the ``top_k`` largest activations per row."""

    method = concept_pb2.CONCEPT_METHOD_SAE_TOPK
    OPTIONS = _SAE + ("top_k",)


class BatchTopKSAEConcepts(ConceptExplainer):
    """Sparse autoencoder keeping ``top_k`` activations per row on average over a batch."""

    method = concept_pb2.CONCEPT_METHOD_SAE_BATCH_TOPK
    OPTIONS = _SAE + ("top_k",)


class JumpReLUSAEConcepts(ConceptExplainer):
    """Sparse autoencoder with a JumpReLU (``jump_threshold``, ``jump_bandwidth``, ``l1_coefficient``)."""

    method = concept_pb2.CONCEPT_METHOD_SAE_JUMP_RELU
    OPTIONS = _SAE + ("l1_coefficient", "jump_threshold", "jump_bandwidth")


class MpSAEConcepts(ConceptExplainer):
    """Matching-pursuit sparse autoencoder: ``top_k`` greedy steps over the
    unit-norm dictionary, no encoder weights (codes may be negative)."""

    method = concept_pb2.CONCEPT_METHOD_SAE_MP
    OPTIONS = _SAE + ("top_k",)


class MatryoshkaSAEConcepts(ConceptExplainer):
    """TopK sparse autoencoder whose nested dictionary prefixes
    (``matryoshka_prefixes``) are trained to reconstruct on their own."""

    method = concept_pb2.CONCEPT_METHOD_SAE_MATRYOSHKA
    OPTIONS = _SAE + ("top_k", "matryoshka_prefixes")


class _SupervisedProbe(ConceptExplainer):
    """What LinearProbe and CentroidProbe share: the FitProbe call (labels,
    held-out split, metrics) and the stored probe as a concept model."""

    nb_concepts_optional = True

    def _request_extras(self) -> dict:
        """FitProbeRequest fields of this kind of probe only."""
        return {}

    def fit(self, activations: Any, labels: Any = None, *, concept_names: list[str] | None = None,
            display_name: str | None = None, show_progress: bool | None = None,
            timeout: float | None = None) -> _SupervisedProbe:
        """Fits on ``activations`` (a stored set, or an array uploaded first)
        and ``labels`` (0 / 1, [rows] or [rows, concepts]). Returns ``self``;
        ``metrics_`` holds the held-out and training metrics per concept."""
        import numpy as np

        from xaimesh_contracts.enums import to_number
        from xaimesh_contracts.tensors import to_tensor

        if labels is None:
            raise TypeError("a probe needs labels: fit(activations, labels)")
        o = self.options
        show = self.show_progress if show_progress is None else show_progress
        timeout = timeout if timeout is not None else self.timeout
        resolved = _rpc.upload_activations(self.mesh, _rpc.resolve_activations(activations, self.split_point,
                                                                                self.mesh),
                                           display_name="uploaded for a probe", model=self._model_id(),
                                           split_point=self._split_point_str(), timeout=timeout)
        y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
        request = concept_pb2.FitProbeRequest(
            activation_set=resolved.name, labels=to_tensor(y),
            method=to_number(concept_pb2.ProbeMethod, o["method"], field="method"),
            normalization=to_number(concept_pb2.ProbeNormalization, o["normalization"], field="normalization"),
            bias_calibration=to_number(concept_pb2.BiasCalibration, o["bias_calibration"], field="bias_calibration"),
            l2=o["l2"], learning_rate=o["learning_rate"] or 0.0, max_iterations=o["max_iterations"] or 0,
            test_fraction=o["test_fraction"], seed=o["seed"], concept_names=list(concept_names or []),
            display_name=display_name if display_name is not None else (self.display_name or type(self).__name__),
            **self._request_extras())
        result = None
        log: list[dict] = []
        for event in self._client().stream("FitProbe", request, timeout=timeout, show_progress=show,
                                           description=f"fitting {type(self).__name__}"):
            kind = event.WhichOneof("event")
            if kind == "log":
                log.append({"step": int(event.log.step), "loss": float(event.log.loss)})
            elif kind == "result":
                result = event.result
        if result is None:
            raise RuntimeError("the concept-service ended the probe fit without returning the probe")
        self.concept_model_info_ = result.model
        self.concept_model_ = result.model.name
        self.nb_concepts = int(result.model.nb_concepts)
        self.training_log_ = log
        return self

    @property
    def metrics_(self) -> dict[str, dict[str, float | None]]:
        """Per concept name: test_* (held-out rows) and train_* accuracy,
        balanced accuracy and AUC (None where undefined), and the counts."""
        stored = json.loads(self._info().options_json or "{}")
        out = {}
        for name, m in zip(stored.get("concept_names", []), stored.get("metrics", []), strict=False):
            out[name] = {f"{part}_{key}": value for part in ("test", "train") for key, value in m[part].items()}
        return out


class LinearProbe(_SupervisedProbe):
    """A linear probe: score_j = x . w_j + b_j for each labelled concept j.

    ``method``: "logistic_regression" (default), "linear_regression" (ridge
    when ``l2`` > 0), "means_diff" or "linear_svm"; ``normalization``:
    None, "standardization" or "whitening"; ``bias_calibration``: None (the
    method's own intercept), "prevalence", "midpoint", "fpr", "bce" or
    "lda"; ``test_fraction`` of the rows are held out (seeded by ``seed``)
    for the metrics."""

    method = concept_pb2.CONCEPT_METHOD_LINEAR_PROBE
    OPTIONS = ("method", "normalization", "bias_calibration", "l2", "learning_rate", "max_iterations",
               "test_fraction", "seed")

    def __init__(self, split_model_or_model: Any, split_point: Any = None, *, method: str = "logistic_regression",
                 normalization: str | None = None, bias_calibration: str | None = None, l2: float = 0.0,
                 learning_rate: float | None = None, max_iterations: int | None = None, test_fraction: float = 0.2,
                 seed: int = 0, display_name: str = "", show_progress: bool = True,
                 timeout: float | None = None) -> None:
        super().__init__(split_model_or_model, None, split_point, display_name=display_name,
                         show_progress=show_progress, timeout=timeout)
        self.options = {"method": method, "normalization": normalization, "bias_calibration": bias_calibration,
                        "l2": float(l2), "learning_rate": learning_rate, "max_iterations": max_iterations,
                        "test_fraction": float(test_fraction), "seed": int(seed)}


class CentroidProbe(_SupervisedProbe):
    """A centroid probe (interpreto's centroid probes): c_j is the mean of the
    (normalised) rows labelled with concept j, and score_j compares a row
    with it — ``metric`` "dot_product", "cosine" (default), "sq_l2" (minus the
    squared distance), "diagonal_mahalanobis" (variance-weighted, pooled with
    weight ``shrinkage``; normalization None means "standardization"
    there) or "svdd" (the margin r_j^2 - |x - a_j|^2 of a fitted sphere,
    hinge weight ``svdd_c``) — plus a bias: 0, or ``bias_calibration``'s.
    The dictionary row of concept j points from the training mean to its
    centroid; there is no decoder. Definitions: docs/probes.md."""

    method = concept_pb2.CONCEPT_METHOD_CENTROID_PROBE
    OPTIONS = ("method", "normalization", "bias_calibration", "l2", "learning_rate", "max_iterations",
               "test_fraction", "seed", "shrinkage", "svdd_c")

    def __init__(self, split_model_or_model: Any, split_point: Any = None, *, metric: str = "cosine",
                 normalization: str | None = None, bias_calibration: str | None = None, shrinkage: float = 1.0,
                 svdd_c: float = 1.0, l2: float = 0.0, learning_rate: float | None = None,
                 max_iterations: int | None = None, test_fraction: float = 0.2, seed: int = 0,
                 display_name: str = "", show_progress: bool = True, timeout: float | None = None) -> None:
        super().__init__(split_model_or_model, None, split_point, display_name=display_name,
                         show_progress=show_progress, timeout=timeout)
        self.options = {"method": f"centroid_{metric}", "normalization": normalization,
                        "bias_calibration": bias_calibration, "l2": float(l2), "learning_rate": learning_rate,
                        "max_iterations": max_iterations, "test_fraction": float(test_fraction), "seed": int(seed),
                        "shrinkage": float(shrinkage), "svdd_c": float(svdd_c)}

    def _request_extras(self) -> dict:
        return {"shrinkage": self.options["shrinkage"], "svdd_c": self.options["svdd_c"]}


METHOD_CLASSES: dict[int, type[ConceptExplainer]] = {
    cls.method: cls for cls in (
        SemiNMFConcepts, NMFConcepts, ConvexNMFConcepts, PCAConcepts, SVDConcepts, ICAConcepts,
        KMeansConcepts, DictionaryLearningConcepts, SparsePCAConcepts, NeuronsAsConcepts,
        VanillaSAEConcepts, TopKSAEConcepts, BatchTopKSAEConcepts, JumpReLUSAEConcepts, MpSAEConcepts,
        MatryoshkaSAEConcepts, LinearProbe, CentroidProbe)
}


def _log_entry(entry: concept_pb2.TrainingLogEntry) -> dict:
    """One TrainingLogEntry as the dict ``training_log_`` keeps."""
    from xaimesh_contracts.enums import to_name

    return {"kind": to_name(concept_pb2.TrainingLogKind, entry.kind) or None, "step": int(entry.step),
            "epoch": int(entry.epoch), "loss": float(entry.loss), "learning_rate": float(entry.learning_rate),
            "values": dict(entry.values)}
