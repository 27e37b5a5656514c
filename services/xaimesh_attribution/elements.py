"""Attribution elements: what an attribution is over, and what it explains.

Elements by granularity (tensor.proto Granularity):

- ALL_TOKENS: every prompt token, special tokens included;
- TOKEN: every non-special prompt token;
- WORD / SENTENCE / PART_SENTENCE: the model-server's words / sentences /
  parts of sentences (model.proto TokenizedText). A word holds its leading
  whitespace tokens, so each covers every non-special token.

An element is a `Segment` (text, character span, token span [start_token,
end_token)); its token positions are that span minus special tokens (unless
the element is a special token itself). Tokens that are in no element (the
special tokens of TOKEN / WORD / SENTENCE) are never perturbed.

Generation (causal LM). The input sequence is prompt tokens + target tokens
(the target tokenized on its own, without special tokens, and appended).
Elements are the prompt elements, then the target elements; target elements
are the target's tokens (ALL_TOKENS / TOKEN), words (WORD) or sentences
(SENTENCE); a special token in the target (e.g. an EOS given as a token id)
is an element of its own. Target elements always partition the target
tokens. Each target element is one explained output (one attribution row):

- its score is the SUM of its tokens' scores for LOGITS and LOG_SOFTMAX (the
  log-probability of the whole element for LOG_SOFTMAX), and the PRODUCT of
  its tokens' probabilities for SOFTMAX (the probability of the whole
  element given what precedes it, by teacher forcing);
- row t covers the prompt elements and the target elements before t; its
  entries for target elements >= t are NaN (a causal model's score of
  element t does not depend on them, and element t itself is the output).

Encoder-decoders (T5, BART, Marian) have the same layout: the prompt is the
source (the encoder's input, tokenized with the tokenizer's special tokens),
the target the decoder's tokens; the model-server gets the source length
(`Problem.source_length`) and scores target token k from the decoder after
its start token and the target tokens before k, so row t covers the source
elements and the target elements before t exactly as for a causal LM.

Classification: elements are the prompt's; one row per target class, every
row covers every element.

Positions are token indices into the full input sequence; character offsets
are into the full text (prompt + target text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from xaimesh_runtime.errors import InvalidArgument

from .backend import Segment, Tokenized
from .options import Granularity, InferenceMode, Task

# Tasks whose attribution explains a target sequence token by token.
GENERATION_TASKS = (Task.CAUSAL_LM, Task.SEQ2SEQ_LM)


@dataclass
class Problem:
    """One explanation problem: the input sequence, its elements, and the
    attribution rows (targets) with which scored columns make up each row.

    Scored columns are what one Score / ComputeGradients call returns per
    sequence: the target token positions (generation) or the target classes
    (classification).
    """

    task: Task
    input_ids: np.ndarray  # int64 [L]
    segments: list[Segment]  # the elements: prompt ones, then target ones
    positions: list[np.ndarray]  # token positions of each element
    num_prompt_elements: int
    row_labels: list[str]  # one per attribution row
    groups: list[np.ndarray]  # per row: indices of the scored columns it combines
    coverage: np.ndarray  # bool [T, E]: the elements each row is attributed over
    row_element: np.ndarray  # int [T]: the row's own (target) element, -1 for classes
    target_positions: np.ndarray | None = None  # generation: scored token positions
    target_classes: np.ndarray | None = None  # classification: scored classes
    text: str = ""
    prompt_text: str = ""
    target_token_ids: list[int] = field(default_factory=list)
    target_element_token_ends: list[int] = field(default_factory=list)
    # bool [L]: the positions gradient samples move (None: all). A chat's
    # template / context positions stay at their input embeddings.
    moved: np.ndarray | None = None
    # Encoder-decoders: input_ids[:source_length] is the source (the prompt);
    # 0 for other models (ScoreRequest.source_length).
    source_length: int = 0
    element_of_token: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        eot = np.full(len(self.input_ids), -1, dtype=np.int64)
        for e, pos in enumerate(self.positions):
            eot[pos] = e
        self.element_of_token = eot

    @property
    def n_elements(self) -> int:
        return len(self.segments)

    @property
    def n_rows(self) -> int:
        return len(self.groups)

    @property
    def seq_len(self) -> int:
        return len(self.input_ids)

    @property
    def is_generation(self) -> bool:
        return self.task in GENERATION_TASKS

    def element_sizes(self) -> np.ndarray:
        return np.array([len(p) for p in self.positions], dtype=np.int64)

    def token_keep(self, masks: np.ndarray) -> np.ndarray:
        """Element keep-masks bool [n, E] -> token keep-masks bool [n, L];
        tokens in no element are always kept."""
        masks = np.asarray(masks, dtype=bool)
        eot = self.element_of_token
        keep = np.ones((masks.shape[0], len(eot)), dtype=bool)
        inside = eot >= 0
        keep[:, inside] = masks[:, eot[inside]]
        return keep

    def combine(self, raw: np.ndarray, mode: InferenceMode) -> np.ndarray:
        """Scored columns float [n, n_cols] -> row scores float64 [n, T]: sum
        over a row's columns (LOGITS, LOG_SOFTMAX) or product (SOFTMAX)."""
        raw = np.asarray(raw, dtype=np.float64)
        out = np.empty((raw.shape[0], self.n_rows), dtype=np.float64)
        for t, g in enumerate(self.groups):
            out[:, t] = raw[:, g].prod(axis=1) if mode == InferenceMode.SOFTMAX else raw[:, g].sum(axis=1)
        return out


