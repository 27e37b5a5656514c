"""Attribution explainers: the in-process toolkit's classes, computed by the attribution-service.

    mesh = xaimesh.connect()
    model = mesh.model()
    explainer = KernelShap(model, n_perturbations=512, granularity=Granularity.WORD)
    outputs = explainer(model_inputs="Alice and Bob enter the bar, ", targets="then Alice offers a drink to Bob.")
    outputs[0].attributions                     # [n_target_elements, n_elements]

Every explainer takes the model as the user holds it: the handle of
`mesh.model(...)`, a model name or path, or a Hugging Face model object with
its tokenizer (matched to a served model, or served by a local stack:
`xaimesh.models`); the model-server tokenizes with the served model's tokenizer. Options
left to None take the service's defaults (`ListMethods`, documented in
docs/attribution-methods.md); the parameters actually used come back in
`output.parameters`. A call explains one text or a list of texts and returns
one `AttributionOutput` per text, in order, with a progress bar.

Targets (`targets=`):

- causal LM: None (the model generates `max_new_tokens`, default 20,
  greedily, and that is explained), a continuation text, or token ids — one
  for every input, or a list with one per input (texts, token-id lists or
  None);
- encoder-decoder (T5, BART, Marian): the same, the text being the source
  and the targets what the decoder produces;
- classifier: None (the predicted class), a class index or name, or a list
  of them (the same classes for every input), or a list of such lists (one
  per input).

Parameters, their defaults and help come from ONE table, `_methods.py`
(`help(KernelShap)` lists them); their names are the fields of the method's
message in attribution.proto (`KernelShapParameters`...). A parameter given
is sent as given, zero included (`Lime(model, regularization=0)` fits
without regularisation); one left to None takes the service's default.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

from xaimesh_contracts.v1 import attribution_pb2

from . import _methods
from ._calls import baseline, check_float, check_int, collect, is_int, remote_model, replacement
from ._methods import EXPLAINER_NAMES, MethodSpec, encode_parameters
from .options import Aggregation, Granularity, InferenceMode, invalid, to_proto_enum
from .output import AttributionOutput

__all__ = ["AttributionExplainer", "GradientExplainer", "PerturbationExplainer", *EXPLAINER_NAMES]


@dataclass(frozen=True)
class Param:
    """One explainer option: how it is checked and where it goes in the request."""

    name: str
    kind: Any  # see _methods.Param
    request_level: bool = False  # an ExplainRequest field (else a field of the method's parameter message)

    def check(self, value: Any) -> Any:
        n, k = self.name, self.kind
        if k == "count":
            return check_int(n, value, 1)
        if k == "seed":
            return check_int(n, value, 0)
        if k == "prob":
            return check_float(n, value, low=0.0, high=1.0, open_low=True, open_high=True)
        if k == "positive":
            return check_float(n, value, low=0.0, open_low=True)
        if k == "nonneg":
            return check_float(n, value, low=0.0)
        if k == "flag":
            if not isinstance(value, bool):
                raise invalid(f"{n} must be True or False, got {value!r}", n)
            return value
        if k == "replacement":
            return replacement(value, n)
        if k == "baseline":
            return baseline(value, n)
        return to_proto_enum(k, value, n)  # an option enum: its proto number


_COMMON = (
    Param("granularity", Granularity, request_level=True),
    Param("inference_mode", InferenceMode, request_level=True),
)


class AttributionExplainer:
    """Base of every explainer: options, request building, the streaming call.

    A subclass names its row of the method table (`_methods.METHODS`) by its
    class name; its options, defaults and docstring come from there (the
    request-level options of the base classes are inherited).
    """

    method: ClassVar[str] = ""
    family: ClassVar[str] = ""
    spec: ClassVar[MethodSpec | None] = None
    options: ClassVar[tuple[Param, ...]] = _COMMON
    _all_options: ClassVar[dict[str, Param]] = {p.name: p for p in _COMMON}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = _methods.BY_CLASS.get(cls.__name__)
        if spec is not None:
            cls.spec, cls.method = spec, spec.method
            cls.options = tuple(Param(p.name, p.kind) for p in spec.params)
            cls.__doc__ = spec.help()
        merged: dict[str, Param] = {}
        for base in reversed(cls.__mro__):
            for p in base.__dict__.get("options", ()):
                merged[p.name] = p
        cls._all_options = merged
        # A real signature for help() and IDEs: KernelShap(model, tokenizer=None, *, n_perturbations=None, ...)
        params = [inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                  inspect.Parameter("tokenizer", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
        params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in merged]
        params += [inspect.Parameter("timeout", inspect.Parameter.KEYWORD_ONLY, default=None),
                   inspect.Parameter("show_progress", inspect.Parameter.KEYWORD_ONLY, default=True)]
        cls.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]

    def __init__(self, model: Any, tokenizer: Any = None, *, timeout: float | None = None,
                 show_progress: bool = True, **options: Any) -> None:
        if type(self) in (AttributionExplainer, PerturbationExplainer, GradientExplainer):
            raise TypeError(f"{type(self).__name__} is a base class: use an explainer such as KernelShap")
        self.model = remote_model(model, type(self).__name__, tokenizer)
        self.tokenizer = tokenizer  # the model-server tokenizes (with the served model's own tokenizer)
        self.timeout = timeout
        self.show_progress = show_progress
        unknown = sorted(set(options) - set(self._all_options))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected option(s) {', '.join(map(repr, unknown))}; "
                            f"its options: {', '.join(self._all_options)}")
        self.options = {name: self._all_options[name].check(v) for name, v in options.items() if v is not None}
        self._raw_options = {name: v for name, v in options.items() if v is not None}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._raw_options.items())
        return f"{type(self).__name__}({self.model.model_id!r}{', ' + opts if opts else ''})"

    # ------------------------------------------------------------ request

    def _parameters(self) -> attribution_pb2.MethodParameters:
        """The method's parameter message with the options given (zero included)."""
        values = {name: v for name, v in self.options.items() if not self._all_options[name].request_level}
        if not values:
            return attribution_pb2.MethodParameters()
        return encode_parameters(self.method, values)

    def request(self, texts: list[str],
                targets: list[attribution_pb2.Targets | None], *,
                chat_template: bool | None = None) -> attribution_pb2.ExplainRequest:
        """The ExplainRequest of these inputs (texts or chats; what `__call__` sends)."""
        request = attribution_pb2.ExplainRequest(model=self.model.model_id, method=self.spec.number,
                                                 parameters=self._parameters())
        for name, enum in (("granularity", Granularity), ("aggregation", Aggregation),
                           ("inference_mode", InferenceMode)):
            if name in self.options:
                setattr(request, name, to_proto_enum(enum, self.options[name], name))
        for text, target in zip(texts, targets, strict=True):
            item = request.inputs.add()
            if isinstance(text, str):
                item.text = text
                if chat_template is not None:
                    item.chat_template = bool(chat_template)
            else:  # a chat: [{"role", "content"}, ...]
                for m in text:
                    item.chat.messages.add(role=m["role"], content=m["content"])
            if target is not None:
                item.targets.CopyFrom(target)
        return request

    # ------------------------------------------------------------ call

    def __call__(self, model_inputs: Any, targets: Any = None, *, max_new_tokens: int | None = None,
                 chat_template: bool | None = None, errors: str = "raise") -> list[AttributionOutput]:
        """Explains `model_inputs`: one text, one chat (a list of
        {"role", "content"} messages, as transformers' chat format), or a
        list of texts / chats; one AttributionOutput per input, in order.

        A chat is rendered with the model's chat template (its generation
        prompt added); its elements are the user messages' words only (the
        template, system and assistant messages are kept, never perturbed);
        targets continue the rendered prompt, none: the model answers the
        chat. `chat_template=True` renders plain texts as one user message
        (default: texts as given, no template).
        `errors="raise"` (default) raises the first
        input's error (all of them in `.errors`, the other results in
        `.results`); `errors="none"` puts None in place of a failed input."""
        texts = _texts(model_inputs)
        if max_new_tokens is not None:
            check_int("max_new_tokens", max_new_tokens, 1)
        if chat_template is not None and not isinstance(chat_template, bool):
            raise invalid(f"chat_template must be True or False, got {chat_template!r}", "chat_template")
        per_input = _per_input_targets(targets, len(texts), self.model.is_classifier)
        protos = [_targets_proto(t, self.model.is_classifier, max_new_tokens, i) for i, t in enumerate(per_input)]
        request = self.request(texts, protos, chat_template=chat_template)
        results = collect(self.model.mesh.client("attribution"), "Explain", request, len(texts), what="input",
                          description=type(self).__name__, show_progress=self.show_progress, timeout=self.timeout,
                          errors=errors, convert=lambda _, r: AttributionOutput.from_proto(r.attribution))
        return results


