"""Score: target scores of a base sequence under keep-masks (ScoreRequest).

Each row of the keep-mask becomes one ScoreItem of kind ScoreWork(task);
a batch of them is one padded, teacher-forced forward (split when the kept
logits would exceed Limits.max_logits_elements) that projects only the
target positions. An encoder-decoder's rows are source + target sequences
(`source_length`), each stack padded on its own (forward.seq2seq_forward).
Rows of a causal LM that keep the base's leading tokens
share the forward of that prefix (prefix.py; `Limits.share_prefixes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xaimesh_runtime.errors import InvalidArgument

from ..enums import InferenceMode, ReplacementPolicy, coerce
from ..loading import TASK_CAUSAL_LM, TASK_SEQUENCE_CLASSIFICATION, LoadedModel
from .forward import (
    forward,
    forward_params,
    forward_token_budget,
    lm_rows,
    pad_id,
    pad_side,
    pad_stack,
    seq2seq_forward,
    sequence_embeddings,
    target_values,
)
from .inputs import check_source_length, check_targets, check_token_id, sequence_ids, special_token_id
from .limits import DEFAULT_LIMITS, Limits
from .prefix import plan_shared, score_shared
from .work import WorkKind, get_executor, runs


@dataclass(frozen=True)
class Replacement:
    """What a masked-out token becomes (ScoreRequest.replacement)."""

    policy: ReplacementPolicy | int | str = ReplacementPolicy.PAD_TOKEN
    token_id: int = 0


@dataclass
class ScoreItem:
    ids: torch.Tensor  # [L] int64, CPU
    zero: torch.Tensor | None  # [L] bool: positions whose input embedding is zeroed
    gather: torch.Tensor | None  # [T] logits position per target (causal LM; decoder position: encoder-decoder)
    targets: torch.Tensor  # [T] token ids (LM) or class indices (classifier)
    mode: InferenceMode
    source_length: int = 0  # encoder-decoder: ids[:source_length] is the source

    @property
    def logits_length(self) -> int:
        """Positions the forward computes logits for (the decoder's, for an encoder-decoder)."""
        return int(self.ids.shape[0]) - self.source_length
    # The request's base sequence, when `ids` is it with some tokens replaced
    # (its leading tokens' forward can be shared: prefix.py)
    base: torch.Tensor | None = None


@dataclass(frozen=True)
class ScoreWork(WorkKind):
    """Score rows of models of one task."""

    label = "score"
    task: str


@runs(ScoreWork)
def run_score(loaded: LoadedModel, kind: ScoreWork, items: list[ScoreItem], limits: Limits) -> list[np.ndarray]:
    with loaded.lock, torch.inference_mode():
        plans, plain = plan_shared(loaded, items) if limits.share_prefixes else ([], list(range(len(items))))
        out: dict[int, np.ndarray] = {}
        for plan in plans:
            out.update(score_shared(loaded, plan, items, limits))
        rest = [items[i] for i in plain]
        scores = [s for chunk in _logits_chunks(loaded, rest, limits) for s in _score_batch(loaded, chunk)]
        out.update(zip(plain, scores))
        return [out[i] for i in range(len(items))]


def _logits_chunks(loaded: LoadedModel, items: list[ScoreItem], limits: Limits) -> list[list[ScoreItem]]:
    """Splits a score batch so each forward keeps at most max_logits_elements logits
    (batch x kept positions x vocab; every position when the model has no
    `logits_to_keep`) and, on a CPU, holds at most cpu_forward_tokens padded
    tokens (forward.forward_token_budget)."""
    budget = forward_token_budget(loaded, limits.cpu_forward_tokens)
    classifier = loaded.task == TASK_SEQUENCE_CLASSIFICATION
    vocab = loaded.vocab_size
    selective = "logits_to_keep" in forward_params(loaded) and not loaded.is_seq2seq
    chunks: list[list[ScoreItem]] = []
    current: list[ScoreItem] = []
    kept: set[int] = set()
    longest = longest_logits = 0  # the chunk's longest row, and longest logits length
    for it in items:
        new = kept if classifier else kept | set(it.gather.tolist())
        new_longest = max(longest, int(it.ids.shape[0]))
        new_logits = max(longest_logits, it.logits_length)
        width = len(new) if selective else new_logits
        too_many_logits = not classifier and (len(current) + 1) * width * vocab > limits.max_logits_elements
        too_many_tokens = budget is not None and (len(current) + 1) * new_longest > budget
        if current and (too_many_logits or too_many_tokens):
            chunks.append(current)
            current = []
            new = set() if classifier else set(it.gather.tolist())
            new_longest, new_logits = int(it.ids.shape[0]), it.logits_length
        current.append(it)
        kept, longest, longest_logits = new, new_longest, new_logits
    if current:
        chunks.append(current)
    return chunks


def _seq2seq_rows(loaded: LoadedModel, items: list[ScoreItem], batch_idx: torch.Tensor) -> torch.Tensor:
    """Logit rows [N, V] of every target of encoder-decoder items."""
    seqs: list[torch.Tensor] = []
    for it in items:
        if it.zero is None:
            seqs.append(it.ids)
        else:
            emb = sequence_embeddings(loaded, it.ids, it.source_length)
            seqs.append(emb * (~it.zero).to(emb.dtype).to(emb.device).unsqueeze(-1))
    if any(s.dim() == 2 for s in seqs):  # one forward: every row as embeddings
        seqs = [s if s.dim() == 2 else sequence_embeddings(loaded, s, it.source_length) for s, it in zip(seqs, items)]
    logits = seq2seq_forward(loaded, seqs, [it.source_length for it in items]).logits
    pos = torch.cat([it.gather for it in items])
    return logits[batch_idx.to(logits.device), pos.to(logits.device)]


def _score_batch(loaded: LoadedModel, items: list[ScoreItem]) -> list[np.ndarray]:
    dev = loaded.device
    counts = [int(it.targets.shape[0]) for it in items]
    batch_idx = torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts))
    targets = torch.cat([it.targets for it in items]).to(dev)
    modes = torch.tensor([int(it.mode) for it in items for _ in range(int(it.targets.shape[0]))], device=dev)
    rows = _seq2seq_rows(loaded, items, batch_idx) if loaded.is_seq2seq else _lm_or_class_rows(loaded, items, batch_idx)
    vals = target_values(rows, targets, modes).cpu().numpy().astype(np.float32, copy=False)
    return list(np.split(vals, np.cumsum(counts)[:-1]))


