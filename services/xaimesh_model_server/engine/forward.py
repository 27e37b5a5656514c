"""The forward pass every work kind shares: padding, position ids, logits.

Padding. Causal LMs and encoders are padded on the right: with causal
attention real tokens never see the padding, position ids are the model's
own defaults (those of an unpadded forward), so a padded row gives the
numbers of an unpadded forward. Decoder
sequence classifiers (a `score` head that reads the last token) are padded on
the left and fed input embeddings with explicit position ids
(cumsum(attention_mask) - 1), so the last position is always the real last
token and no pad-token heuristics are involved.

Encoder-decoders (docs/models.md, "Encoder-decoders"). A sequence is a
source (the first `source_length` ids: the encoder's input) followed by a
target; the decoder reads the decoder start token then the target minus
its last token (teacher forcing), so decoder position j predicts target
token j. Both stacks are padded on the right, each with its own mask.
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


def forward_token_budget(loaded: LoadedModel, cpu_forward_tokens: int) -> int | None:
    """Tokens one score forward may hold: Limits.cpu_forward_tokens on a
    CPU, None (the whole batch) on an accelerator or when it is 0."""
    return cpu_forward_tokens if cpu_forward_tokens > 0 and torch.device(loaded.device).type == "cpu" else None


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


# --------------------------------------------------------------------------- encoder-decoders


def _stack_embed(loaded: LoadedModel, decoder: bool, ids: torch.Tensor) -> torch.Tensor:
    """The stack's inputs_embeds for `ids` (those that give what input_ids
    gives): its embedding times LoadedModel.embed_scales (Marian's encoder
    scales by sqrt(d_model) outside the embedding module)."""
    stack = loaded.model.get_decoder() if decoder else loaded.model.get_encoder()
    emb = stack.get_input_embeddings()(ids.to(loaded.device))
    scale = loaded.embed_scales[int(decoder)]
    return emb * scale if scale != 1.0 else emb


def sequence_embeddings(loaded: LoadedModel, ids: torch.Tensor, source_length: int = 0) -> torch.Tensor:
    """The input embeddings of a sequence [L] -> [L, D] as the model consumes
    them: the input embeddings; for an encoder-decoder, the encoder's of the
    source positions then the decoder's of the target positions."""
    if not loaded.is_seq2seq:
        return loaded.input_embeddings(ids.to(loaded.device))
    return torch.cat([_stack_embed(loaded, False, ids[:source_length]), _stack_embed(loaded, True, ids[source_length:])])


def decoder_start(loaded: LoadedModel, embeds: bool) -> torch.Tensor:
    """The decoder start token as an id [1] or its decoder embedding [1, D]."""
    start = torch.tensor([loaded.decoder_start_token_id], dtype=torch.long)
    return _stack_embed(loaded, True, start) if embeds else start


def seq2seq_forward(loaded: LoadedModel, seqs: Sequence[torch.Tensor], source_lengths: Sequence[int]) -> Any:
    """One teacher-forced forward of source + target sequences ([L_i] ids or
    [L_i, D] embeddings from sequence_embeddings): the encoder reads each
    source, the decoder its start token then the target minus its last
    token. Logits [B, Ld, V]: row b, decoder position j scores target token
    j (sequence position source_lengths[b] + j)."""
    embeds = seqs[0].dim() == 2
    start = decoder_start(loaded, embeds)
    if embeds:
        start = start.to(seqs[0].dtype)
    sources = [s[:n] for s, n in zip(seqs, source_lengths)]
    decoder = [torch.cat([start.to(s.device), s[n : s.shape[0] - 1]]) for s, n in zip(seqs, source_lengths)]
    fill = 0.0 if embeds else pad_id(loaded)
    src, src_mask, _ = pad_stack(sources, "right", fill)
    dec, dec_mask, _ = pad_stack(decoder, "right", fill)
    dev = loaded.device
    kwargs: dict[str, Any] = {"attention_mask": src_mask.to(dev), "decoder_attention_mask": dec_mask.to(dev),
                              "use_cache": False}
    if embeds:
        kwargs.update(inputs_embeds=src, decoder_inputs_embeds=dec)
    else:
        kwargs.update(input_ids=src.to(dev), decoder_input_ids=dec.to(dev))
    return loaded.model(**kwargs)
