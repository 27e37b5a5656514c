"""Tokenization with character offsets, words and sentences.

Every service sees the same segmentation (attribution granularities, activation
rows, plots), so the rules are fixed and documented here.

Tokens
    `token_start_chars` / `token_end_chars` are code-point offsets into the
    text, made monotone and non-overlapping: when a byte-level tokenizer splits
    one character over several tokens (e.g. "語" -> 3 byte tokens), the
    character belongs to the first of them and the others get an empty span at
    its end. A token's string is `text[start:end]`, so concatenating the
    strings of the non-special tokens gives back the text (for tokenizers
    whose offsets cover it, e.g. byte-level BPE). Leading spaces stay with the
    token that carries them (" world"). Special tokens (ids in the
    tokenizer's special ids, whether added or written in the text) get their
    own string (e.g. "<|im_start|>"), `special_mask` true and word / sentence
    index -1; an added special token has an empty span at the current
    position.

Token ids
    `tokenize_ids` describes a sequence of ids (e.g. a generated
    continuation) by the same rules: its text is the decoded text with
    special tokens kept (they have their own span in it), and the token
    spans are contiguous, so they concatenate to that text.

Words
    A word is a maximal run of characters that are neither whitespace nor part
    of a special token: the text is split on whitespace, and punctuation
    attached to a word stays with it ("Hello," is one word). A token belongs
    to the word holding its first non-whitespace character; a token made only
    of whitespace belongs to the next word (tokens that begin with a space
    start a new word), or to the previous one at the end of the text; the
    extra byte tokens of a split character follow the token before them. A
    word's `start_char` / `end_char` / `text` are the word itself (no
    surrounding whitespace); `start_token` / `end_token` are the tokens that
    belong to it (leading whitespace tokens included). Words no token starts
    in (a token spanning two words) are merged into the previous word; words
    past a truncation are dropped. A run of non-special tokens with no word
    (only whitespace: a whitespace-only text, or the newline between two
    special tokens of a chat template) is a word of its own. So every
    non-special token has a word and a sentence.

Sentences
    A sentence is a run of whole words. It ends after a word that ends with
    ".", "!", "?", "…" (or "。！？"), optionally followed by closing quotes or
    brackets, when whitespace follows ("e.g. x" splits, "3.14" does not); it
    also ends where the whitespace between two words holds a newline, and
    at a special token.

Parts of sentences
    Sentences cut further after a word that ends with ",", ";" or ":"
    (optionally followed by closing quotes or brackets): interpreto's
    PART_SENTENCE ("Then Alice offers a drink, and Bob smiles." has two).
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from xaimesh_runtime.errors import InvalidArgument

# Fast (Rust) tokenizers keep truncation / padding state and are not safe to
# call from several threads at once: every call goes through this lock.
tokenizer_lock = threading.RLock()

SENTENCE_END = ".!?…。！？"
PART_SENTENCE_END = ",;:，；："
CLOSERS = "\"'”’)]}»"


@dataclass
class Segment:
    """A span of text and the tokens that cover it (see tensor.proto Segment)."""

    text: str
    start_char: int
    end_char: int
    start_token: int
    end_token: int


@dataclass
class Tokenized:
    text: str
    token_ids: list[int]
    tokens: list[str]
    token_start_chars: list[int]
    token_end_chars: list[int]
    special_mask: list[bool]
    word_index: list[int]
    sentence_index: list[int]
    words: list[Segment] = field(default_factory=list)
    sentences: list[Segment] = field(default_factory=list)
    # True when max_length cut the text short.
    truncated: bool = False
    # Chats only (tokenize_chat): per token, the index of the message whose
    # content holds it, -1 for template tokens. Empty for texts.
    message_index: list[int] = field(default_factory=list)
    part_sentence_index: list[int] = field(default_factory=list)
    part_sentences: list[Segment] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.token_ids)

    def to_dict(self) -> dict[str, Any]:
        """The TokenizedText message fields as plain values."""
        out = asdict(self)
        out.pop("truncated")
        if not out["message_index"]:  # a text: the field is a chat's only
            out.pop("message_index")
        return out

    def segments(self, granularity: str) -> list[Segment]:
        """Segments of a granularity: "word", "sentence", "token" (non-special
        tokens), "all_tokens" or "sample" (all non-special tokens, or every
        token when there is none)."""
        if granularity == "word":
            return self.words
        if granularity == "sentence":
            return self.sentences
        if granularity == "part_sentence":
            return self.part_sentences
        if granularity in ("token", "all_tokens"):
            return [
                Segment(self.tokens[i], self.token_start_chars[i], self.token_end_chars[i], i, i + 1)
                for i in range(len(self))
                if granularity == "all_tokens" or not self.special_mask[i]
            ]
        if granularity == "sample":
            idx = [i for i in range(len(self)) if not self.special_mask[i]] or list(range(len(self)))
            if not idx:
                return []
            return [Segment(self.text, 0, len(self.text), idx[0], idx[-1] + 1)]
        raise InvalidArgument(f"unknown granularity {granularity!r}")


def _tokenizer_of(obj: Any) -> Any:
    """The tokenizer of a LoadedModel, or obj itself (a tokenizer)."""
    if hasattr(obj, "model") and hasattr(obj, "tokenizer") and hasattr(obj, "model_id"):
        return obj.tokenizer
    return obj


def _special_ids(tokenizer: Any) -> set[int]:
    return {int(i) for i in tokenizer.all_special_ids}


def _raw_offsets(tokenizer: Any, text: str, ids: list[int]) -> list[tuple[int, int]]:
    """Best-effort offsets for slow tokenizers: incremental decoding."""
    offsets = []
    prev = 0
    for i in range(len(ids)):
        prefix = tokenizer.decode(ids[: i + 1], clean_up_tokenization_spaces=False)
        end = len(prefix) if text.startswith(prefix) else prev
        offsets.append((prev, max(prev, end)))
        prev = max(prev, end)
    return offsets


def tokenize(
    loaded: Any,
    text: str,
    add_special_tokens: bool = False,
    *,
    max_length: int | None = None,
) -> Tokenized:
    """Tokenizes one text (see the module docstring for the rules).

    loaded: a LoadedModel or a Hugging Face tokenizer. max_length: truncate to
    this many tokens (None / 0: no truncation). Raises InvalidArgument for an
    empty text.
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"text must be a string, got {type(text).__name__}", field="texts")
    if text == "":
        raise InvalidArgument("text is empty: give at least one character", field="texts")
    tokenizer = _tokenizer_of(loaded)
    kwargs: dict[str, Any] = {"add_special_tokens": add_special_tokens}
    if max_length:
        kwargs.update(truncation=True, max_length=int(max_length))
    with tokenizer_lock:
        try:
            enc = tokenizer(text, return_offsets_mapping=True, **kwargs)
            ids = [int(i) for i in enc["input_ids"]]
            raw = [(int(a), int(b)) for a, b in enc["offset_mapping"]]
        except NotImplementedError:  # slow tokenizer: no offsets
            ids = [int(i) for i in tokenizer(text, **kwargs)["input_ids"]]
            raw = _raw_offsets(tokenizer, text, ids)
        truncated = bool(max_length) and len(ids) >= int(max_length) and len(
            tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        ) > len(ids)
        return build_tokenized(tokenizer, text, ids, raw, truncated=truncated)


