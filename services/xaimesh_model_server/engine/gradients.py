"""ComputeGradients: gradients of target scores w.r.t. input embeddings.

Each sample (a point in embedding space, EmbeddingSamples or explicit
embeddings) becomes one GradItem of kind GradWork(task); a batch is one
forward with autograd and one backward per target index over the whole
batch, split further so one forward + backward holds at most
Limits.grad_batch_tokens tokens. Gradients are reduced on the server
(DOT_DELTA, ABS_SUM...) unless FULL is asked for.

Memory (docs/benchmarks.md, "Long inputs"). What is chunked, and by what:
- rows: a forward + backward holds at most Limits.grad_batch_tokens tokens
  (rows x longest row; a longer row runs alone);
- targets: one target index per backward pass (over every row of the batch),
  the graph kept between them;
- stored activations: a forward over more than Limits.grad_recompute_tokens
  tokens keeps, for the backward passes, only each transformer block's input
  and runs the block again inside each backward pass (activation
  checkpointing per block, torch.utils.checkpoint), so the activations held
  are one [tokens, width] tensor per block plus one block's internals instead
  of every block's internals: SmolLM2-135M stores about 70 KB per token for
  the backward instead of 1.4 MB, and the model-server's peak grows by about
  0.5 MB per token instead of 1.2 MB (docs/benchmarks.md, "Long inputs").
  The recomputation repeats the block's own operations, so the gradients are
  those of the plain path; it costs one more forward per backward pass;
- logits: only at target positions (forward.lm_rows).
Attention runs through SDPA, whose CPU and CUDA kernels keep no
[length x length] matrix for the backward pass, so nothing stored grows with
the square of the length.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.utils.checkpoint

from xaimesh_runtime.errors import InvalidArgument

from ..enums import BaselineKind, GradientOutput, InferenceMode, coerce
from ..loading import TASK_CAUSAL_LM, LoadedModel
from .forward import forward, lm_rows, pad_side, pad_stack, seq2seq_forward, sequence_embeddings, target_values
from .inputs import check_source_length, check_targets, check_token_id, sequence_ids, special_token_id
from .limits import DEFAULT_LIMITS, Limits
from .work import WorkKind, get_executor, runs
from .concept_readout import ConceptReadout, check_concept_targets, pooled_concepts


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


@dataclass
class GradItem:
    point: torch.Tensor  # [L, D] float32 CPU: where the gradient is taken
    delta: torch.Tensor | None  # [L, D] x - baseline_i (for DOT_DELTA)
    gather: torch.Tensor | None
    targets: torch.Tensor
    mode: InferenceMode
    outputs: tuple[str, ...]  # GradientOutput keys
    source_length: int = 0  # encoder-decoder: points[:source_length] are the encoder's input embeddings
    # Inputs -> concepts (concept_readout.py): the targets are the readout's
    # pooled concept activations instead of scores of the outputs.
    readout: Any = None


@dataclass(frozen=True)
class GradWork(WorkKind):
    """Gradient samples of models of one task."""

    label = "grad"
    task: str
    concept_split_point: str = ""  # inputs -> concepts: the readouts' split point


@runs(GradWork)
def run_gradients(loaded: LoadedModel, kind: GradWork, items: list[GradItem], limits: Limits) -> list[dict[str, np.ndarray]]:
    out: list[Any] = []
    lengths = [int(p.point.shape[0]) for p in items]
    with loaded.lock:
        i = 0
        while i < len(items):  # sub-batches within the gradient token budget
            j, longest = i, 0
            while j < len(items) and (j == i or max(longest, lengths[j]) * (j - i + 1) <= limits.grad_batch_tokens):
                longest = max(longest, lengths[j])
                j += 1
            recompute = 0 < limits.grad_recompute_tokens < longest * (j - i)
            out.extend(_run_grad(loaded, items[i:j], recompute))
            i = j
    return out


@contextlib.contextmanager
def recomputed_blocks(loaded: LoadedModel) -> Iterator[None]:
    """Within it, each transformer block keeps only its inputs for the
    backward pass and runs again there (non-reentrant torch.utils.checkpoint;
    the RNG state is replayed, and the engine runs models in eval mode)."""
    previous = []
    try:
        for block in loaded.layers:
            # an instance-level forward (accelerate's device hooks) is kept and restored
            previous.append((block, block.__dict__.get("forward")))
            block.forward = functools.partial(torch.utils.checkpoint.checkpoint, block.forward, use_reentrant=False)
        yield
    finally:
        for block, own in previous:
            if own is None:
                del block.forward
            else:
                block.forward = own


def _run_grad(loaded: LoadedModel, items: list[GradItem], recompute: bool = False) -> list[dict[str, np.ndarray]]:
    dev = loaded.device
    side = pad_side(loaded)
    stored = recomputed_blocks(loaded) if recompute else contextlib.nullcontext()
    with torch.inference_mode(False), torch.enable_grad(), stored:
        points, mask, offsets = pad_stack([it.point for it in items], side, 0.0)
        points = points.to(dev, loaded.dtype).requires_grad_(True)
        counts = [int(it.targets.shape[0]) for it in items]
        batch_idx = torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts))
        target_idx = torch.cat([torch.arange(c) for c in counts])
        targets = torch.cat([it.targets for it in items]).to(dev)
        modes = torch.tensor([int(it.mode) for it in items for _ in range(int(it.targets.shape[0]))], device=dev)
        kwargs = {"inputs_embeds": points, "attention_mask": mask}
        if items[0].readout is not None:  # one GradWork holds readout items only
            read = pooled_concepts(loaded, [it.readout for it in items], [int(it.point.shape[0]) for it in items],
                                   offsets, **kwargs)
            values = torch.cat(read)
        elif loaded.is_seq2seq:  # right-padded: offsets are 0
            logits = seq2seq_forward(loaded, [points[b, : int(it.point.shape[0])] for b, it in enumerate(items)],
                                     [it.source_length for it in items]).logits
            pos = torch.cat([it.gather for it in items])
            rows = logits[batch_idx.to(dev), pos.to(dev)]
        elif loaded.task == TASK_CAUSAL_LM:
            pos = torch.cat([it.gather + offsets[b] for b, it in enumerate(items)])
            rows = lm_rows(loaded, kwargs, batch_idx, pos)
        else:
            rows = forward(loaded, **kwargs).logits[batch_idx.to(dev)]
        if items[0].readout is None:
            values = target_values(rows, targets, modes)  # [N]
        wanted = set(o for it in items for o in it.outputs)
        deltas = None
        if "dot_delta" in wanted:
            deltas, _, _ = pad_stack(
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



def input_embeddings(loaded: LoadedModel, input_ids: Any, source_length: int = 0) -> torch.Tensor:
    """The sequence's input embeddings x, float32 CPU [L, D] (an
    encoder-decoder's: the encoder's for the source, the decoder's for the
    target; forward.sequence_embeddings)."""
    ids = sequence_ids(loaded, input_ids)
    with loaded.lock, torch.no_grad():  # not inference_mode: the result may enter autograd
        return sequence_embeddings(loaded, ids, source_length).float().cpu().clone()


def _baseline(loaded: LoadedModel, kind: BaselineKind, token_id: int, x: torch.Tensor,
              source_length: int = 0) -> torch.Tensor:
    if kind == BaselineKind.ZERO:
        return torch.zeros_like(x)
    alternatives = "use ZERO or TOKEN_ID"
    if kind == BaselineKind.PAD_TOKEN:
        tid = special_token_id(loaded, "pad", "samples.baseline", alternatives)
    elif kind == BaselineKind.UNK_TOKEN:
        tid = special_token_id(loaded, "unk", "samples.baseline", alternatives)
    elif kind == BaselineKind.MASK_TOKEN:
        tid = special_token_id(loaded, "mask", "samples.baseline", alternatives)
    else:
        tid = check_token_id(loaded, int(token_id), "samples.baseline.token_id")
    # the token at every position, embedded as that position's stack does (encoder-decoders)
    return input_embeddings(loaded, [tid] * int(x.shape[0]), source_length)


def _finite(value: float, name: str, nonneg: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or (nonneg and v < 0):
        raise InvalidArgument(f"{name} must be a finite{' non-negative' if nonneg else ''} number, got {value!r}", field=name)
    return v


def make_samples(loaded: LoadedModel, ids: torch.Tensor, spec: EmbeddingSamples, limits: Limits | None = None,
                 source_length: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(points [n, L, D], deltas x - baseline_i [n, L, D]), float32 CPU."""
    limits = limits or DEFAULT_LIMITS
    x = input_embeddings(loaded, ids, source_length)
    L = x.shape[0]
    kind = coerce(BaselineKind, spec.baseline, field="samples.baseline", default=BaselineKind.ZERO)
    base = _baseline(loaded, kind, spec.baseline_token_id, x, source_length)
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
    source_length: int = 0,
    concept_readout: ConceptReadout | None = None,
    executor: Any = None,
    is_active: Any = None,
    limits: Limits | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of target scores w.r.t. input embeddings (ComputeGradients).

    With `concept_readout` (inputs -> concepts) the targets are its pooled
    concept activations (concept_readout.py), one per readout concept;
    target_positions / target_classes must then be empty.

    Points: `samples` (EmbeddingSamples; default one sample at x) or explicit
    `embeddings` [n, L, D] (then the baseline is zero: DOT_DELTA is
    sum_d grad * x with x the embeddings of input_ids). Returns "scores"
    [n, T] (the score at each sample) and, per requested output (default
    DOT_DELTA), "full" [n, T, L, D] or "dot_delta" / "abs_sum" / "square_sum"
    / "l2_norm" / "dot_input" [n, T, L], all float32.

    Encoder-decoder (`source_length`, as in score): the points are the
    encoder's input embeddings at source positions and the decoder's input
    embeddings of the target tokens at target positions; the decoder start
    token's embedding stays fixed. Target token k feeds the decoder at
    position k + 1, so the last target token's gradient is 0.
    """
    limits = limits or DEFAULT_LIMITS
    ids = sequence_ids(loaded, input_ids)
    L = int(ids.shape[0])
    D = loaded.embedding_size  # the input embeddings' width (ELECTRA: smaller than hidden_size)
    S = check_source_length(loaded, ids, source_length)
    if concept_readout is None:
        tg = check_targets(loaded, ids, target_positions, target_classes, limits, S)
        gather, target_ids = tg.gather, tg.tokens
    else:
        check_concept_targets(target_positions, target_classes)
        gather, target_ids = None, torch.arange(concept_readout.n_concepts)
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
                f"embeddings must have shape [n_samples, {L}, {D}] (seq_len of input_ids, embedding width), "
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
        x = input_embeddings(loaded, ids, S) if "dot_delta" in keys else None
        deltas = None if x is None else x.unsqueeze(0).expand_as(points)
    else:
        points, deltas = make_samples(loaded, ids, samples or EmbeddingSamples(), limits, S)
    n, T = int(points.shape[0]), int(target_ids.shape[0])
    size = 4 * n * T * (L * D if "full" in keys else L) * len(keys)
    if size > limits.max_output_bytes:
        raise InvalidArgument(
            f"the requested gradients take {size / 2**20:.0f} MiB, more than the limit of "
            f"{limits.max_output_bytes / 2**20:.0f} MiB: ask for reduced outputs (DOT_DELTA, L2_NORM...) "
            "instead of FULL, or fewer samples / targets",
            field="outputs",
        )
    items = [
        GradItem(points[i], None if deltas is None else deltas[i], gather, target_ids, mode, tuple(keys), S,
                 concept_readout)
        for i in range(n)
    ]
    kind = GradWork(loaded.task, "" if concept_readout is None else concept_readout.split_point)
    results = get_executor(loaded, executor, limits).run(kind, items, [L] * n, is_active=is_active)
    out = {"scores": np.stack([r["scores"] for r in results])}
    for key in keys:
        out[key] = np.stack([r[key] for r in results])
    return out