class PerturbationExplainer(AttributionExplainer):
    """Base of the perturbation methods: elements are replaced (`replacement`:
    "pad_token" by default, "unk_token", "mask_token", "zero_embedding",
    "remove", or a token id) and the model rescored; `seed` fixes every
    random draw. Default granularity WORD, inference mode SOFTMAX."""

    family = "perturbation"
    options = ()


class GradientExplainer(AttributionExplainer):
    """Base of the gradient methods: gradients of the target's score with
    respect to the input embeddings, one number per token, combined into
    words / sentences by `aggregation` (default SUM). Default granularity
    TOKEN, inference mode LOGITS."""

    family = "gradient"
    options = (Param("aggregation", Aggregation, request_level=True),)


# --------------------------------------------------------------------------- the explainers
# Their options, defaults and docstrings come from _methods.METHODS (by class name).


class Occlusion(PerturbationExplainer):
    pass


class Lime(PerturbationExplainer):
    pass


class KernelShap(PerturbationExplainer):
    pass


class Sobol(PerturbationExplainer):
    pass


class Saliency(GradientExplainer):
    pass


class InputXGradient(GradientExplainer):
    pass


class IntegratedGradients(GradientExplainer):
    pass


class GradientShap(GradientExplainer):
    pass


class SmoothGrad(GradientExplainer):
    pass


