"""The model-server's computations: scores, gradients, generation, activations.

Requests are validated here (InvalidArgument with a message that says what to
do), then split into row-level items that go through an executor
(`batching.DirectExecutor` in the calling thread, or the model's
`DynamicBatcher`, which merges the rows of concurrent callers into shared
forward passes). `run_rows(loaded, kind, payloads)` is the runner that does one
padded forward pass for a batch of items; it holds `loaded.lock`, so two
forwards never run on one model at the same time.

Padding. Causal LMs and encoders are padded on the right: with causal
attention real tokens never see the padding, position ids are the natural
ones, so a padded row gives the numbers of an unpadded forward. Decoder
sequence classifiers (a `score` head that reads the last token) are padded on
the left and fed input embeddings with explicit position ids
(cumsum(attention_mask) - 1), so the last position is always the real last
token and no pad-token heuristics are involved.

What goes through the executor: Score rows (kind "score"), gradient samples
(kind "grad": forward with autograd + one backward per target index over the
whole batch; a batch is split further so one forward+backward holds at most
`Limits.grad_batch_tokens` tokens) and activation rows (kind "act", one kind
per set of split points). Generation runs whole through `executor.call`, on the
same worker thread, between batches.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
from dataclasses import dataclass
from typing import Any, Hashable, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from .batching import DirectExecutor, DynamicBatcher
from .enums import (
    Aggregation,
    BaselineKind,
    GradientOutput,
    Granularity,
    InferenceMode,
    ReplacementPolicy,
    coerce,
)
from xaimesh_runtime.errors import InvalidArgument, ServiceError
from .loading import TASK_CAUSAL_LM, TASK_SEQUENCE_CLASSIFICATION, LoadedModel
from .tokenization import Tokenized, tokenize, tokenizer_lock

# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Limits:
    """Request limits and batching budgets (configurable by the adapter)."""

    # Rows of a Score request / samples of a ComputeGradients request.
    max_sequences: int = 8192
    max_targets: int = 4096
    max_new_tokens: int = 4096
    # Bytes of the gradient outputs of one request (FULL is n x T x L x D floats).
    max_output_bytes: int = 1 << 31
    # DirectExecutor packing (the DynamicBatcher has its own settings).
    max_batch_tokens: int = 16384
    max_batch_size: int = 256
    # Tokens in one gradient forward + backward.
    grad_batch_tokens: int = 4096
    # Logits kept by one score forward (batch x kept positions x vocab).
    max_logits_elements: int = 1 << 27
    # Tokens of texts tokenized and sent together by activations() (two
    # windows are in flight: one computing, one being assembled).
    activation_window_tokens: int = 16384


DEFAULT_LIMITS = Limits()
DEFAULT_MAX_NEW_TOKENS = 128


@dataclass(frozen=True)
class Replacement:
    """What a masked-out token becomes (ScoreRequest.replacement)."""

    policy: ReplacementPolicy | int | str = ReplacementPolicy.PAD_TOKEN
    token_id: int = 0


@dataclass
class EmbeddingSamples:
    """Where gradients are taken (model.proto EmbeddingSamples).

    Sample i is baseline_i + alphas[i] * (x - baseline_i) + noise_i, with x the
    sequence's embeddings, baseline_i = baseline + N(0, baseline_noise_stddev)
    and noise_i ~ N(0, noise_stddev). Empty alphas = one sample with alpha 1.
    Positions where position_mask is false keep x (no noise) and count as
    their own baseline, so their DOT_DELTA is 0. Noise is drawn on the CPU from
    torch.Generator().manual_seed(seed): baseline noise then noise, sample by
    sample; the same seed gives the same samples on every device.
    """

    baseline: BaselineKind | int | str = BaselineKind.ZERO
    baseline_token_id: int = 0
    alphas: Sequence[float] = ()
    noise_stddev: float = 0.0
    baseline_noise_stddev: float = 0.0
    seed: int = 0
    position_mask: Sequence[bool] = ()


# --------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=64)
def _params_of(cls: type) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(cls.forward).parameters)
    except (TypeError, ValueError):
        return frozenset()


def _forward_params(loaded: LoadedModel) -> frozenset[str]:
    return _params_of(type(loaded.model))


def _runner(loaded: LoadedModel, limits: Limits):
    return functools.partial(run_rows, loaded, limits=limits)


def get_executor(loaded: LoadedModel, executor: Any = None, limits: Limits | None = None) -> Any:
    """The executor to use: the given one, the model's, or a DirectExecutor."""
    if executor is not None:
        return executor
    if loaded.executor is not None:
        return loaded.executor
    limits = limits or DEFAULT_LIMITS
    return DirectExecutor(
        _runner(loaded, limits), max_batch_tokens=limits.max_batch_tokens, max_batch_size=limits.max_batch_size
    )


def make_dynamic_batcher(loaded: LoadedModel, *, limits: Limits | None = None, **options: Any) -> DynamicBatcher:
    """A DynamicBatcher whose runner is run_rows(loaded); options go to DynamicBatcher."""
    return DynamicBatcher(_runner(loaded, limits or DEFAULT_LIMITS), name=loaded.model_id, **options)


def attach_dynamic_batcher(loaded: LoadedModel, *, limits: Limits | None = None, **options: Any) -> DynamicBatcher:
    """Makes the model's calls go through a new DynamicBatcher (returned)."""
    batcher = make_dynamic_batcher(loaded, limits=limits, **options)
    loaded.executor = batcher
    return batcher


def _as_int_list(values: Any, field: str) -> list[int]:
    if values is None:
        return []
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.size == 0:
        return []
    if arr.ndim != 1:
        raise InvalidArgument(f"{field} must be a flat list of integers, got shape {list(arr.shape)}", field=field)
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InvalidArgument(f"{field} must hold integers, got {arr.dtype}", field=field)
    return [int(v) for v in arr]


def check_input_ids(loaded: LoadedModel, input_ids: Any, field: str = "input_ids") -> torch.Tensor:
    """Validated token ids as a CPU int64 tensor [L]."""
    ids = _as_int_list(input_ids, field)
    if not ids:
        raise InvalidArgument(f"{field} is empty: give at least one token id (tokenize the text first)", field=field)
    vocab = loaded.vocab_size
    for pos, i in enumerate(ids):
        if i < 0 or i >= vocab:
            raise InvalidArgument(
                f"token id {i} at position {pos} of {field} is out of the vocabulary: valid ids are 0..{vocab - 1}",
                field=field,
            )
    if len(ids) > loaded.max_sequence_length:
        raise InvalidArgument(
            f"{field} has {len(ids)} tokens but model {loaded.model_id!r} accepts at most "
            f"{loaded.max_sequence_length}: shorten the input",
            field=field,
        )
    return torch.tensor(ids, dtype=torch.long)