CHAT_SENTINEL = "@@XAIMESH_CONTENT_{}@@"


def _chat_content_spans(loaded: Any, messages: Sequence[Any]) -> tuple[str, list[tuple[int, int]]]:
    """Renders a chat with the model's template and its generation prompt
    (as Generate does) and finds each message's content in the rendered
    text: the chat is rendered a second time with each content replaced by
    a sentinel, and the real rendering must be that one with the sentinels
    replaced by the contents (as given, or stripped for templates that trim
    them). Returns the rendered text and a [start, end) span per message."""
    from .engine.generation import _chat_prompt  # the one rendering Generate uses

    rendered = _chat_prompt(loaded, messages)
    probes = [{"role": _role(m), "content": CHAT_SENTINEL.format(i)} for i, m in enumerate(messages)]
    skeleton = _chat_prompt(loaded, probes)
    contents = [str(_content(m) or "") for m in messages]
    for transform in (lambda c: c, str.strip):
        out, spans, pos = [], [], 0
        for i, content in enumerate(contents):
            mark = CHAT_SENTINEL.format(i)
            at = skeleton.find(mark, pos)
            if at < 0:  # the template dropped the message (none known does)
                spans.append((-1, -1))
                continue
            out.append(skeleton[pos:at])
            start = sum(len(x) for x in out)
            value = transform(content)
            out.append(value)
            spans.append((start, start + len(value)))
            pos = at + len(mark)
        out.append(skeleton[pos:])
        if "".join(out) == rendered:
            return rendered, spans
    raise InvalidArgument(
        "the model's chat template changes the messages' content: their tokens cannot be located in the "
        "rendered prompt", field="chats")


