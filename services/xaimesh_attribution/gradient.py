"""The gradient machinery of the gradient methods, over `backend.gradients`
(ComputeGradients). The methods themselves (methods/saliency.py,
input_x_gradient.py, integrated_gradients.py, gradient_shap.py,
noise_tunnel.py) each give a `SamplePlan` (the embedding points where
gradients are taken, and their weights) and how the per-sample gradients are
combined: `dot_attribution` (a weighted sum of gradient . (input -
baseline) or gradient . input) or `vector_attribution` (a statistic of the
gradient vectors over the samples: mean |g|, mean g^2 or their variance,
then reduced per token).

Per token, a method computes a value from gradients of a target's score
with respect to the input embeddings (hidden size H), then token values are
aggregated into element values (`aggregate`). Definitions (g_s: the
gradient at sample s, x: the input embeddings, b: the baseline):

- Saliency:            a = |g| at x;                       default ABS_SUM
- InputXGradient:      sum_d g_d x_d at x                  (DOT)
- IntegratedGradients: sum_s w_s sum_d g_s,d (x - b)_d, alphas / weights of
                       n_steps-point Gauss–Legendre on [0, 1]  (DOT)
- GradientShap:        mean_s sum_d g_s,d (x - b_s)_d at b_s + alpha_s (x - b_s),
                       alpha_s ~ U[0, 1), b_s = b + N(0, noise_std)  (DOT)
- SmoothGrad:          a = mean_s |g_s| at x + N(0, noise_std);  default ABS_SUM
- SquareGrad:          a = mean_s g_s^2 at x + N(0, noise_std); default sum_d a_d
- VarGrad:             a = mean_s g_s^2 - (mean_s g_s)^2 (population variance)
                       at x + N(0, noise_std);              default sum_d a_d

The non-DOT methods reduce the per-dimension vector a: ABS_SUM = sum_d |a_d|
(= sum_d a_d for SquareGrad / VarGrad), L2_NORM = sqrt(sum_d a_d^2). DOT
methods accept only their default.

Multi-token target elements (generation at WORD / SENTENCE granularity):
the element's score is the sum (LOGITS, LOG_SOFTMAX) or product (SOFTMAX)
of its tokens' scores, so its gradient at sample s is sum_k c_k g_k,s with
c_k = 1, or c_k = prod_{j != k} p_j(s) for SOFTMAX (p from the scores the
backend returns with the gradients). Linear outputs (DOT) are combined from
the backend's reduced outputs; non-linear ones then need FULL gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from scipy.special import roots_legendre

from .backend import Baseline, EmbeddingSamples
from .options import Aggregation, GradientReduction, InferenceMode
from .scoring import check_stop


def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of n-point Gauss–Legendre quadrature on [0, 1]
    (captum's "gausslegendre"). scipy's roots grow as n^2 where numpy's
    leggauss solves an n x n eigenproblem (n^3: minutes at n_steps=10 000,
    uninterruptible)."""
    x, w = roots_legendre(n)
    return 0.5 * (1.0 + x), 0.5 * w