def _check_token_id(loaded: LoadedModel, token_id: int, field: str) -> int:
    if token_id < 0 or token_id >= loaded.vocab_size:
        raise InvalidArgument(
            f"{field} {token_id} is out of the vocabulary: valid ids are 0..{loaded.vocab_size - 1}", field=field
        )
    return int(token_id)


def _special_token_id(loaded: LoadedModel, which: str, field: str, alternatives: str) -> int:
    tok = loaded.tokenizer
    token_id = getattr(tok, f"{which}_token_id", None)
    if which == "pad" and token_id is None:
        token_id = getattr(tok, "unk_token_id", None)
    if token_id is None:
        raise InvalidArgument(
            f"the tokenizer of model {loaded.model_id!r} has no {which} token: {alternatives}", field=field
        )
    return _check_token_id(loaded, int(token_id), field)


class _Targets(NamedTuple):
    positions: torch.Tensor | None  # [T] causal LM
    tokens: torch.Tensor  # [T] token ids (LM) or class indices (classifier)


def _check_targets(
    loaded: LoadedModel, ids: torch.Tensor, target_positions: Any, target_classes: Any, limits: Limits
) -> _Targets:
    positions = _as_int_list(target_positions, "target_positions")
    classes = _as_int_list(target_classes, "target_classes")
    L = int(ids.shape[0])
    if loaded.task == TASK_CAUSAL_LM:
        if classes:
            raise InvalidArgument(
                f"model {loaded.model_id!r} is a causal LM: give target_positions, not target_classes",
                field="target_classes",
            )
        if not positions:
            raise InvalidArgument(
                f"target_positions is empty: give positions p in 1..{L - 1} whose token input_ids[p] is scored",
                field="target_positions",
            )
        for p in positions:
            if p < 1 or p >= L:
                raise InvalidArgument(
                    f"target position {p} is out of range: the sequence has {L} tokens "
                    f"(use 1..{L - 1}; position 0 has no preceding token to predict it)",
                    field="target_positions",
                )
        if len(positions) > limits.max_targets:
            raise InvalidArgument(
                f"{len(positions)} targets exceed the limit of {limits.max_targets}: split the request",
                field="target_positions",
            )
        pos = torch.tensor(positions, dtype=torch.long)
        return _Targets(pos, ids[pos].clone())
    if positions:
        raise InvalidArgument(
            f"model {loaded.model_id!r} is a sequence classifier: give target_classes, not target_positions",
            field="target_positions",
        )
    n_classes = loaded.num_labels
    if not classes:
        classes = list(range(n_classes))
    for c in classes:
        if c < 0 or c >= n_classes:
            raise InvalidArgument(
                f"target class {c} is out of range: model {loaded.model_id!r} has {n_classes} classes "
                f"(use 0..{n_classes - 1}: {', '.join(loaded.labels)})",
                field="target_classes",
            )
    return _Targets(None, torch.tensor(classes, dtype=torch.long))


def _last_token_pooling(loaded: LoadedModel) -> bool:
    """Decoder classifiers (a `score` head on the last token) are padded on the left."""
    return loaded.task == TASK_SEQUENCE_CLASSIFICATION and isinstance(
        getattr(loaded.model, "score", None), torch.nn.Module
    )


def _pad_side(loaded: LoadedModel) -> str:
    return "left" if _last_token_pooling(loaded) else "right"