def _lm_or_class_rows(loaded: LoadedModel, items: list[ScoreItem], batch_idx: torch.Tensor) -> torch.Tensor:
    """Logit rows [N, V] (causal LM targets) or [N, C] (classifier rows)."""
    dev = loaded.device
    side = pad_side(loaded)
    ids, mask, offsets = pad_stack([it.ids for it in items], side, pad_id(loaded))
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
    if loaded.task != TASK_SEQUENCE_CLASSIFICATION:
        pos = torch.cat([it.gather + offsets[b] for b, it in enumerate(items)])
        rows = lm_rows(loaded, kwargs, batch_idx, pos)
    else:
        logits = forward(loaded, **kwargs).logits  # [B, C]
        rows = logits[batch_idx.to(dev)]  # [N, C]
    return rows


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
        return special_token_id(loaded, "pad", "replacement", "use TOKEN_ID or ZERO_EMBEDDING")
    if policy == ReplacementPolicy.UNK_TOKEN:
        return special_token_id(loaded, "unk", "replacement", "use PAD_TOKEN, TOKEN_ID or ZERO_EMBEDDING")
    if policy == ReplacementPolicy.MASK_TOKEN:
        return special_token_id(loaded, "mask", "replacement", "use PAD_TOKEN, TOKEN_ID or ZERO_EMBEDDING")
    if policy == ReplacementPolicy.TOKEN_ID:
        return check_token_id(loaded, int(token_id), "replacement.token_id")
    return None