def batch_seed(seed: int, batch: int) -> int:
    """Seed of the backend's noise for one batch of samples."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, batch]).generate_state(1, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class SamplePlan:
    """Where gradients are taken: sample i is b_i + alphas[i] (x - b_i) +
    N(0, noise_stddev) with b_i = baseline + N(0, baseline_noise_stddev);
    `weights[i]` is its weight in the attribution. Noise is drawn by the
    model-server from `batch_seed(seed, batch)`."""

    alphas: np.ndarray
    weights: np.ndarray
    noise_stddev: float = 0.0
    baseline_noise_stddev: float = 0.0
    baseline: Baseline = field(default_factory=Baseline)
    seed: int = 0

    @property
    def n(self) -> int:
        return len(self.alphas)

    @property
    def single_point(self) -> bool:
        """One sample at the input itself (no noise)."""
        return self.n == 1 and self.noise_stddev == 0 and float(self.alphas[0]) == 1.0

    @classmethod
    def at_input(cls) -> "SamplePlan":
        """The gradient at the input: one sample, alpha 1, weight 1."""
        return cls(np.ones(1), np.ones(1))

    def noisy(self, n: int, noise_std: float, seed: int) -> "SamplePlan":
        """The noise tunnel: each sample of this plan repeated `n` times with
        N(0, noise_std) noise on the input embeddings, weights averaged."""
        return SamplePlan(np.repeat(self.alphas, n), np.repeat(self.weights, n) / n, float(noise_std),
                          self.baseline_noise_stddev, self.baseline, seed)


class Statistic(str, Enum):
    """What a vector method takes of the gradients g_s over the samples, per dimension."""

    ABS_MEAN = "abs_mean"  # mean_s |g_s|         (Saliency, SmoothGrad)
    SQUARE_MEAN = "square_mean"  # mean_s g_s^2  (SquareGrad)
    VARIANCE = "variance"  # mean_s g_s^2 - (mean_s g_s)^2, population variance (VarGrad)


def aggregate(values: np.ndarray, positions: list[np.ndarray], aggregation: Aggregation) -> np.ndarray:
    """Token values [..., L] -> element values [..., E]."""
    out = np.empty(values.shape[:-1] + (len(positions),))
    for e, pos in enumerate(positions):
        v = values[..., pos]
        if aggregation == Aggregation.SUM:
            out[..., e] = v.sum(axis=-1)
        elif aggregation == Aggregation.MEAN:
            out[..., e] = v.mean(axis=-1)
        elif aggregation == Aggregation.MAX:
            out[..., e] = v.max(axis=-1)
        elif aggregation == Aggregation.MIN:
            out[..., e] = v.min(axis=-1)
        elif aggregation == Aggregation.FIRST:  # positions are in token order
            out[..., e] = v[..., 0]
        elif aggregation == Aggregation.LAST:
            out[..., e] = v[..., -1]
        else:  # SIGNED_MAX: the value of largest magnitude, sign kept
            idx = np.abs(v).argmax(axis=-1)
            out[..., e] = np.take_along_axis(v, idx[..., None], axis=-1)[..., 0]
    return out


def _coefficients(problem: Problem, scores: np.ndarray, mode: InferenceMode) -> list[np.ndarray]:
    """Per row: c [n_samples, |group|] combining its columns' gradients."""
    out = []
    for g in problem.groups:
        if mode != InferenceMode.SOFTMAX or len(g) == 1:
            out.append(np.ones((scores.shape[0], len(g))))
            continue
        p = scores[:, g].astype(np.float64)
        c = np.empty_like(p)
        for k in range(len(g)):
            c[:, k] = np.prod(np.delete(p, k, axis=1), axis=1)
        out.append(c)
    return out


def _batches(job, plan: SamplePlan, output: str, batch_size: int):
    """Per batch of samples: (slice, per-row coefficients, the output array)."""
    problem = job.problem
    n = plan.n
    n_batches = (n + batch_size - 1) // batch_size
    if job.progress is not None:
        job.progress(0, n, "gradients")
    for b in range(n_batches):
        check_stop(job.should_stop)
        sl = slice(b * batch_size, min(n, (b + 1) * batch_size))
        samples = EmbeddingSamples(
            baseline_kind=plan.baseline.kind,
            baseline_token_id=plan.baseline.token_id,
            alphas=[float(a) for a in plan.alphas[sl]],
            noise_stddev=plan.noise_stddev,
            baseline_noise_stddev=plan.baseline_noise_stddev,
            seed=batch_seed(plan.seed, b),
            position_mask=None if problem.moved is None else [bool(x) for x in problem.moved],
        )
        res = job.backend.gradients(
            [int(i) for i in problem.input_ids],
            target_positions=None if problem.target_positions is None else [int(i) for i in problem.target_positions],
            target_classes=None if problem.target_classes is None else [int(c) for c in problem.target_classes],
            inference_mode=job.inference_mode.value,
            samples=samples,
            outputs=[output],
            source_length=problem.source_length,
        )
        scores = np.asarray(res["scores"], dtype=np.float64)
        yield sl, _coefficients(problem, scores, job.inference_mode), np.asarray(res[output], dtype=np.float64)
        if job.progress is not None:
            job.progress(sl.stop, n, "gradients")
    check_stop(job.should_stop)