def _pad_id(loaded: LoadedModel) -> int:
    pad = getattr(loaded.tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None and 0 <= pad < loaded.vocab_size else 0


def _pad_stack(seqs: Sequence[torch.Tensor], side: str, value: float | int = 0) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Pads [L_i, ...] tensors to [B, Lmax, ...]; returns (padded, mask [B, Lmax], offsets)."""
    lengths = [int(s.shape[0]) for s in seqs]
    longest = max(lengths)
    if all(n == longest for n in lengths):
        return torch.stack(list(seqs)), torch.ones(len(seqs), longest, dtype=torch.long), [0] * len(seqs)
    first = seqs[0]
    out = torch.full((len(seqs), longest, *first.shape[1:]), value, dtype=first.dtype, device=first.device)
    mask = torch.zeros(len(seqs), longest, dtype=torch.long)
    offsets = []
    for b, s in enumerate(seqs):
        n = lengths[b]
        off = longest - n if side == "left" else 0
        out[b, off : off + n] = s
        mask[b, off : off + n] = 1
        offsets.append(off)
    return out, mask, offsets


def _forward(
    loaded: LoadedModel,
    *,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    attention_mask: torch.Tensor,
    logits_to_keep: torch.Tensor | None = None,
) -> Any:
    params = _forward_params(loaded)
    dev = loaded.device
    attention_mask = attention_mask.to(dev)
    kwargs: dict[str, Any] = {"attention_mask": attention_mask}
    if input_ids is not None:
        kwargs["input_ids"] = input_ids.to(dev)
    else:
        kwargs["inputs_embeds"] = inputs_embeds
    if "position_ids" in params:
        kwargs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    if "use_cache" in params:
        kwargs["use_cache"] = False
    if logits_to_keep is not None:
        kwargs["logits_to_keep"] = logits_to_keep.to(dev)
    return loaded.model(**kwargs)


def _target_values(rows: torch.Tensor, targets: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
    """rows [N, V] (logits), targets [N], modes [N] (InferenceMode) -> [N] float32."""
    rows = rows.float()
    vals = rows.gather(1, targets.view(-1, 1)).squeeze(1)
    need = modes != InferenceMode.LOGITS
    if bool(need.any()):
        lse = torch.logsumexp(rows, dim=-1)
        logp = vals - lse
        vals = torch.where(modes == InferenceMode.LOG_SOFTMAX, logp, vals)
        vals = torch.where(modes == InferenceMode.SOFTMAX, logp.exp(), vals)
    return vals


# --------------------------------------------------------------------------- runner


@dataclass
class _ScoreItem:
    ids: torch.Tensor  # [L] int64, CPU
    zero: torch.Tensor | None  # [L] bool: positions whose input embedding is zeroed
    gather: torch.Tensor | None  # [T] logits position per target (causal LM)
    targets: torch.Tensor  # [T] token ids (LM) or class indices (classifier)
    mode: InferenceMode


@dataclass
class _GradItem:
    point: torch.Tensor  # [L, D] float32 CPU: where the gradient is taken
    delta: torch.Tensor | None  # [L, D] x - baseline_i (for DOT_DELTA)
    gather: torch.Tensor | None
    targets: torch.Tensor
    mode: InferenceMode
    outputs: tuple[str, ...]  # GradientOutput keys


def run_rows(loaded: LoadedModel, kind: Hashable, payloads: list[Any], *, limits: Limits = DEFAULT_LIMITS) -> list[Any]:
    """The executor runner: one batch of items of one kind -> one result per item."""
    name = kind[0] if isinstance(kind, tuple) else kind
    with loaded.lock:
        if name == "score":
            with torch.inference_mode():
                return _run_score(loaded, payloads, limits)
        if name == "grad":
            out: list[Any] = []
            lengths = [int(p.point.shape[0]) for p in payloads]
            i = 0
            while i < len(payloads):  # sub-batches within the gradient token budget
                j, longest = i, 0
                while j < len(payloads) and (j == i or max(longest, lengths[j]) * (j - i + 1) <= limits.grad_batch_tokens):
                    longest = max(longest, lengths[j])
                    j += 1
                out.extend(_run_grad(loaded, payloads[i:j]))
                i = j
            return out
        if name == "act":
            with torch.inference_mode():
                return _run_act(loaded, kind[1], kind[2], payloads)
    if name == "gen":  # takes loaded.lock itself
        return _run_generate(loaded, payloads)
    raise ValueError(f"unknown work kind {kind!r}")


def _logits_chunks(loaded: LoadedModel, items: list[_ScoreItem], limits: Limits) -> list[list[_ScoreItem]]:
    """Splits a score batch so each forward keeps at most max_logits_elements logits
    (batch x kept positions x vocab; every position when the model has no
    `logits_to_keep`)."""
    if loaded.task != TASK_CAUSAL_LM:
        return [items]
    vocab = loaded.vocab_size
    selective = "logits_to_keep" in _forward_params(loaded)
    chunks: list[list[_ScoreItem]] = []
    current: list[_ScoreItem] = []
    kept: set[int] = set()
    longest = 0
    for it in items:
        new = kept | set(it.gather.tolist())
        new_longest = max(longest, int(it.ids.shape[0]))
        width = len(new) if selective else new_longest
        if current and (len(current) + 1) * width * vocab > limits.max_logits_elements:
            chunks.append(current)
            current, new, new_longest = [], set(it.gather.tolist()), int(it.ids.shape[0])
        current.append(it)
        kept, longest = new, new_longest
    if current:
        chunks.append(current)
    return chunks


def _run_score(loaded: LoadedModel, items: list[_ScoreItem], limits: Limits) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for chunk in _logits_chunks(loaded, items, limits):
        out.extend(_score_batch(loaded, chunk))
    return out


def _score_batch(loaded: LoadedModel, items: list[_ScoreItem]) -> list[np.ndarray]:
    dev = loaded.device
    side = _pad_side(loaded)
    ids, mask, offsets = _pad_stack([it.ids for it in items], side, _pad_id(loaded))
    use_embeds = side == "left" or any(it.zero is not None for it in items)
    kwargs: dict[str, Any] = {"attention_mask": mask}
    if use_embeds:
        embeds = loaded.input_embeddings(ids.to(dev))
        if any(it.zero is not None for it in items):
            keep = torch.ones(ids.shape, dtype=embeds.dtype)
            for b, it in enumerate(items):
                if it.zero is not None:
                    n = int(it.ids.shape[0])
                    keep[b, offsets[b] : offsets[b] + n] = (~it.zero).to(embeds.dtype)
            embeds = embeds * keep.to(dev).unsqueeze(-1)
        kwargs["inputs_embeds"] = embeds
    else:
        kwargs["input_ids"] = ids
    counts = [int(it.targets.shape[0]) for it in items]
    batch_idx = torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts))
    targets = torch.cat([it.targets for it in items]).to(dev)
    modes = torch.tensor([int(it.mode) for it in items for _ in range(int(it.targets.shape[0]))], device=dev)
    if loaded.task == TASK_CAUSAL_LM:
        pos = torch.cat([it.gather + offsets[b] for b, it in enumerate(items)])
        rows = _lm_rows(loaded, kwargs, batch_idx, pos)
    else:
        logits = _forward(loaded, **kwargs).logits  # [B, C]
        rows = logits[batch_idx.to(dev)]  # [N, C]
    vals = _target_values(rows, targets, modes).cpu().numpy().astype(np.float32, copy=False)
    return list(np.split(vals, np.cumsum(counts)[:-1]))


def _lm_rows(loaded: LoadedModel, kwargs: dict[str, Any], batch_idx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Logit rows [N, V] at (batch_idx[k], pos[k]); only those positions are projected."""
    dev = loaded.device
    if "logits_to_keep" in _forward_params(loaded):
        keep, inverse = torch.unique(pos, return_inverse=True)
        logits = _forward(loaded, logits_to_keep=keep, **kwargs).logits  # [B, K, V]
        return logits[batch_idx.to(dev), inverse.to(dev)]
    logits = _forward(loaded, **kwargs).logits  # [B, L, V]
    return logits[batch_idx.to(dev), pos.to(dev)]


def _run_grad(loaded: LoadedModel, items: list[_GradItem]) -> list[dict[str, np.ndarray]]:
    dev = loaded.device
    side = _pad_side(loaded)
    with torch.inference_mode(False), torch.enable_grad():
        points, mask, offsets = _pad_stack([it.point for it in items], side, 0.0)
        points = points.to(dev, loaded.dtype).requires_grad_(True)
        counts = [int(it.targets.shape[0]) for it in items]
        batch_idx = torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts))
        target_idx = torch.cat([torch.arange(c) for c in counts])
        targets = torch.cat([it.targets for it in items]).to(dev)
        modes = torch.tensor([int(it.mode) for it in items for _ in range(int(it.targets.shape[0]))], device=dev)
        kwargs = {"inputs_embeds": points, "attention_mask": mask}
        if loaded.task == TASK_CAUSAL_LM:
            pos = torch.cat([it.gather + offsets[b] for b, it in enumerate(items)])
            rows = _lm_rows(loaded, kwargs, batch_idx, pos)
        else:
            rows = _forward(loaded, **kwargs).logits[batch_idx.to(dev)]
        values = _target_values(rows, targets, modes)  # [N]
        wanted = set(o for it in items for o in it.outputs)
        deltas = None
        if "dot_delta" in wanted:
            deltas, _, _ = _pad_stack(
                [it.delta if it.delta is not None else torch.zeros_like(it.point) for it in items], side, 0.0
            )
            deltas = deltas.to(dev)
        plain = points.detach().float() if "dot_input" in wanted else None
        results = [
            {"scores": np.zeros(c, dtype=np.float32)} for c in counts
        ]
        vals_cpu = values.detach().float().cpu().numpy()
        for k in range(len(vals_cpu)):
            results[int(batch_idx[k])]["scores"][int(target_idx[k])] = vals_cpu[k]
        n_t = max(counts)
        for t in range(n_t):
            sel = (target_idx == t).nonzero().squeeze(1)
            loss = values[sel.to(dev)].sum()
            (grad,) = torch.autograd.grad(loss, points, retain_graph=t < n_t - 1)
            grad = grad.float()
            reduced: dict[str, torch.Tensor] = {}
            if "dot_delta" in wanted:
                reduced["dot_delta"] = (grad * deltas).sum(-1)
            if "dot_input" in wanted:
                reduced["dot_input"] = (grad * plain).sum(-1)
            if wanted & {"square_sum", "l2_norm"}:
                sq = grad.square().sum(-1)
                reduced["square_sum"] = sq
                reduced["l2_norm"] = sq.sqrt()
            if "abs_sum" in wanted:
                reduced["abs_sum"] = grad.abs().sum(-1)
            reduced_cpu = {k: v.cpu() for k, v in reduced.items()}
            grad_cpu = grad.cpu() if "full" in wanted else None
            for b, it in enumerate(items):
                if t >= counts[b]:
                    continue
                n = int(it.point.shape[0])
                a = offsets[b]
                res = results[b]
                for key in it.outputs:
                    if key == "full":
                        arr = res.setdefault("full", np.zeros((counts[b], n, it.point.shape[1]), dtype=np.float32))
                        arr[t] = grad_cpu[b, a : a + n].numpy()
                    else:
                        arr = res.setdefault(key, np.zeros((counts[b], n), dtype=np.float32))
                        arr[t] = reduced_cpu[key][b, a : a + n].numpy()
    return results