class SquareGrad(GradientExplainer):
    pass


class VarGrad(GradientExplainer):
    pass


# --------------------------------------------------------------------------- inputs and targets


def _is_message(m: Any) -> bool:
    return isinstance(m, dict) and "role" in m


def _chat(value: Any, field: str) -> list[dict[str, str]]:
    out = []
    for j, m in enumerate(value):
        if not _is_message(m) or not isinstance(m.get("content"), str) or not isinstance(m["role"], str):
            raise invalid(f"{field}[{j}]: a chat message is a dict with a 'role' and a 'content' string, got {m!r}",
                          f"{field}[{j}]")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _texts(model_inputs: Any) -> list[str | list[dict[str, str]]]:
    """The inputs: texts, or chats (lists of {"role", "content"} messages)."""
    if isinstance(model_inputs, str):
        return [model_inputs]
    if isinstance(model_inputs, (list, tuple)) and model_inputs:
        if all(_is_message(m) for m in model_inputs):
            return [_chat(model_inputs, "model_inputs")]  # one chat
        out: list[str | list[dict[str, str]]] = []
        for i, x in enumerate(model_inputs):
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, (list, tuple)) and x and all(_is_message(m) for m in x):
                out.append(_chat(x, f"model_inputs[{i}]"))
            else:
                break
        else:
            return out
    raise invalid("model_inputs must be a text, a chat (a list of {'role', 'content'} messages) or a non-empty "
                  "list of texts / chats", "model_inputs")


def _as_list(x: Any) -> list | None:
    if isinstance(x, (list, tuple)):
        return list(x)
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):  # numpy arrays, torch tensors
        value = x.tolist()
        return value if isinstance(value, list) else None
    return None


def _is_scalar_target(x: Any) -> bool:
    return isinstance(x, str) or is_int(x)


def _per_input_targets(targets: Any, n: int, classifier: bool) -> list[Any]:
    """One target spec per input (None, a text, token ids, class list)."""
    if targets is None:
        return [None] * n
    if is_int(targets) or isinstance(targets, str):
        return [targets if (isinstance(targets, str) and not classifier) else [targets]] * n
    items = _as_list(targets)
    if items is None:
        raise invalid(f"targets: unsupported type {type(targets).__name__}", "targets")
    if items and all(is_int(x) for x in items):
        return [items] * n  # token ids (LM) / class indices (classifier), for every input
    if classifier and items and all(isinstance(x, str) for x in items):
        return [items] * n  # class names for every input
    if len(items) == n:
        out = []
        for i, x in enumerate(items):
            if x is None or isinstance(x, str):
                out.append(x if (x is None or not classifier) else [x])
                continue
            if is_int(x):
                out.append([x])
                continue
            sub = _as_list(x)
            if sub is None or not sub or not all(_is_scalar_target(s) for s in sub):
                raise invalid(f"targets[{i}]: expected a text, token ids or classes, got {x!r}", f"targets[{i}]")
            out.append(sub)
        return out
    what = "class indices / names" if classifier else "continuation texts or token-id lists"
    raise invalid(f"targets: {len(items)} targets for {n} inputs: give one target for all inputs, or a list of "
                  f"{n} {what} (one per input)", "targets")


def _targets_proto(spec: Any, classifier: bool, max_new_tokens: int | None, index: int) -> Any:
    field = f"targets[{index}]"
    if spec is None:
        return None if max_new_tokens is None or classifier else attribution_pb2.Targets(max_new_tokens=max_new_tokens)
    if isinstance(spec, str):
        if classifier:
            return attribution_pb2.Targets(class_names=attribution_pb2.ClassNames(names=[spec]))
        return attribution_pb2.Targets(text=spec)
    if all(is_int(x) for x in spec):
        ids = [int(x) for x in spec]
        if classifier:
            return attribution_pb2.Targets(class_indices=attribution_pb2.ClassIndices(indices=ids))
        from xaimesh_contracts.v1 import model_pb2

        return attribution_pb2.Targets(token_ids=model_pb2.TokenIds(ids=ids))
    if classifier and all(isinstance(x, str) for x in spec):
        return attribution_pb2.Targets(class_names=attribution_pb2.ClassNames(names=list(spec)))
    raise invalid(f"{field}: mixes class indices and names, or texts and token ids: use one kind", field)
