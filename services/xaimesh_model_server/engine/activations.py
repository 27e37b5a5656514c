"""StreamActivations: layer outputs at split points, per granularity.

Texts are tokenized and sent in windows as items of kind ActWork(split
points, deepest layer); a batch is one right-padded forward with hooks on
the split points that stops once every split point has its output. Rows are
aggregated per granularity (tokens, words, sentences, the sample) with their
provenance.

Token semantics (docs/models.md, "Token semantics", the one definition): by default
(SpecialTokensPolicy.UNSPECIFIED) a text is tokenized with the tokenizer's
own special tokens ([CLS] ... [SEP] of BERT, the BOS of Llama-3 / Gemma /
Mistral, none for SmolLM2) and the model runs on that sequence, so every row
is computed in the context the model was trained in. TOKEN / WORD / SENTENCE
/ SAMPLE leave the special tokens' rows out (SAMPLE aggregates the
non-special rows); ALL_TOKENS keeps them; CLS_TOKEN is the first token of
the sequence (the [CLS] of an encoder, the BOS of a causal LM whose
tokenizer adds one, otherwise the first text token). Provenance token
indices count every token the model saw, special tokens included.
SpecialTokensPolicy.OMIT runs the text without special tokens (the old
behaviour); ADD asks for them explicitly.

Encoder-decoders: the encoder runs on the text; the decoder runs teacher-
forced on the decoder start token followed by the same token ids, attending
to the encoder's output of the text. A decoder-side split point's row of
token j is its output at decoder position j + 1 (after reading the start
token and tokens 0..j), so encoder and decoder rows have the same
provenance. docs/models.md, "Encoder-decoders".
"""

from __future__ import annotations

import difflib
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from xaimesh_runtime.errors import InvalidArgument, ServiceError

from ..enums import Aggregation, Granularity, SpecialTokensPolicy, coerce
from ..loading import LoadedModel
from ..tokenization import Tokenized, tokenize
from .forward import decoder_start, forward, forward_params, pad_id, pad_stack
from .limits import DEFAULT_LIMITS, Limits
from .work import WorkKind, get_executor, runs


@dataclass(frozen=True)
class ActWork(WorkKind):
    """Activation rows at one set of split points (`stop`: the deepest layer,
    -1 when no split point is inside a layer). The forward pass stops as soon
    as every split point has its output."""

    label = "act"
    paths: tuple[str, ...]
    stop: int


@runs(ActWork)
def run_activations(loaded: LoadedModel, kind: ActWork, items: list[torch.Tensor], limits: Limits) -> list[dict[str, torch.Tensor]]:
    with loaded.lock, torch.inference_mode():
        return _run_act(loaded, kind.paths, kind.stop, items)


class _StopForward(Exception):
    """Raised by the hook of the deepest split point to end the forward pass."""


# A split point "<module>.input" is the hidden state a module receives (its
# first positional argument, or `hidden_states`): "model.layers.0.input" is
# the residual stream entering the first block (token embeddings plus
# whatever the model adds before its blocks, e.g. GPT-2's learned positions).
INPUT_SUFFIX = ".input"