class _StopForward(Exception):
    """Raised by the hook of the deepest split point to end the forward pass."""


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
    ids, mask, offsets = _pad_stack(items, "right", _pad_id(loaded))
    captured: dict[str, torch.Tensor] = {}
    owner = threading.get_ident()
    handles = []

    def capture(path: str):
        def hook(module, args, output):
            if threading.get_ident() == owner:
                captured[path] = _first_tensor(output).detach()

        return hook

    def stopper(module, args, output):
        if threading.get_ident() == owner and len(captured) == len(paths):
            raise _StopForward()

    try:
        for path in paths:
            handles.append(loaded.model.get_submodule(path).register_forward_hook(capture(path)))
        handles.append(loaded.layers[stop].register_forward_hook(stopper))
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "logits_to_keep" in _forward_params(loaded):
            kwargs["logits_to_keep"] = torch.tensor([0])
        try:
            _forward(loaded, **kwargs)
        except _StopForward:
            pass
    finally:
        for h in handles:
            h.remove()
    missing = [p for p in paths if p not in captured]
    if missing:
        raise RuntimeError(f"split points {missing} were not reached by the forward pass")
    out = []
    for b, seq in enumerate(items):
        n = int(seq.shape[0])
        row = {}
        for path in paths:
            t = captured[path]
            if t.dim() < 2 or t.shape[0] != len(items):
                raise InvalidArgument(f"split point {path!r} does not output one row per token (shape {list(t.shape)})")
            row[path] = t[b, offsets[b] : offsets[b] + n].reshape(n, -1).cpu()
        out.append(row)
    return out


# --------------------------------------------------------------------------- score


def _check_keep_mask(keep_mask: Any, L: int, limits: Limits) -> torch.Tensor:
    if isinstance(keep_mask, torch.Tensor):
        keep_mask = keep_mask.detach().cpu().numpy()
    arr = np.asarray(keep_mask)
    if arr.ndim == 1 and arr.shape[0] == L:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != L:
        raise InvalidArgument(
            f"keep_mask must have shape [n_sequences, {L}] (one column per input id), got {list(arr.shape)}",
            field="keep_mask",
        )
    if arr.shape[0] == 0:
        raise InvalidArgument("keep_mask has no rows: give at least one sequence, or omit it", field="keep_mask")
    if arr.shape[0] > limits.max_sequences:
        raise InvalidArgument(
            f"keep_mask has {arr.shape[0]} rows, more than the limit of {limits.max_sequences}: "
            "split the request into several",
            field="keep_mask",
        )
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)) or not np.all(
            (arr == 0) | (arr == 1)
        ):
            raise InvalidArgument("keep_mask must hold only 0 and 1 (bool or uint8)", field="keep_mask")
        arr = arr != 0
    return torch.from_numpy(np.ascontiguousarray(arr))


def _replacement_id(loaded: LoadedModel, policy: ReplacementPolicy, token_id: int) -> int | None:
    if policy == ReplacementPolicy.PAD_TOKEN:
        return _special_token_id(loaded, "pad", "replacement", "use TOKEN_ID or ZERO_EMBEDDING")
    if policy == ReplacementPolicy.UNK_TOKEN:
        return _special_token_id(loaded, "unk", "replacement", "use PAD_TOKEN, TOKEN_ID or ZERO_EMBEDDING")
    if policy == ReplacementPolicy.MASK_TOKEN:
        return _special_token_id(loaded, "mask", "replacement", "use PAD_TOKEN, TOKEN_ID or ZERO_EMBEDDING")
    if policy == ReplacementPolicy.TOKEN_ID:
        return _check_token_id(loaded, int(token_id), "replacement.token_id")
    return None