def _role(m: Any) -> Any:
    return m.get("role") if isinstance(m, dict) else getattr(m, "role", None)


def _content(m: Any) -> Any:
    return m.get("content") if isinstance(m, dict) else getattr(m, "content", None)


def tokenize_chat(loaded: Any, messages: Sequence[Any]) -> Tokenized:
    """Tokenizes a chat as the model sees it: rendered with the chat
    template and its generation prompt, tokenized without adding special
    tokens (the prompt Generate builds from a chat). `message_index` says,
    per token, which message's content holds it (-1: a template token, or a
    token straddling content and template)."""
    rendered, spans = _chat_content_spans(loaded, list(messages))
    tok = tokenize(loaded, rendered, add_special_tokens=False)
    index = []
    for i in range(len(tok)):
        a, b = tok.token_start_chars[i], tok.token_end_chars[i]
        owner = -1
        if not tok.special_mask[i] and b > a:
            for k, (s, e) in enumerate(spans):
                if s <= a and b <= e:
                    owner = k
                    break
        index.append(owner)
    tok.message_index = index
    return tok


def tokenize_chat_at(loaded: Any, i: int, chat: Any) -> Tokenized:
    """`tokenize_chat` of TokenizeRequest.chats[i] (a ChatConversation),
    its errors naming the field."""
    try:
        return tokenize_chat(loaded, list(chat.messages))
    except InvalidArgument as error:
        raise InvalidArgument(f"chats[{i}]: {error.message}", field=f"chats[{i}].messages") from None


