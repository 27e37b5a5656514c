"""LLM-written labels for concepts, streamed as they complete."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator
from xaimesh_runtime.errors import ServiceError

from ._pool import run_bounded
from .examples import ConceptExample, ConceptExamples, ErrorInfo
from .llm import LLM
from .prompts import build_label_messages, clean_label, instructions_of, render_prompt
from .redaction import redact

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass
class ConceptLabelResult:
    concept_index: int
    # None when the concept never activates (no LLM call) or labelling failed.
    label: str | None
    # llm.describe() of the LLM that was (or would have been) asked.
    llm: str
    error: ErrorInfo | None = None
    # The examples shown to the LLM (the ones given, in order).
    examples: list[ConceptExample] = field(default_factory=list)
    # System + user prompt sent ("" when no call was made).
    prompt: str = ""
    # The LLM's raw answer, for inspection ("" when none).
    raw_answer: str = ""


def error_info(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, ServiceError):
        return ErrorInfo(exc.code.name, redact(exc.message))
    return ErrorInfo("INTERNAL", redact(f"{type(exc).__name__}: {exc}"))


def label_concepts(
    concepts: Iterable[ConceptExamples],
    llm: LLM,
    system_prompt: str | None = None,
    max_concurrency: int = 4,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[ConceptLabelResult]:
    """Labels each concept with ``llm``, yielding results as they complete (not
    in input order). At most ``max_concurrency`` LLM calls are in flight.

    - A concept with ``num_active_rows <= 0`` gets ``label=None`` at once, with
      no LLM call and no error.
    - A failure for one concept (LLM error, unusable answer) is that concept's
      ``error``; the others are unaffected.
    - ``progress(done, total)`` is called after each result; ``should_stop()``
      is polled and, once true, ends the run with ``Cancelled``.
    """
    concepts = list(concepts)
    total = len(concepts)
    description = llm.describe()
    done = 0

    def report() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    live: list[ConceptExamples] = []
    for c in concepts:
        if c.num_active_rows <= 0:
            yield ConceptLabelResult(c.concept_index, None, description, None, list(c.examples), "")
            report()
        else:
            live.append(c)

    def work(c: ConceptExamples) -> ConceptLabelResult:
        return _label_one(c, llm, description, system_prompt)

    for result in run_bounded(live, work, max_concurrency, should_stop, "labeling"):
        yield result
        report()


def _label_one(c: ConceptExamples, llm: LLM, description: str, system_prompt: str | None) -> ConceptLabelResult:
    examples = list(c.examples)
    if not examples:
        return ConceptLabelResult(
            c.concept_index, None, description,
            ErrorInfo("FAILED_PRECONDITION",
                      f"concept {c.concept_index} is active on {c.num_active_rows} rows but no examples were given"),
            examples, "",
        )
    messages = build_label_messages(examples, system_prompt, c.max_activation)
    prompt = render_prompt(messages)
    raw = ""
    try:
        raw = llm.complete(messages)
        label = clean_label(raw, instructions=instructions_of(messages))
    except Exception as exc:  # noqa: BLE001 - one concept's failure stays its own
        info = error_info(exc)
        logger.warning("concept %d: labelling failed: %s: %s", c.concept_index, info.code, info.message)
        return ConceptLabelResult(c.concept_index, None, description, info, examples, prompt, raw)
    return ConceptLabelResult(c.concept_index, label, description, None, examples, prompt, raw)
