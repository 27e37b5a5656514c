"""The forward pass every work kind shares: padding, position ids, logits.

Padding. Causal LMs and encoders are padded on the right: with causal
attention real tokens never see the padding, position ids are the model's
own defaults (those of an unpadded forward), so a padded row gives the
numbers of an unpadded forward. Decoder
sequence classifiers (a `score` head that reads the last token) are padded on
the left and fed input embeddings with explicit position ids
(cumsum(attention_mask) - 1), so the last position is always the real last
token and no pad-token heuristics are involved.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Sequence

import torch

from ..enums import InferenceMode
from ..loading import TASK_SEQUENCE_CLASSIFICATION, LoadedModel


@functools.lru_cache(maxsize=64)
def _params_of(cls: type) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(cls.forward).parameters)
    except (TypeError, ValueError):
        return frozenset()


def forward_params(loaded: LoadedModel) -> frozenset[str]:
    """The keyword arguments the model's forward accepts."""
    return _params_of(type(loaded.model))


def last_token_pooling(loaded: LoadedModel) -> bool:
    """Decoder classifiers (a `score` head on the last token) are padded on the left."""
    return loaded.task == TASK_SEQUENCE_CLASSIFICATION and isinstance(
        getattr(loaded.model, "score", None), torch.nn.Module
    )


def pad_side(loaded: LoadedModel) -> str:
    return "left" if last_token_pooling(loaded) else "right"


def pad_id(loaded: LoadedModel) -> int:
    pad = getattr(loaded.tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None and 0 <= pad < loaded.vocab_size else 0


def pad_stack(seqs: Sequence[torch.Tensor], side: str, value: float | int = 0) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
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


def position_ids(attention_mask: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Each real token's position in its own sequence (padding gets the first
    position), plus `offset` (LoadedModel.position_offset: RoBERTa-like models
    count from padding_idx + 1; explicit ids from 0 would shift every position)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0) + offset


def forward(
    loaded: LoadedModel,
    *,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    attention_mask: torch.Tensor,
    logits_to_keep: torch.Tensor | None = None,
) -> Any:
    """One forward without cache, with explicit position ids where the model takes them."""
    params = forward_params(loaded)
    dev = loaded.device
    attention_mask = attention_mask.to(dev)
    kwargs: dict[str, Any] = {"attention_mask": attention_mask}
    if input_ids is not None:
        kwargs["input_ids"] = input_ids.to(dev)
    else:
        kwargs["inputs_embeds"] = inputs_embeds
    # Explicit position ids only where padding would shift them (left padding
    # of decoder classifiers). With right padding every family's own default
    # is what an unpadded forward uses, and the default is the family's real
    # rule: RoBERTa-like models number positions from the ids (a PAD token
    # replacing a word gets position padding_idx and later tokens move up),
    # which explicit ids counted from the mask would not reproduce.
    if "position_ids" in params and bool((attention_mask[:, 0] == 0).any()):
        kwargs["position_ids"] = position_ids(attention_mask, loaded.position_offset)
    if "use_cache" in params:
        kwargs["use_cache"] = False
    if logits_to_keep is not None:
        kwargs["logits_to_keep"] = logits_to_keep.to(dev)
    return loaded.model(**kwargs)


def lm_rows(loaded: LoadedModel, kwargs: dict[str, Any], batch_idx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Logit rows [N, V] at (batch_idx[k], pos[k]); only those positions are projected."""
    dev = loaded.device
    if "logits_to_keep" in forward_params(loaded):
        keep, inverse = torch.unique(pos, return_inverse=True)
        logits = forward(loaded, logits_to_keep=keep, **kwargs).logits  # [B, K, V]
        return logits[batch_idx.to(dev), inverse.to(dev)]
    logits = forward(loaded, **kwargs).logits  # [B, L, V]
    return logits[batch_idx.to(dev), pos.to(dev)]


def target_values(rows: torch.Tensor, targets: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
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
