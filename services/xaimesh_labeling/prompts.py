"""The labelling prompt and the post-processing of the LLM's answer.

Which examples are shown (TOP / QUANTILE / RANDOM, k of them, with k_context
tokens around) is decided by the concept-service; this module formats what it
gets: one line per example, ``[activation 0-10] text`` with the row's own
(most active) tokens between ``<< >>`` when context is shown.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

from .errors import LabelParseError
from .examples import ConceptExample, ContextToken
from .redaction import redact

HIGHLIGHT_OPEN = "<<"
HIGHLIGHT_CLOSE = ">>"
MAX_LABEL_WORDS = 5
MAX_EXAMPLE_CHARS = 600

DEFAULT_SYSTEM_PROMPT = (
    "You explain features of a language model. A feature responds to some pattern in text: "
    "a topic, a word or group of words, a grammatical role, a format. You are shown text "
    "excerpts where the feature is active, each with its activation strength from 0 (weak) "
    "to 10 (strongest). When an excerpt shows surrounding context, the tokens where the "
    "feature is active are marked with << >>. Find the pattern the excerpts have in common, "
    "giving most weight to the marked tokens and the strongest excerpts. Reply with a concise "
    "label of 1 to 5 words and nothing else: no explanation, no quotes, no final punctuation."
)


# --------------------------------------------------------------------------
# formatting examples


def activation_score(example: ConceptExample, max_activation: float | None = None) -> int:
    """The example's activation on an integer 0-10 scale: normalized activation
    x 10, rounded half up (falls back to activation / max_activation when the
    normalized value is missing)."""
    x = float(example.normalized_activation or 0.0)
    if x <= 0.0 and max_activation and max_activation > 0 and example.activation > 0:
        x = float(example.activation) / float(max_activation)
    if not math.isfinite(x):
        x = 0.0
    x = min(1.0, max(0.0, x))
    return int(math.floor(x * 10 + 0.5))


def _clean_piece(text: str) -> str:
    # One example per line: make line breaks and tabs visible but harmless.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n").replace("\t", " ")


def render_tokens(tokens: Sequence[ContextToken], highlight: bool = True,
                  highlighted: Sequence[bool] | None = None) -> str:
    """Joins token texts; runs of highlighted tokens go between << >> (leading
    whitespace of the run stays outside the marks). ``highlighted`` overrides
    the tokens' own flags (used by fuzzing)."""
    flags = list(highlighted) if highlighted is not None else [t.highlighted for t in tokens]
    out: list[str] = []
    open_ = False
    for tok, flag in zip(tokens, flags):
        piece = _clean_piece(tok.text)
        flag = flag and highlight
        if flag and not open_:
            stripped = piece.lstrip()
            out.append(piece[: len(piece) - len(stripped)])
            out.append(HIGHLIGHT_OPEN)
            piece = stripped
            open_ = True
        elif not flag and open_:
            out.append(HIGHLIGHT_CLOSE)
            open_ = False
        out.append(piece)
    if open_:
        out.append(HIGHLIGHT_CLOSE)
    return "".join(out).strip()


def example_text(example: ConceptExample, highlight: bool = True, max_chars: int = MAX_EXAMPLE_CHARS) -> str:
    """The example as text: its context with the row highlighted when context
    is present, else the row's own text."""
    if example.context:
        text = render_tokens(example.context, highlight=highlight)
    else:
        text = _clean_piece(example.text).strip()
    if max_chars and len(text) > max_chars:
        text = text[: max_chars - 3].rstrip() + "..."
    return text


def format_example(example: ConceptExample, number: int, max_activation: float | None = None) -> str:
    return f"{number}. [{activation_score(example, max_activation)}] {example_text(example)}"


