"""Scoring labels with a scorer LLM: detection and fuzzing.

- Detection: the scorer sees a shuffled mix of up to ``n`` activating and up
  to ``n`` non-activating excerpts, without highlights, and says which match
  the label.
- Fuzzing: the scorer sees up to ``n`` activating excerpts with their true
  highlights and up to ``n`` excerpts with the same number of *random* tokens
  highlighted, and says in which the highlighted tokens match the label.

The score is the balanced accuracy of the scorer's answers (0.5 = chance).
Everything random (which examples, their order, the random highlights) comes
from a ``random.Random`` seeded by (seed, concept, method), so results do not
depend on thread timing.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

from ._pool import run_bounded
from .errors import LabelParseError
from .examples import ConceptExample, ContextToken, ErrorInfo
from .labeling import error_info
from .llm import LLM
from .prompts import example_text, render_prompt, render_tokens
from .redaction import redact

DETECTION = "detection"
FUZZING = "fuzzing"
METHODS = (DETECTION, FUZZING)

DETECTION_SYSTEM_PROMPT = (
    "You check explanations of features of a language model. You are given a label that "
    "describes what a feature responds to, and numbered text excerpts. The feature is active "
    "in some excerpts and not in the others. Decide for each excerpt whether it contains what "
    "the label describes. Reply only with a JSON list of the numbers of the matching excerpts, "
    "for example [1, 4]. Reply [] if none match."
)

FUZZING_SYSTEM_PROMPT = (
    "You check explanations of features of a language model. You are given a label that "
    "describes what a feature responds to, and numbered text excerpts in which some tokens are "
    "marked with << >>. In some excerpts the marks show where the feature is active; in the "
    "others they were placed at random. Decide for each excerpt whether the marked tokens are "
    "what the label describes. Reply only with a JSON list of the numbers of the excerpts whose "
    "marked tokens match the label, for example [2, 3]. Reply [] if none match."
)


@dataclass
class ScoringInput:
    """One label to score and the examples to score it with.

    ``activating``: rows where the concept is active, ideally with context
    tokens (highlighted = the row); fuzzing needs context. ``non_activating``:
    rows where the concept is zero (context optional), used by detection and,
    when activating examples run short, as fuzzing decoys."""

    concept_index: int
    label: str
    activating: list[ConceptExample] = field(default_factory=list)
    non_activating: list[ConceptExample] = field(default_factory=list)


@dataclass
class LabelScoreResult:
    concept_index: int
    label: str
    method: str  # DETECTION or FUZZING
    # None when scoring failed (see error).
    balanced_accuracy: float | None
    # Excerpts shown to the scorer (both kinds together).
    n_examples: int
    error: ErrorInfo | None = None
    prompt: str = ""
    answer: str = ""
    # Per excerpt, in the order shown: is it a true example / did the scorer pick it.
    truth: list[bool] = field(default_factory=list)
    predicted: list[bool] = field(default_factory=list)


@dataclass
class LabelScoresSummary:
    # Mean balanced accuracy over concepts scored without error; None if none.
    mean_detection: float | None
    mean_fuzzing: float | None
    scorer: str
    scorer_is_labeller: bool
    n_detection: int = 0
    n_fuzzing: int = 0


# --------------------------------------------------------------------------
# metrics and parsing


def balanced_accuracy(truth: Sequence[bool], predicted: Sequence[bool]) -> float:
    """Mean of the recall on positives and the recall on negatives (only the
    classes present count). 0.5 = chance, 1 = perfect."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted differ in length")
    pos = [p for t, p in zip(truth, predicted) if t]
    neg = [p for t, p in zip(truth, predicted) if not t]
    recalls = []
    if pos:
        recalls.append(sum(1 for p in pos if p) / len(pos))
    if neg:
        recalls.append(sum(1 for p in neg if not p) / len(neg))
    if not recalls:
        raise ValueError("no examples")
    return sum(recalls) / len(recalls)


def same_llm(a: str, b: str) -> bool:
    """Whether two describe() strings name the same LLM."""
    def norm(s: str) -> str:
        return (s or "").strip().rstrip("/").lower()
    return bool(norm(a)) and norm(a) == norm(b)


_THINK = re.compile(r"<think>.*?(</think>|$)", re.IGNORECASE | re.DOTALL)
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")
_MASK_LINE = re.compile(r"^[\s,;|]*([01](?:[\s,;|]*[01])*)[\s,;|.]*$")
_NONE_START = re.compile(r"^\W*(none|no\b|nothing|neither)", re.IGNORECASE)
_NONE_ANY = re.compile(r"\b(none|no excerpts?|nothing)\b", re.IGNORECASE)


