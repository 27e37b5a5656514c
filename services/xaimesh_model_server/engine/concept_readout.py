"""Inputs -> concepts: concept activations of (perturbed) inputs, read at a split point.

Definition (docs/inputs-to-concepts.md): for a sequence, h [positions, width]
is the split point's output; a closed-form concept encoder gives

    pre = h @ weight + bias          [positions, k]
    z   = activation(pre)            IDENTITY | RELU | TOP_K | JUMP_RELU
    s_j = pooling_p z[p, concepts[j]]   MAX (default) | MEAN | SUM | FIRST | LAST

over every position of the sequence the model sees (special tokens
included; a token removed by the REMOVE replacement is no position). s is
what Score returns as its columns and what ComputeGradients differentiates
when a request carries a ConceptEncoder.

Score rows are items of ConceptScoreWork(task, split point), batched like
Score rows (padded forward passes that stop at the split point); gradient
samples are GradItems with a readout (gradients.py), so the noise tunnel,
Integrated Gradients' path and the server-side reductions are those of
ComputeGradients.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xaimesh_runtime.errors import Cancelled, FailedPrecondition, InvalidArgument

from ..enums import Aggregation, ConceptActivation, InferenceMode, ReplacementPolicy, coerce
from ..loading import LoadedModel
from .activations import _first_tensor, _StopForward, resolve_split_points
from .concept_gradients import _matrix
from .forward import forward, pad_id, pad_side, pad_stack
from .inputs import sequence_ids
from .limits import DEFAULT_LIMITS, Limits
from .score import Replacement
from .score import _check_keep_mask as check_keep_mask
from .score import _replacement_id as replacement_id
from .work import WorkKind, get_executor, runs

#: Poolings of a concept's activations over positions.
POOLINGS = (Aggregation.MAX, Aggregation.MEAN, Aggregation.SUM, Aggregation.FIRST, Aggregation.LAST)


@dataclass(frozen=True, eq=False)
class ConceptReadout:
    """A validated ConceptEncoder, resolved against one model."""

    split_point: str  # module path
    weight: torch.Tensor  # float32 [width, k]
    bias: torch.Tensor  # float32 [k]
    activation: Any  # ConceptActivation
    top_k: int
    thresholds: torch.Tensor | None  # float32 [k] (JUMP_RELU)
    pooling: Any  # Aggregation
    concepts: torch.Tensor  # int64 [T]: columns explained

    @property
    def n_concepts(self) -> int:
        return int(self.concepts.shape[0])

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """Concept activations z [n, k] of split-point rows h [n, width]."""
        pre = h.float() @ self.weight.to(h.device) + self.bias.to(h.device)
        if self.activation == ConceptActivation.RELU:
            return torch.relu(pre)
        if self.activation == ConceptActivation.TOP_K:
            values, index = pre.topk(self.top_k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, index, torch.relu(values))
        if self.activation == ConceptActivation.JUMP_RELU:
            return pre * (pre > self.thresholds.to(h.device)).to(pre.dtype)
        return pre

    def read(self, h: torch.Tensor) -> torch.Tensor:
        """The pooled activations s [T] of one sequence's rows h [n, width]."""
        z = self.encode(h)[:, self.concepts.to(h.device)]
        if self.pooling == Aggregation.MEAN:
            return z.mean(0)
        if self.pooling == Aggregation.SUM:
            return z.sum(0)
        if self.pooling == Aggregation.FIRST:
            return z[0]
        if self.pooling == Aggregation.LAST:
            return z[-1]
        return z.max(0).values