def _weighted_token_values(job, plan: SamplePlan, output: str, batch_size: int) -> np.ndarray:
    """sum_s w_s (per-token reduced output of sample s), [T, L]: linear in the
    gradient, so multi-token rows combine the backend's reduced outputs."""
    p = job.problem
    token_vals = np.zeros((p.n_rows, p.seq_len))
    for sl, coef, data in _batches(job, plan, output, batch_size):
        w = plan.weights[sl]
        for t, g in enumerate(p.groups):
            # [ns, |g|, L] -> combine columns per sample, weight samples
            per_sample = (coef[t][:, :, None] * data[:, g, :]).sum(axis=1)
            token_vals[t] += (w[:, None] * per_sample).sum(axis=0)
    return token_vals


def _finish(job, token_vals: np.ndarray) -> np.ndarray:
    p = job.problem
    elems = aggregate(token_vals, p.positions, job.aggregation)
    elems[~p.coverage] = np.nan
    return elems


def dot_attribution(job, plan: SamplePlan, output: str, batch_size: int) -> np.ndarray:
    """sum_s w_s sum_d g_s,d v_d per token, with v = x (output "dot_input")
    or x - b_s ("dot_delta"); float64 [T, E] with NaN outside each row's coverage."""
    return _finish(job, _weighted_token_values(job, plan, output, batch_size))


def vector_attribution(job, plan: SamplePlan, statistic: Statistic, reduction: GradientReduction,
                       batch_size: int) -> np.ndarray:
    """a = `statistic` of the gradient vectors over the plan's samples, per
    token reduced by ABS_SUM (sum_d |a_d|) or L2_NORM (sqrt(sum_d a_d^2));
    float64 [T, E] with NaN outside each row's coverage. The backend reduces
    on its side (abs_sum, square_sum, l2_norm) when that gives the same
    number; otherwise full gradients come back."""
    p = job.problem
    multi = any(len(g) > 1 for g in p.groups)
    output = None
    if not multi:
        if reduction == GradientReduction.ABS_SUM and statistic == Statistic.ABS_MEAN:
            output = "abs_sum"
        elif reduction == GradientReduction.ABS_SUM and statistic == Statistic.SQUARE_MEAN:
            output = "square_sum"
        elif reduction == GradientReduction.L2_NORM and statistic == Statistic.ABS_MEAN and plan.single_point:
            output = "l2_norm"
    if output is not None:  # the mean over samples is in the weights (1/n)
        return _finish(job, _weighted_token_values(job, plan, output, batch_size))
    acc1 = acc2 = None  # per-dimension accumulators [T, L, H]
    T, L = p.n_rows, p.seq_len
    for _, coef, data in _batches(job, plan, "full", batch_size):
        H = data.shape[-1]
        if acc1 is None:
            acc1 = np.zeros((T, L, H))
            acc2 = np.zeros((T, L, H))
        for t, g in enumerate(p.groups):
            grad = (coef[t][:, :, None, None] * data[:, g]).sum(axis=1)  # [ns, L, H]
            if statistic == Statistic.ABS_MEAN:
                acc1[t] += np.abs(grad).sum(axis=0)
            elif statistic == Statistic.SQUARE_MEAN:
                acc1[t] += (grad**2).sum(axis=0)
            else:
                acc1[t] += grad.sum(axis=0)
                acc2[t] += (grad**2).sum(axis=0)
    n = plan.n
    if statistic == Statistic.VARIANCE:
        a = np.maximum(acc2 / n - (acc1 / n) ** 2, 0.0)
    else:
        a = acc1 / n
    token_vals = np.sqrt((a**2).sum(axis=-1)) if reduction == GradientReduction.L2_NORM else np.abs(a).sum(axis=-1)
    return _finish(job, token_vals)


__all__ = ["SamplePlan", "Statistic", "aggregate", "batch_seed", "dot_attribution", "gauss_legendre",
           "vector_attribution"]