def build_tokenized(
    tokenizer: Any,
    text: str,
    ids: Sequence[int],
    raw_offsets: Sequence[tuple[int, int]],
    *,
    truncated: bool = False,
) -> Tokenized:
    """Builds a Tokenized from token ids and the tokenizer's raw offsets."""
    special_ids = _special_ids(tokenizer)
    n = len(ids)
    special = [int(i) in special_ids for i in ids]
    starts: list[int] = []
    ends: list[int] = []
    strings: list[str] = []
    cursor = 0
    for i in range(n):
        a, b = raw_offsets[i]
        a, b = max(0, min(a, len(text))), max(0, min(b, len(text)))
        if special[i]:
            if b > a and text[a:b] and a >= cursor:  # written in the text
                start, end = a, b
            else:  # added by the tokenizer
                start = end = cursor
            strings.append(str(tokenizer.convert_ids_to_tokens(int(ids[i]))))
        else:
            start = max(a, cursor)
            end = max(b, start)
            strings.append(text[start:end])
        starts.append(start)
        ends.append(end)
        cursor = max(cursor, end)

    # Separator characters: whitespace and characters of special tokens.
    separator = [c.isspace() for c in text]
    special_spans = [(starts[i], ends[i]) for i in range(n) if special[i] and ends[i] > starts[i]]
    for a, b in special_spans:
        for c in range(a, b):
            separator[c] = True
    word_spans: list[tuple[int, int]] = []
    c = 0
    while c < len(text):
        if separator[c]:
            c += 1
            continue
        s = c
        while c < len(text) and not separator[c]:
            c += 1
        word_spans.append((s, c))
    word_starts = [s for s, _ in word_spans]

    # 1. Tokens with content: the word of their first non-separator character.
    assign: list[int | None] = [None] * n
    for i in range(n):
        if special[i]:
            continue
        for ch in range(starts[i], ends[i]):
            if not separator[ch]:
                assign[i] = bisect.bisect_right(word_starts, ch) - 1
                break
    # 2. Whitespace-only tokens take the next word; empty spans (the extra bytes
    #    of a split character) follow the token just before them.
    next_word: list[int | None] = [None] * (n + 1)
    for i in range(n - 1, -1, -1):
        next_word[i] = assign[i] if assign[i] is not None else (None if special[i] else next_word[i + 1])
    prev_word: int | None = None
    for i in range(n):
        if special[i]:
            prev_word = None
            continue
        if assign[i] is None:
            empty = ends[i] == starts[i]
            if empty and i > 0 and not special[i - 1] and assign[i - 1] is not None:
                assign[i] = assign[i - 1]
            elif next_word[i] is not None:
                assign[i] = next_word[i]
            else:
                assign[i] = prev_word
        if assign[i] is not None:
            prev_word = assign[i]

    non_special = [i for i in range(n) if not special[i]]
    # Token ranges of words; merge words without tokens into the previous one.
    token_of_word: dict[int, list[int]] = {}
    for i in range(n):
        if assign[i] is not None:
            token_of_word.setdefault(assign[i], []).append(i)
    covered_end = max((ends[i] for i in non_special), default=0)
    merged: list[list[int]] = []  # [start_char, end_char, first_token, last_token]
    remap: dict[int, int] = {}
    for w, (a, b) in enumerate(word_spans):
        toks = token_of_word.get(w)
        if toks:
            merged.append([a, b, toks[0], toks[-1]])
            remap[w] = len(merged) - 1
        elif merged and a < covered_end:
            merged[-1][1] = min(b, covered_end)
        # else: past the truncation (or before any token): dropped
    for m in merged:
        m[1] = min(m[1], max(covered_end, m[0]))
    word_index = [-1 if assign[i] is None else remap.get(assign[i], -1) for i in range(n)]
    # Runs of non-special tokens with no word (only whitespace between special
    # tokens, or a whitespace-only text) become words of their own.
    i = 0
    while i < n:
        if special[i] or word_index[i] >= 0:
            i += 1
            continue
        j = i
        while j + 1 < n and not special[j + 1] and word_index[j + 1] < 0:
            j += 1
        merged.append([starts[i], ends[j], i, j])
        k = len(merged) - 1
        for t in range(i, j + 1):
            word_index[t] = -2 - k  # encodes word k until the re-sort below
        i = j + 1
    order = sorted(range(len(merged)), key=lambda k: merged[k][2])
    new_index = {old: new for new, old in enumerate(order)}
    for t in range(n):
        if word_index[t] >= 0:
            word_index[t] = new_index[word_index[t]]
        elif word_index[t] <= -2:
            word_index[t] = new_index[-2 - word_index[t]]
    merged = [merged[k] for k in order]
    words = [Segment(text[a:b], a, b, t0, t1 + 1) for a, b, t0, t1 in merged]

    # Sentences: runs of words.
    def is_break(k: int) -> bool:
        word = words[k].text.rstrip(CLOSERS)
        if word and word[-1] in SENTENCE_END:
            return True
        gap = text[words[k].end_char : words[k + 1].start_char]
        if "\n" in gap or "\r" in gap:
            return True
        # a special token between the two words
        return any(special[t] for t in range(words[k].end_token, words[k + 1].start_token))

    def is_part_break(k: int) -> bool:
        word = words[k].text.rstrip(CLOSERS)
        return bool(word) and word[-1] in PART_SENTENCE_END or is_break(k)

    def runs(breaks) -> tuple[list[Segment], list[int]]:
        """Segments that are runs of whole words cut where `breaks(k)`, and each token's segment."""
        segments: list[Segment] = []
        of_word: list[int] = []
        first = 0
        for k in range(len(words)):
            of_word.append(len(segments))
            if k == len(words) - 1 or breaks(k):
                a, b = words[first].start_char, words[k].end_char
                segments.append(Segment(text[a:b], a, b, words[first].start_token, words[k].end_token))
                first = k + 1
        return segments, [-1 if w < 0 else of_word[w] for w in word_index]

    sentences, sentence_index = runs(is_break)
    part_sentences, part_sentence_index = runs(is_part_break)
    return Tokenized(
        text=text,
        token_ids=[int(i) for i in ids],
        tokens=strings,
        token_start_chars=starts,
        token_end_chars=ends,
        special_mask=special,
        word_index=word_index,
        sentence_index=sentence_index,
        words=words,
        sentences=sentences,
        truncated=truncated,
        part_sentence_index=part_sentence_index,
        part_sentences=part_sentences,
    )