# ----------------------------------------------------------------- segments


def _positions(seg: Segment, special: Sequence[bool], keep_special: bool) -> np.ndarray:
    idx = np.arange(seg.start_token, seg.end_token, dtype=np.int64)
    if keep_special:
        return idx
    sel = idx[[not special[i] for i in idx]] if len(idx) else idx
    return sel if len(sel) else idx


def token_segment(tok: Tokenized, i: int) -> Segment:
    return Segment(tok.tokens[i], tok.token_start_chars[i], tok.token_end_chars[i], i, i + 1)


#: Granularities whose elements are groups of tokens (the model-server's segments).
_GROUPS = (Granularity.WORD, Granularity.SENTENCE, Granularity.PART_SENTENCE)


def _groups(tok: Tokenized, granularity: Granularity) -> tuple[list[Segment], list[int]]:
    """(the segments of a grouping granularity, each token's index into them)."""
    if granularity == Granularity.WORD:
        return tok.words, tok.word_index
    if granularity == Granularity.PART_SENTENCE:
        return tok.part_sentences, tok.part_sentence_index
    return tok.sentences, tok.sentence_index


def prompt_segments(tok: Tokenized, granularity: Granularity,
                    fixed: Sequence[bool] | None = None) -> list[Segment]:
    """The elements of a prompt (token indices into `tok`).

    fixed: per token, True for a token that is in no element (a chat's
    template and non-user tokens): never perturbed, never attributed. A word
    / sentence keeps only its free tokens (split where they are not
    consecutive), its text and span clipped to them."""
    if fixed is not None:
        return _free_segments(tok, granularity, fixed)
    if granularity == Granularity.ALL_TOKENS:
        return [token_segment(tok, i) for i in range(len(tok))]
    if granularity == Granularity.TOKEN:
        return [token_segment(tok, i) for i in range(len(tok)) if not tok.special_mask[i]]
    if granularity in _GROUPS:
        segs, index = _groups(tok, granularity)
        out = []
        for k, seg in enumerate(segs):
            toks = [i for i, w in enumerate(index) if w == k]
            if not toks:
                continue
            out.append(Segment(seg.text, seg.start_char, seg.end_char, toks[0], toks[-1] + 1))
        return out
    raise InvalidArgument(f"granularity {granularity.value!r} is not supported by attribution", field="granularity")


