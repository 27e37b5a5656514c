"""Attribution metrics: Deletion and Insertion, computed by the attribution-service.

    from xaimesh.attributions.metrics import Deletion, Insertion
    auc, detailed = Deletion(model).evaluate(attributions)
    detailed.random_auc                    # the same metric for random element orders
    detailed[0].scores, detailed[0].random_scores

For each target row of an attribution, the covered elements are ranked by
their attribution, highest first. **Deletion** removes them in that order
from the full input: a faithful attribution makes the target's score fall
early, so **lower AUC is better**. **Insertion** puts them back in that order
into the fully removed input: the score should rise early, so **higher AUC
is better**. The curve is the target score (default SOFTMAX: its
probability) against the fraction of elements removed / inserted, averaged
over the rows; the AUC is its trapezoid area on [0, 1]. Each result also
carries the curve of random element orders (`n_random_orders`, default 10;
0 disables): an attribution beats chance when its Deletion AUC is below
(its Insertion AUC above) the random one. `Metric.better` says which way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from xaimesh_contracts.v1 import attribution_pb2

from ._calls import check_int, collect, remote_model, replacement
from .options import InferenceMode, to_proto_enum
from .output import AttributionOutput

__all__ = ["AttributionMetric", "Deletion", "Insertion", "MetricDetails", "MetricOutput"]


@dataclass
class MetricOutput:
    """The metric of one attribution output."""

    index: int
    metric: str  # "deletion" | "insertion"
    better: str  # "lower" | "higher"
    auc: float
    fractions: np.ndarray  # float32 [P]: fraction of elements removed / inserted
    scores: np.ndarray  # float32 [P]: mean target score over the rows
    per_target_scores: np.ndarray  # float32 [n_targets, P]
    random_auc: float | None = None
    random_fractions: np.ndarray | None = None
    random_scores: np.ndarray | None = None
    target_elements: list[str] = field(default_factory=list)

    @property
    def beats_random(self) -> bool | None:
        """Whether the attribution's AUC is better than the random orders' (None without a random curve)."""
        if self.random_auc is None:
            return None
        return self.auc < self.random_auc if self.better == "lower" else self.auc > self.random_auc

    def to_dict(self) -> dict[str, Any]:
        def floats(a: np.ndarray | None) -> list | None:
            return None if a is None else np.asarray(a, dtype=np.float32).tolist()

        return {"index": self.index, "metric": self.metric, "better": self.better, "auc": self.auc,
                "fractions": floats(self.fractions), "scores": floats(self.scores),
                "per_target_scores": floats(self.per_target_scores), "random_auc": self.random_auc,
                "random_fractions": floats(self.random_fractions), "random_scores": floats(self.random_scores),
                "target_elements": list(self.target_elements)}


@dataclass
class MetricDetails:
    """Per-output curves and AUCs of one `evaluate` call (a sequence of MetricOutput)."""

    metric: str
    better: str
    outputs: list[MetricOutput]

    @property
    def aucs(self) -> list[float]:
        return [o.auc for o in self.outputs]

    @property
    def auc(self) -> float:
        """Mean AUC over the outputs (what `evaluate` returns first)."""
        return float(np.mean(self.aucs)) if self.outputs else float("nan")

    @property
    def random_aucs(self) -> list[float | None]:
        return [o.random_auc for o in self.outputs]

    @property
    def random_auc(self) -> float | None:
        """Mean AUC of the random-order baselines (None when disabled)."""
        values = [a for a in self.random_aucs if a is not None]
        return float(np.mean(values)) if values else None

    def __len__(self) -> int:
        return len(self.outputs)

    def __getitem__(self, index: int) -> MetricOutput:
        return self.outputs[index]

    def __iter__(self) -> Iterator[MetricOutput]:
        return iter(self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "better": self.better, "auc": self.auc, "random_auc": self.random_auc,
                "outputs": [o.to_dict() for o in self.outputs]}

    def __repr__(self) -> str:
        rnd = "" if self.random_auc is None else f", random_auc={self.random_auc:.4f}"
        return (f"MetricDetails({self.metric}, {len(self)} output(s), auc={self.auc:.4f}{rnd}, "
                f"{self.better} is better)")


class AttributionMetric:
    """Base of Deletion / Insertion.

    model: the model the attributions were computed with (a handle, a name or path, or a Hugging
    Face model object: xaimesh.models);
    n_steps: points of the curve minus one (None: one element per step);
    replacement: what removed elements become (default: the model's mask token, else its pad
    token, else its unk token);
    inference_mode: default SOFTMAX; n_random_orders: random-order baseline
    curves averaged (default 10, 0 disables); seed; batch_size.
    """

    metric: ClassVar[str] = ""
    better: ClassVar[str] = ""

    def __init__(self, model: Any, tokenizer: Any = None, *, n_steps: int | None = None, replacement: Any = None,
                 inference_mode: Any = None, n_random_orders: int | None = None, seed: int | None = None,
                 batch_size: int | None = None, timeout: float | None = None, show_progress: bool = True) -> None:
        if not self.metric:
            raise TypeError("AttributionMetric is a base class: use Deletion or Insertion")
        self.model = remote_model(model, type(self).__name__, tokenizer)
        self.tokenizer = tokenizer  # the model-server tokenizes (with the served model's own tokenizer)
        self.n_steps = None if n_steps is None else check_int("n_steps", n_steps, 0)
        self.replacement = None if replacement is None else _replacement_of(replacement)
        self.inference_mode = to_proto_enum(InferenceMode, inference_mode, "inference_mode")
        self.n_random_orders = None if n_random_orders is None else check_int("n_random_orders", n_random_orders, 0)
        self.seed = None if seed is None else check_int("seed", seed, None)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, 1)
        self.timeout = timeout
        self.show_progress = show_progress

    def request(self, outputs: Sequence[AttributionOutput]) -> attribution_pb2.EvaluateAttributionsRequest:
        request = attribution_pb2.EvaluateAttributionsRequest(
            model=self.model.model_id,
            metric=attribution_pb2.AttributionMetric.Value("ATTRIBUTION_METRIC_" + self.metric.upper()),
            attributions=[o.to_proto() for o in outputs],
            n_steps=self.n_steps or 0,
            inference_mode=self.inference_mode,
            # the proto reads 0 as "default (10)" and a negative number as "none"
            n_random_orders=0 if self.n_random_orders is None else (self.n_random_orders or -1),
            seed=self.seed or 0,
            batch_size=self.batch_size or 0,
        )
        if self.replacement is not None:
            request.replacement.CopyFrom(self.replacement)
        return request

    def evaluate(self, attributions: AttributionOutput | Sequence[AttributionOutput], *,
                 errors: str = "raise") -> tuple[float, MetricDetails]:
        """(mean AUC over the outputs, MetricDetails with every curve).

        errors="raise" (default): an attribution the service cannot evaluate
        raises (the others' MetricOutputs in `.results`); errors="none": it
        is left out of the details (each MetricOutput keeps its `index`)."""
        outputs = [attributions] if isinstance(attributions, AttributionOutput) else list(attributions)
        if not outputs:
            raise ValueError("evaluate needs at least one AttributionOutput")
        for o in outputs:
            if not isinstance(o, AttributionOutput):
                raise TypeError(f"evaluate takes AttributionOutput objects, got {type(o).__name__}")
        results = collect(self.model.mesh.client("attribution"), "EvaluateAttributions", self.request(outputs),
                          len(outputs), what="attribution", description=type(self).__name__,
                          show_progress=self.show_progress, timeout=self.timeout, errors=errors,
                          convert=lambda i, r: self._output(i, r, outputs[i]))
        details = MetricDetails(self.metric, self.better, [r for r in results if r is not None])
        return details.auc, details

    def _output(self, index: int, r: Any, attribution: AttributionOutput) -> MetricOutput:
        from xaimesh_contracts.tensors import to_numpy

        has_random = r.HasField("random_curve")
        return MetricOutput(
            index=index, metric=self.metric, better=self.better, auc=float(r.curve.auc),
            fractions=np.asarray(list(r.curve.fractions), dtype=np.float32),
            scores=np.asarray(list(r.curve.scores), dtype=np.float32),
            per_target_scores=to_numpy(r.per_target_scores, field="per_target_scores").astype(np.float32),
            random_auc=float(r.random_curve.auc) if has_random else None,
            random_fractions=np.asarray(list(r.random_curve.fractions), dtype=np.float32) if has_random else None,
            random_scores=np.asarray(list(r.random_curve.scores), dtype=np.float32) if has_random else None,
            target_elements=list(attribution.target_elements),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.model_id!r}; {self.better} AUC is better)"


class Deletion(AttributionMetric):
    """Deletion: remove elements from most to least important, starting from
    the full input. LOWER AUC is better (`better == "lower"`)."""

    metric = "deletion"
    better = "lower"


class Insertion(AttributionMetric):
    """Insertion: insert elements from most to least important into the
    fully removed input. HIGHER AUC is better (`better == "higher"`)."""

    metric = "insertion"
    better = "higher"


def _replacement_of(value: Any) -> Any:
    from xaimesh_contracts.v1 import model_pb2

    from .options import ReplacementPolicy

    r = replacement(value)
    return model_pb2.Replacement(policy=to_proto_enum(ReplacementPolicy, r["policy"], "replacement"),
                                 token_id=r["token_id"])