def tokenize_ids(loaded: Any, token_ids: Sequence[int], *, field: str = "sequences") -> Tokenized:
    """Describes a sequence of token ids (e.g. a generated continuation) as
    `tokenize` describes a text: the Tokenized of exactly these ids, whose
    `text` is their decoded text (special tokens kept, no clean-up of
    spaces, i.e. `detokenize(loaded, ids)`), with each token's character span
    in that text, the special mask, and words and sentences by the rules of
    the module docstring. The spans are contiguous, so the concatenation of
    the token spans is the text; a character split over several byte tokens
    belongs to the first of them. For a text's own ids,
    `tokenize_ids(loaded, tokenize(loaded, text).token_ids)` has the same
    text, words and sentences as `tokenize(loaded, text)` (and, for
    byte-level BPE such as SmolLM2's, the same token spans too) whenever the
    tokenizer decodes its ids back to the text.

    Cost: O(n) — one decode, plus one pass over the tokens for byte-level
    tokenizers, or two decodes of a short window per token for others (at
    most 256 decodes of prefixes for decoders that are neither, e.g. invalid
    UTF-8 in byte-fallback tokens; then a long stretch's text may go to its
    first token).
    Raises InvalidArgument (naming `field`) for an empty sequence or ids
    outside the tokenizer's vocabulary.
    """
    tokenizer = _tokenizer_of(loaded)
    ids = _checked_ids(tokenizer, token_ids, field)
    with tokenizer_lock:
        text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        pieces = _byte_level_pieces(tokenizer, ids, text)
        if pieces is None:
            pieces = _window_pieces(tokenizer, ids, text)
        if pieces is not None:
            raw = []
            cursor = 0
            for piece in pieces:
                raw.append((cursor, cursor + len(piece)))
                cursor += len(piece)
        else:  # a decoder whose pieces do not concatenate: decode prefixes
            raw = _prefix_offsets(tokenizer, text, ids)
        return build_tokenized(tokenizer, text, ids, raw)


def _checked_ids(tokenizer: Any, token_ids: Sequence[int], field: str) -> list[int]:
    size = len(tokenizer)
    ids = []
    for pos, value in enumerate(token_ids):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidArgument(f"{field}: token ids must be integers, got {value!r} at position {pos}",
                                  field=field)
        i = int(value)
        if i < 0 or i >= size:
            raise InvalidArgument(
                f"{field}: token id {i} at position {pos} is out of the vocabulary: valid ids are 0..{size - 1}",
                field=field,
            )
        ids.append(i)
    if not ids:
        raise InvalidArgument(f"{field} is empty: give at least one token id", field=field)
    return ids


@functools.lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-unicode table (byte-level BPE)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        decoder = backend.decoder
        return decoder is not None and type(decoder).__name__ == "ByteLevel"
    return hasattr(tokenizer, "byte_decoder")  # slow GPT-2 style tokenizer


