"""Validation of the inputs every work kind shares: token ids, targets,
special token ids. Every problem is an InvalidArgument naming its field."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from xaimesh_runtime.errors import InvalidArgument

from ..loading import TASK_CAUSAL_LM, TASK_SEQ2SEQ_LM, LoadedModel
from .limits import Limits


def as_int_list(values: Any, field: str) -> list[int]:
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


def check_input_ids(loaded: LoadedModel, input_ids: Any, field: str = "input_ids",
                    max_tokens: int | None = None) -> torch.Tensor:
    """Validated token ids as a CPU int64 tensor [L] (at most `max_tokens`,
    default the model's maximum length)."""
    ids = as_int_list(input_ids, field)
    if not ids:
        raise InvalidArgument(f"{field} is empty: give at least one token id (tokenize the text first)", field=field)
    vocab = loaded.vocab_size
    for pos, i in enumerate(ids):
        if i < 0 or i >= vocab:
            raise InvalidArgument(
                f"token id {i} at position {pos} of {field} is out of the vocabulary: valid ids are 0..{vocab - 1}",
                field=field,
            )
    limit = loaded.max_sequence_length if max_tokens is None else max_tokens
    if len(ids) > limit:
        raise InvalidArgument(
            f"{field} has {len(ids)} tokens but model {loaded.model_id!r} accepts at most {limit}: shorten the input",
            field=field,
        )
    return torch.tensor(ids, dtype=torch.long)


def check_token_id(loaded: LoadedModel, token_id: int, field: str) -> int:
    if token_id < 0 or token_id >= loaded.vocab_size:
        raise InvalidArgument(
            f"{field} {token_id} is out of the vocabulary: valid ids are 0..{loaded.vocab_size - 1}", field=field
        )
    return int(token_id)


def special_token_id(loaded: LoadedModel, which: str, field: str, alternatives: str) -> int:
    tok = loaded.tokenizer
    token_id = getattr(tok, f"{which}_token_id", None)
    if which == "pad" and token_id is None:
        token_id = getattr(tok, "unk_token_id", None)
    if token_id is None:
        raise InvalidArgument(
            f"the tokenizer of model {loaded.model_id!r} has no {which} token: {alternatives}", field=field
        )
    return check_token_id(loaded, int(token_id), field)


class Targets(NamedTuple):
    positions: torch.Tensor | None  # [T] causal LM / encoder-decoder
    tokens: torch.Tensor  # [T] token ids (LM) or class indices (classifier)
    # [T] the logits position that scores each target position (causal LM:
    # p - 1; encoder-decoder: the decoder position p - source_length)
    gather: torch.Tensor | None = None


def sequence_ids(loaded: LoadedModel, input_ids: Any) -> torch.Tensor:
    """Validated ids of a Score / ComputeGradients sequence: an
    encoder-decoder's source + target may hold up to twice the model's
    length (each stack has its own; check_source_length checks each)."""
    return check_input_ids(loaded, input_ids, max_tokens=2 * loaded.max_sequence_length if loaded.is_seq2seq else None)


def check_source_length(loaded: LoadedModel, ids: torch.Tensor, source_length: Any) -> int:
    """The validated source length: required (1..len - 1) for an
    encoder-decoder, 0 for every other model. The source (the encoder's
    input) and the target (the decoder reads its start token + the target
    but its last token) each hold at most the model's maximum length."""
    n = int(source_length or 0)
    L = int(ids.shape[0])
    if loaded.task != TASK_SEQ2SEQ_LM:
        if n:
            raise InvalidArgument(
                f"source_length is for encoder-decoder models; model {loaded.model_id!r} is a {loaded.task}: "
                "leave it 0", field="source_length")
        return 0
    if not 1 <= n < L:
        raise InvalidArgument(
            f"model {loaded.model_id!r} is an encoder-decoder: input_ids is the source followed by the target, and "
            f"source_length (got {n}) says where the source ends: give 1..{L - 1} for these {L} ids "
            "(the source tokenized with the tokenizer's special tokens, then at least one target token)",
            field="source_length")
    M = loaded.max_sequence_length
    if n > M:
        raise InvalidArgument(f"the source has {n} tokens but the encoder of model {loaded.model_id!r} accepts at "
                              f"most {M}: shorten it", field="input_ids")
    if L - n > M:
        raise InvalidArgument(f"the target has {L - n} tokens but the decoder of model {loaded.model_id!r} accepts "
                              f"at most {M}: shorten it", field="input_ids")
    return n


def check_targets(
    loaded: LoadedModel, ids: torch.Tensor, target_positions: Any, target_classes: Any, limits: Limits,
    source_length: int = 0,
) -> Targets:
    positions = as_int_list(target_positions, "target_positions")
    classes = as_int_list(target_classes, "target_classes")
    L = int(ids.shape[0])
    if loaded.task == TASK_SEQ2SEQ_LM:
        if classes:
            raise InvalidArgument(
                f"model {loaded.model_id!r} is an encoder-decoder: give target_positions, not target_classes",
                field="target_classes")
        S = source_length
        if not positions:
            raise InvalidArgument(
                f"target_positions is empty: give target positions p in {S}..{L - 1} (after the source) whose "
                "token input_ids[p] is scored", field="target_positions")
        for p in positions:
            if p < S or p >= L:
                raise InvalidArgument(
                    f"target position {p} is out of range: the source is input_ids[0:{S}] and the target "
                    f"input_ids[{S}:{L}]: use {S}..{L - 1}", field="target_positions")
        if len(positions) > limits.max_targets:
            raise InvalidArgument(
                f"{len(positions)} targets exceed the limit of {limits.max_targets}: split the request",
                field="target_positions")
        pos = torch.tensor(positions, dtype=torch.long)
        return Targets(pos, ids[pos].clone(), pos - S)
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
        return Targets(pos, ids[pos].clone(), pos - 1)
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
    return Targets(None, torch.tensor(classes, dtype=torch.long))