def _scored_length(loaded: LoadedModel, gather: torch.Tensor | None, length: int) -> int:
    """Leading tokens of a row its scores depend on. A causal LM's logits at
    a position see only the tokens up to it, so the tokens after the last
    logits position scored (usually just the last target token) change no
    score: the forward stops there. Encoders and encoder-decoders see the
    whole row."""
    if loaded.task != TASK_CAUSAL_LM or gather is None or not len(gather):
        return length
    return int(gather.max()) + 1


def score(
    loaded: LoadedModel,
    input_ids: Any,
    keep_mask: Any = None,
    replacement: Replacement | ReplacementPolicy | int | str | None = None,
    *,
    target_positions: Any = (),
    target_classes: Any = (),
    inference_mode: InferenceMode | int | str = InferenceMode.LOGITS,
    source_length: int = 0,
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

    Encoder-decoder: input_ids is the source (its first `source_length` ids)
    then the target; target position p (source_length <= p < L) scores
    input_ids[p] from the decoder logits after the decoder start token and
    input_ids[source_length:p]. A masked source column replaces the token in
    the encoder's input, a target column in the decoder's input. With REMOVE
    each row keeps at least one source token.
    """
    limits = limits or DEFAULT_LIMITS
    ids = sequence_ids(loaded, input_ids)
    L = int(ids.shape[0])
    S = check_source_length(loaded, ids, source_length)
    tg = check_targets(loaded, ids, target_positions, target_classes, limits, S)
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
    gather = tg.gather
    items: list[ScoreItem] = []
    if policy == ReplacementPolicy.REMOVE:
        kept_counts = keep.sum(1)
        empty = (kept_counts == 0).nonzero()
        if len(empty):
            raise InvalidArgument(
                f"keep_mask row {int(empty[0])} removes every token: keep at least one", field="keep_mask"
            )
        new_source = keep[:, :S].sum(1)  # [n] kept source tokens (all 0 unless encoder-decoder)
        if S and not bool((new_source > 0).all()):
            r = int((new_source == 0).nonzero()[0])
            raise InvalidArgument(
                f"keep_mask row {r} removes every source token (input_ids[0:{S}]): the encoder needs at least "
                "one; keep one, or use another replacement", field="keep_mask")
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
            if len(bad) and not S:  # (an encoder-decoder's decoder starts from its start token)
                r, t = int(bad[0, 0]), int(tg.positions[bad[0, 1]])
                raise InvalidArgument(
                    f"keep_mask row {r} keeps no token before target position {t}, so nothing predicts it: "
                    "keep at least one earlier token",
                    field="keep_mask",
                )
        for i in range(n):
            row_ids = ids[keep[i]]
            row_source = int(new_source[i])
            # the logits position of each target: p - 1 (causal LM), the decoder position p - S (encoder-decoder)
            g = (new_pos[i] - (row_source if S else 1)) if tg.positions is not None else None
            row_ids = row_ids[:_scored_length(loaded, g, len(row_ids))]
            items.append(ScoreItem(row_ids, None, g, tg.tokens, mode, row_source))
    elif policy == ReplacementPolicy.ZERO_EMBEDDING:
        end = _scored_length(loaded, gather, L)
        for i in range(n):
            zero = ~keep[i, :end]
            items.append(ScoreItem(ids[:end], zero if bool(zero.any()) else None, gather, tg.tokens, mode, S))
    else:
        end = _scored_length(loaded, gather, L)
        repl = _replacement_id(loaded, policy, replacement.token_id)
        base = ids[:end]
        rows = torch.where(keep[:, :end], base.unsqueeze(0), torch.tensor(repl, dtype=torch.long))
        for i in range(n):
            items.append(ScoreItem(rows[i], None, gather, tg.tokens, mode, S, base=base))
    lengths = [int(it.ids.shape[0]) for it in items]
    kind = ScoreWork(loaded.task)
    results = get_executor(loaded, executor, limits).run(kind, items, lengths, is_active=is_active)
    return np.stack(results).astype(np.float32, copy=False)