def _ints(text: str) -> list[int] | None:
    text = text.strip()
    if not text:
        return []
    try:
        values = json.loads(f"[{text}]")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return values
        if all(isinstance(v, str) and v.strip().isdigit() for v in values):
            return [int(v) for v in values]
    except ValueError:
        pass
    parts = [p for p in re.split(r"[\s,;]+", text) if p]
    if parts and all(p.strip("\"'").isdigit() for p in parts):
        return [int(p.strip("\"'")) for p in parts]
    return None


def _from_values(values: list[int], n: int) -> list[bool]:
    if len(values) == n and set(values) <= {0, 1} and (0 in values or len(set(values)) < len(values)):
        return [v == 1 for v in values]  # a 0/1 mask
    if 0 in values and max(values) < n:
        values = [v + 1 for v in values]  # 0-based numbers
    chosen = {v for v in values if 1 <= v <= n}
    return [i + 1 in chosen for i in range(n)]


def parse_selection(answer: str, n: int) -> list[bool]:
    """Which of ``n`` numbered excerpts the scorer picked. Accepts a JSON list
    of 1-based numbers (the last list in the answer wins; 0-based lists are
    recognised), a list or line of n 0/1 values, "none", or numbers in prose.
    Raises ``LabelParseError`` when no answer can be read."""
    text = _THINK.sub("", answer or "").strip()
    for inner in reversed(_BRACKETS.findall(text)):
        values = _ints(inner)
        if values is not None:
            return _from_values(values, n)
    for line in reversed(text.splitlines()):
        m = _MASK_LINE.match(line)
        if m:
            digits = re.findall(r"[01]", m.group(1))
            if len(digits) == n:
                return [d == "1" for d in digits]
    if _NONE_START.match(text):
        return [False] * n
    numbers = [int(x) for x in re.findall(r"\b\d+\b", text)]
    numbers = [x for x in numbers if 1 <= x <= n]
    if numbers:
        return _from_values(numbers, n)
    if _NONE_ANY.search(text):
        return [False] * n
    shown = " ".join((answer or "").split())[:80]
    raise LabelParseError(redact(f"could not read the scorer's answer: {shown!r}"))


# --------------------------------------------------------------------------
# building the tests


def _rng(seed: int, concept_index: int, method: str) -> random.Random:
    return random.Random(f"xaimesh-scoring:{seed}:{concept_index}:{method}")


def _sample(rng: random.Random, items: Sequence[ConceptExample], n: int) -> list[ConceptExample]:
    items = list(items)
    return rng.sample(items, min(n, len(items)))


def _build_user(label: str, texts: Sequence[str], question: str) -> str:
    lines = [f"{i + 1}. {t}" for i, t in enumerate(texts)]
    return f"Label: {label}\n\nExcerpts:\n" + "\n".join(lines) + f"\n\n{question}"


def build_detection(item: ScoringInput, n: int, rng: random.Random) -> tuple[list[dict[str, str]], list[bool]]:
    pos = _sample(rng, item.activating, n)
    neg = _sample(rng, item.non_activating, n)
    if not pos:
        raise FailedPrecondition(f"concept {item.concept_index}: no activating examples to score with")
    if not neg:
        raise FailedPrecondition(
            f"concept {item.concept_index}: no non-activating examples (no row searched where the concept is quiet)")
    shown = [(ex, True) for ex in pos] + [(ex, False) for ex in neg]
    rng.shuffle(shown)
    texts = [example_text(ex, highlight=False) for ex, _ in shown]
    user = _build_user(item.label, texts,
                       "Which excerpts match the label? Reply with a JSON list of numbers.")
    messages = [{"role": "system", "content": DETECTION_SYSTEM_PROMPT}, {"role": "user", "content": user}]
    return messages, [t for _, t in shown]


def _random_highlight(tokens: Sequence[ContextToken], rng: random.Random) -> list[bool] | None:
    """Flags for the same number of tokens as the true highlight (at least 1),
    placed on other, non-blank tokens (inactive ones preferred), contiguous
    when possible. None when the example has no room for it."""
    k = max(1, sum(1 for t in tokens if t.highlighted))
    free = [i for i, t in enumerate(tokens) if not t.highlighted and t.text.strip()]
    quiet = [i for i in free if not _is_active(tokens[i])]
    candidates = quiet if len(quiet) >= k else free
    if not candidates:
        return None
    k = min(k, len(candidates))
    cand = set(candidates)
    starts = [i for i in candidates if all(j in cand for j in range(i, i + k))]
    chosen = list(range(s := rng.choice(starts), s + k)) if starts else rng.sample(candidates, k)
    flags = [False] * len(tokens)
    for i in chosen:
        flags[i] = True
    return flags


