"""FitLensTranslators: the translators of a tuned lens (Belrose et al. 2023).

One affine translator per lens row but the last (row 0 "embeddings", row i
the output of block i - 1, as the logit lens; docs/lenses.md): row i's lens
is head(h + h . W_i^T + b_i), head = the model's final norm, unembedding and
soft-capping (`lens.lens_logits`). The translators start at zero (the tuned
lens then is the logit lens) and are fitted with AdamW to minimise, per
text, the mean over rows and positions of KL(p_final || p_row), p_final the
distribution of the last row (the model's own output, held fixed) — the
objective, initialisation, optimizer and defaults of interpreto 0.5.2's
TunedLens.fit (epochs 1, learning rate 1e-3, weight decay 0, one step per
text, texts in order).

Training runs here because this is where the final norm and unembedding
live (the loss is back-propagated through them); the caller stores the
translators (the concept-service's FitTunedLens). Row i's loss depends only
on translator i, so each row's gradient is taken alone, in chunks of
positions whose logits fit Limits.max_logits_elements: memory stays one
chunk of logits whatever the depth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
import numpy as np
import torch

from xaimesh_runtime.errors import Cancelled, InvalidArgument

from ..loading import LoadedModel
from ..tokenization import tokenize
from .inputs import check_input_ids
from .lens import EMBEDDINGS_ROW, Translators, check_lens_model, lens_logits, logit_rows_per_chunk, residual_states
from .limits import DEFAULT_LIMITS, Limits

DEFAULT_EPOCHS = 1
MAX_EPOCHS = 1000
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_WEIGHT_DECAY = 0.0


@dataclass
class Progress:
    stage: str  # "training" (optimizer steps) or "evaluating" (texts)
    done: int
    total: int
    message: str = ""


@dataclass
class FittedTranslators:
    layers: list[str]  # the rows translated
    weight: np.ndarray  # float32 [blocks, hidden, hidden]
    bias: np.ndarray  # float32 [blocks, hidden]
    epoch_losses: list[float]
    train_kl_logit_lens: np.ndarray  # float64 [blocks]: mean KL(final || row) over training tokens
    train_kl_tuned_lens: np.ndarray
    held_out_kl_logit_lens: np.ndarray  # empty without held-out texts
    held_out_kl_tuned_lens: np.ndarray
    train_tokens: int = 0
    held_out_tokens: int = 0
    epochs: int = DEFAULT_EPOCHS
    learning_rate: float = DEFAULT_LEARNING_RATE
    weight_decay: float = DEFAULT_WEIGHT_DECAY


def _sequences(loaded: LoadedModel, texts: Sequence[str], name: str) -> list[torch.Tensor]:
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise InvalidArgument(f"{name}[{i}] is empty: every text needs at least one token", field=name)
        ids = tokenize(loaded, text, add_special_tokens=True).token_ids
        out.append(check_input_ids(loaded, ids, field=f"{name}[{i}]"))
    return out


def _row_states(loaded: LoadedModel, ids: torch.Tensor) -> list[torch.Tensor]:
    """[input of block 0, output of each block], each [positions, D], of one sequence (one forward)."""
    with loaded.lock, torch.no_grad():
        states, offsets, _ = residual_states(loaded, [ids])
    n = int(ids.shape[0])
    return [s[0, offsets[0] : offsets[0] + n] for s in states]


def _final_log_probs(loaded: LoadedModel, final: torch.Tensor, chunk: int) -> list[torch.Tensor]:
    with torch.no_grad():
        return [torch.log_softmax(lens_logits(loaded, final[a : a + chunk]), dim=-1)
                for a in range(0, final.shape[0], chunk)]


def _kl(target_log_probs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(logits)) per row, in nats."""
    return (target_log_probs.exp() * (target_log_probs - torch.log_softmax(logits, dim=-1))).sum(-1)


def _check_settings(epochs: int | None, learning_rate: float | None, weight_decay: float | None
                    ) -> tuple[int, float, float]:
    epochs = DEFAULT_EPOCHS if epochs is None else int(epochs)
    if not 1 <= epochs <= MAX_EPOCHS:
        raise InvalidArgument(f"epochs must be 1..{MAX_EPOCHS} (unset = {DEFAULT_EPOCHS}), got {epochs}",
                              field="epochs")
    lr = DEFAULT_LEARNING_RATE if learning_rate is None else float(learning_rate)
    if not (math.isfinite(lr) and lr > 0):
        raise InvalidArgument(f"learning_rate must be a finite number > 0 (unset = {DEFAULT_LEARNING_RATE}), "
                              f"got {lr}", field="learning_rate")
    wd = DEFAULT_WEIGHT_DECAY if weight_decay is None else float(weight_decay)
    if not (math.isfinite(wd) and wd >= 0):
        raise InvalidArgument(f"weight_decay must be a finite number >= 0 (unset = 0), got {wd}",
                              field="weight_decay")
    return epochs, lr, wd