def score(
    loaded: LoadedModel,
    input_ids: Any,
    keep_mask: Any = None,
    replacement: Replacement | ReplacementPolicy | int | str | None = None,
    *,
    target_positions: Any = (),
    target_classes: Any = (),
    inference_mode: InferenceMode | int | str = InferenceMode.LOGITS,
    executor: Any = None,
    is_active: Any = None,
    limits: Limits | None = None,
) -> np.ndarray:
    """Target scores, float32 [n_sequences, n_targets] (ScoreRequest semantics).

    Causal LM: target position p is scored by the logits at p - 1 for token
    input_ids[p] (teacher forcing; every target of a sequence comes from one
    forward). The scored token is always the base sequence's token, even
    where the mask replaces it in the input. Classifier: the scores of
    target_classes (all classes when empty). keep_mask [n, L] (bool / 0-1):
    0 replaces the token per `replacement` (default PAD_TOKEN; the unk token
    when there is no pad token); None scores the base sequence alone.
    REMOVE drops the masked tokens (targets are remapped; a target must be
    kept and have a kept token before it). inference_mode: LOGITS (default
    for UNSPECIFIED), SOFTMAX or LOG_SOFTMAX over the vocabulary / classes.
    """
    limits = limits or DEFAULT_LIMITS
    ids = check_input_ids(loaded, input_ids)
    L = int(ids.shape[0])
    tg = _check_targets(loaded, ids, target_positions, target_classes, limits)
    mode = coerce(InferenceMode, inference_mode, field="inference_mode", default=InferenceMode.LOGITS)
    if replacement is None:
        replacement = Replacement()
    elif not isinstance(replacement, Replacement):
        replacement = Replacement(policy=replacement)
    policy = coerce(
        ReplacementPolicy, replacement.policy, field="replacement.policy", default=ReplacementPolicy.PAD_TOKEN
    )
    keep = torch.ones(1, L, dtype=torch.bool) if keep_mask is None else _check_keep_mask(keep_mask, L, limits)
    n = int(keep.shape[0])
    gather = tg.positions - 1 if tg.positions is not None else None
    items: list[_ScoreItem] = []
    if policy == ReplacementPolicy.REMOVE:
        kept_counts = keep.sum(1)
        empty = (kept_counts == 0).nonzero()
        if len(empty):
            raise InvalidArgument(
                f"keep_mask row {int(empty[0])} removes every token: keep at least one", field="keep_mask"
            )
        if tg.positions is not None:
            at_target = keep[:, tg.positions]
            bad = (~at_target).nonzero()
            if len(bad):
                r, t = int(bad[0, 0]), int(tg.positions[bad[0, 1]])
                raise InvalidArgument(
                    f"keep_mask row {r} removes target position {t}: with REMOVE every target must be kept "
                    f"(set keep_mask[:, {t}] = 1)",
                    field="keep_mask",
                )
            new_pos = keep.long().cumsum(1)[:, tg.positions] - 1  # [n, T]
            bad = (new_pos < 1).nonzero()
            if len(bad):
                r, t = int(bad[0, 0]), int(tg.positions[bad[0, 1]])
                raise InvalidArgument(
                    f"keep_mask row {r} keeps no token before target position {t}, so nothing predicts it: "
                    "keep at least one earlier token",
                    field="keep_mask",
                )
        for i in range(n):
            row_ids = ids[keep[i]]
            g = (new_pos[i] - 1) if tg.positions is not None else None
            items.append(_ScoreItem(row_ids, None, g, tg.tokens, mode))
    elif policy == ReplacementPolicy.ZERO_EMBEDDING:
        for i in range(n):
            zero = ~keep[i]
            items.append(_ScoreItem(ids, zero if bool(zero.any()) else None, gather, tg.tokens, mode))
    else:
        repl = _replacement_id(loaded, policy, replacement.token_id)
        rows = torch.where(keep, ids.unsqueeze(0), torch.tensor(repl, dtype=torch.long))
        for i in range(n):
            items.append(_ScoreItem(rows[i], None, gather, tg.tokens, mode))
    lengths = [int(it.ids.shape[0]) for it in items]
    kind = ("score", loaded.task)
    results = get_executor(loaded, executor, limits).run(kind, items, lengths, is_active=is_active)
    return np.stack(results).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- gradients


def input_embeddings(loaded: LoadedModel, input_ids: Any) -> torch.Tensor:
    """The sequence's input embeddings x, float32 CPU [L, D]."""
    ids = check_input_ids(loaded, input_ids)
    with loaded.lock, torch.no_grad():  # not inference_mode: the result may enter autograd
        return loaded.input_embeddings(ids.to(loaded.device)).float().cpu().clone()


def _baseline(loaded: LoadedModel, kind: BaselineKind, token_id: int, x: torch.Tensor) -> torch.Tensor:
    if kind == BaselineKind.ZERO:
        return torch.zeros_like(x)
    alternatives = "use ZERO or TOKEN_ID"
    if kind == BaselineKind.PAD_TOKEN:
        tid = _special_token_id(loaded, "pad", "samples.baseline", alternatives)
    elif kind == BaselineKind.UNK_TOKEN:
        tid = _special_token_id(loaded, "unk", "samples.baseline", alternatives)
    elif kind == BaselineKind.MASK_TOKEN:
        tid = _special_token_id(loaded, "mask", "samples.baseline", alternatives)
    else:
        tid = _check_token_id(loaded, int(token_id), "samples.baseline.token_id")
    row = input_embeddings(loaded, [tid])[0]
    return row.expand_as(x).clone()