def concept_readout(
    loaded: LoadedModel,
    split_point: str,
    weight: Any,
    bias: Any = None,
    *,
    activation: Any = ConceptActivation.IDENTITY,
    top_k: int = 0,
    thresholds: Any = None,
    pooling: Any = Aggregation.MAX,
    concepts: Any = (),
    field: str = "concept_encoder",
) -> ConceptReadout:
    """Validates a ConceptEncoder against the model (its fields named under `field`)."""
    if loaded.is_seq2seq:
        raise FailedPrecondition(
            f"model {loaded.model_id!r} is an encoder-decoder: inputs -> concepts attributions are defined for "
            "causal LMs and sequence classifiers (docs/inputs-to-concepts.md); use one of those", field="model")
    if not str(split_point):
        raise InvalidArgument("the concept encoder has no split point: give the layer its concepts read",
                              field=f"{field}.split_point")
    try:
        (point,) = resolve_split_points(loaded, [str(split_point)])
    except InvalidArgument as error:
        raise InvalidArgument(error.message, field=f"{field}.split_point") from None
    w = _matrix(weight, f"{field}.weight", (None, None))
    k = int(w.shape[1])
    if k < 1:
        raise InvalidArgument("the concept encoder's weight has no column (no concept)", field=f"{field}.weight")
    b = torch.zeros(k) if bias is None else _matrix(bias, f"{field}.bias", (k,))
    act = coerce(ConceptActivation, activation, field=f"{field}.activation", default=ConceptActivation.IDENTITY)
    pool = coerce(Aggregation, pooling, field=f"{field}.pooling", default=Aggregation.MAX)
    if pool not in POOLINGS:
        raise InvalidArgument(f"{field}.pooling {pool.name} is not a pooling of concept activations: use one of "
                              f"{', '.join(p.name for p in POOLINGS)}", field=f"{field}.pooling")
    th = None
    if act == ConceptActivation.TOP_K and not 1 <= int(top_k) <= k:
        raise InvalidArgument(f"{field}.top_k must be in 1..{k} (the encoder's concepts) for TOP_K, got {top_k}",
                              field=f"{field}.top_k")
    if act == ConceptActivation.JUMP_RELU:
        if thresholds is None:
            raise InvalidArgument(f"JUMP_RELU needs {field}.thresholds, one per concept ({k})",
                                  field=f"{field}.thresholds")
        th = _matrix(thresholds, f"{field}.thresholds", (k,))
    idx = [int(c) for c in concepts] or list(range(k))
    bad = [c for c in idx if not 0 <= c < k]
    if bad:
        raise InvalidArgument(f"concept index {bad[0]} is out of range: the encoder has {k} concepts (0..{k - 1})",
                              field=f"{field}.concepts")
    return ConceptReadout(point.name, w, b, act, int(top_k), th, pool, torch.tensor(idx, dtype=torch.long))


def check_concept_targets(target_positions: Any, target_classes: Any, inference_mode: Any = 0) -> None:
    """A request with a concept encoder explains its concepts: no other targets, no inference mode
    (on the wire; in-process callers leave it at 0)."""
    if len(list(target_positions or ())) or len(list(target_classes or ())):
        raise InvalidArgument("a request with a concept_encoder explains the encoder's concepts: leave "
                              "target_positions and target_classes empty (choose concepts with "
                              "concept_encoder.concepts)", field="concept_encoder")
    if coerce(InferenceMode, inference_mode or 0, field="inference_mode").value:
        raise InvalidArgument("a request with a concept_encoder scores raw concept activations: leave "
                              "inference_mode unset", field="inference_mode")


def check_width(readout: ConceptReadout, h: torch.Tensor) -> None:
    if h.shape[-1] != readout.weight.shape[0]:
        raise InvalidArgument(
            f"the split point {readout.split_point!r} outputs rows of width {h.shape[-1]} but the concept encoder's "
            f"weight has {readout.weight.shape[0]} rows: the encoder was fitted on another layer or model",
            field="concept_encoder.weight")


