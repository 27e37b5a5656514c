"""The facade the gRPC adapter calls: `explain`, `evaluate`, `list_methods`.

Parameters are a plain dict whose keys are attribution.proto
MethodParameters field names. A key that is absent or None takes the
method's default (the adapter can pass `MessageToDict(params,
preserving_proto_field_name=True)`, which omits zero-valued fields, i.e.
the proto's "zero = default"); an explicit value is validated (e.g.
n_perturbations=0 is an error). Enum values may be the lower-case names used
here ("halton"), proto names ("SOBOL_SAMPLER_HALTON") or proto numbers.
Fields a method does not use are ignored; unknown keys are an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import gradient as grad_mod
from . import metrics as metrics_mod
from . import perturbation as pert
from .backend import ModelBackend, ModelDescription, Replacement, Tokenized
from .elements import Problem, build_problem, classification_problem, generation_problem
from xaimesh_runtime.errors import InvalidArgument
from .options import (
    Aggregation,
    BaselineKind,
    Granularity,
    GradientReduction,
    InferenceMode,
    Metric,
    ReplacementPolicy,
    SobolIndex,
    SobolSampler,
    Task,
    parse,
)
from .results import AttributionResult, MetricCurve, MetricResult
from .scoring import MaskScorer, ProgressFn, StopFn, check_stop

DEFAULT_MAX_NEW_TOKENS = 20
DEFAULT_BATCH_SIZE = 32
ATTRIBUTION_GRANULARITIES = ("all_tokens", "token", "word", "sentence")


@dataclass
class MethodInfo:
    name: str  # e.g. "kernel_shap"
    proto_number: int  # attribution.proto AttributionMethod
    family: str  # "perturbation" | "gradient"
    description: str
    defaults: dict[str, Any]  # defaults of the MethodParameters fields it uses
    granularities: list[str] = field(default_factory=lambda: list(ATTRIBUTION_GRANULARITIES))


_PERT_COMMON = {"batch_size": DEFAULT_BATCH_SIZE, "seed": 0, "replacement": {"policy": "pad_token", "token_id": 0}}
_GRAD_COMMON = {"batch_size": DEFAULT_BATCH_SIZE}
_ZERO_BASELINE = {"kind": "zero", "token_id": 0}

_METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in [
        MethodInfo(
            "occlusion",
            1,
            "perturbation",
            "Hides sliding windows of `window` consecutive elements; an element's attribution is the mean drop "
            "f(all) - f(without the window) over the windows containing it.",
            {**_PERT_COMMON, "window": 1},
        ),
        MethodInfo(
            "lime",
            2,
            "perturbation",
            "Weighted ridge regression of the target score on random keep-masks (each element kept with "
            "keep_probability), weights exp(-d^2/kernel_width^2) of the cosine distance d to the full input.",
            {
                **_PERT_COMMON,
                "n_perturbations": 256,
                "keep_probability": 0.5,
                "kernel_width": 0.25,
                "regularization": 1.0,
            },
        ),
        MethodInfo(
            "kernel_shap",
            3,
            "perturbation",
            "Shapley values of the masked-input game by the Shapley-kernel weighted least squares with the "
            "efficiency constraint; exact enumeration when n_perturbations >= 2^elements.",
            {**_PERT_COMMON, "n_perturbations": 256, "regularization": 0.0},
        ),
        MethodInfo(
            "sobol",
            4,
            "perturbation",
            "Sobol indices (total order by default, Jansen; first order, Saltelli 2010) of the elements as "
            "Bernoulli(keep_probability) inputs, from a quasi-random design of n_perturbations * (E + 2) masks.",
            {
                **_PERT_COMMON,
                "n_perturbations": 32,
                "sobol_sampler": "sobol",
                "sobol_index": "total",
                "keep_probability": 0.5,
            },
        ),
        MethodInfo(
            "saliency",
            5,
            "gradient",
            "Gradient of the target score with respect to the input embeddings, reduced per token by "
            "sum |grad| (ABS_SUM, default) or its L2 norm.",
            {**_GRAD_COMMON, "gradient_reduction": "abs_sum"},
        ),
        MethodInfo(
            "input_x_gradient",
            6,
            "gradient",
            "Per token, sum over the hidden dimension of gradient x input embedding.",
            {**_GRAD_COMMON, "gradient_reduction": "dot"},
        ),
        MethodInfo(
            "integrated_gradients",
            7,
            "gradient",
            "Integrated gradients from the baseline to the input, n_steps-point Gauss–Legendre quadrature on "
            "[0, 1]; per token sum_d (x - b)_d * integral of grad_d.",
            {**_GRAD_COMMON, "n_steps": 50, "baseline": dict(_ZERO_BASELINE), "gradient_reduction": "dot"},
        ),
        MethodInfo(
            "gradient_shap",
            8,
            "gradient",
            "Expected gradients: mean over n_steps samples of grad * (x - b_s) at b_s + alpha (x - b_s), "
            "alpha ~ U[0,1), b_s = baseline + N(0, noise_std).",
            {
                **_GRAD_COMMON,
                "n_steps": 10,
                "noise_std": 0.1,
                "seed": 0,
                "baseline": dict(_ZERO_BASELINE),
                "gradient_reduction": "dot",
            },
        ),
        MethodInfo(
            "smooth_grad",
            9,
            "gradient",
            "Mean of |grad| over n_steps copies of the input embeddings with N(0, noise_std) noise, "
            "reduced per token by ABS_SUM (default) or L2 norm.",
            {**_GRAD_COMMON, "n_steps": 10, "noise_std": 0.1, "seed": 0, "gradient_reduction": "abs_sum"},
        ),
        MethodInfo(
            "square_grad",
            10,
            "gradient",
            "Mean of grad^2 over n_steps noisy copies of the input embeddings, summed over the hidden "
            "dimension (or its L2 norm).",
            {**_GRAD_COMMON, "n_steps": 10, "noise_std": 0.1, "seed": 0, "gradient_reduction": "abs_sum"},
        ),
        MethodInfo(
            "var_grad",
            11,
            "gradient",
            "Variance of the gradient over n_steps noisy copies of the input embeddings (full gradients), "
            "summed over the hidden dimension (or its L2 norm).",
            {**_GRAD_COMMON, "n_steps": 10, "noise_std": 0.1, "seed": 0, "gradient_reduction": "abs_sum"},
        ),
    ]
}

# MethodParameters fields, plus Python-only extras.
KNOWN_PARAMETERS = {
    "n_perturbations",
    "batch_size",
    "seed",
    "replacement",
    "baseline",
    "noise_std",
    "n_steps",
    "kernel_width",
    "regularization",
    "sobol_sampler",
    "sobol_index",
    "keep_probability",
    "window",
    "gradient_reduction",
    "exact",  # KernelShap only (Python API): True / False forces enumeration / sampling; None = auto
}


def list_methods() -> list[MethodInfo]:
    """Every method with its family, description and parameter defaults."""
    return [
        MethodInfo(m.name, m.proto_number, m.family, m.description, _copy(m.defaults), list(m.granularities))
        for m in _METHODS.values()
    ]


def _copy(d: dict) -> dict:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}


def resolve_method(method: Any) -> MethodInfo:
    """A method by name ("kernel_shap", "KernelShap", "ATTRIBUTION_METHOD_KERNEL_SHAP") or proto number."""
    valid = ", ".join(repr(n) for n in _METHODS)
    if isinstance(method, MethodInfo):
        return method
    if isinstance(method, int) and not isinstance(method, bool):
        for m in _METHODS.values():
            if m.proto_number == method:
                return m
        raise InvalidArgument(f"unknown attribution method {method}; expected one of {valid}", field="method")
    if isinstance(method, str):
        key = method.strip().lower()
        if key.startswith("attribution_method_"):
            key = key[len("attribution_method_") :]
        key = key.replace("_", "").replace("-", "").replace(" ", "")
        for m in _METHODS.values():
            if m.name.replace("_", "") == key:
                return m
    raise InvalidArgument(f"unknown attribution method {method!r}; expected one of {valid}", field="method")


# ------------------------------------------------------------------ parameters


# Upper bounds of counts: a request above them is refused up front instead of
# running for hours or allocating more memory than the machine has. Sobol
# scores n_perturbations * (elements + 2) rows, hence its own bound.
MAXIMUMS = {"n_perturbations": 65_536, "n_steps": 10_000, "batch_size": 4_096, "window": 10_000,
            "n_random_orders": 1_000}
SOBOL_MAX_PERTURBATIONS = 8_192


def _int(params: dict, name: str, default: int, *, minimum: int | None = 1, prefix: str = "parameters.",
         maximum: int | None = None) -> int:
    v = params.get(name)
    if v is None:
        return default
    try:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise TypeError
        iv = int(v)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be an integer, got {v!r}", field=f"{prefix}{name}") from None
    if minimum is not None and iv < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {iv}", field=f"{prefix}{name}")
    maximum = maximum if maximum is not None else MAXIMUMS.get(name)
    if maximum is not None and iv > maximum:
        raise InvalidArgument(f"{name} must be <= {maximum}, got {iv}: ask for fewer", field=f"{prefix}{name}")
    return iv


def _float(
    params: dict, name: str, default: float, *, positive: bool = False, nonneg: bool = False, upper: float | None = None
) -> float:
    v = params.get(name)
    if v is None:
        return float(default)
    try:
        if isinstance(v, bool):
            raise TypeError
        fv = float(v)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be a number, got {v!r}", field=f"parameters.{name}") from None
    if not math.isfinite(fv):
        raise InvalidArgument(f"{name} must be finite, got {v!r}", field=f"parameters.{name}")
    if positive and fv <= 0:
        raise InvalidArgument(f"{name} must be > 0, got {fv}", field=f"parameters.{name}")
    if nonneg and fv < 0:
        raise InvalidArgument(f"{name} must be >= 0, got {fv}", field=f"parameters.{name}")
    if upper is not None and fv > upper:
        raise InvalidArgument(f"{name} must be <= {upper}, got {fv}", field=f"parameters.{name}")
    return fv


def _pair(v: Any, name: str, key: str) -> tuple[Any, Any]:
    if v is None:
        return None, None
    if isinstance(v, dict):
        return v.get(key), v.get("token_id")
    kind = getattr(v, key, None) if not isinstance(v, (str, int)) else v
    return kind, getattr(v, "token_id", None)


def _replacement(params: dict, desc: ModelDescription | None, prefix: str = "parameters.") -> dict:
    raw, token_id = _pair(params.get("replacement"), "replacement", "policy")
    policy = parse(ReplacementPolicy, raw, field=f"{prefix}replacement.policy") or ReplacementPolicy.PAD_TOKEN
    tid = 0
    if policy == ReplacementPolicy.TOKEN_ID:
        tid = _token_id(token_id, f"{prefix}replacement.token_id", desc)
    elif token_id not in (None, 0, "0"):
        tid = _token_id(token_id, f"{prefix}replacement.token_id", desc)
    _check_special(policy.value, desc, f"{prefix}replacement.policy")
    return {"policy": policy.value, "token_id": tid}


def _baseline(params: dict, desc: ModelDescription | None) -> dict:
    raw, token_id = _pair(params.get("baseline"), "baseline", "kind")
    kind = parse(BaselineKind, raw, field="parameters.baseline.kind") or BaselineKind.ZERO
    tid = _token_id(token_id, "parameters.baseline.token_id", desc) if kind == BaselineKind.TOKEN_ID else 0
    _check_special(kind.value, desc, "parameters.baseline.kind")
    return {"kind": kind.value, "token_id": tid}


def _token_id(v: Any, field_name: str, desc: ModelDescription | None) -> int:
    try:
        if isinstance(v, bool):
            raise TypeError
        tid = int(v if v is not None else 0)
    except (TypeError, ValueError):
        raise InvalidArgument(f"token_id must be an integer, got {v!r}", field=field_name) from None
    vocab = desc.vocab_size if desc is not None else 0
    if tid < 0 or (vocab and tid >= vocab):
        raise InvalidArgument(
            f"token_id {tid} is out of the vocabulary: valid ids are 0..{vocab - 1}"
            if vocab
            else f"token_id must be >= 0, got {tid}",
            field=field_name,
        )
    return tid


def _check_special(kind: str, desc: ModelDescription | None, field_name: str) -> None:
    if desc is None:
        return
    if kind == "mask_token" and desc.mask_token_id < 0:
        raise InvalidArgument(
            "the model's tokenizer has no mask token: use pad_token, unk_token, token_id or zero_embedding",
            field=field_name,
        )
    if kind == "unk_token" and desc.unk_token_id < 0:
        raise InvalidArgument(
            "the model's tokenizer has no unk token: use pad_token, token_id or zero_embedding", field=field_name
        )


def resolve_parameters(method: Any, params: dict | None, desc: ModelDescription | None = None) -> dict[str, Any]:
    """The parameters a method uses, defaults filled in and validated."""
    info = resolve_method(method)
    params = dict(params or {})
    unknown = sorted(set(params) - KNOWN_PARAMETERS)
    if unknown:
        raise InvalidArgument(
            f"unknown parameter(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(KNOWN_PARAMETERS))}",
            field=f"parameters.{unknown[0]}",
        )
    d = info.defaults
    out: dict[str, Any] = {"batch_size": _int(params, "batch_size", d["batch_size"])}
    name = info.name
    if info.family == "perturbation":
        out["seed"] = _int(params, "seed", 0, minimum=None)
        out["replacement"] = _replacement(params, desc)
        if name == "occlusion":
            out["window"] = _int(params, "window", d["window"])
        else:
            out["n_perturbations"] = _int(params, "n_perturbations", d["n_perturbations"],
                                          maximum=SOBOL_MAX_PERTURBATIONS if name == "sobol" else None)
        if name in ("lime", "kernel_shap"):
            out["regularization"] = _float(params, "regularization", d["regularization"], nonneg=True)
        if name == "lime":
            out["kernel_width"] = _float(params, "kernel_width", d["kernel_width"], positive=True)
        if name in ("lime", "sobol"):
            kp = _float(params, "keep_probability", d["keep_probability"], positive=True)
            if kp >= 1:
                raise InvalidArgument(
                    f"keep_probability must be in (0, 1), got {kp}", field="parameters.keep_probability"
                )
            out["keep_probability"] = kp
        if name == "sobol":
            out["sobol_sampler"] = (
                parse(SobolSampler, params.get("sobol_sampler"), field="parameters.sobol_sampler") or SobolSampler.SOBOL
            ).value
            out["sobol_index"] = (
                parse(SobolIndex, params.get("sobol_index"), field="parameters.sobol_index") or SobolIndex.TOTAL
            ).value
        if name == "kernel_shap" and params.get("exact") is not None:
            out["exact"] = bool(params["exact"])
        return out
    # gradient methods
    red = parse(GradientReduction, params.get("gradient_reduction"), field="parameters.gradient_reduction")
    if red not in (None, GradientReduction.DEFAULT):
        if name in grad_mod.DOT_METHODS:
            raise InvalidArgument(
                f"gradient_reduction {red.value!r} does not apply to {name}: its attribution is the dot product of "
                "the gradient with the input (or input - baseline); leave it unspecified",
                field="parameters.gradient_reduction",
            )
        out["gradient_reduction"] = red.value
    else:
        out["gradient_reduction"] = d["gradient_reduction"]
    if "n_steps" in d:
        out["n_steps"] = _int(params, "n_steps", d["n_steps"])
    if "noise_std" in d:
        out["noise_std"] = _float(params, "noise_std", d["noise_std"], nonneg=True)
    if "seed" in d:
        out["seed"] = _int(params, "seed", 0, minimum=None)
    if "baseline" in d:
        out["baseline"] = _baseline(params, desc)
    return out


# ------------------------------------------------------------------ targets


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _tokenized_from_ids(backend: ModelBackend, desc: ModelDescription, ids: list[int]) -> tuple[str, Tokenized]:
    """Text, offsets, words and sentences of a token-id target: each token's
    span from incremental decoding, words / sentences from the model-server's
    segmentation of the decoded text (a token belongs to the word holding
    its first non-space character; whitespace-only tokens to the next word)."""
    texts = backend.detokenize([ids[: k + 1] for k in range(len(ids))])
    text = texts[-1]
    desc_special = set(desc.all_special_ids)
    starts, ends, prev = [], [], 0
    for k in range(len(ids)):
        end = len(texts[k]) if text.startswith(texts[k]) else prev
        end = max(prev, end)
        starts.append(prev)
        ends.append(end)
        prev = end
    seg = backend.tokenize(text, add_special_tokens=False) if text.strip() else None
    if seg is not None and list(seg.token_ids) == list(ids):
        return text, seg
    special = [int(i) in desc_special for i in ids]
    words = seg.words if seg is not None else []
    sentences = seg.sentences if seg is not None else []
    word_index = [-1] * len(ids)
    for k in range(len(ids)):
        if special[k]:
            continue
        for c in range(starts[k], ends[k]):
            if not text[c].isspace():
                for w, s in enumerate(words):
                    if s.start_char <= c < max(s.end_char, s.start_char + 1):
                        word_index[k] = w
                        break
                break
    nxt = -1
    for k in range(len(ids) - 1, -1, -1):  # whitespace-only: the next word, else the previous
        if special[k]:
            nxt = -1
            continue
        if word_index[k] < 0:
            word_index[k] = nxt
        nxt = word_index[k]
    prev_w = -1
    for k in range(len(ids)):
        if not special[k] and word_index[k] < 0:
            word_index[k] = prev_w
        if not special[k]:
            prev_w = word_index[k]
    sent_of_word = []
    for s in words:
        j = next(
            (
                i
                for i, st in enumerate(sentences)
                if st.start_char <= s.start_char < max(st.end_char, st.start_char + 1)
            ),
            -1,
        )
        sent_of_word.append(j)
    sentence_index = [sent_of_word[w] if w >= 0 else -1 for w in word_index]
    tokens = [text[a:b] for a, b in zip(starts, ends, strict=True)]
    return text, Tokenized(
        token_ids=list(ids),
        tokens=tokens,
        token_start_chars=starts,
        token_end_chars=ends,
        special_mask=special,
        word_index=word_index,
        sentence_index=sentence_index,
        words=list(words),
        sentences=list(sentences),
    )


def _generation_target(backend, desc, text, prompt_tok, targets, max_new_tokens, progress, should_stop):
    if targets is None:
        n_new = DEFAULT_MAX_NEW_TOKENS if max_new_tokens in (None, 0) else max_new_tokens
        if not _is_int(n_new) or n_new < 1:
            raise InvalidArgument(
                f"max_new_tokens must be >= 1, got {max_new_tokens!r}", field="targets.max_new_tokens"
            )
        if desc.max_sequence_length and len(prompt_tok) + 1 > desc.max_sequence_length:
            raise InvalidArgument(
                f"the prompt has {len(prompt_tok)} tokens: no room to generate in the model's context of "
                f"{desc.max_sequence_length}",
                field="text",
            )
        check_stop(should_stop)
        if progress is not None:
            progress(0, 1, "generating")
        ids = [int(i) for i in backend.generate(text, int(n_new))]
        stop_ids = {desc.eos_token_id, desc.pad_token_id} - {-1}
        while ids and ids[-1] in stop_ids:
            ids.pop()
        if progress is not None:
            progress(1, 1, "generating")
        if not ids:
            raise InvalidArgument(
                "the model generated no token to explain (it stopped at once): give targets", field="targets"
            )
        return _tokenized_from_ids(backend, desc, ids)
    if isinstance(targets, str):
        if targets == "":
            raise InvalidArgument("targets text is empty: give the continuation to explain", field="targets")
        tok = backend.tokenize(targets, add_special_tokens=False)
        if len(tok) == 0:
            raise InvalidArgument("targets text has no token", field="targets")
        return targets, tok
    if isinstance(targets, (list, tuple, np.ndarray)) and all(_is_int(x) for x in targets):
        ids = [int(x) for x in targets]
        if not ids:
            raise InvalidArgument("targets token ids are empty", field="targets")
        if desc.vocab_size and any(i < 0 or i >= desc.vocab_size for i in ids):
            bad = next(i for i in ids if i < 0 or i >= desc.vocab_size)
            raise InvalidArgument(
                f"target token id {bad} is out of the vocabulary: valid ids are 0..{desc.vocab_size - 1}",
                field="targets",
            )
        return _tokenized_from_ids(backend, desc, ids)
    raise InvalidArgument(
        "a causal LM's targets are a continuation text or a list of token ids (class indices / names are for "
        f"classifiers), got {type(targets).__name__}",
        field="targets",
    )


def _classification_targets(backend, desc, prompt_tok, targets, replacement, mode) -> list[int]:
    labels = list(desc.labels)
    n = len(labels)
    if targets is None:
        scores = np.asarray(
            backend.score(
                [int(i) for i in prompt_tok.token_ids],
                None,
                replacement,
                target_classes=None,
                inference_mode=mode.value,
            )
        )
        return [int(np.argmax(scores[0]))]
    items = (
        [targets]
        if isinstance(targets, (str, int, np.integer))
        else list(targets)
        if isinstance(targets, (list, tuple, np.ndarray))
        else None
    )
    if items is None or not items:
        raise InvalidArgument("a classifier's targets are class indices or class names", field="targets")
    if all(_is_int(x) for x in items):
        out = [int(x) for x in items]
        for c in out:
            if c < 0 or (n and c >= n):
                raise InvalidArgument(
                    f"class index {c} is out of range: the model has {n} classes (0..{n - 1}: {', '.join(labels)})",
                    field="targets",
                )
        return out
    if all(isinstance(x, str) for x in items):
        out = []
        for name in items:
            if name in labels:
                out.append(labels.index(name))
                continue
            low = [lab.lower() for lab in labels]
            if name.lower() in low:
                out.append(low.index(name.lower()))
                continue
            raise InvalidArgument(
                f"unknown class name {name!r}; valid names: {', '.join(map(repr, labels))}", field="targets"
            )
        return out
    raise InvalidArgument("targets mix class indices and class names: use one kind", field="targets")


def _granularity(value: Any, family: str) -> Granularity:
    g = parse(Granularity, value, field="granularity")
    if g is None:
        return Granularity.WORD if family == "perturbation" else Granularity.TOKEN
    if g.value not in ATTRIBUTION_GRANULARITIES:
        raise InvalidArgument(
            f"granularity {g.value!r} is for activations; attributions support {', '.join(ATTRIBUTION_GRANULARITIES)}",
            field="granularity",
        )
    return g


# ------------------------------------------------------------------ explain


def explain(
    backend: ModelBackend,
    method: Any,
    params: dict | None,
    text: str,
    targets: Any = None,
    granularity: Any = None,
    aggregation: Any = None,
    inference_mode: Any = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    *,
    max_new_tokens: int | None = None,
) -> AttributionResult:
    """Explains one input with one method.

    targets: causal LM — continuation text (str), token ids (list of int),
    or None (the model generates `max_new_tokens`, default 20, greedily;
    trailing EOS / pad dropped); classifier — class indices (int or list),
    class names (str or list), or None (the predicted class).
    granularity / aggregation / inference_mode: option names (see
    options.py), None for the method family's default (WORD + SOFTMAX for
    perturbation methods, TOKEN + LOGITS for gradient methods; aggregation
    SUM, used by gradient methods only).
    progress(done, total, stage) is called between batches; should_stop()
    is polled between batches and raises Cancelled when it returns True.
    """
    info = resolve_method(method)
    if not isinstance(text, str):
        raise InvalidArgument(f"text must be a string, got {type(text).__name__}", field="text")
    if text == "":
        raise InvalidArgument("text is empty: give the input to explain", field="text")
    desc = backend.describe()
    task = parse(Task, desc.task, field="model.task")
    gran = _granularity(granularity, info.family)
    agg = parse(Aggregation, aggregation, field="aggregation") or Aggregation.SUM
    mode = parse(InferenceMode, inference_mode, field="inference_mode") or (
        InferenceMode.SOFTMAX if info.family == "perturbation" else InferenceMode.LOGITS
    )
    prm = resolve_parameters(info, params, desc)
    repl_d = prm.get("replacement", {"policy": "pad_token", "token_id": 0})
    replacement = Replacement(repl_d["policy"], repl_d["token_id"])
    check_stop(should_stop)

    prompt_tok = backend.tokenize(text, add_special_tokens=True)
    max_len = int(desc.max_sequence_length or 0)
    if max_len and len(prompt_tok) > max_len:
        raise InvalidArgument(
            f"the text has {len(prompt_tok)} tokens, more than the model's maximum of {max_len}", field="text"
        )
    if task == Task.CAUSAL_LM:
        target_text, target_tok = _generation_target(
            backend, desc, text, prompt_tok, targets, max_new_tokens, progress, should_stop
        )
        total = len(prompt_tok) + len(target_tok)
        if max_len and total > max_len:
            raise InvalidArgument(
                f"prompt ({len(prompt_tok)} tokens) + targets ({len(target_tok)} tokens) = {total} tokens exceed "
                f"the model's context of {max_len} tokens: shorten the targets or the text",
                field="targets",
            )
        problem = generation_problem(text, prompt_tok, target_text, target_tok, gran)
    else:
        classes = _classification_targets(backend, desc, prompt_tok, targets, replacement, mode)
        problem = classification_problem(text, prompt_tok, gran, classes, desc.labels)

    scorer = MaskScorer(
        backend, problem, replacement, mode, batch_size=prm["batch_size"], progress=progress, should_stop=should_stop
    )
    name = info.name
    if name == "occlusion":
        scores = pert.occlusion(scorer, window=prm["window"])
    elif name == "lime":
        scores = pert.lime(
            scorer,
            n_perturbations=prm["n_perturbations"],
            keep_probability=prm["keep_probability"],
            kernel_width=prm["kernel_width"],
            regularization=prm["regularization"],
            seed=prm["seed"],
        )
    elif name == "kernel_shap":
        scores = pert.kernel_shap(
            scorer,
            n_perturbations=prm["n_perturbations"],
            regularization=prm["regularization"],
            seed=prm["seed"],
            exact=prm.get("exact"),
        )
    elif name == "sobol":
        scores = pert.sobol(
            scorer,
            n_perturbations=prm["n_perturbations"],
            sampler=SobolSampler(prm["sobol_sampler"]),
            index=SobolIndex(prm["sobol_index"]),
            keep_probability=prm["keep_probability"],
            seed=prm["seed"],
        )
    else:
        red = prm["gradient_reduction"]
        base = prm.get("baseline", {"kind": "zero", "token_id": 0})
        scores = grad_mod.gradient_attribution(
            backend,
            problem,
            name,
            inference_mode=mode,
            n_steps=prm.get("n_steps", 1),
            noise_std=prm.get("noise_std", 0.0),
            baseline_kind=base["kind"],
            baseline_token_id=base["token_id"],
            reduction=GradientReduction(red) if red in ("l2_norm", "abs_sum") else None,
            aggregation=agg,
            seed=prm.get("seed", 0),
            batch_size=prm["batch_size"],
            progress=progress,
            should_stop=should_stop,
        )
    target_scores = scorer.full_scores()
    return AttributionResult(
        model=desc.model_id,
        task=task.value,
        method=name,
        parameters=prm,
        granularity=gran.value,
        aggregation=agg.value if info.family == "gradient" else "",
        inference_mode=mode.value,
        input_elements=list(problem.segments),
        num_prompt_elements=problem.num_prompt_elements,
        target_elements=list(problem.row_labels),
        target_classes=[] if problem.target_classes is None else [int(c) for c in problem.target_classes],
        target_token_ids=list(problem.target_token_ids),
        target_element_token_ends=list(problem.target_element_token_ends),
        scores=np.asarray(scores, dtype=np.float32),
        target_scores=np.asarray(target_scores, dtype=np.float32),
        text=problem.text,
        prompt_text=problem.prompt_text,
        input_ids=[int(i) for i in problem.input_ids],
    )


# ------------------------------------------------------------------ evaluate


def problem_of(backend: ModelBackend, attribution: AttributionResult, desc: ModelDescription | None = None) -> Problem:
    """Rebuilds the explanation problem of a stored attribution (tokenizing
    the prompt again when the attribution carries no input_ids)."""
    desc = desc or backend.describe()
    a = attribution
    gran = parse(Granularity, a.granularity, field="attribution.granularity") or Granularity.WORD
    task = parse(Task, a.task or desc.task, field="attribution.task")
    if task.value != desc.task:
        raise InvalidArgument(
            f"the attribution is of a {task.value} model but the model is a {desc.task}", field="attribution.task"
        )
    if not a.input_elements or a.num_prompt_elements < 1:
        raise InvalidArgument("the attribution has no input elements", field="attribution.input_elements")
    special = set(desc.all_special_ids)
    ids = list(a.input_ids)
    if not ids:
        if task == Task.SEQUENCE_CLASSIFICATION:
            ids = list(backend.tokenize(a.text, add_special_tokens=True).token_ids)
        else:
            if a.num_prompt_elements >= len(a.input_elements):
                raise InvalidArgument(
                    "a generation attribution needs target elements", field="attribution.input_elements"
                )
            p_len = a.input_elements[a.num_prompt_elements].start_token
            candidates = []
            if a.prompt_text:
                candidates.append(a.prompt_text)
            tail = backend.detokenize([list(a.target_token_ids)])[0]
            if tail and a.text.endswith(tail):
                candidates.append(a.text[: len(a.text) - len(tail)])
            candidates.append(a.text[: a.input_elements[a.num_prompt_elements].start_char])
            for prompt in candidates:
                if prompt:
                    tok = backend.tokenize(prompt, add_special_tokens=True)
                    if len(tok) == p_len:
                        ids = list(tok.token_ids) + list(a.target_token_ids)
                        break
            if not ids:
                raise InvalidArgument(
                    "cannot rebuild the attribution's input: its text does not tokenize to its "
                    "elements with this model (was it made with another model?)",
                    field="attribution.text",
                )
    special_mask = [int(i) in special for i in ids]
    return build_problem(
        task=task,
        input_ids=ids,
        segments=list(a.input_elements),
        num_prompt_elements=a.num_prompt_elements,
        special_mask=special_mask,
        keep_special=gran == Granularity.ALL_TOKENS,
        text=a.text,
        prompt_text=a.prompt_text,
        target_token_ids=a.target_token_ids,
        target_element_token_ends=a.target_element_token_ends,
        target_classes=a.target_classes,
        labels=desc.labels,
    )


def evaluate(
    backend: ModelBackend,
    metric: Any,
    attribution: AttributionResult,
    *,
    n_steps: int | None = None,
    replacement: Any = None,
    inference_mode: Any = None,
    n_random_orders: int | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> MetricResult:
    """Deletion / Insertion curve of one attribution (see metrics.py).

    n_steps: points of the curve minus one (None / 0: one element per step);
    replacement: {"policy", "token_id"} (default pad_token);
    inference_mode default SOFTMAX; n_random_orders default 10, -1 (or any
    negative) disables the random baseline; batch_size default 32.
    """
    m = parse(Metric, metric, field="metric")
    if m is None:
        raise InvalidArgument("metric is unspecified: use 'deletion' or 'insertion'", field="metric")
    if not isinstance(attribution, AttributionResult):
        raise InvalidArgument("attribution must be an AttributionResult", field="attributions")
    desc = backend.describe()
    prm_in = {k: v for k, v in {"n_steps": n_steps, "batch_size": batch_size, "seed": seed}.items()}
    steps = _int(prm_in, "n_steps", 0, minimum=0, prefix="")
    bs = _int(prm_in, "batch_size", DEFAULT_BATCH_SIZE, prefix="")
    sd = _int(prm_in, "seed", 0, minimum=None, prefix="")
    if n_random_orders is None or n_random_orders == 0:
        n_rand = 10
    elif not _is_int(n_random_orders):
        raise InvalidArgument(f"n_random_orders must be an integer, got {n_random_orders!r}", field="n_random_orders")
    elif int(n_random_orders) > MAXIMUMS["n_random_orders"]:
        raise InvalidArgument(f"n_random_orders must be <= {MAXIMUMS['n_random_orders']}, got {n_random_orders}",
                              field="n_random_orders")
    else:
        n_rand = max(0, int(n_random_orders))
    repl = _replacement({"replacement": replacement}, desc, prefix="")
    mode = parse(InferenceMode, inference_mode, field="inference_mode") or InferenceMode.SOFTMAX
    problem = problem_of(backend, attribution, desc)
    scores = np.asarray(attribution.scores, dtype=np.float64)
    if scores.shape != (problem.n_rows, problem.n_elements):
        raise InvalidArgument(
            f"attribution scores have shape {scores.shape}, expected "
            f"({problem.n_rows}, {problem.n_elements}) (targets x input elements)",
            field="attribution.scores",
        )
    scorer = MaskScorer(
        backend,
        problem,
        Replacement(repl["policy"], repl["token_id"]),
        mode,
        batch_size=bs,
        progress=progress,
        should_stop=should_stop,
    )
    curve, rcurve, per = metrics_mod.deletion_insertion(
        scorer, scores, m, n_steps=steps, n_random_orders=n_rand, seed=sd
    )
    return MetricResult(
        metric=m.value,
        curve=MetricCurve(curve.fractions, curve.scores, curve.auc),
        random_curve=None if rcurve is None else MetricCurve(rcurve.fractions, rcurve.scores, rcurve.auc),
        per_target_scores=per,
        parameters={
            "n_steps": steps,
            "replacement": repl,
            "inference_mode": mode.value,
            "n_random_orders": n_rand,
            "seed": sd,
            "batch_size": bs,
        },
    )


__all__ = ["MethodInfo", "list_methods", "resolve_method", "resolve_parameters", "explain", "evaluate", "problem_of"]