def fit_lens_translators(
    loaded: LoadedModel,
    texts: Sequence[str],
    held_out_texts: Sequence[str] = (),
    *,
    epochs: int | None = None,
    learning_rate: float | None = None,
    weight_decay: float | None = None,
    is_active: Callable[[], bool] | None = None,
    limits: Limits | None = None,
) -> Iterator[Progress | FittedTranslators]:
    """Fits the translators (FitLensTranslatorsRequest semantics; module doc):
    yields Progress events, then the FittedTranslators. Everything is
    validated before the first event."""
    limits = limits or DEFAULT_LIMITS
    check_lens_model(loaded)
    epochs, lr, wd = _check_settings(epochs, learning_rate, weight_decay)
    if not texts:
        raise InvalidArgument("texts is empty: give at least one training text", field="texts")
    for name, given in (("texts", texts), ("held_out_texts", held_out_texts)):
        if len(given) > limits.max_sequences:
            raise InvalidArgument(f"{name} has {len(given)} texts; at most {limits.max_sequences} per request",
                                  field=name)
    train = _sequences(loaded, texts, "texts")
    held_out = _sequences(loaded, held_out_texts, "held_out_texts")
    return _fit(loaded, train, held_out, epochs, lr, wd, is_active or (lambda: True), limits)


def _fit(loaded: LoadedModel, train: list[torch.Tensor], held_out: list[torch.Tensor], epochs: int, lr: float,
         wd: float, is_active: Callable[[], bool], limits: Limits) -> Iterator[Progress | FittedTranslators]:
    blocks, hidden = loaded.num_layers, loaded.hidden_size
    weight = torch.zeros(blocks, hidden, hidden, dtype=torch.float32, device=loaded.device, requires_grad=True)
    bias = torch.zeros(blocks, hidden, dtype=torch.float32, device=loaded.device, requires_grad=True)
    optimizer = torch.optim.AdamW([weight, bias], lr=lr, weight_decay=wd)
    chunk = logit_rows_per_chunk(loaded, limits)
    losses: list[float] = []
    steps, total = 0, epochs * len(train)
    for epoch in range(epochs):
        epoch_loss = 0.0
        for ids in train:
            if not is_active():
                raise Cancelled("the tuned lens fit was cancelled")
            epoch_loss += _step(loaded, ids, weight, bias, optimizer, chunk)
            steps += 1
            yield Progress("training", steps, total, f"epoch {epoch + 1} loss={epoch_loss / (steps - epoch * len(train)):.5g}")
        losses.append(epoch_loss / len(train))
    translators = Translators(weight.detach(), bias.detach())
    evaluated = 0
    kls = []
    for seqs in (train, held_out):
        sums, tokens = np.zeros((2, blocks)), 0
        for ids in seqs:
            if not is_active():
                raise Cancelled("the tuned lens fit was cancelled")
            sums += _kl_sums(loaded, ids, translators, chunk)
            tokens += int(ids.shape[0])
            evaluated += 1
            yield Progress("evaluating", evaluated, len(train) + len(held_out))
        kls.append((sums / max(tokens, 1) if seqs else np.zeros((2, 0)), tokens))
    (train_kl, train_tokens), (held_kl, held_tokens) = kls
    yield FittedTranslators(
        layers=[EMBEDDINGS_ROW, *loaded.split_points[: blocks - 1]],
        weight=weight.detach().cpu().numpy().astype(np.float32), bias=bias.detach().cpu().numpy().astype(np.float32),
        epoch_losses=losses, train_kl_logit_lens=train_kl[0], train_kl_tuned_lens=train_kl[1],
        held_out_kl_logit_lens=held_kl[0], held_out_kl_tuned_lens=held_kl[1],
        train_tokens=train_tokens, held_out_tokens=held_tokens, epochs=epochs, learning_rate=lr, weight_decay=wd)


def _step(loaded: LoadedModel, ids: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
          optimizer: torch.optim.Optimizer, chunk: int) -> float:
    """One AdamW step on one text; returns its loss (mean over rows and positions of the KL)."""
    states = _row_states(loaded, ids)
    n, blocks = int(ids.shape[0]), loaded.num_layers
    targets = _final_log_probs(loaded, states[-1], chunk)
    grad_w, grad_b = torch.zeros_like(weight), torch.zeros_like(bias)
    translators = Translators(weight, bias)
    loss = 0.0
    with loaded.lock, torch.enable_grad():
        for r in range(blocks):
            for c, start in enumerate(range(0, n, chunk)):
                part = _kl(targets[c], lens_logits(loaded, translators.apply(r, states[r][start : start + chunk])))
                part = part.sum() / (blocks * n)
                gw, gb = torch.autograd.grad(part, [weight, bias])
                grad_w += gw
                grad_b += gb
                loss += float(part.detach())
    weight.grad, bias.grad = grad_w, grad_b
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def _kl_sums(loaded: LoadedModel, ids: torch.Tensor, translators: Translators, chunk: int) -> np.ndarray:
    """float64 [2, blocks]: per row, the sum over positions of KL(final || row), logit lens then tuned lens."""
    states = _row_states(loaded, ids)
    targets = _final_log_probs(loaded, states[-1], chunk)
    out = np.zeros((2, loaded.num_layers))
    with loaded.lock, torch.no_grad():
        for r in range(loaded.num_layers):
            for c, start in enumerate(range(0, int(ids.shape[0]), chunk)):
                h = states[r][start : start + chunk]
                out[0, r] += float(_kl(targets[c], lens_logits(loaded, h)).double().sum())
                out[1, r] += float(_kl(targets[c], lens_logits(loaded, translators.apply(r, h))).double().sum())
    return out


__all__ = ["DEFAULT_EPOCHS", "DEFAULT_LEARNING_RATE", "DEFAULT_WEIGHT_DECAY", "FittedTranslators", "Progress",
           "fit_lens_translators"]
