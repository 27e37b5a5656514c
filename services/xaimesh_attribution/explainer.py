"""The facade the gRPC adapter calls: `prepare` + `explain_input` (or
`explain`, both at once), `evaluate`, `list_methods`.

A method comes from the one registry (`methods.REGISTRY`); its parameters
are its typed `Parameters` dataclass, validated once when built. The
server decodes the request's parameter message into it
(`method.parameters_from_proto`); in-process callers may give a dict of
field names instead (absent or None: the default; an explicit value is
validated, zero included: e.g. n_perturbations=0 is an error, Lime's
regularization=0 is used as given; unknown keys are an error). Enum values
may be option members, short names ("halton"), proto names
("SOBOL_SAMPLER_HALTON") or proto numbers.

`prepare` validates what does not depend on one input (method,
parameters against the model, granularity, aggregation, inference mode)
once; `explain_input` explains one input with the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

from . import metrics as metrics_mod
from .backend import ModelBackend, ModelDescription
from .concepts import ConceptEncoder, ConceptReadoutBackend, check_concept_request, concept_labels
from .elements import GENERATION_TASKS, Problem, build_problem, classification_problem, generation_problem
from .methods import REGISTRY, AttributionMethod, Job, Parameters, list_methods, resolve_method  # noqa: F401
from .methods.base import (
    ATTRIBUTION_GRANULARITIES,
    DEFAULT_BATCH_SIZE,
    INT64_MAX,
    MAX_BATCH_SIZE,
    MAX_STEPS,
    as_replacement,
    check_replacement,
    resolve_replacement,
)
from .backend import Replacement
from .options import Aggregation, Granularity, InferenceMode, Metric, Task, parse
from .results import AttributionResult, MetricCurve, MetricResult
from .scoring import MaskScorer, ProgressFn, StopFn, check_stop

# Tokens generated greedily as the explained target when an input of a causal
# LM gives none (Targets.max_new_tokens = 0). Not the model-server's
# DEFAULT_MAX_NEW_TOKENS, which is Generate's default length.
DEFAULT_TARGET_NEW_TOKENS = 20
MAX_RANDOM_ORDERS = 1_000


def _count(name: str, value: Any, default: int, *, minimum: int, maximum: int) -> int:
    if value is None:
        return default
    if not _is_int(value):
        raise InvalidArgument(f"{name} must be an integer, got {value!r}", field=name)
    iv = int(value)
    if iv < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {iv}", field=name)
    if iv > maximum:
        raise InvalidArgument(f"{name} must be <= {maximum}, got {iv}: ask for fewer", field=name)
    return iv


# ------------------------------------------------------------------ targets


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _generation_target(backend, desc, text, prompt_tok, targets, max_new_tokens, progress, should_stop,
                       chat=None):
    if targets is None:
        n_new = DEFAULT_TARGET_NEW_TOKENS if max_new_tokens in (None, 0) else max_new_tokens
        if not _is_int(n_new) or n_new < 1:
            raise InvalidArgument(
                f"max_new_tokens must be >= 1, got {max_new_tokens!r}", field="targets.max_new_tokens"
            )
        # an encoder-decoder's decoder has the whole context (prompt_tok is its source)
        if (desc.max_sequence_length and desc.task != Task.SEQ2SEQ_LM.value
                and len(prompt_tok) + 1 > desc.max_sequence_length):
            raise InvalidArgument(
                f"the prompt has {len(prompt_tok)} tokens: no room to generate in the model's context of "
                f"{desc.max_sequence_length}",
                field="text",
            )
        check_stop(should_stop)
        if progress is not None:
            progress(0, 1, "generating")
        ids = [int(i) for i in (backend.generate(text, int(n_new)) if chat is None
                                else backend.generate_chat(chat, int(n_new)))]
        stop_ids = {desc.eos_token_id, desc.pad_token_id} - {-1}
        while ids and ids[-1] in stop_ids:
            ids.pop()
        if progress is not None:
            progress(1, 1, "generating")
        if not ids:
            raise InvalidArgument(
                "the model generated no token to explain (it stopped at once): give targets", field="targets"
            )
        tok = backend.tokenize_ids(ids)
        return tok.text, tok
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
        tok = backend.tokenize_ids(ids)
        return tok.text, tok
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


# ------------------------------------------------------------------ chats

CHAT_ROLES = ("system", "user", "assistant")


def as_chat(value: Any, field: str = "chat") -> list[dict] | None:
    """A chat ({"role", "content"} dicts, or objects with role / content,
    e.g. ChatMessage) as a list of dicts; None when `value` is not a chat
    (a text)."""
    if not isinstance(value, (list, tuple)):
        return None  # a text (or not an input: the caller says so)
    out = []
    for i, m in enumerate(value):
        role = m.get("role") if isinstance(m, dict) else getattr(m, "role", None)
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", None)
        if role not in CHAT_ROLES:
            raise InvalidArgument(f"chat message {i} has role {role!r}: use 'system', 'user' or 'assistant'",
                                  field=f"{field}.messages[{i}].role")
        if not isinstance(content, str):
            raise InvalidArgument(f"chat message {i}'s content must be a string, got {type(content).__name__}",
                                  field=f"{field}.messages[{i}].content")
        out.append({"role": role, "content": content})
    if not out:
        raise InvalidArgument("the chat has no messages: give at least one", field=f"{field}.messages")
    if not any(m["role"] == "user" and m["content"].strip() for m in out):
        raise InvalidArgument("the chat has no user message with content: its user words are what is explained",
                              field=f"{field}.messages")
    return out


def _chat_prompt(backend, chat: list[dict]):
    """The chat tokenized as the model sees it, and per token whether it is
    fixed (not a user message's content: template, system, assistant)."""
    if not callable(getattr(backend, "tokenize_chat", None)):
        raise FailedPrecondition("this model backend cannot render chats: send a text", field="chat")
    tok = backend.tokenize_chat(chat)
    index = list(tok.message_index)
    if len(index) != len(tok):
        raise FailedPrecondition("the model-server did not say which tokens are the chat's content "
                                 "(is it older than this service?)", field="chat")
    fixed = [not (0 <= k < len(chat) and chat[k]["role"] == "user") for k in index]
    if all(fixed):
        raise InvalidArgument("no token of the chat is a user message's content", field="chat")
    return tok, fixed


# ------------------------------------------------------------------ explain


@dataclass(frozen=True)
class ExplainPlan:
    """What `prepare` validated once for every input of a request."""

    method: AttributionMethod
    parameters: Parameters
    granularity: Granularity
    aggregation: Aggregation
    inference_mode: InferenceMode
    desc: ModelDescription
    task: Task
    # Inputs -> concepts (concepts.py): rows explain these concepts' activations.
    concept_encoder: ConceptEncoder | None = None


def _granularity(value: Any, method: AttributionMethod) -> Granularity:
    g = parse(Granularity, value, field="granularity")
    if g is None:
        return Granularity.WORD if method.family == "perturbation" else Granularity.TOKEN
    if g.value not in method.granularities:
        supported = ", ".join(x for x in method.granularities if x in ATTRIBUTION_GRANULARITIES)
        what = "is for activations" if g.value not in ATTRIBUTION_GRANULARITIES else "is not supported"
        raise InvalidArgument(f"granularity {g.value!r} {what}; {method.name} supports {supported}",
                              field="granularity")
    return g


def prepare(
    backend: ModelBackend,
    method: Any,
    params: Any = None,
    granularity: Any = None,
    aggregation: Any = None,
    inference_mode: Any = None,
    *,
    desc: ModelDescription | None = None,
    concept_encoder: ConceptEncoder | None = None,
) -> ExplainPlan:
    """Validates the request-level settings once.

    method: a registered method, its name, class name, proto name or number;
    params: its Parameters, a dict of them or None (defaults);
    granularity / aggregation / inference_mode: option names (options.py) or
    proto values, None for the method family's default (WORD + SOFTMAX for
    perturbation methods, TOKEN + LOGITS for gradient methods; aggregation
    SUM, used by gradient methods only). concept_encoder: explain its
    concepts' activations instead of the model's outputs (concepts.py; the
    inference mode must then be unset)."""
    m = resolve_method(method)
    prm = m.parameters(params)
    desc = desc or backend.describe()
    if concept_encoder is not None:
        check_concept_request(desc, inference_mode)
        concept_encoder.explained()
        inference_mode = InferenceMode.LOGITS  # a row's value is its concept's raw activation
    task = parse(Task, desc.task, field="model.task")
    gran = _granularity(granularity, m)
    agg = parse(Aggregation, aggregation, field="aggregation") or Aggregation.SUM
    mode = parse(InferenceMode, inference_mode, field="inference_mode") or (
        InferenceMode.SOFTMAX if m.family == "perturbation" else InferenceMode.LOGITS
    )
    prm = prm.for_model(desc)
    prm.check_model(desc)
    return ExplainPlan(m, prm, gran, agg, mode, desc, task, concept_encoder)


def explain_input(
    backend: ModelBackend,
    plan: ExplainPlan,
    text: str,
    targets: Any = None,
    *,
    max_new_tokens: int | None = None,
    chat_template: bool | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> AttributionResult:
    """Explains one input with a prepared plan.

    text: a plain text, or a chat (a list of {"role", "content"} messages;
    causal LMs with a chat template): rendered with the template and its
    generation prompt, its elements are the user messages' content only
    (template, system and assistant tokens are kept, never perturbed, not
    attributed). chat_template=True wraps a plain text as one user message
    (default False / None: the text as given, no template).

    targets: causal LM — continuation text (str), token ids (list of int),
    or None (the model generates `max_new_tokens`, default
    DEFAULT_TARGET_NEW_TOKENS = 20, greedily; trailing EOS / pad dropped);
    encoder-decoder — the same, the text being the source and the targets
    what the decoder produces;
    classifier — class indices (int or list), class names (str or list), or
    None (the predicted class).
    progress(done, total, stage) is called between batches; should_stop()
    is polled between batches and raises Cancelled when it returns True.
    """
    chat = as_chat(text)
    if chat is None:
        if not isinstance(text, str):
            raise InvalidArgument(f"text must be a string, got {type(text).__name__}", field="text")
        if text == "":
            raise InvalidArgument("text is empty: give the input to explain", field="text")
        if chat_template:
            chat = [{"role": "user", "content": text}]
    desc, prm, mode = plan.desc, plan.parameters, plan.inference_mode
    replacement = getattr(prm, "replacement", Replacement())
    check_stop(should_stop)

    fixed = None
    if chat is not None:
        if plan.task != Task.CAUSAL_LM:
            kind = "an encoder-decoder" if plan.task == Task.SEQ2SEQ_LM else "a classifier"
            raise InvalidArgument(f"a chat input is for causal LMs with a chat template; this model is {kind}: "
                                  "send a text", field="chat")
        prompt_tok, fixed = _chat_prompt(backend, chat)
        text = prompt_tok.text
    else:
        prompt_tok = backend.tokenize(text, add_special_tokens=True)
    max_len = int(desc.max_sequence_length or 0)
    if max_len and len(prompt_tok) > max_len:
        raise InvalidArgument(
            f"the text has {len(prompt_tok)} tokens, more than the model's maximum of {max_len}", field="text"
        )
    if plan.concept_encoder is not None:
        if targets is not None:
            raise InvalidArgument("an inputs -> concepts attribution explains the concept encoder's concepts: give "
                                  "no targets (choose concepts with concept_encoder.concepts)", field="targets")
        problem = classification_problem(text, prompt_tok, plan.granularity, plan.concept_encoder.explained(),
                                         concept_labels(plan.concept_encoder))
        backend = ConceptReadoutBackend(backend, plan.concept_encoder)
    elif plan.task in GENERATION_TASKS:
        target_text, target_tok = _generation_target(
            backend, desc, text, prompt_tok, targets, max_new_tokens, progress, should_stop, chat
        )
        if plan.task == Task.SEQ2SEQ_LM:  # the decoder reads its start token + the target but its last token
            if max_len and len(target_tok) > max_len:
                raise InvalidArgument(
                    f"the targets have {len(target_tok)} tokens, more than the decoder's maximum of {max_len}: "
                    "shorten them", field="targets")
        elif max_len and len(prompt_tok) + len(target_tok) > max_len:
            total = len(prompt_tok) + len(target_tok)
            raise InvalidArgument(
                f"prompt ({len(prompt_tok)} tokens) + targets ({len(target_tok)} tokens) = {total} tokens exceed "
                f"the model's context of {max_len} tokens: shorten the targets or the text",
                field="targets",
            )
        problem = generation_problem(text, prompt_tok, target_text, target_tok, plan.granularity, fixed, plan.task)
    else:
        classes = _classification_targets(backend, desc, prompt_tok, targets, replacement, mode)
        problem = classification_problem(text, prompt_tok, plan.granularity, classes, desc.labels)

    job = Job(backend, problem, mode, plan.aggregation, replacement, prm.batch_size, progress, should_stop)
    scores = plan.method.attribute(job, prm)
    target_scores = job.scorer.full_scores()
    return AttributionResult(
        model=desc.model_id,
        task=plan.task.value,
        method=plan.method.name,
        parameters=prm,
        granularity=plan.granularity.value,
        aggregation=plan.aggregation.value if plan.method.family == "gradient" else "",
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
        explains_concepts=plan.concept_encoder is not None,
    )


def explain(
    backend: ModelBackend,
    method: Any,
    params: Any,
    text: str,
    targets: Any = None,
    granularity: Any = None,
    aggregation: Any = None,
    inference_mode: Any = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    *,
    max_new_tokens: int | None = None,
    chat_template: bool | None = None,
) -> AttributionResult:
    """Explains one input with one method: `prepare` then `explain_input`
    (see both for the arguments; text may be a chat)."""
    plan = prepare(backend, method, params, granularity, aggregation, inference_mode)
    return explain_input(backend, plan, text, targets, max_new_tokens=max_new_tokens, chat_template=chat_template,
                         progress=progress, should_stop=should_stop)


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
    ids = [int(i) for i in a.input_ids]
    if ids:  # as the model saw them (a chat's template, a BOS): checked against the rest of the attribution
        n_t = len(a.target_token_ids)
        if task != Task.SEQUENCE_CLASSIFICATION and (n_t >= len(ids) or ids[len(ids) - n_t:] != list(a.target_token_ids)):
            raise InvalidArgument(
                "the attribution's input_ids do not end with its target_token_ids: send the attribution as the "
                "service returned it", field="attribution.input_ids")
        if desc.vocab_size and any(i < 0 or i >= desc.vocab_size for i in ids):
            raise InvalidArgument(
                f"the attribution's input_ids hold ids outside the model's vocabulary (0..{desc.vocab_size - 1}): "
                "was it made with another model?", field="attribution.input_ids")
    else:
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
    replacement: a Replacement, {"policy", "token_id"} or a policy name
    (default pad_token);
    inference_mode default SOFTMAX; n_random_orders default 10, -1 (or any
    negative) disables the random baseline; batch_size default 32.
    """
    m = parse(Metric, metric, field="metric")
    if m is None:
        raise InvalidArgument("metric is unspecified: use 'deletion' or 'insertion'", field="metric")
    if not isinstance(attribution, AttributionResult):
        raise InvalidArgument("attribution must be an AttributionResult", field="attributions")
    if attribution.explains_concepts:
        raise InvalidArgument("this attribution explains concept activations: Deletion / Insertion score the "
                              "model's outputs and are not defined for it (docs/inputs-to-concepts.md)",
                              field="attributions")
    desc = backend.describe()
    steps = _count("n_steps", n_steps, 0, minimum=0, maximum=MAX_STEPS)
    bs = _count("batch_size", batch_size, DEFAULT_BATCH_SIZE, minimum=1, maximum=MAX_BATCH_SIZE)
    sd = _count("seed", seed, 0, minimum=0, maximum=INT64_MAX)
    if n_random_orders is None or n_random_orders == 0:
        n_rand = 10
    elif not _is_int(n_random_orders):
        raise InvalidArgument(f"n_random_orders must be an integer, got {n_random_orders!r}", field="n_random_orders")
    elif int(n_random_orders) > MAX_RANDOM_ORDERS:
        raise InvalidArgument(f"n_random_orders must be <= {MAX_RANDOM_ORDERS}, got {n_random_orders}",
                              field="n_random_orders")
    else:
        n_rand = max(0, int(n_random_orders))
    repl = resolve_replacement(as_replacement(replacement, "replacement"), desc, "replacement")
    check_replacement(repl, desc, "replacement")
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
        repl,
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
            "replacement": repl.to_dict(),
            "inference_mode": mode.value,
            "n_random_orders": n_rand,
            "seed": sd,
            "batch_size": bs,
        },
    )


__all__ = [
    "DEFAULT_TARGET_NEW_TOKENS",
    "as_chat",
    "ExplainPlan",
    "REGISTRY",
    "evaluate",
    "explain",
    "explain_input",
    "list_methods",
    "prepare",
    "problem_of",
    "resolve_method",
]
