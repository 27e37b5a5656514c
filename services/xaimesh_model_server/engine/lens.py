"""LogitLens: the model's own head applied to the residual stream of every layer
(and UnembedDirections: the unembedding applied to directions of that stream).

Rows (docs/lenses.md, the one definition): row 0 is the input of the first
block ("embeddings": token embeddings plus whatever the model adds before its
blocks, such as GPT-2's learned positions), row i >= 1 the output of block
i - 1. Each row goes through the model's final norm, its unembedding
(`get_output_embeddings()`) and the final logit soft-capping of the families
that have one (Gemma 2); probabilities are the softmax over the whole
vocabulary. The last row is then the model's own output, which every batch
checks: a model whose output is not its final norm plus unembedding
(an unknown logit transform) is refused rather than lensed wrongly.

A tuned lens is the same with affine translators applied to every row but
the last before the head (`Translators`; trained by engine/tuned_lens.py).

A request is one sequence, one item (`LensItem`: the ids and the
translators, if any) of kind LensWork(top_k); a batch is one right-padded
forward with a pre-hook on the first block and hooks on every block, then
the head applied layer by layer in chunks of at most
Limits.max_logits_elements logits, keeping only the top-k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

from ..loading import TASK_CAUSAL_LM, LoadedModel
from ..tokenization import detokenize, tokenize_ids
from .activations import _first_tensor, block_input
from .forward import lm_rows, pad_id, pad_stack
from .inputs import check_input_ids
from .limits import DEFAULT_LIMITS, Limits
from .work import WorkKind, get_executor, runs

DEFAULT_TOP_K = 5
DEFAULT_UNEMBED_TOP_K = 10
MAX_TOP_K = 100
EMBEDDINGS_ROW = "embeddings"

# Attribute names of the final norm on the base model (or its decoder, OPT):
# Llama / Mistral / Qwen / Gemma / Phi-3 / OLMo-2 "norm", GPT-2 "ln_f",
# GPT-NeoX / OPT "final_layer_norm", Phi "final_layernorm".
_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "final_norm")


@dataclass(frozen=True)
class LensWork(WorkKind):
    """Logit-lens rows of one sequence each, with `top_k` tokens kept."""

    label = "lens"
    top_k: int


@dataclass(frozen=True, eq=False)
class Translators:
    """The affine translators of a tuned lens: row i (< blocks) of the lens
    becomes h + h . weight[i]^T + bias[i] (torch Linear layout, float32).
    Zero translators are the logit lens exactly: h + 0 is h bit for bit."""

    weight: torch.Tensor  # float32 [blocks, hidden, hidden]
    bias: torch.Tensor  # float32 [blocks, hidden]

    def apply(self, row: int, states: torch.Tensor) -> torch.Tensor:
        """Row `row`'s states [N, D] translated, in their own dtype (the
        translation itself is computed in float32)."""
        w, b = self.weight[row].to(states.device), self.bias[row].to(states.device)
        return states + (states.float() @ w.T + b).to(states.dtype)


def check_translators(loaded: LoadedModel, weight: Any, bias: Any) -> Translators:
    """Validated translators for `loaded` (INVALID_ARGUMENT naming the field otherwise)."""
    blocks, hidden = loaded.num_layers, loaded.hidden_size
    for name, value, shape in (("translator_weights", weight, (blocks, hidden, hidden)),
                               ("translator_biases", bias, (blocks, hidden))):
        array = np.asarray(value)
        if array.shape != shape:
            raise InvalidArgument(
                f"{name} must be float32 {list(shape)} (one translator per lens row but the last: model "
                f"{loaded.model_id!r} has {blocks} blocks of width {hidden}), got {list(array.shape)}", field=name)
        if not np.all(np.isfinite(array)):
            raise InvalidArgument(f"{name} must hold finite numbers", field=name)
    return Translators(torch.as_tensor(np.asarray(weight, np.float32)), torch.as_tensor(np.asarray(bias, np.float32)))


@dataclass(frozen=True, eq=False)
class LensItem:
    ids: torch.Tensor  # int64 [positions]
    translators: Translators | None = None


@dataclass
class LensResult:
    layers: list[str]
    top_token_ids: np.ndarray  # int64 [layers, positions, k]
    top_probabilities: np.ndarray  # float32 [layers, positions, k]
    next_token_probabilities: np.ndarray  # float32 [layers, positions], NaN at the last position
    top_tokens: list[str]  # text of each top_token_ids entry alone (decode([id])), row-major
    input_tokens: list[str]  # each input token's span of the decoded sequence (they concatenate to it)


def final_norm(loaded: LoadedModel) -> nn.Module:
    """The model's final norm (applied to the last block's output before the unembedding)."""
    base = loaded.model.base_model
    for owner in (base, getattr(base, "decoder", None)):
        for name in _NORM_NAMES:
            module = getattr(owner, name, None) if owner is not None else None
            if isinstance(module, nn.Module):
                return module
    raise FailedPrecondition(
        f"model {loaded.model_id!r} ({loaded.architecture}) has no final norm the logit lens knows "
        f"(looked for {', '.join(_NORM_NAMES)} on its base model): this architecture is not supported by LogitLens",
        field="model",
    )


def _head(loaded: LoadedModel) -> nn.Module:
    head = loaded.model.get_output_embeddings()
    if head is None:
        raise FailedPrecondition(
            f"model {loaded.model_id!r} ({loaded.architecture}) has no unembedding: LogitLens needs a causal LM",
            field="model",
        )
    return head


def _device_of(module: nn.Module, default: torch.device) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else default


def lens_logits(loaded: LoadedModel, states: torch.Tensor) -> torch.Tensor:
    """Residual states [N, D] -> float32 logits [N, V] through the model's own head."""
    norm, head = final_norm(loaded), _head(loaded)
    x = norm(states.to(_device_of(norm, loaded.device)))
    logits = head(x.to(_device_of(head, loaded.device))).float()
    cap = getattr(loaded.model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


@runs(LensWork)
def run_lens(loaded: LoadedModel, kind: LensWork, items: list[LensItem], limits: Limits) -> list[dict[str, np.ndarray]]:
    with loaded.lock, torch.inference_mode():
        states, offsets, own = residual_states(loaded, [item.ids for item in items])
        rows_per_chunk = logit_rows_per_chunk(loaded, limits)
        out = []
        for b, item in enumerate(items):
            seq = item.ids
            n = int(seq.shape[0])
            nxt = seq[1:].to(loaded.device)
            ids, probs, next_probs = [], [], []
            for r, state in enumerate(states):
                rows = state[b, offsets[b] : offsets[b] + n]
                if item.translators is not None and r < loaded.num_layers:
                    rows = item.translators.apply(r, rows)
                top_i, top_p, nxt_p = [], [], []
                for start in range(0, n, rows_per_chunk):
                    logits = lens_logits(loaded, rows[start : start + rows_per_chunk])
                    logp = torch.log_softmax(logits, dim=-1)
                    values, indices = logp.topk(kind.top_k, dim=-1)
                    top_i.append(indices)
                    top_p.append(values.exp())
                    end = min(start + rows_per_chunk, n - 1)
                    if end > start:
                        nxt_p.append(logp[: end - start].gather(1, nxt[start:end].view(-1, 1)).squeeze(1).exp())
                ids.append(torch.cat(top_i))
                probs.append(torch.cat(top_p))
                last = torch.full((1,), float("nan"), device=loaded.device)
                next_probs.append(torch.cat([*nxt_p, last]))
            _check_last_row(loaded, logits_at_end=own[b], lensed=lens_logits(loaded, states[-1][b, offsets[b] + n - 1 : offsets[b] + n])[0])
            out.append({
                "top_token_ids": torch.stack(ids).cpu().numpy().astype(np.int64),
                "top_probabilities": torch.stack(probs).cpu().numpy().astype(np.float32),
                "next_token_probabilities": torch.stack(next_probs).cpu().numpy().astype(np.float32),
            })
        return out


def logit_rows_per_chunk(loaded: LoadedModel, limits: Limits) -> int:
    """Positions whose logits go through the head at once (Limits.max_logits_elements)."""
    return max(1, limits.max_logits_elements // max(1, loaded.vocab_size))


def residual_states(loaded: LoadedModel, items: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[int], torch.Tensor]:
    """One forward of the batch: ([input of block 0, output of each block], each
    [B, Lmax, D]; offsets; the model's own logits [B, V] at each sequence's last token)."""
    ids, mask, offsets = pad_stack(items, "right", pad_id(loaded))
    first: list[torch.Tensor] = []
    outputs: dict[int, torch.Tensor] = {}

    def before_first(module, args, kwargs):
        first.append(block_input(args, kwargs).detach())

    def after(index: int):
        def hook(module, args, output):
            outputs[index] = _first_tensor(output).detach()

        return hook

    handles = [loaded.layers[0].register_forward_pre_hook(before_first, with_kwargs=True)]
    handles += [layer.register_forward_hook(after(i)) for i, layer in enumerate(loaded.layers)]
    try:
        last = torch.tensor([len(s) - 1 for s in items], dtype=torch.long)
        own = lm_rows(loaded, {"input_ids": ids, "attention_mask": mask}, torch.arange(len(items)), last).float()
    finally:
        for h in handles:
            h.remove()
    return [first[0], *(outputs[i] for i in range(loaded.num_layers))], offsets, own


def _check_last_row(loaded: LoadedModel, *, logits_at_end: torch.Tensor, lensed: torch.Tensor) -> None:
    """The lens of the last block must be the model's own output (see the module doc)."""
    scale = float(logits_at_end.abs().max().clamp(min=1.0))
    error = float((lensed.to(logits_at_end.device) - logits_at_end).abs().max())
    tolerance = 1e-3 if loaded.dtype == torch.float32 else 5e-2
    if error > tolerance * scale:
        raise FailedPrecondition(
            f"model {loaded.model_id!r} ({loaded.architecture}) does not compute its output as final norm + "
            f"unembedding (largest difference {error:.3g} on logits up to {scale:.3g}): LogitLens does not "
            "support this architecture",
            field="model",
        )


def check_lens_model(loaded: LoadedModel) -> None:
    """A lens needs a causal LM with a final norm and an unembedding (FAILED_PRECONDITION otherwise)."""
    if loaded.task != TASK_CAUSAL_LM:
        raise FailedPrecondition(
            f"model {loaded.model_id!r} is a {loaded.task} model, not a causal LM: a lens reads "
            "next-token predictions through a causal LM's unembedding; use a causal LM",
            field="model",
        )
    final_norm(loaded)
    _head(loaded)


def logit_lens(
    loaded: LoadedModel,
    input_ids: Any,
    *,
    top_k: int | None = None,
    translators: Translators | None = None,
    executor: Any = None,
    is_active: Any = None,
    limits: Limits | None = None,
) -> LensResult:
    """The logit lens of one sequence, or the tuned lens with `translators`
    (LogitLensRequest semantics; docs/lenses.md)."""
    limits = limits or DEFAULT_LIMITS
    check_lens_model(loaded)
    k = DEFAULT_TOP_K if not top_k else int(top_k)
    if k < 1 or k > min(MAX_TOP_K, loaded.vocab_size):
        raise InvalidArgument(
            f"top_k must be 1..{min(MAX_TOP_K, loaded.vocab_size)} (0 means {DEFAULT_TOP_K}), got {k}",
            field="top_k",
        )
    ids = check_input_ids(loaded, input_ids)
    (result,) = get_executor(loaded, executor, limits).run(LensWork(k), [LensItem(ids, translators)],
                                                           [int(ids.shape[0])], is_active=is_active)
    top = result["top_token_ids"]
    texts = {int(i): detokenize(loaded, [int(i)]) for i in np.unique(top)}
    spans = tokenize_ids(loaded, ids.tolist(), field="input_ids")
    return LensResult(
        layers=[EMBEDDINGS_ROW, *loaded.split_points[: loaded.num_layers]],
        top_token_ids=top,
        top_probabilities=result["top_probabilities"],
        next_token_probabilities=result["next_token_probabilities"],
        top_tokens=[texts[int(i)] for i in top.reshape(-1)],
        input_tokens=[spans.text[a:b] for a, b in zip(spans.token_start_chars, spans.token_end_chars, strict=True)],
    )


@dataclass
class UnembeddedDirections:
    promoted_ids: np.ndarray  # int64 [directions, k]
    promoted_values: np.ndarray  # float32 [directions, k]
    suppressed_ids: np.ndarray
    suppressed_values: np.ndarray
    promoted_tokens: list[str]  # row-major
    suppressed_tokens: list[str]


def unembed_directions(loaded: LoadedModel, directions: Any, *, top_k: int | None = None) -> UnembeddedDirections:
    """The tokens each direction d of the residual stream promotes and suppresses:
    the top / bottom k of U d, U the unembedding weight [vocabulary, hidden] (no
    final norm, no bias: how the direction itself moves the logits;
    UnembedDirectionsRequest semantics, docs/concept-gradients.md)."""
    if loaded.task != TASK_CAUSAL_LM:
        raise FailedPrecondition(f"model {loaded.model_id!r} is a {loaded.task} model, not a causal LM: "
                                 "directions are projected on a causal LM's unembedding; use a causal LM", field="model")
    k = DEFAULT_UNEMBED_TOP_K if not top_k else int(top_k)
    if k < 1 or k > min(MAX_TOP_K, loaded.vocab_size):
        raise InvalidArgument(f"top_k must be 1..{min(MAX_TOP_K, loaded.vocab_size)} (0 means "
                              f"{DEFAULT_UNEMBED_TOP_K}), got {k}", field="top_k")
    weight = _head(loaded).weight
    d = np.asarray(directions, dtype=np.float32)
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] != weight.shape[1]:
        raise InvalidArgument(f"directions must be [directions, {weight.shape[1]}] (the model's hidden size), "
                              f"got {list(d.shape)}", field="directions")
    if not np.all(np.isfinite(d)):
        raise InvalidArgument("directions must hold finite numbers", field="directions")
    with loaded.lock, torch.inference_mode():
        values = torch.from_numpy(d).to(weight.device, weight.dtype) @ weight.T  # [directions, vocabulary]
        top = values.float().topk(k, dim=-1)
        bottom = (-values.float()).topk(k, dim=-1)
    up, down = top.indices.cpu().numpy(), bottom.indices.cpu().numpy()
    texts = {int(i): detokenize(loaded, [int(i)]) for i in np.unique(np.concatenate([up, down]))}
    return UnembeddedDirections(
        promoted_ids=up.astype(np.int64), promoted_values=top.values.cpu().numpy().astype(np.float32),
        suppressed_ids=down.astype(np.int64), suppressed_values=-bottom.values.cpu().numpy().astype(np.float32),
        promoted_tokens=[texts[int(i)] for i in up.reshape(-1)],
        suppressed_tokens=[texts[int(i)] for i in down.reshape(-1)])