def block_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden state a module is called with (a forward pre-hook's view)."""
    return _first_tensor(args[0] if args else kwargs.get("hidden_states"))


def _module_of(loaded: LoadedModel, path: str) -> torch.nn.Module:
    """The module a split point hooks (its own for "<module>.input")."""
    return loaded.model.get_submodule(path[: -len(INPUT_SUFFIX)] if is_input_point(loaded, path) else path)


def is_input_point(loaded: LoadedModel, path: str) -> bool:
    """Whether `path` names a module's input ("<module>.input", no module of that name)."""
    if not path.endswith(INPUT_SUFFIX):
        return False
    try:
        loaded.model.get_submodule(path)
    except AttributeError:
        return True
    return False


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    for name in ("last_hidden_state", "hidden_states"):
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise InvalidArgument(f"a split point's module returned {type(out).__name__}, not a tensor")


def _run_act(loaded: LoadedModel, paths: tuple[str, ...], stop: int, items: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    ids, mask, offsets = pad_stack(items, "right", pad_id(loaded))
    captured: dict[str, torch.Tensor] = {}
    owner = threading.get_ident()
    handles = []

    def keep(path: str, value: torch.Tensor) -> None:
        if threading.get_ident() == owner and path not in captured:
            captured[path] = value.detach()
            if len(captured) == len(paths):
                raise _StopForward()

    def capture(path: str):
        def hook(module, args, output):
            keep(path, _first_tensor(output))

        return hook

    def capture_input(path: str):
        def hook(module, args, kwargs):
            keep(path, block_input(args, kwargs))

        return hook

    try:
        for path in paths:
            module = _module_of(loaded, path)
            if is_input_point(loaded, path):
                handles.append(module.register_forward_pre_hook(capture_input(path), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(capture(path)))
        try:
            if loaded.is_seq2seq:
                _seq2seq_act_forward(loaded, ids, mask)
            else:
                kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
                if "logits_to_keep" in forward_params(loaded):
                    kwargs["logits_to_keep"] = torch.tensor([0])
                forward(loaded, **kwargs)
        except _StopForward:
            pass
    finally:
        for h in handles:
            h.remove()
    missing = [p for p in paths if p not in captured]
    if missing:
        raise InvalidArgument(
            f"split points {missing} were not reached by the forward pass (the module does not run when the "
            f"model computes its output): use one of the model's layers, {loaded.split_points[0]} .. "
            f"{loaded.split_points[-1]}, or a module inside one",
            field="split_points",
        )
    if loaded.is_seq2seq:  # decoder rows: position j + 1 is token j's (position 0 read the start token)
        for path in paths:
            if _on_decoder_side(loaded, path):
                captured[path] = captured[path][:, 1:]
    out = []
    for b, seq in enumerate(items):
        n = int(seq.shape[0])
        row = {}
        for path in paths:
            t = captured[path]
            if t.dim() < 2 or t.shape[0] != len(items) or t.shape[1] != ids.shape[1]:
                raise InvalidArgument(
                    f"split point {path!r} does not output one row per token (shape {list(t.shape)} for a batch "
                    f"of {len(items)} sequences of {ids.shape[1]} tokens): use a layer or a module of a layer "
                    "whose output is [batch, tokens, width]",
                    field="split_points",
                )
            row[path] = t[b, offsets[b] : offsets[b] + n].reshape(n, -1).cpu()
        out.append(row)
    return out


def _seq2seq_act_forward(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor) -> None:
    """The encoder on the texts, the decoder on the start token + the same ids."""
    B = ids.shape[0]
    start = decoder_start(loaded, embeds=False).expand(B, 1)
    dev = loaded.device
    loaded.model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                 decoder_input_ids=torch.cat([start, ids], 1).to(dev),
                 decoder_attention_mask=torch.cat([torch.ones(B, 1, dtype=mask.dtype), mask], 1).to(dev),
                 use_cache=False)


def _on_decoder_side(loaded: LoadedModel, path: str) -> bool:
    """Whether a split point of an encoder-decoder runs on the decoder's
    positions: a module of the decoder stack or the LM head. Everything else
    (the encoder, the shared embeddings, whose first run is the encoder's)
    runs on the encoder's."""
    head = loaded.model.get_output_embeddings()
    return (path == loaded.decoder_path or path.startswith(loaded.decoder_path + ".")
            or (head is not None and _module_of(loaded, path) is head))


@dataclass
class RowProvenance:
    sample_index: int
    token_start: int
    token_end: int  # exclusive
    text: str


@dataclass
class ItemError:
    """A problem with one input that did not stop the others."""

    index: int
    error: ServiceError


@dataclass
class ActivationBatch:
    """Rows of some consecutive samples (in input order), at every split point."""

    rows: dict[str, torch.Tensor]  # split point -> [n_rows, width], CPU, out_dtype
    provenance: list[RowProvenance]
    sample_indices: list[int]  # samples with rows here (errors excluded)
    errors: list[ItemError]
    samples_done: int  # samples finished so far, errors included (progress)
    total_samples: int


@dataclass
class SplitPoint:
    name: str  # module path, e.g. "model.layers.8"
    layer: int  # index of the layer it is (or is inside); -1 for a module outside the layers


_CONTAINERS = (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.ParameterList, torch.nn.ParameterDict)


def split_point_candidates(loaded: LoadedModel) -> list[str]:
    """Module paths valid as split points: the layers (ModelInfo.split_points)
    first, then every module inside them, then the model's other modules
    (embeddings, final norm, the other stack of an encoder-decoder...), minus
    containers (ModuleList / ModuleDict), which never run."""
    layers = list(loaded.split_points)
    inside: list[str] = []
    other: list[str] = []
    prefixes = tuple(p + "." for p in layers)
    layer_set = set(layers)
    for name, module in loaded.model.named_modules():
        if not name or name in layer_set or isinstance(module, _CONTAINERS):
            continue
        (inside if name.startswith(prefixes) else other).append(name)
    return layers + inside + other


def _unknown_split_point(loaded: LoadedModel, s: str, hint: str, why: str = "") -> InvalidArgument:
    candidates = split_point_candidates(loaded)
    near = difflib.get_close_matches(s, candidates, n=3, cutoff=0.5)
    if not near:  # e.g. a path of another architecture: the layer of the same index
        digits = [part for part in s.split(".") if part.isdigit()]
        if digits and int(digits[0]) < len(loaded.split_points):
            near = [loaded.split_points[int(digits[0])]]
    suggestion = f"; nearest valid: {', '.join(near)}" if near else ""
    why = why or ": no such module"
    return InvalidArgument(f"unknown split point {s!r}{why}{suggestion}; {hint}", field="split_points")


def resolve_split_points(loaded: LoadedModel, split_points: Sequence[str | int]) -> list[SplitPoint]:
    """Layer indices ("8") or module paths -> SplitPoints, duplicates removed.

    A module path is a layer ("model.layers.8", one of ModelInfo.split_points),
    a module inside one ("model.layers.8.mlp": its output, the first element
    of a tuple output), or another module of the model that runs in the
    forward pass and outputs one row per token ("model.embed_tokens", the
    other stack of an encoder-decoder such as "encoder.block.3"). Any of
    them followed by ".input" ("model.layers.0.input", "0.input") is the
    hidden state that module receives instead of its output. An unknown
    path is InvalidArgument naming the nearest valid ones."""
    n = loaded.num_layers
    prefix = loaded.layers_path
    hint = (
        f"model {loaded.model_id!r} has {n} layers: use a layer index 0..{n - 1} or a module path "
        f"{prefix}.0 .. {prefix}.{n - 1} (or a module inside one, e.g. {prefix}.0.mlp)"
    )
    if loaded.is_seq2seq:
        k = loaded.num_encoder_layers
        hint = (
            f"model {loaded.model_id!r} is an encoder-decoder with {k} encoder and {n - k} decoder layers: use a "
            f"layer index 0..{n - 1} (encoder first) or a module path {loaded.split_points[0]} .. "
            f"{loaded.split_points[k - 1]}, {loaded.split_points[k]} .. {loaded.split_points[-1]} (or a module inside one)"
        )
    if isinstance(split_points, (str, int)):
        split_points = [split_points]
    if not split_points:
        raise InvalidArgument(f"split_points is empty: {hint}", field="split_points")
    layer_of = {path: i for i, path in enumerate(loaded.split_points)}
    out: list[SplitPoint] = []
    seen: set[str] = set()
    for sp in split_points:
        if isinstance(sp, bool) or not isinstance(sp, (str, int)):
            raise InvalidArgument(f"split point {sp!r} is neither a layer index nor a module path: {hint}",
                                  field="split_points")
        s = str(sp).strip()
        if s.lstrip("-").isdigit():
            i = int(s)
            if i < 0 or i >= n:
                raise InvalidArgument(f"split point {s} is out of range: {hint}", field="split_points")
            point = SplitPoint(loaded.split_points[i], i)
        elif s in layer_of:
            point = SplitPoint(s, layer_of[s])
        elif is_input_point(loaded, s) and s != INPUT_SUFFIX:
            (of,) = resolve_split_points(loaded, [s[: -len(INPUT_SUFFIX)]])
            point = SplitPoint(of.name + INPUT_SUFFIX, of.layer)
        else:
            try:
                module = loaded.model.get_submodule(s) if s else None
            except AttributeError:
                module = None
            if module is None:
                head = s[len(prefix) + 1 :].split(".", 1)[0] if s.startswith(prefix + ".") else ""
                if head.isdigit() and int(head) >= n:
                    raise InvalidArgument(f"split point {s!r} is out of range: {hint}", field="split_points")
                raise _unknown_split_point(loaded, s, hint)
            if isinstance(module, _CONTAINERS):
                raise _unknown_split_point(loaded, s, hint, ": a list of modules, which never runs itself")
            head = next((p for p in loaded.split_points if s.startswith(p + ".")), None)
            point = SplitPoint(s, layer_of[head] if head is not None else -1)
        if point.name not in seen:
            seen.add(point.name)
            out.append(point)
    return out


def resolve_special_tokens(
    special_tokens: SpecialTokensPolicy | int | str | None = None, add_special_tokens: bool | None = None
) -> bool:
    """Whether texts are tokenized with the tokenizer's special tokens.

    special_tokens UNSPECIFIED (or None) -> the definition: yes, the
    tokenizer's own (rows of special tokens are dropped by the granularity,
    not by leaving the tokens out); OMIT -> no; ADD -> yes. The deprecated
    bool `add_special_tokens`: True means ADD (an error with OMIT); False /
    None leave the choice to `special_tokens` (on the wire false is also
    what an unset field reads as)."""
    policy = coerce(SpecialTokensPolicy, special_tokens if special_tokens is not None else 0, field="special_tokens")
    if add_special_tokens and policy == SpecialTokensPolicy.OMIT:
        raise InvalidArgument(
            "add_special_tokens=true contradicts special_tokens=SPECIAL_TOKENS_POLICY_OMIT: set only special_tokens "
            "(add_special_tokens is deprecated)",
            field="special_tokens",
        )
    return policy != SpecialTokensPolicy.OMIT


def aggregate_rows(rows: torch.Tensor, segment_ids: torch.Tensor, n_segments: int, aggregation: Aggregation) -> torch.Tensor:
    """Combines rows [N, W] into [n_segments, W] by segment id (rows with id < 0 are ignored)."""
    keep = segment_ids >= 0
    rows, seg = rows[keep].float(), segment_ids[keep]
    W = rows.shape[1]
    idx = seg.view(-1, 1).expand(-1, W)
    if aggregation in (Aggregation.FIRST, Aggregation.LAST):
        # Rows are in token order: the segment's smallest / largest row index.
        order = torch.arange(rows.shape[0])
        pick = torch.full((n_segments,), -1 if aggregation == Aggregation.LAST else rows.shape[0], dtype=torch.long)
        pick.scatter_reduce_(0, seg, order, "amin" if aggregation == Aggregation.FIRST else "amax")
        out = torch.zeros(n_segments, W)
        present = (pick >= 0) & (pick < rows.shape[0])
        out[present] = rows[pick[present]]
        return out
    if aggregation in (Aggregation.MEAN, Aggregation.SUM):
        out = torch.zeros(n_segments, W).index_add_(0, seg, rows)
        if aggregation == Aggregation.MEAN:
            counts = torch.bincount(seg, minlength=n_segments).clamp(min=1).unsqueeze(1)
            out = out / counts
        return out
    hi = torch.zeros(n_segments, W).scatter_reduce_(0, idx, rows, "amax", include_self=False)
    if aggregation == Aggregation.MAX:
        return hi
    lo = torch.zeros(n_segments, W).scatter_reduce_(0, idx, rows, "amin", include_self=False)
    if aggregation == Aggregation.MIN:
        return lo
    return torch.where(hi.abs() >= lo.abs(), hi, lo)  # SIGNED_MAX


class ActivationJob:
    """A validated activations request; iterate it for ActivationBatch-es.

    Texts are tokenized and sent in windows (about
    `Limits.activation_window_tokens` tokens; the next window is queued
    before the current one is assembled), and each window comes back as one
    ActivationBatch in input order. A text that cannot be processed (e.g. an
    empty one) becomes an ItemError; the others go on.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        texts: Sequence[str],
        points: list[SplitPoint],
        granularity: Granularity,
        aggregation: Aggregation,
        add_special_tokens: bool,
        max_length: int,
        executor: Any,
        is_active: Any,
        limits: Limits,
        out_dtype: torch.dtype,
    ) -> None:
        self.loaded = loaded
        self.texts = texts
        self.points = points
        self.split_points = [p.name for p in points]
        self.granularity = granularity
        self.aggregation = aggregation
        self.add_special_tokens = add_special_tokens
        self.max_length = max_length
        self.executor = executor
        self.is_active = is_active
        self.limits = limits
        self.out_dtype = out_dtype
        self.num_samples = len(texts)
        self.hidden_size = loaded.hidden_size
        self.kind = ActWork(tuple(self.split_points), max(p.layer for p in points))
        self._widths: dict[str, int] = {}
        # Indices of the texts max_length cut short (their provenance stops at the cut).
        self.truncated_samples: list[int] = []

    def _windows(self) -> Iterator[tuple[list[tuple[int, Tokenized]], list[ItemError]]]:
        window: list[tuple[int, Tokenized]] = []
        errors: list[ItemError] = []
        tokens = 0
        for idx, text in enumerate(self.texts):
            try:
                tk = tokenize(self.loaded, text, self.add_special_tokens, max_length=self.max_length or None)
                if len(tk) == 0:
                    raise InvalidArgument(f"text {idx} has no tokens", field="texts")
                if len(tk) > self.loaded.max_text_tokens:  # max_length 0: no silent truncation
                    raise InvalidArgument(
                        f"text {idx} has {len(tk)} tokens but model {self.loaded.model_id!r} accepts at most "
                        f"{self.loaded.max_text_tokens}: shorten it, or set max_length to truncate",
                        field="texts")
                if tk.truncated:
                    self.truncated_samples.append(idx)
            except ServiceError as exc:
                errors.append(ItemError(idx, exc))
                continue
            window.append((idx, tk))
            tokens += len(tk)
            if tokens >= self.limits.activation_window_tokens:
                yield window, errors
                window, errors, tokens = [], [], 0
        if window or errors:
            yield window, errors

    def __iter__(self) -> Iterator[ActivationBatch]:
        executor = self.executor
        pending = None
        done = 0
        try:
            for window, errors in self._windows():
                payloads = [torch.tensor(tk.token_ids, dtype=torch.long) for _, tk in window]
                handle = executor.submit(
                    self.kind, payloads, [len(tk) for _, tk in window], is_active=self.is_active,
                    admitted=pending is not None or done > 0,
                )
                if pending is not None:
                    done += len(pending[0]) + len(pending[1])
                    yield self._assemble(*pending, done)
                pending = (window, errors, handle)
            if pending is not None:
                done += len(pending[0]) + len(pending[1])
                yield self._assemble(*pending, done)
                pending = None
        finally:
            if pending is not None:
                pending[2].cancel()

    def _assemble(self, window, errors, handle, done: int) -> ActivationBatch:
        results = handle.result() if window else []
        rows: dict[str, list[torch.Tensor]] = {p: [] for p in self.split_points}
        provenance: list[RowProvenance] = []
        for (idx, tk), acts in zip(window, results):
            seg_ids, n_seg, prov = self._segments(idx, tk)
            provenance.extend(prov)
            for p in self.split_points:
                rows[p].append(self._rows(acts[p], seg_ids, n_seg))
        out = {}
        for p in self.split_points:
            if rows[p]:
                out[p] = torch.cat(rows[p]).to(self.out_dtype)
                self._widths[p] = int(out[p].shape[1])
            else:  # only errors here: the width seen so far (a module's output may be wider)
                out[p] = torch.zeros(0, self._widths.get(p, self.hidden_size), dtype=self.out_dtype)
        return ActivationBatch(out, provenance, [idx for idx, _ in window], errors, done, self.num_samples)

    def _segments(self, idx: int, tk: Tokenized) -> tuple[torch.Tensor | None, int, list[RowProvenance]]:
        """Segment id per token (None = one row per selected token) and provenance."""
        g = self.granularity
        n = len(tk)
        if g in (Granularity.ALL_TOKENS, Granularity.TOKEN, Granularity.CLS_TOKEN):
            if g == Granularity.ALL_TOKENS:
                sel = list(range(n))
            elif g == Granularity.TOKEN:
                sel = [i for i in range(n) if not tk.special_mask[i]]
            else:
                sel = [0]
            seg = torch.full((n,), -1, dtype=torch.long)
            seg[sel] = torch.arange(len(sel))
            return seg, len(sel), [RowProvenance(idx, i, i + 1, tk.tokens[i]) for i in sel]
        if g == Granularity.SAMPLE:
            non_special = [i for i in range(n) if not tk.special_mask[i]] or list(range(n))
            seg = torch.full((n,), -1, dtype=torch.long)
            seg[non_special] = 0
            end_char = max(tk.token_end_chars) if tk.truncated else len(tk.text)
            return seg, 1, [RowProvenance(idx, non_special[0], non_special[-1] + 1, tk.text[:end_char])]
        segments, index = {Granularity.WORD: (tk.words, tk.word_index),
                           Granularity.PART_SENTENCE: (tk.part_sentences, tk.part_sentence_index)}.get(
                               g, (tk.sentences, tk.sentence_index))
        seg = torch.tensor(index, dtype=torch.long)
        return seg, len(segments), [RowProvenance(idx, s.start_token, s.end_token, s.text) for s in segments]

    def _rows(self, acts: torch.Tensor, seg: torch.Tensor, n_seg: int) -> torch.Tensor:
        if self.granularity in (Granularity.ALL_TOKENS, Granularity.TOKEN, Granularity.CLS_TOKEN):
            return acts[seg >= 0].float()
        return aggregate_rows(acts, seg, n_seg, self.aggregation)


def activations(
    loaded: LoadedModel,
    texts: Sequence[str],
    split_points: Sequence[str | int],
    granularity: Granularity | int | str = Granularity.TOKEN,
    aggregation: Aggregation | int | str = Aggregation.MEAN,
    add_special_tokens: bool | None = None,
    max_length: int = 0,
    *,
    special_tokens: SpecialTokensPolicy | int | str | None = None,
    executor: Any = None,
    is_active: Any = None,
    limits: Limits | None = None,
    out_dtype: torch.dtype = torch.float32,
) -> ActivationJob:
    """Activations (layer outputs) at split points, per granularity.

    Validates everything up front (InvalidArgument) and returns an
    ActivationJob to iterate. The activation of a layer is its output hidden
    state (for the last layer: before the final norm); of a module inside a
    layer, its output (first element of a tuple). The forward pass stops as
    soon as every split point has its output. Texts run with the
    tokenizer's own special tokens unless special_tokens is OMIT (see the
    module docstring and resolve_special_tokens; add_special_tokens=True is
    the deprecated spelling of ADD). granularity (UNSPECIFIED -> TOKEN):
    ALL_TOKENS (every token, special ones included), TOKEN (non-special
    tokens), WORD, SENTENCE (segments of tokenization.py, rows aggregated),
    SAMPLE (all non-special tokens aggregated), CLS_TOKEN (the first token).
    aggregation (UNSPECIFIED -> MEAN): MEAN, MAX, MIN, SUM, SIGNED_MAX.
    max_length truncates each text, special tokens included; 0 = no
    truncation: a text longer than the model's maximum is an item error
    (INVALID_ARGUMENT). The job's truncated_samples lists the texts cut.
    """
    limits = limits or DEFAULT_LIMITS
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise InvalidArgument("texts is empty: give at least one text", field="texts")
    points = resolve_split_points(loaded, split_points)
    add = resolve_special_tokens(special_tokens, add_special_tokens)
    g = coerce(Granularity, granularity, field="granularity", default=Granularity.TOKEN)
    a = coerce(Aggregation, aggregation, field="aggregation", default=Aggregation.MEAN)
    max_length = int(max_length or 0)
    if max_length < 0 or max_length > loaded.max_text_tokens:
        raise InvalidArgument(
            f"max_length {max_length} is out of range: model {loaded.model_id!r} accepts 1..{loaded.max_text_tokens} "
            "tokens (0 = that maximum)",
            field="max_length",
        )
    return ActivationJob(
        loaded,
        texts,
        points,
        g,
        a,
        add,
        max_length,
        get_executor(loaded, executor, limits),
        is_active,
        limits,
        out_dtype,
    )