def _finite(value: float, name: str, nonneg: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or (nonneg and v < 0):
        raise InvalidArgument(f"{name} must be a finite{' non-negative' if nonneg else ''} number, got {value!r}", field=name)
    return v


def make_samples(loaded: LoadedModel, ids: torch.Tensor, spec: EmbeddingSamples, limits: Limits | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(points [n, L, D], deltas x - baseline_i [n, L, D]), float32 CPU."""
    limits = limits or DEFAULT_LIMITS
    x = input_embeddings(loaded, ids)
    L = x.shape[0]
    kind = coerce(BaselineKind, spec.baseline, field="samples.baseline", default=BaselineKind.ZERO)
    base = _baseline(loaded, kind, spec.baseline_token_id, x)
    alphas = [_finite(a, "samples.alphas") for a in (spec.alphas if spec.alphas is not None else ())] or [1.0]
    if len(alphas) > limits.max_sequences:
        raise InvalidArgument(
            f"{len(alphas)} samples exceed the limit of {limits.max_sequences}: split the request", field="samples.alphas"
        )
    sigma = _finite(spec.noise_stddev, "samples.noise_stddev", nonneg=True)
    sigma_b = _finite(spec.baseline_noise_stddev, "samples.baseline_noise_stddev", nonneg=True)
    pm = list(spec.position_mask) if spec.position_mask is not None else []
    if pm and len(pm) != L:
        raise InvalidArgument(
            f"samples.position_mask has {len(pm)} entries but the sequence has {L} tokens: give one per token or none",
            field="samples.position_mask",
        )
    moved = torch.tensor([bool(v) for v in pm], dtype=torch.bool) if pm else torch.ones(L, dtype=torch.bool)
    fixed = (~moved).unsqueeze(-1)
    gen = torch.Generator().manual_seed(int(spec.seed))
    points, deltas = [], []
    for a in alphas:
        b = base
        if sigma_b > 0:
            b = base + sigma_b * torch.randn(x.shape, generator=gen)
        p = b + a * (x - b)
        if sigma > 0:
            p = p + sigma * torch.randn(x.shape, generator=gen)
        b = torch.where(fixed, x, b)
        p = torch.where(fixed, x, p)
        points.append(p)
        deltas.append(x - b)
    return torch.stack(points), torch.stack(deltas)


def gradients(
    loaded: LoadedModel,
    input_ids: Any,
    *,
    target_positions: Any = (),
    target_classes: Any = (),
    inference_mode: InferenceMode | int | str = InferenceMode.LOGITS,
    samples: EmbeddingSamples | None = None,
    embeddings: Any = None,
    outputs: Sequence[GradientOutput | int | str] = (),
    executor: Any = None,
    is_active: Any = None,
    limits: Limits | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of target scores w.r.t. input embeddings (ComputeGradients).

    Points: `samples` (EmbeddingSamples; default one sample at x) or explicit
    `embeddings` [n, L, D] (then the baseline is zero: DOT_DELTA is
    sum_d grad * x with x the embeddings of input_ids). Returns "scores"
    [n, T] (the score at each sample) and, per requested output (default
    DOT_DELTA), "full" [n, T, L, D] or "dot_delta" / "abs_sum" / "square_sum"
    / "l2_norm" / "dot_input" [n, T, L], all float32.
    """
    limits = limits or DEFAULT_LIMITS
    ids = check_input_ids(loaded, input_ids)
    L = int(ids.shape[0])
    D = loaded.hidden_size
    tg = _check_targets(loaded, ids, target_positions, target_classes, limits)
    mode = coerce(InferenceMode, inference_mode, field="inference_mode", default=InferenceMode.LOGITS)
    keys: list[str] = []
    for o in outputs or ():
        member = coerce(GradientOutput, o, field="outputs", default=GradientOutput.DOT_DELTA)
        if member.key not in keys:
            keys.append(member.key)
    if not keys:
        keys = ["dot_delta"]
    if samples is not None and embeddings is not None:
        raise InvalidArgument("give either samples or embeddings, not both", field="points")
    if embeddings is not None:
        if isinstance(embeddings, torch.Tensor):
            emb = embeddings.detach().float().cpu()
        else:
            emb = torch.from_numpy(np.asarray(embeddings, dtype=np.float32).copy())
        if emb.dim() == 2:
            emb = emb.unsqueeze(0)
        if emb.dim() != 3 or emb.shape[1] != L or emb.shape[2] != D:
            raise InvalidArgument(
                f"embeddings must have shape [n_samples, {L}, {D}] (seq_len of input_ids, hidden size), "
                f"got {list(emb.shape)}",
                field="embeddings",
            )
        if emb.shape[0] == 0:
            raise InvalidArgument("embeddings has no samples", field="embeddings")
        if emb.shape[0] > limits.max_sequences:
            raise InvalidArgument(
                f"{emb.shape[0]} samples exceed the limit of {limits.max_sequences}: split the request",
                field="embeddings",
            )
        if not bool(torch.isfinite(emb).all()):
            bad = (~torch.isfinite(emb)).nonzero()[0].tolist()
            raise InvalidArgument(
                f"embeddings hold NaN or infinite values (first at index {bad}): send finite numbers",
                field="embeddings",
            )
        points = emb
        x = input_embeddings(loaded, ids) if "dot_delta" in keys else None
        deltas = None if x is None else x.unsqueeze(0).expand_as(points)
    else:
        points, deltas = make_samples(loaded, ids, samples or EmbeddingSamples(), limits)
    n, T = int(points.shape[0]), int(tg.tokens.shape[0])
    size = 4 * n * T * (L * D if "full" in keys else L) * len(keys)
    if size > limits.max_output_bytes:
        raise InvalidArgument(
            f"the requested gradients take {size / 2**20:.0f} MiB, more than the limit of "
            f"{limits.max_output_bytes / 2**20:.0f} MiB: ask for reduced outputs (DOT_DELTA, L2_NORM...) "
            "instead of FULL, or fewer samples / targets",
            field="outputs",
        )
    gather = tg.positions - 1 if tg.positions is not None else None
    items = [
        _GradItem(points[i], None if deltas is None else deltas[i], gather, tg.tokens, mode, tuple(keys))
        for i in range(n)
    ]
    kind = ("grad", loaded.task)
    results = get_executor(loaded, executor, limits).run(kind, items, [L] * n, is_active=is_active)
    out = {"scores": np.stack([r["scores"] for r in results])}
    for key in keys:
        out[key] = np.stack([r[key] for r in results])
    return out


# --------------------------------------------------------------------------- generation


class GenerationResult(NamedTuple):
    text: str  # the continuation only (special tokens skipped)
    token_ids: list[int]  # the continuation's ids (the final EOS excluded)
    prompt_token_ids: list[int]  # the prompt as the model saw it
    finish_reason: str  # "eos" or "length"


def _chat_prompt(loaded: LoadedModel, messages: Sequence[Any]) -> str:
    if not loaded.has_chat_template:
        raise InvalidArgument(
            f"model {loaded.model_id!r} has no chat template: send a text or token ids prompt", field="chat"
        )
    conv = []
    for i, m in enumerate(messages):
        if isinstance(m, dict):
            role, content = m.get("role"), m.get("content")
        elif isinstance(m, (tuple, list)) and len(m) == 2:
            role, content = m
        else:
            role, content = getattr(m, "role", None), getattr(m, "content", None)
        if role not in ("system", "user", "assistant"):
            raise InvalidArgument(
                f"chat message {i} has role {role!r}: use 'system', 'user' or 'assistant'", field="chat.messages"
            )
        conv.append({"role": role, "content": str(content or "")})
    if not conv:
        raise InvalidArgument("the chat has no messages: give at least one", field="chat.messages")
    try:
        with tokenizer_lock:
            return loaded.tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # template errors (e.g. roles must alternate)
        raise InvalidArgument(f"the chat template rejected the messages: {exc}", field="chat.messages") from exc


def _eos_ids(loaded: LoadedModel) -> set[int]:
    ids: set[int] = set()
    gc = getattr(loaded.model, "generation_config", None)
    value = getattr(gc, "eos_token_id", None) if gc is not None else None
    if isinstance(value, int):
        ids.add(value)
    elif isinstance(value, (list, tuple)):
        ids.update(int(v) for v in value)
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(int(loaded.tokenizer.eos_token_id))
    return ids


def _sample_next(logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float, top_k: int, gen: torch.Generator) -> int:
    if not do_sample:
        return int(torch.argmax(logits))
    logits = logits.float().cpu() / temperature
    if 0 < top_k < logits.shape[0]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        cum = probs.cumsum(-1)
        drop = cum - probs > top_p  # keep the smallest prefix with mass >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(0, order, sorted_logits)
    probs = torch.softmax(logits, -1)
    return int(torch.multinomial(probs, 1, generator=gen))


def generate(
    loaded: LoadedModel,
    text: str | None = None,
    *,
    token_ids: Sequence[int] | None = None,
    messages: Sequence[Any] | None = None,
    max_new_tokens: int | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    add_special_tokens: bool = True,
    executor: Any = None,
    is_active: Any = None,
    limits: Limits | None = None,
) -> GenerationResult:
    """Generates a continuation of exactly one of: `text` (tokenized with the
    tokenizer's special tokens), `token_ids`, or chat `messages` (dicts /
    objects with role and content, rendered with the chat template and its
    generation prompt).

    max_new_tokens 0 / None = 128. Greedy unless do_sample; temperature <= 0
    means 1, top_p <= 0 or >= 1 and top_k <= 0 disable those filters. Sampling
    uses a CPU torch.Generator seeded with `seed` (deterministic, independent
    of the global RNG). Stops at an EOS id of the generation config /
    tokenizer ("eos", EOS not returned) or after max_new_tokens / at the
    model's maximum length ("length").
    """
    limits = limits or DEFAULT_LIMITS
    if loaded.task != TASK_CAUSAL_LM:
        raise InvalidArgument(f"model {loaded.model_id!r} is a sequence classifier: generation needs a causal LM", field="model")
    given = sum(v is not None for v in (text, token_ids, messages))
    if given != 1:
        raise InvalidArgument("give exactly one prompt: text, token_ids or chat messages", field="prompt")
    if messages is not None:
        rendered = _chat_prompt(loaded, messages)
        with tokenizer_lock:
            prompt = loaded.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    elif text is not None:
        if text == "":
            raise InvalidArgument("the prompt text is empty: give at least one character", field="text")
        with tokenizer_lock:
            prompt = loaded.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    else:
        prompt = token_ids
    ids = check_input_ids(loaded, prompt, field="prompt")
    max_new = int(max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
    if max_new < 0 or max_new > limits.max_new_tokens:
        raise InvalidArgument(
            f"max_new_tokens {max_new} is out of range: use 1..{limits.max_new_tokens} (0 = {DEFAULT_MAX_NEW_TOKENS})",
            field="max_new_tokens",
        )
    room = loaded.max_sequence_length - int(ids.shape[0])
    if room <= 0:
        raise InvalidArgument(
            f"the prompt has {int(ids.shape[0])} tokens, the model's maximum length: shorten it", field="prompt"
        )
    temperature = float(temperature) if temperature and temperature > 0 else 1.0
    top_p = float(top_p) if top_p and 0 < top_p < 1 else 1.0
    top_k = int(top_k) if top_k and top_k > 0 else 0
    eos = _eos_ids(loaded)

    item = _GenItem(ids, min(max_new, room), do_sample, temperature, top_p, top_k, int(seed), eos, is_active)
    # Every prompt length shares one batch (left padding): the length the
    # executor sees is 1, and GENERATE_MAX_BATCH bounds a batch instead.
    (result,) = get_executor(loaded, executor, limits).run(("gen",), [item], [1], is_active=is_active)
    if isinstance(result, BaseException):
        raise result
    return result


# Concurrent Generate calls decode together: one forward per step reads the
# weights once for every sequence (on a 2-core CPU, decoding is bound by
# reading them).
GENERATE_MAX_BATCH = 16


@dataclass
class _GenItem:
    ids: torch.Tensor
    max_new: int
    do_sample: bool
    temperature: float
    top_p: float
    top_k: int
    seed: int
    eos: set[int]
    is_active: Any


def _run_generate(loaded: LoadedModel, items: list[_GenItem]) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(items), GENERATE_MAX_BATCH):
        out.extend(_generate_batch(loaded, items[start:start + GENERATE_MAX_BATCH]))
    return out


def _generate_batch(loaded: LoadedModel, items: list[_GenItem]) -> list[Any]:
    """Greedy or sampled decoding of several prompts at once: left-padded
    prefill, then one forward per step for the sequences still going. Each
    has its own sampling generator, EOS ids and length limit, so its tokens
    are those it would get alone (up to float rounding of batched kernels).
    A sequence whose caller went away gets `Cancelled` as its result."""
    from xaimesh_runtime.errors import Cancelled

    params = _forward_params(loaded)
    cache_kw = "cache" if "cache" in params else "past_key_values"
    kwargs: dict[str, Any] = {"use_cache": True}
    if "logits_to_keep" in params:
        kwargs["logits_to_keep"] = 1
    device = loaded.device
    batch = len(items)
    lengths = [int(it.ids.shape[0]) for it in items]
    longest = max(lengths)
    input_ids = torch.full((batch, longest), _pad_id(loaded), dtype=torch.long)
    mask = torch.zeros(batch, longest, dtype=torch.long)
    for i, it in enumerate(items):
        input_ids[i, longest - lengths[i]:] = it.ids
        mask[i, longest - lengths[i]:] = 1
    if batch > 1:  # a lone prompt runs exactly as before batching existed
        kwargs["attention_mask"] = mask.to(device)
        kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
    gens = [torch.Generator().manual_seed(it.seed) for it in items]
    new: list[list[int]] = [[] for _ in items]
    finish = ["length"] * batch
    done = [False] * batch
    cancelled = [False] * batch
    position = torch.tensor(lengths, dtype=torch.long)
    with loaded.lock, torch.inference_mode():
        out = loaded.model(input_ids=input_ids.to(device), **kwargs)
        while True:
            step_ids = []
            for i, it in enumerate(items):
                if not done[i]:
                    nxt = _sample_next(out.logits[i, -1], it.do_sample, it.temperature, it.top_p, it.top_k,
                                       gens[i])
                    if nxt in it.eos:
                        finish[i], done[i] = "eos", True
                    else:
                        new[i].append(nxt)
                        done[i] = len(new[i]) >= it.max_new
                    if not done[i] and it.is_active is not None and not it.is_active():
                        cancelled[i] = done[i] = True
                step_ids.append(new[i][-1] if new[i] else _pad_id(loaded))
            if all(done):
                break
            cache = getattr(out, "cache", None)
            if cache is None:
                cache = getattr(out, "past_key_values", None)
            if batch > 1:
                kwargs["attention_mask"] = torch.cat([kwargs["attention_mask"], torch.ones(batch, 1, dtype=torch.long,
                                                                                           device=device)], dim=1)
                kwargs["position_ids"] = position.unsqueeze(1).to(device)
            position = position + 1  # not in place: position_ids above is a view of it (.to on its own device)
            out = loaded.model(input_ids=torch.tensor(step_ids, device=device).unsqueeze(1),
                               **{cache_kw: cache}, **kwargs)
    results: list[Any] = []
    for i, it in enumerate(items):
        if cancelled[i]:
            results.append(Cancelled("the call was cancelled by the client"))
            continue
        with tokenizer_lock:
            text = loaded.tokenizer.decode(new[i], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        results.append(GenerationResult(text, new[i], [int(t) for t in it.ids], finish[i]))
    return results


# --------------------------------------------------------------------------- activations


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
    layer: int  # index of the layer it is (or is inside)


def resolve_split_points(loaded: LoadedModel, split_points: Sequence[str | int]) -> list[SplitPoint]:
    """Layer indices ("8") or module paths ("model.layers.8", or a submodule of a
    layer such as "model.layers.8.mlp") -> SplitPoints, duplicates removed."""
    n = loaded.num_layers
    prefix = loaded.layers_path
    hint = (
        f"model {loaded.model_id!r} has {n} layers: use a layer index 0..{n - 1} or a module path "
        f"{prefix}.0 .. {prefix}.{n - 1} (or a submodule of one, e.g. {prefix}.0.mlp)"
    )
    if not split_points:
        raise InvalidArgument(f"split_points is empty: {hint}", field="split_points")
    out: list[SplitPoint] = []
    seen: set[str] = set()
    for sp in split_points:
        s = str(sp).strip()
        if s.lstrip("-").isdigit():
            i = int(s)
            if i < 0 or i >= n:
                raise InvalidArgument(f"split point {s} is out of range: {hint}", field="split_points")
            point = SplitPoint(f"{prefix}.{i}", i)
        else:
            if not s.startswith(prefix + "."):
                raise InvalidArgument(f"unknown split point {s!r}: {hint}", field="split_points")
            rest = s[len(prefix) + 1 :]
            head = rest.split(".", 1)[0]
            if not head.isdigit():
                raise InvalidArgument(f"unknown split point {s!r}: {hint}", field="split_points")
            i = int(head)
            if i >= n:
                raise InvalidArgument(f"split point {s!r} is out of range: {hint}", field="split_points")
            try:
                loaded.model.get_submodule(s)
            except AttributeError:
                raise InvalidArgument(f"unknown split point {s!r}: no such module; {hint}", field="split_points") from None
            point = SplitPoint(s, i)
        if point.name not in seen:
            seen.add(point.name)
            out.append(point)
    return out


def aggregate_rows(rows: torch.Tensor, segment_ids: torch.Tensor, n_segments: int, aggregation: Aggregation) -> torch.Tensor:
    """Combines rows [N, W] into [n_segments, W] by segment id (rows with id < 0 are ignored)."""
    keep = segment_ids >= 0
    rows, seg = rows[keep].float(), segment_ids[keep]
    W = rows.shape[1]
    idx = seg.view(-1, 1).expand(-1, W)
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
        self.kind = ("act", tuple(self.split_points), max(p.layer for p in points))

    def _windows(self) -> Iterator[tuple[list[tuple[int, Tokenized]], list[ItemError]]]:
        window: list[tuple[int, Tokenized]] = []
        errors: list[ItemError] = []
        tokens = 0
        for idx, text in enumerate(self.texts):
            try:
                tk = tokenize(self.loaded, text, self.add_special_tokens, max_length=self.max_length)
                if len(tk) == 0:
                    raise InvalidArgument(f"text {idx} has no tokens", field="texts")
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
            else:
                out[p] = torch.zeros(0, self.hidden_size, dtype=self.out_dtype)
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
        segments = tk.words if g == Granularity.WORD else tk.sentences
        index = tk.word_index if g == Granularity.WORD else tk.sentence_index
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
    add_special_tokens: bool = False,
    max_length: int = 0,
    *,
    executor: Any = None,
    is_active: Any = None,
    limits: Limits | None = None,
    out_dtype: torch.dtype = torch.float32,
) -> ActivationJob:
    """Activations (layer outputs) at split points, per granularity.

    Validates everything up front (InvalidArgument) and returns an
    ActivationJob to iterate. The activation of a layer is its output hidden
    state (for the last layer: before the final norm). The forward pass stops
    right after the deepest requested layer. granularity (UNSPECIFIED ->
    TOKEN): ALL_TOKENS (every token), TOKEN (non-special tokens), WORD,
    SENTENCE (segments of tokenization.py, rows aggregated), SAMPLE (all
    non-special tokens aggregated), CLS_TOKEN (first token). aggregation
    (UNSPECIFIED -> MEAN): MEAN, MAX, MIN, SUM, SIGNED_MAX. max_length
    truncates each text (0 = the model's maximum).
    """
    limits = limits or DEFAULT_LIMITS
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise InvalidArgument("texts is empty: give at least one text", field="texts")
    points = resolve_split_points(loaded, split_points)
    g = coerce(Granularity, granularity, field="granularity", default=Granularity.TOKEN)
    a = coerce(Aggregation, aggregation, field="aggregation", default=Aggregation.MEAN)
    max_length = int(max_length or 0)
    if max_length < 0 or max_length > loaded.max_sequence_length:
        raise InvalidArgument(
            f"max_length {max_length} is out of range: model {loaded.model_id!r} accepts 1..{loaded.max_sequence_length} "
            "tokens (0 = that maximum)",
            field="max_length",
        )
    return ActivationJob(
        loaded,
        texts,
        points,
        g,
        a,
        bool(add_special_tokens),
        max_length or loaded.max_sequence_length,
        get_executor(loaded, executor, limits),
        is_active,
        limits,
        out_dtype,
    )