def build_label_messages(
    examples: Sequence[ConceptExample],
    system_prompt: str | None = None,
    max_activation: float | None = None,
) -> list[dict[str, str]]:
    """System + user messages asking for a label of the pattern in ``examples``."""
    if not examples:
        raise ValueError("no examples to build a labelling prompt from")
    has_context = any(ex.context for ex in examples)
    lines = [format_example(ex, i + 1, max_activation) for i, ex in enumerate(examples)]
    if has_context:
        intro = ("Excerpts where the feature is active. Each line starts with the activation "
                 "strength [0-10]; the tokens where the feature is active are marked with << >>.")
        question = "What do the marked tokens have in common? Reply with a label of 1 to 5 words."
    else:
        intro = ("Text where the feature is active. Each line starts with the activation "
                 "strength [0-10].")
        question = "What do these have in common? Reply with a label of 1 to 5 words."
    user = f"{intro}\n\n" + "\n".join(lines) + f"\n\n{question}"
    system = system_prompt if system_prompt and system_prompt.strip() else DEFAULT_SYSTEM_PROMPT
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def render_prompt(messages: Iterable[dict[str, str]]) -> str:
    """The conversation as one inspectable string ("[system]\\n...\\n\\n[user]\\n...")."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


# --------------------------------------------------------------------------
# label post-processing

_THINK = re.compile(r"<think>.*?(</think>|$)", re.IGNORECASE | re.DOTALL)
_KEYWORDS = r"(?:label|answer|concept|feature|pattern|theme|topic|category|description|explanation|name)"
# "Label:", "**Label**:", "The label is:", "Here is a label for the feature:" -> what follows the colon
_PREFIX_COLON = re.compile(rf"^[^:]{{0,60}}?\b{_KEYWORDS}s?\b[^:]{{0,30}}:\s*", re.IGNORECASE)
# "The label is X", "Label = X", "Answer - X"
_PREFIX_IS = re.compile(
    rf"^(?:the\s+|a\s+|my\s+)?(?:(?:best|suggested|concise)\s+)?{_KEYWORDS}(?:\s+(?:is|would be)\b|\s*=|\s+[-–—])\s*",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^(?:#{1,6}\s+|[-*•>]\s+|\d{1,2}[.)]\s+)")
_QUOTES = "\"'`“”‘’«»„"
_EDGE_PUNCT = ".,;:!?…-–—/\\|*_~ "


# An echo of the excerpt format's activation score ("[10] word"), which small
# models copy from the prompt.
_SCORE_PREFIX = re.compile(r"^\[\s*\d{1,2}\s*\]\s*")


def _clean_line(line: str) -> str:
    s = line.strip()
    for _ in range(3):  # prefixes can nest ("1. **Label:** ...")
        before = s
        s = _BULLET.sub("", s)
        s = _SCORE_PREFIX.sub("", s)
        s = s.replace("**", "").replace("__", "").replace("`", "")
        s = s.strip().strip(_QUOTES).strip()
        s = _PREFIX_COLON.sub("", s)
        s = _PREFIX_IS.sub("", s)
        s = s.strip().strip(_QUOTES).strip()
        if s == before:
            break
    s = s.replace(HIGHLIGHT_OPEN, "").replace(HIGHLIGHT_CLOSE, "")
    s = " ".join(s.split())
    s = s.strip(_EDGE_PUNCT).strip(_QUOTES).strip(_EDGE_PUNCT)
    return s


def _truncate_words(s: str, max_words: int) -> str:
    words = s.split()
    if len(words) > max_words:
        s = " ".join(words[:max_words])
    if s.count("(") > s.count(")"):
        s = s[: s.rfind("(")]
    return s.strip(_EDGE_PUNCT).strip(_QUOTES).strip(_EDGE_PUNCT)


_WORD = re.compile(r"[a-z0-9]+")
# A label of at least ECHO_MIN_WORDS words, ECHO_SHARE of them or more
# from the instructions, is the instructions repeated (small models do it:
# "active, each with its activation", "active, and it responds to"), not a
# pattern found in the excerpts.
ECHO_MIN_WORDS = 3
ECHO_SHARE = 0.8


def instructions_of(messages: Sequence[dict[str, str]]) -> str:
    """The instructions of a labelling conversation from
    :func:`build_label_messages`: the system prompt and the user message's
    first and last paragraphs (the excerpts between them left out)."""
    parts = []
    for m in messages:
        if m["role"] == "system":
            parts.append(m["content"])
        elif m["role"] == "user":
            paragraphs = m["content"].split("\n\n")
            parts += [paragraphs[0], paragraphs[-1]]
    return "\n".join(parts)


def _is_echo(label: str, instructions: str) -> bool:
    words = _WORD.findall(label.lower())
    known = set(_WORD.findall(instructions.lower()))
    return len(words) >= ECHO_MIN_WORDS and sum(w in known for w in words) >= ECHO_SHARE * len(words)


def clean_label(raw: str, max_words: int = MAX_LABEL_WORDS, instructions: str = "") -> str:
    """The label in an LLM answer: drops reasoning blocks, preamble lines
    ("Here is the label:"), markdown, "Label:" prefixes, quotes, << >> and
    trailing punctuation; keeps the first usable line and at most
    ``max_words`` words. A line that only repeats ``instructions`` (see
    ``ECHO_MIN_WORDS``) is not usable. Raises ``LabelParseError`` when
    nothing is left."""
    text = _THINK.sub("", raw or "")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    echoed = False
    for i, line in enumerate(lines):
        is_last = i == len(lines) - 1
        # A line that only introduces the answer ("Sure! Here is a label:").
        if line.rstrip().endswith(":") and not is_last:
            continue
        label = _truncate_words(_clean_line(line), max_words)
        if label and instructions and _is_echo(label, instructions):
            echoed = True
            continue
        if label:
            return label
    shown = " ".join((raw or "").split())[:80]
    if echoed:
        raise LabelParseError(redact(f"the LLM repeated the instructions instead of naming a pattern "
                                     f"(answer: {shown!r}); a larger model labels better"))
    raise LabelParseError(redact(f"the LLM returned no usable label (answer: {shown!r})"))


def plain_chat_prompt(messages: Sequence[dict[str, str]]) -> str:
    """A chat as a plain-text transcript ending where the assistant speaks,
    for a model without a chat template (a base model continues it)."""
    turns = [f"{m['role'].capitalize()}: {m['content'].strip()}" for m in messages]
    return "\n\n".join(turns) + "\n\nAssistant:"