def pooled_concepts(loaded: LoadedModel, readouts: list[ConceptReadout], lengths: list[int],
                    offsets: list[int], **inputs: Any) -> list[torch.Tensor]:
    """One forward of a padded batch (`inputs`: input_ids or inputs_embeds, and
    attention_mask) that stops at the split point: the pooled concept
    activations [T_b] of each sequence b (differentiable when grad is on).
    Every readout reads the same split point."""
    path = readouts[0].split_point
    owner = threading.get_ident()
    captured: list[torch.Tensor] = []

    def hook(module, args, output):
        if threading.get_ident() == owner and not captured:
            captured.append(_first_tensor(output))
            raise _StopForward()

    handle = loaded.model.get_submodule(path).register_forward_hook(hook)
    try:
        forward(loaded, **inputs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise InvalidArgument(f"the split point {path!r} is not reached by the forward pass: use one of the model's "
                              "layers", field="concept_encoder.split_point")
    h = captured[0]
    batch, width = len(lengths), max(lengths)
    if h.dim() != 3 or h.shape[0] != batch or h.shape[1] != width:
        raise InvalidArgument(f"the split point {path!r} does not output one row per token (shape {list(h.shape)}): "
                              "use a layer or a module of a layer", field="concept_encoder.split_point")
    check_width(readouts[0], h)
    return [r.read(h[b, offsets[b]: offsets[b] + lengths[b]]) for b, r in enumerate(readouts)]


# ------------------------------------------------------------------ Score


@dataclass
class ConceptScoreItem:
    ids: torch.Tensor  # [L] int64
    zero: torch.Tensor | None  # [L] bool: positions whose input embedding is zeroed
    readout: ConceptReadout


@dataclass(frozen=True)
class ConceptScoreWork(WorkKind):
    """Score rows whose columns are concept activations at one split point."""

    label = "concept_score"
    task: str
    split_point: str


@runs(ConceptScoreWork)
def run_concept_scores(loaded: LoadedModel, kind: ConceptScoreWork, items: list[ConceptScoreItem],
                       limits: Limits) -> list[np.ndarray]:
    with loaded.lock, torch.inference_mode():
        ids, mask, offsets = pad_stack([it.ids for it in items], pad_side(loaded), pad_id(loaded))
        inputs: dict[str, Any] = {"attention_mask": mask}
        if any(it.zero is not None for it in items):
            embeds = loaded.input_embeddings(ids.to(loaded.device))
            keep = torch.ones(ids.shape, dtype=embeds.dtype)
            for b, it in enumerate(items):
                if it.zero is not None:
                    keep[b, offsets[b]: offsets[b] + int(it.ids.shape[0])] = (~it.zero).to(embeds.dtype)
            inputs["inputs_embeds"] = embeds * keep.to(loaded.device).unsqueeze(-1)
        else:
            inputs["input_ids"] = ids
        values = pooled_concepts(loaded, [it.readout for it in items], [int(it.ids.shape[0]) for it in items],
                                 offsets, **inputs)
        return [v.float().cpu().numpy() for v in values]


def concept_scores(
    loaded: LoadedModel,
    input_ids: Any,
    keep_mask: Any,
    replacement: Any,
    readout: ConceptReadout,
    *,
    executor: Any = None,
    is_active: Any = None,
    limits: Limits | None = None,
) -> np.ndarray:
    """float32 [n_sequences, T]: the pooled concept activations of the base
    sequence under each keep-mask row (ScoreRequest with a concept_encoder;
    the replacement as in Score)."""
    limits = limits or DEFAULT_LIMITS
    ids = sequence_ids(loaded, input_ids)
    L = int(ids.shape[0])
    if replacement is None:
        replacement = Replacement()
    elif not isinstance(replacement, Replacement):
        replacement = Replacement(policy=replacement)
    policy = coerce(ReplacementPolicy, replacement.policy, field="replacement.policy",
                    default=ReplacementPolicy.PAD_TOKEN)
    keep = torch.ones(1, L, dtype=torch.bool) if keep_mask is None else check_keep_mask(keep_mask, L, limits)
    n = int(keep.shape[0])
    if policy == ReplacementPolicy.REMOVE:
        empty = (keep.sum(1) == 0).nonzero()
        if len(empty):
            raise InvalidArgument(f"keep_mask row {int(empty[0])} removes every token: keep at least one",
                                  field="keep_mask")
        items = [ConceptScoreItem(ids[keep[i]], None, readout) for i in range(n)]
    elif policy == ReplacementPolicy.ZERO_EMBEDDING:
        items = [ConceptScoreItem(ids, ~keep[i] if not bool(keep[i].all()) else None, readout) for i in range(n)]
    else:
        repl = replacement_id(loaded, policy, replacement.token_id)
        rows = torch.where(keep, ids.unsqueeze(0), torch.tensor(repl, dtype=torch.long))
        items = [ConceptScoreItem(rows[i], None, readout) for i in range(n)]
    kind = ConceptScoreWork(loaded.task, readout.split_point)
    results = get_executor(loaded, executor, limits).run(kind, items, [int(it.ids.shape[0]) for it in items],
                                                         is_active=is_active)
    return np.stack(results).astype(np.float32, copy=False)


# ------------------------------------------------------------------ vocabulary

#: Most tokens VocabularyConcepts keeps per concept.
MAX_VOCABULARY_K = 1000
#: Tokens handed to the executor at once (cancellation is checked between them).
VOCABULARY_CHUNK = 2048


@dataclass
class VocabularyTopTokens:
    concepts: list[int]  # concept indices, one row each
    token_ids: np.ndarray  # int64 [T, k], highest activation first
    activations: np.ndarray  # float32 [T, k]
    num_tokens: int


def vocabulary_concepts(
    loaded: LoadedModel,
    readout: ConceptReadout,
    k: int = 10,
    *,
    add_special_tokens: bool = False,
    executor: Any = None,
    is_active: Any = None,
    limits: Limits | None = None,
) -> VocabularyTopTokens:
    """For each concept of `readout`, the k tokens whose concept activation is
    highest when each token of the tokenizer (special tokens excepted) runs
    alone (or wrapped in the tokenizer's special tokens), as
    docs/inputs-to-concepts.md defines ("Vocabulary")."""
    limits = limits or DEFAULT_LIMITS
    k = int(k) or 10
    if not 1 <= k <= MAX_VOCABULARY_K:
        raise InvalidArgument(f"k must be in 1..{MAX_VOCABULARY_K}, got {k}", field="k")
    tokenizer = loaded.tokenizer
    special = set(int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
    ids = [i for i in range(min(len(tokenizer), loaded.vocab_size)) if i not in special]
    prefix, suffix = _special_template(loaded) if add_special_tokens else ([], [])
    kind = ConceptScoreWork(loaded.task, readout.split_point)
    run = get_executor(loaded, executor, limits)
    best_values = torch.full((readout.n_concepts, 0), -torch.inf)
    best_ids = torch.zeros((readout.n_concepts, 0), dtype=torch.long)
    for start in range(0, len(ids), VOCABULARY_CHUNK):
        if is_active is not None and not is_active():
            raise Cancelled("the vocabulary scan was cancelled")
        chunk = ids[start: start + VOCABULARY_CHUNK]
        items = [ConceptScoreItem(torch.tensor(prefix + [i] + suffix, dtype=torch.long), None, readout)
                 for i in chunk]
        values = torch.from_numpy(np.stack(run.run(kind, items, [int(it.ids.shape[0]) for it in items],
                                                   is_active=is_active))).T  # [T, chunk]
        merged_values = torch.cat([best_values, values], 1)
        merged_ids = torch.cat([best_ids, torch.tensor(chunk).expand(readout.n_concepts, -1)], 1)
        keep = min(k, merged_values.shape[1])
        best_values, order = merged_values.topk(keep, dim=1)
        best_ids = merged_ids.gather(1, order)
    return VocabularyTopTokens([int(c) for c in readout.concepts], best_ids.numpy(),
                               best_values.float().numpy(), len(ids))


def _special_template(loaded: LoadedModel) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text ([CLS] / [SEP], a BOS...), read from
    how it tokenizes one word with and without them (as interpreto builds its "[CLS] a [SEP]" template)."""
    tokenizer = loaded.tokenizer
    bare = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if bare and full[start: start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    raise FailedPrecondition(f"the tokenizer of {loaded.model_id!r} changes a word's own tokens when it adds its "
                             "special tokens, so they cannot wrap single tokens: use add_special_tokens=false",
                             field="add_special_tokens")
