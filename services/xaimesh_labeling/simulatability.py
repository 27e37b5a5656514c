"""ConSim (concept-based simulatability): the prompt, the reply's parsing, the score.

A simulator LLM is shown a task description and the classes, then, by prompt
type, concept labels with per-class concept importances (global
explanation), the learning-phase samples (first half) with the model's
classes, and per-sample concept contributions (local explanation). It is
asked for the model's class of each evaluation-phase sample (second half).
The score is the fraction of evaluation samples where its answer equals the
model's class. docs/concept-metrics.md defines it against interpreto 0.5.2.

Importances are shown quantized, as interpreto does: each vector is
normalized by the sum of its absolute values, then ``++`` (>= 6t), ``+``
(>= t), ``-`` (<= -t), ``--`` (<= -6t), hidden below ``t`` (the
threshold). A concept is shown only when it has a label and is above the
threshold for at least one class; when no concept is, the threshold is
halved until one is (never when every importance is zero).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from xaimesh_runtime.errors import InvalidArgument

from .llm import LLM

__all__ = ["DEFAULT_IMPORTANCE_THRESHOLD", "DEFAULT_PROMPT_TYPE", "PROMPT_PARTS", "PromptParts",
           "SimulatabilityInput", "SimulatabilityResult", "build_messages", "check_input", "parse_reply", "quantize",
           "score_simulatability", "shown_concepts"]

DEFAULT_IMPORTANCE_THRESHOLD = 0.05
DEFAULT_PROMPT_TYPE = "e3_global_and_local_concepts_with_lp"
# Classes guessed from the predictions (anonymized, no names given) are
# listed in the prompt: a stray huge index must not make a prompt of
# billions of names.
MAX_ANONYMOUS_CLASSES = 1_000


@dataclass(frozen=True)
class PromptParts:
    """What a prompt type shows (interpreto's PromptSetting)."""

    global_explanation: bool = False  # concept labels + per-class importances
    learning_samples: bool = False  # first-half samples with the model's classes
    learning_contributions: bool = False  # per-sample contributions of the first half
    evaluation_contributions: bool = False  # per-sample contributions of the second half


PROMPT_PARTS = {
    "l1_baseline_without_lp": PromptParts(),
    "e1_global_concepts_without_lp": PromptParts(global_explanation=True),
    "l2_baseline_with_lp": PromptParts(learning_samples=True),
    "e2_global_concepts_with_lp": PromptParts(global_explanation=True, learning_samples=True),
    "e3_global_and_local_concepts_with_lp": PromptParts(global_explanation=True, learning_samples=True,
                                                        learning_contributions=True),
    "u1_upper_bound_concepts_at_ep": PromptParts(global_explanation=True, learning_samples=True,
                                                 learning_contributions=True, evaluation_contributions=True),
}


@dataclass(frozen=True)
class SimulatabilityInput:
    samples: Sequence[str]
    predictions: Sequence[int]  # class index per sample
    classes: Sequence[str]  # empty with anonymize_classes: Class_0..Class_{max prediction}
    concept_labels: Sequence[str] = ()
    class_importances: Sequence[Sequence[float]] = ()  # [class][concept]
    sample_contributions: Sequence[Sequence[float]] = ()  # [sample][concept]
    prompt_type: str = DEFAULT_PROMPT_TYPE
    anonymize_classes: bool = False
    importance_threshold: float = DEFAULT_IMPORTANCE_THRESHOLD


@dataclass(frozen=True)
class SimulatabilityResult:
    score: float
    model_predictions: list[str]
    simulator_predictions: list[str]  # "" where the simulator gave no answer
    messages: list[dict[str, str]]
    reply: str
    llm: str

    @property
    def n_answered(self) -> int:
        return sum(1 for p in self.simulator_predictions if p)


# --------------------------------------------------------------------------
# checks


def _check_vectors(rows: Sequence[Sequence[float]], n_rows: int, n_concepts: int, field: str, what: str) -> None:
    if len(rows) != n_rows:
        raise InvalidArgument(f"{field} has {len(rows)} rows, expected {n_rows} ({what})", field=field)
    for i, row in enumerate(rows):
        if len(row) != n_concepts:
            raise InvalidArgument(f"{field}[{i}] has {len(row)} values, expected one per concept ({n_concepts}, "
                                  "as concept_labels)", field=f"{field}[{i}]")
        if not all(math.isfinite(v) for v in row):
            raise InvalidArgument(f"{field}[{i}] has a NaN or infinite value", field=f"{field}[{i}]")


def check_input(data: SimulatabilityInput) -> list[str]:
    """Raises InvalidArgument on a request that cannot be scored; returns the
    class names shown in the prompt."""
    n = len(data.samples)
    if data.prompt_type not in PROMPT_PARTS:
        raise InvalidArgument(f"unknown prompt type {data.prompt_type!r}: use one of {', '.join(PROMPT_PARTS)}",
                              field="prompt_type")
    if n < 2 or n % 2:
        raise InvalidArgument(f"need an even number (>= 2) of samples: the first half is the learning phase, "
                              f"the second the evaluation; got {n}", field="samples")
    if len(data.predictions) != n:
        raise InvalidArgument(f"predictions has {len(data.predictions)} values for {n} samples: give the model's "
                              "predicted class of each sample", field="predictions")
    if not data.classes and not data.anonymize_classes:
        raise InvalidArgument("classes is required unless anonymize_classes is set", field="classes")
    n_classes = len(data.classes) or min(max(data.predictions) + 1, MAX_ANONYMOUS_CLASSES)
    for i, p in enumerate(data.predictions):
        if not 0 <= p < n_classes:
            raise InvalidArgument(f"predictions[{i}] = {p} is not a class index in [0, {n_classes})",
                                  field=f"predictions[{i}]")
    if not math.isfinite(data.importance_threshold) or not 0 < data.importance_threshold < 1:
        raise InvalidArgument(f"importance_threshold must be in (0, 1), got {data.importance_threshold}",
                              field="importance_threshold")
    parts = PROMPT_PARTS[data.prompt_type]
    if parts.global_explanation:
        n_concepts = len(data.concept_labels)
        if not any(label.strip() for label in data.concept_labels):
            raise InvalidArgument(f"prompt type {data.prompt_type} shows concept labels: give concept_labels "
                                  "(one per concept)", field="concept_labels")
        _check_vectors(data.class_importances, n_classes, n_concepts, "class_importances", "one per class")
        if parts.learning_contributions:
            rows = n if parts.evaluation_contributions else n // 2
            if len(data.sample_contributions) not in (rows, n):
                raise InvalidArgument(
                    f"sample_contributions has {len(data.sample_contributions)} rows, expected {rows} (the "
                    f"{'samples' if rows == n else 'learning-phase samples'} of {data.prompt_type})",
                    field="sample_contributions")
            _check_vectors(data.sample_contributions, len(data.sample_contributions), n_concepts,
                           "sample_contributions", "")
    if data.classes:
        return list(data.classes)
    return [f"Class_{i}" for i in range(n_classes)]


# --------------------------------------------------------------------------
# the prompt


def _normalized(row: Sequence[float]) -> list[float]:
    total = sum(abs(v) for v in row)
    return [v / total for v in row] if total > 0 else [0.0 for _ in row]


def quantize(value: float, threshold: float) -> str | None:
    """A normalized importance as a literal; None below the threshold."""
    if value <= -6 * threshold:
        return "--"
    if value <= -threshold:
        return "-"
    if value >= 6 * threshold:
        return "++"
    if value >= threshold:
        return "+"
    return None


def shown_concepts(labels: Sequence[str], class_importances: Sequence[Sequence[float]],
                   threshold: float) -> tuple[list[int], float]:
    """Concepts shown (labelled, above the threshold for one class at least)
    and the threshold used (halved until some concept passes)."""
    normalized = [_normalized(row) for row in class_importances]
    candidates = [c for c, label in enumerate(labels) if label.strip()]
    if not any(abs(row[c]) > 0 for row in normalized for c in candidates):
        return [], threshold
    while True:
        shown = [c for c in candidates if any(abs(row[c]) > threshold for row in normalized)]
        if shown:
            return shown, threshold
        threshold /= 2


def _literals(row: Sequence[float], shown: Sequence[int], threshold: float) -> str:
    normalized = _normalized(row)
    parts = [f"concept {c}: {q}" for c in shown if (q := quantize(normalized[c], threshold)) is not None]
    return ", ".join(parts) if parts else "none"


def build_messages(data: SimulatabilityInput) -> tuple[list[dict[str, str]], list[str]]:
    """(the conversation sent to the simulator, the model's class of each
    evaluation-phase sample as shown in the prompt)."""
    class_names = check_input(data)
    parts = PROMPT_PARTS[data.prompt_type]
    shown_names = [f"Class_{i}" for i in range(len(class_names))] if data.anonymize_classes else class_names
    half = len(data.samples) // 2

    task = ["You simulate a text classifier: for each sample, answer the class that this classifier predicts."]
    if parts.global_explanation:
        task.append("You are told which concepts the classifier detects and how each concept pushes "
                    "towards each class.")
    if parts.learning_samples:
        task.append("Example samples come with the classifier's class"
                    + (" and the concepts that contributed to it." if parts.learning_contributions else "."))
    if parts.evaluation_contributions:
        task.append("The samples to classify come with their concept contributions.")
    task.append("Answer one line per sample, exactly 'Sample_{i}: {class}', and nothing else.")
    system = [" ".join(task), "Classes: " + ", ".join(shown_names)]

    shown: list[int] = []
    threshold = data.importance_threshold
    if parts.global_explanation:
        shown, threshold = shown_concepts(data.concept_labels, data.class_importances, threshold)
        system.append("Concepts (index: description):\n"
                      + "\n".join(f"concept {c}: {data.concept_labels[c].strip()}" for c in shown))
        system.append("Concept importance per class (++ strongly for, + for, - against, -- strongly against):\n"
                      + "\n".join(f"{shown_names[k]}: {_literals(row, shown, threshold)}"
                                  for k, row in enumerate(data.class_importances)))
    if parts.learning_samples:
        lines = []
        for i in range(half):
            lines.append(f"Sample_{i}: {data.samples[i]}")
            if parts.learning_contributions:
                lines.append(f"Concept contributions of Sample_{i}: "
                             f"{_literals(data.sample_contributions[i], shown, threshold)}")
            lines.append(f"Class of Sample_{i}: {shown_names[data.predictions[i]]}")
        system.append("Examples:\n" + "\n".join(lines))

    user = []
    for i in range(half, 2 * half):
        user.append(f"Sample_{i}: {data.samples[i]}")
        if parts.evaluation_contributions:
            user.append(f"Concept contributions of Sample_{i}: "
                        f"{_literals(data.sample_contributions[i], shown, threshold)}")
    messages = [{"role": "system", "content": "\n\n".join(system)},
                {"role": "user", "content": "Classify:\n" + "\n".join(user)}]
    return messages, [shown_names[data.predictions[i]] for i in range(half, 2 * half)]


# --------------------------------------------------------------------------
# the reply and the score

_ANSWER = re.compile(r"^\W*(?:sample|sentence|prediction)[\s_]*(\d+)\W*?\s*[:=-]\s*(.+?)\s*$", re.IGNORECASE)


def _canonical(text: str) -> str:
    return " ".join(text.strip().strip("'\"`*.").split()).casefold()


def parse_reply(reply: str, first_index: int, count: int) -> list[str]:
    """The simulator's class for samples ``first_index .. first_index+count-1``
    ("" where it gave none): lines "Sample_{i}: {class}"; the first answer
    of a sample counts."""
    answers: dict[int, str] = {}
    for line in (reply or "").splitlines():
        match = _ANSWER.match(line)
        if match:
            answers.setdefault(int(match.group(1)), match.group(2))
    return [answers.get(i, "") for i in range(first_index, first_index + count)]


def score_simulatability(data: SimulatabilityInput, llm: LLM) -> SimulatabilityResult:
    messages, model_predictions = build_messages(data)
    reply = llm.complete(messages)
    simulated = parse_reply(reply, len(data.samples) // 2, len(model_predictions))
    correct = sum(1 for m, s in zip(model_predictions, simulated) if s and _canonical(s) == _canonical(m))
    return SimulatabilityResult(score=correct / len(model_predictions), model_predictions=model_predictions,
                                simulator_predictions=simulated, messages=messages, reply=reply,
                                llm=llm.describe())