def _free_segments(tok: Tokenized, granularity: Granularity, fixed: Sequence[bool]) -> list[Segment]:
    free = [not f for f in fixed]
    if granularity in (Granularity.ALL_TOKENS, Granularity.TOKEN):
        return [token_segment(tok, i) for i in range(len(tok)) if free[i]]
    if granularity not in _GROUPS:
        raise InvalidArgument(f"granularity {granularity.value!r} is not supported by attribution",
                              field="granularity")
    segs, index = _groups(tok, granularity)
    out: list[Segment] = []
    i, n = 0, len(tok)
    while i < n:
        if not free[i] or not 0 <= index[i] < len(segs):
            i += 1
            continue
        j = i
        while j + 1 < n and free[j + 1] and index[j + 1] == index[i]:
            j += 1
        seg = segs[index[i]]
        a = max(seg.start_char, tok.token_start_chars[i])
        b = min(seg.end_char, tok.token_end_chars[j])
        text = tok.text[a:b] if tok.text and b > a else seg.text
        out.append(Segment(text, a, max(a, b), i, j + 1))
        i = j + 1
    return out


def target_segments(tok: Tokenized, granularity: Granularity) -> list[Segment]:
    """The elements of a target (token indices into `tok`): a partition of
    all its tokens into consecutive runs; special tokens are runs of their own."""
    n = len(tok)
    if granularity in (Granularity.ALL_TOKENS, Granularity.TOKEN):
        return [token_segment(tok, i) for i in range(n)]
    if granularity not in _GROUPS:
        raise InvalidArgument(f"granularity {granularity.value!r} is not supported by attribution", field="granularity")
    segs, index = _groups(tok, granularity)
    index = list(index)
    out: list[Segment] = []
    i = 0
    while i < n:
        if tok.special_mask[i] or index[i] < 0 or index[i] >= len(segs):
            out.append(token_segment(tok, i))
            i += 1
            continue
        j = i
        while j + 1 < n and not tok.special_mask[j + 1] and index[j + 1] == index[i]:
            j += 1
        s = segs[index[i]]
        out.append(Segment(s.text, s.start_char, s.end_char, i, j + 1))
        i = j + 1
    return out


def _shift(seg: Segment, dtok: int, dchar: int) -> Segment:
    return Segment(seg.text, seg.start_char + dchar, seg.end_char + dchar, seg.start_token + dtok, seg.end_token + dtok)


# ----------------------------------------------------------------- problems


def generation_problem(
    prompt_text: str,
    prompt_tok: Tokenized,
    target_text: str,
    target_tok: Tokenized,
    granularity: Granularity,
    fixed: Sequence[bool] | None = None,
    task: Task = Task.CAUSAL_LM,
) -> Problem:
    """Prompt + target (continuation) of a causal LM, or source + target of
    an encoder-decoder (task SEQ2SEQ_LM). fixed: per prompt token, True for
    a token in no element (see `prompt_segments`)."""
    p_len = len(prompt_tok)
    psegs = prompt_segments(prompt_tok, granularity, fixed)
    tsegs = target_segments(target_tok, granularity)
    pspecial = list(prompt_tok.special_mask)
    if fixed is not None:
        pspecial = [bool(a) or bool(b) for a, b in zip(pspecial, fixed)]
    special = pspecial + list(target_tok.special_mask)
    segments = psegs + [_shift(s, p_len, len(prompt_text)) for s in tsegs]
    ends = [s.end_token for s in tsegs]
    problem = build_problem(
        task=task,
        input_ids=list(prompt_tok.token_ids) + list(target_tok.token_ids),
        segments=segments,
        num_prompt_elements=len(psegs),
        special_mask=special,
        keep_special=granularity == Granularity.ALL_TOKENS,
        text=prompt_text + target_text,
        prompt_text=prompt_text,
        target_token_ids=list(target_tok.token_ids),
        target_element_token_ends=ends,
    )
    if fixed is not None:
        problem.moved = np.array([not f for f in fixed] + [True] * len(target_tok), dtype=bool)
    return problem


def classification_problem(
    text: str,
    tok: Tokenized,
    granularity: Granularity,
    classes: Sequence[int],
    labels: Sequence[str],
) -> Problem:
    segments = prompt_segments(tok, granularity)
    return build_problem(
        task=Task.SEQUENCE_CLASSIFICATION,
        input_ids=list(tok.token_ids),
        segments=segments,
        num_prompt_elements=len(segments),
        special_mask=list(tok.special_mask),
        keep_special=granularity == Granularity.ALL_TOKENS,
        text=text,
        prompt_text=text,
        target_classes=list(classes),
        labels=labels,
    )