def _byte_level_pieces(tokenizer: Any, ids: list[int], text: str) -> list[str] | None:
    """Each token's share of `text` for a byte-level BPE tokenizer, from one
    pass of convert_ids_to_tokens and the byte decoder; None when the
    tokenizer is not byte-level or the pieces do not give back `text`."""
    if not _is_byte_level(tokenizer):
        return None
    table = _unicode_to_byte()
    added = {int(i): str(getattr(t, "content", t)) for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    chunks: list[bytes] = []
    for i, token in zip(ids, tokenizer.convert_ids_to_tokens(ids)):
        if i in added:
            chunks.append(added[i].encode("utf-8"))
            continue
        token = str(token)
        try:
            chunks.append(bytes(table[c] for c in token))
        except KeyError:  # not a byte-level string: taken as it is
            chunks.append(token.encode("utf-8"))
    data = b"".join(chunks)
    try:
        if data.decode("utf-8") != text:
            return None
    except UnicodeDecodeError:  # a stray byte: the decoder replaced it
        return None
    # A token gets the characters that start in its bytes: a character split
    # over several tokens belongs to the first, the others get an empty span.
    pieces = []
    char = 0
    for chunk in chunks:
        starts = sum(1 for b in chunk if b & 0xC0 != 0x80)
        pieces.append(text[char : char + starts])
        char += starts
    return pieces


_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
# Most tokens one character or one run of byte tokens may span in _window_pieces.
_MAX_GROUP = 64


def _window_pieces(tokenizer: Any, ids: list[int], text: str) -> list[str] | None:
    """Each token's share of `text` by incremental decoding: token i adds
    decode(ids[w:i+1]) minus decode(ids[w:r]) for a window w..r of the last
    emitted tokens (so decoders that treat the first token differently, like
    SentencePiece's leading space, see the same start in both). Tokens that
    end in an incomplete character ("\ufffd"), and runs of byte-fallback
    tokens ("<0xE8>", decoded together by SentencePiece-style decoders), wait
    for the next ones; the group's text is shared by how much each token
    lengthened the decoded window, so a split character goes to the first of
    its tokens. None when the pieces do not give back `text`."""

    def decode(part: list[int]) -> str:
        return tokenizer.decode(part, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    n = len(ids)
    is_byte = [bool(_BYTE_TOKEN.fullmatch(str(t))) for t in tokenizer.convert_ids_to_tokens(ids)]
    pieces = [""] * n
    window = read = 0  # ids[window:read]: emitted context; ids[read:i]: waiting
    before = ""
    lengths: list[int] = []  # decoded length of the window after each waiting token
    for i in range(n):
        after = decode(ids[window : i + 1])
        lengths.append(len(after))
        incomplete = after.endswith("\ufffd") or (is_byte[i] and i + 1 < n and is_byte[i + 1])
        if incomplete and len(lengths) < _MAX_GROUP and i < n - 1:
            continue
        if not after.startswith(before):
            return None
        cut = len(before)
        for j, length in enumerate(lengths[:-1]):
            end = min(max(length, cut), len(after))
            pieces[read + j] = after[cut:end]
            cut = end
        pieces[i] = after[cut:]
        window, read = read, i + 1
        before = decode(ids[window:read])
        lengths = []
    if "".join(pieces) != text:
        return None
    return pieces


def _prefix_offsets(tokenizer: Any, text: str, ids: list[int], max_decodes: int = 256) -> list[tuple[int, int]]:
    """Offsets from decoded prefixes, for decoders whose pieces do not
    concatenate. Decodes at most `max_decodes` prefixes (every token's for
    short sequences; for longer ones, stretches of tokens, whose text goes to
    the first token of the stretch), so the cost stays linear in the length."""
    n = len(ids)
    stride = max(1, -(-n // max_decodes))
    offsets: list[tuple[int, int]] = []
    cursor = 0
    for start in range(0, n, stride):
        stop = min(n, start + stride)
        if stop == n:
            end = len(text)
        else:
            prefix = tokenizer.decode(ids[:stop], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            if text.startswith(prefix) or (prefix.endswith("\ufffd") and text.startswith(prefix[:-1])):
                end = min(len(prefix), len(text))  # an incomplete last character counts here
            else:
                end = cursor
        end = max(cursor, end)
        offsets.append((cursor, end))
        offsets.extend((end, end) for _ in range(start + 1, stop))
        cursor = end
    return offsets


def detokenize(loaded: Any, token_ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    """Token ids back to text (no clean-up of spaces). Raises InvalidArgument
    for ids outside the tokenizer's vocabulary."""
    tokenizer = _tokenizer_of(loaded)
    size = len(tokenizer)
    ids = [int(i) for i in token_ids]
    for pos, i in enumerate(ids):
        if i < 0 or i >= size:
            raise InvalidArgument(
                f"token id {i} at position {pos} is out of the vocabulary: valid ids are 0..{size - 1}",
                field="sequences",
            )
    with tokenizer_lock:
        return tokenizer.decode(ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)