def _is_active(token: ContextToken) -> bool:
    return bool(token.activation and token.activation > 0)


def build_fuzzing(item: ScoringInput, n: int, rng: random.Random) -> tuple[list[dict[str, str]], list[bool]]:
    usable = [ex for ex in item.activating if ex.context and any(t.highlighted for t in ex.context)]
    if not usable:
        raise FailedPrecondition(
            f"concept {item.concept_index}: fuzzing needs activating examples with context tokens "
            "(k_context > 0)")
    true_ex = _sample(rng, usable, n)
    rest = [ex for ex in usable if ex not in true_ex]
    rng.shuffle(rest)
    reused = list(usable)
    rng.shuffle(reused)
    decoys = [ex for ex in item.non_activating if ex.context]
    rng.shuffle(decoys)
    shown: list[tuple[str, bool]] = [(render_tokens(ex.context), True) for ex in true_ex]
    fakes = 0
    for ex in [*rest, *reused, *decoys]:
        if fakes >= len(true_ex):
            break
        flags = _random_highlight(ex.context, rng)
        if flags is None:
            continue
        shown.append((render_tokens(ex.context, highlighted=flags), False))
        fakes += 1
    if fakes == 0:
        raise FailedPrecondition(
            f"concept {item.concept_index}: no example has room for a random highlight; "
            "fuzzing needs more context (k_context > 0)")
    rng.shuffle(shown)
    user = _build_user(item.label, [t for t, _ in shown],
                       "In which excerpts do the marked tokens match the label? "
                       "Reply with a JSON list of numbers.")
    messages = [{"role": "system", "content": FUZZING_SYSTEM_PROMPT}, {"role": "user", "content": user}]
    return messages, [t for _, t in shown]


_BUILDERS = {DETECTION: build_detection, FUZZING: build_fuzzing}


# --------------------------------------------------------------------------
# running


def score_labels(
    inputs: Iterable[ScoringInput],
    scorer: LLM,
    methods: Sequence[str] = METHODS,
    n_examples: int = 5,
    seed: int = 0,
    max_concurrency: int = 4,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[LabelScoreResult]:
    """Scores every (label, method) pair with ``scorer``; yields results as
    they complete. A failure is that pair's ``error``; the rest go on.
    ``progress(done, total)`` after each result; ``should_stop()`` ends the
    run with ``Cancelled``."""
    methods = list(dict.fromkeys(methods or METHODS))
    for m in methods:
        if m not in _BUILDERS:
            raise InvalidArgument(f"unknown scoring method {m!r}: expected one of {METHODS}")
    if n_examples < 1:
        raise InvalidArgument("n_examples must be >= 1")
    jobs = [(item, m) for item in inputs for m in methods]
    total = len(jobs)
    done = 0

    def work(job: tuple[ScoringInput, str]) -> LabelScoreResult:
        return _score_one(job[0], job[1], scorer, n_examples, seed)

    for result in run_bounded(jobs, work, max_concurrency, should_stop, "scoring"):
        done += 1
        yield result
        if progress is not None:
            progress(done, total)


def _score_one(item: ScoringInput, method: str, scorer: LLM, n: int, seed: int) -> LabelScoreResult:
    label = (item.label or "").strip()
    result = LabelScoreResult(item.concept_index, label, method, None, 0)
    try:
        if not label:
            raise InvalidArgument(f"concept {item.concept_index}: the label is empty")
        messages, truth = _BUILDERS[method](item, n, _rng(seed, item.concept_index, method))
        result.prompt, result.truth, result.n_examples = render_prompt(messages), truth, len(truth)
        result.answer = scorer.complete(messages)
        result.predicted = parse_selection(result.answer, len(truth))
        result.balanced_accuracy = balanced_accuracy(truth, result.predicted)
    except Exception as exc:  # noqa: BLE001 - one pair's failure stays its own
        result.error = error_info(exc)
    return result


def summarize_scores(results: Iterable[LabelScoreResult], scorer: str, labeller: str = "") -> LabelScoresSummary:
    """Means per method over results without error; ``scorer_is_labeller``
    when ``scorer`` and ``labeller`` (describe() strings) name the same LLM."""
    by: dict[str, list[float]] = {DETECTION: [], FUZZING: []}
    for r in results:
        if r.error is None and r.balanced_accuracy is not None:
            by.setdefault(r.method, []).append(r.balanced_accuracy)

    def mean(xs: list[float]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    return LabelScoresSummary(
        mean_detection=mean(by[DETECTION]),
        mean_fuzzing=mean(by[FUZZING]),
        scorer=scorer,
        scorer_is_labeller=same_llm(scorer, labeller),
        n_detection=len(by[DETECTION]),
        n_fuzzing=len(by[FUZZING]),
    )