def build_problem(
    *,
    task: Task,
    input_ids: Sequence[int],
    segments: list[Segment],
    num_prompt_elements: int,
    special_mask: Sequence[bool],
    keep_special: bool,
    text: str,
    prompt_text: str,
    target_token_ids: Sequence[int] = (),
    target_element_token_ends: Sequence[int] = (),
    target_classes: Sequence[int] = (),
    labels: Sequence[str] = (),
) -> Problem:
    """A Problem from its parts (used by `explain`, and by `evaluate` to
    rebuild the problem of a stored attribution)."""
    ids = np.asarray(list(input_ids), dtype=np.int64)
    L = len(ids)
    for k, s in enumerate(segments):
        if not (0 <= s.start_token < s.end_token <= L):
            raise InvalidArgument(
                f"element {k} ({s.text!r}) spans tokens [{s.start_token}, {s.end_token}) outside the {L}-token input",
                field="input_elements",
            )
    positions = [_positions(s, special_mask, keep_special) for s in segments]
    seen = np.zeros(L, dtype=bool)
    for k, pos in enumerate(positions):
        if seen[pos].any():
            raise InvalidArgument(
                f"element {k} ({segments[k].text!r}) overlaps another element", field="input_elements"
            )
        seen[pos] = True
    E = len(segments)
    if num_prompt_elements < 1:
        raise InvalidArgument(
            "the text has no element to attribute at this granularity (only special tokens?)", field="text"
        )
    if task in GENERATION_TASKS:
        n_t = len(target_token_ids)
        p_len = L - n_t
        ends = list(target_element_token_ends)
        if E - num_prompt_elements != len(ends) or not ends or ends[-1] != n_t:
            raise InvalidArgument(
                "target elements do not partition the target tokens", field="target_element_token_ends"
            )
        groups, start = [], 0
        for k, end in enumerate(ends):
            seg = segments[num_prompt_elements + k]
            if seg.start_token != p_len + start or seg.end_token != p_len + end:
                raise InvalidArgument(
                    f"target element {k} ({seg.text!r}) does not match its target tokens", field="input_elements"
                )
            groups.append(np.arange(start, end, dtype=np.int64))
            start = end
        T = len(groups)
        row_element = np.arange(num_prompt_elements, E, dtype=np.int64)
        coverage = np.arange(E)[None, :] < row_element[:, None]
        return Problem(
            task=task,
            input_ids=ids,
            segments=segments,
            positions=positions,
            num_prompt_elements=num_prompt_elements,
            row_labels=[segments[e].text for e in row_element],
            groups=groups,
            coverage=coverage,
            row_element=row_element,
            target_positions=np.arange(p_len, L, dtype=np.int64),
            text=text,
            prompt_text=prompt_text,
            target_token_ids=[int(i) for i in target_token_ids],
            target_element_token_ends=[int(e) for e in ends],
            source_length=p_len if task == Task.SEQ2SEQ_LM else 0,
        )
    classes = np.asarray(list(target_classes), dtype=np.int64)
    T = len(classes)
    if E != num_prompt_elements:
        raise InvalidArgument("a classifier's attribution has no target elements", field="num_prompt_elements")
    names = [labels[c] if 0 <= c < len(labels) else f"class {c}" for c in classes]
    return Problem(
        task=task,
        input_ids=ids,
        segments=segments,
        positions=positions,
        num_prompt_elements=num_prompt_elements,
        row_labels=names,
        groups=[np.array([t], dtype=np.int64) for t in range(T)],
        coverage=np.ones((T, E), dtype=bool),
        row_element=np.full(T, -1, dtype=np.int64),
        target_classes=classes,
        text=text,
        prompt_text=text,
    )


__all__ = [
    "GENERATION_TASKS",
    "Problem",
    "prompt_segments",
    "target_segments",
    "generation_problem",
    "classification_problem",
    "build_problem",
]
