"""ConceptGradients: gradients of target scores with respect to concept activations.

Definition (docs/concept-gradients.md): for a sequence, concept activations
C [positions, k] and a linear decoder (D [k, width], offset [width]), the
split point's output is replaced by R = C D + offset and the model runs on
from there; the response is d score_t / d C[p, j] for every target t,
position p and concept j, and the scores themselves. Scores are those of
Score / ComputeGradients (teacher-forced next tokens of a causal LM, or
classes; LOGITS by default).

One request is one item of kind ConceptGradWork(task), run alone: one
forward with a hook that swaps the split point's output, then one backward
per target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

from ..enums import InferenceMode, coerce
from ..loading import TASK_CAUSAL_LM, LoadedModel
from .activations import _first_tensor, is_input_point, resolve_split_points
from .forward import forward, target_values
from .inputs import check_input_ids, check_targets
from .limits import DEFAULT_LIMITS, Limits
from .work import WorkKind, get_executor, runs


@dataclass(frozen=True)
class ConceptGradWork(WorkKind):
    """Concept gradients of one sequence each (no two share a forward)."""

    label = "concept_grad"
    max_batch_size = 1
    task: str


@dataclass
class ConceptGradItem:
    ids: torch.Tensor  # [L]
    split_point: str  # module path
    codes: torch.Tensor  # float32 [L, k]
    decoder: torch.Tensor  # float32 [k, width]
    offset: torch.Tensor  # float32 [width]
    positions: torch.Tensor | None  # [T] causal LM target positions
    targets: torch.Tensor  # [T] token ids or classes
    mode: InferenceMode


@runs(ConceptGradWork)
def run_concept_gradients(loaded: LoadedModel, kind: ConceptGradWork, items: list[ConceptGradItem],
                          limits: Limits) -> list[dict[str, np.ndarray]]:
    with loaded.lock, torch.enable_grad():
        return [_run_one(loaded, item) for item in items]


def _replace_first(output: Any, new: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return (new, *output[1:])
    raise InvalidArgument(f"the split point's module returns {type(output).__name__}: its output cannot be "
                          "replaced by a reconstruction; use a layer or a module that returns a tensor",
                          field="split_point")


def _run_one(loaded: LoadedModel, item: ConceptGradItem) -> dict[str, np.ndarray]:
    dev = loaded.device
    n = int(item.ids.shape[0])
    codes = item.codes.to(dev).requires_grad_(True)
    reconstruction = codes @ item.decoder.to(dev) + item.offset.to(dev)

    def swap(module, args, output):
        original = _first_tensor(output)
        if tuple(original.shape) != (1, n, reconstruction.shape[1]):
            raise InvalidArgument(
                f"the split point {item.split_point!r} outputs shape {list(original.shape)} for this sequence "
                f"but the reconstruction is [1, {n}, {reconstruction.shape[1]}]: the decoder's width must be the "
                "split point's output width", field="decoder")
        return _replace_first(output, reconstruction[None].to(original.dtype))

    handle = loaded.model.get_submodule(item.split_point).register_forward_hook(swap)
    try:
        logits = forward(loaded, input_ids=item.ids[None], attention_mask=torch.ones(1, n, dtype=torch.long)).logits
    finally:
        handle.remove()
    rows = logits[0, (item.positions - 1).to(dev)] if item.positions is not None else logits[0].expand(
        int(item.targets.shape[0]), -1)
    modes = torch.full((int(item.targets.shape[0]),), int(item.mode), device=dev)
    values = target_values(rows, item.targets.to(dev), modes)
    grads = [torch.autograd.grad(values[t], codes, retain_graph=t + 1 < len(values))[0]
             for t in range(len(values))]
    return {"gradients": torch.stack(grads).float().cpu().numpy(),
            "scores": values.detach().float().cpu().numpy()}


def _matrix(value: Any, field: str, shape: tuple[int | None, ...]) -> torch.Tensor:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
        want = ", ".join("*" if w is None else str(w) for w in shape)
        raise InvalidArgument(f"{field} must have shape [{want}], got {list(arr.shape)}", field=field)
    if not np.all(np.isfinite(arr)):
        raise InvalidArgument(f"{field} must hold finite numbers", field=field)
    return torch.from_numpy(np.ascontiguousarray(arr))


def concept_gradients(
    loaded: LoadedModel,
    input_ids: Any,
    split_point: str,
    codes: Any,
    decoder: Any,
    offset: Any = None,
    *,
    target_positions: Any = (),
    target_classes: Any = (),
    inference_mode: InferenceMode | int | str = InferenceMode.LOGITS,
    executor: Any = None,
    is_active: Any = None,
    limits: Limits | None = None,
) -> dict[str, np.ndarray]:
    """{"gradients": float32 [targets, positions, concepts], "scores": float32 [targets]}
    (ConceptGradientsRequest semantics)."""
    limits = limits or DEFAULT_LIMITS
    if loaded.is_seq2seq:
        raise FailedPrecondition(
            f"model {loaded.model_id!r} is an encoder-decoder: concept gradients are defined for causal LMs and "
            "sequence classifiers (docs/concept-gradients.md); use one of those", field="model")
    ids = check_input_ids(loaded, input_ids)
    if not str(split_point):
        raise InvalidArgument("split_point is empty: give the layer (index or path) the concepts live at",
                              field="split_point")
    try:
        (point,) = resolve_split_points(loaded, [str(split_point)])
    except InvalidArgument as error:  # the same message, this request's field
        raise InvalidArgument(error.message, field="split_point") from None
    if is_input_point(loaded, point.name):
        raise InvalidArgument(f"split point {point.name!r} is a module's input; concept gradients replace a "
                              "module's output: give the module before it", field="split_point")
    tg = check_targets(loaded, ids, target_positions, target_classes, limits)
    mode = coerce(InferenceMode, inference_mode, field="inference_mode", default=InferenceMode.LOGITS)
    n = int(ids.shape[0])
    c = _matrix(codes, "codes", (n, None))
    d = _matrix(decoder, "decoder", (int(c.shape[1]), None))
    o = torch.zeros(int(d.shape[1])) if offset is None else _matrix(offset, "offset", (int(d.shape[1]),))
    item = ConceptGradItem(ids, point.name, c, d, o, tg.positions if loaded.task == TASK_CAUSAL_LM else None,
                           tg.tokens, mode)
    (result,) = get_executor(loaded, executor, limits).run(ConceptGradWork(loaded.task), [item], [n],
                                                           is_active=is_active)
    return result
