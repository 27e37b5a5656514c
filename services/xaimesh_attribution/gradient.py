"""Gradient attribution methods over `backend.gradients` (ComputeGradients).

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

from dataclasses import dataclass

import numpy as np
from scipy.special import roots_legendre

from .backend import EmbeddingSamples, ModelBackend
from .elements import Problem
from xaimesh_runtime.errors import InvalidArgument
from .options import Aggregation, GradientReduction, InferenceMode
from .scoring import ProgressFn, StopFn, check_stop

DOT_METHODS = ("input_x_gradient", "integrated_gradients", "gradient_shap")
VECTOR_METHODS = ("saliency", "smooth_grad", "square_grad", "var_grad")


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


@dataclass
class GradientPlan:
    alphas: np.ndarray  # per sample
    weights: np.ndarray  # per sample (DOT methods)
    noise_stddev: float
    baseline_noise_stddev: float
    baseline_kind: str
    baseline_token_id: int


def plan_for(
    method: str, *, n_steps: int, noise_std: float, baseline_kind: str, baseline_token_id: int, seed: int
) -> GradientPlan:
    if method == "integrated_gradients":
        a, w = gauss_legendre(n_steps)
        return GradientPlan(a, w, 0.0, 0.0, baseline_kind, baseline_token_id)
    if method == "gradient_shap":
        a = np.random.default_rng(seed).random(n_steps)
        return GradientPlan(a, np.full(n_steps, 1.0 / n_steps), 0.0, noise_std, baseline_kind, baseline_token_id)
    if method in ("smooth_grad", "square_grad", "var_grad"):
        return GradientPlan(np.ones(n_steps), np.full(n_steps, 1.0 / n_steps), noise_std, 0.0, "zero", 0)
    # saliency, input_x_gradient
    return GradientPlan(np.ones(1), np.ones(1), 0.0, 0.0, "zero", 0)


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


def gradient_attribution(
    backend: ModelBackend,
    problem: Problem,
    method: str,
    *,
    inference_mode: InferenceMode,
    n_steps: int,
    noise_std: float,
    baseline_kind: str,
    baseline_token_id: int,
    reduction: GradientReduction | None,
    aggregation: Aggregation,
    seed: int,
    batch_size: int,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> np.ndarray:
    """float64 [T, E] with NaN outside each row's coverage."""
    red = reduction if reduction not in (None, GradientReduction.DEFAULT) else None
    if method in DOT_METHODS and red is not None:
        raise InvalidArgument(
            f"gradient_reduction {red.value!r} does not apply to {method}: its attribution is the dot product "
            "of the gradient with the input (or input - baseline); leave it unspecified",
            field="parameters.gradient_reduction",
        )
    plan = plan_for(
        method,
        n_steps=n_steps,
        noise_std=noise_std,
        baseline_kind=baseline_kind,
        baseline_token_id=baseline_token_id,
        seed=seed,
    )
    multi = any(len(g) > 1 for g in problem.groups)
    T, L = problem.n_rows, problem.seq_len
    n = len(plan.alphas)
    if method in DOT_METHODS:
        output = "dot_input" if method == "input_x_gradient" else "dot_delta"
        full = False
    elif method == "var_grad" or red == GradientReduction.L2_NORM and method != "saliency" or multi:
        output, full = "full", True
    elif method == "square_grad":
        output, full = "square_sum", False
    elif method == "saliency" and red == GradientReduction.L2_NORM:
        output, full = "l2_norm", False
    else:  # saliency / smooth_grad, ABS_SUM
        output, full = "abs_sum", False

    token_vals = np.zeros((T, L))  # reduced-output path
    acc1 = acc2 = None  # full path: per-dim accumulators [T, L, H]
    n_batches = (n + batch_size - 1) // batch_size
    if progress is not None:
        progress(0, n, "gradients")
    for b in range(n_batches):
        check_stop(should_stop)
        sl = slice(b * batch_size, min(n, (b + 1) * batch_size))
        samples = EmbeddingSamples(
            baseline_kind=plan.baseline_kind,
            baseline_token_id=plan.baseline_token_id,
            alphas=[float(a) for a in plan.alphas[sl]],
            noise_stddev=plan.noise_stddev,
            baseline_noise_stddev=plan.baseline_noise_stddev,
            seed=batch_seed(seed, b),
        )
        res = backend.gradients(
            [int(i) for i in problem.input_ids],
            target_positions=None if problem.target_positions is None else [int(i) for i in problem.target_positions],
            target_classes=None if problem.target_classes is None else [int(c) for c in problem.target_classes],
            inference_mode=inference_mode.value,
            samples=samples,
            outputs=[output],
        )
        scores = np.asarray(res["scores"], dtype=np.float64)
        coef = _coefficients(problem, scores, inference_mode)
        data = np.asarray(res[output], dtype=np.float64)
        if not full:
            w = plan.weights[sl]
            for t, g in enumerate(problem.groups):
                # [ns, |g|, L] -> combine columns per sample, weight samples
                per_sample = (coef[t][:, :, None] * data[:, g, :]).sum(axis=1)
                token_vals[t] += (w[:, None] * per_sample).sum(axis=0)
        else:
            H = data.shape[-1]
            if acc1 is None:
                acc1 = np.zeros((T, L, H))
                acc2 = np.zeros((T, L, H))
            for t, g in enumerate(problem.groups):
                grad = (coef[t][:, :, None, None] * data[:, g]).sum(axis=1)  # [ns, L, H]
                if method in ("saliency", "smooth_grad"):
                    acc1[t] += np.abs(grad).sum(axis=0)
                elif method == "square_grad":
                    acc1[t] += (grad**2).sum(axis=0)
                else:  # var_grad
                    acc1[t] += grad.sum(axis=0)
                    acc2[t] += (grad**2).sum(axis=0)
        if progress is not None:
            progress(sl.stop, n, "gradients")
    check_stop(should_stop)
    if full:
        if method == "var_grad":
            a = acc2 / n - (acc1 / n) ** 2
            a = np.maximum(a, 0.0)
        else:
            a = acc1 / n
        token_vals = np.sqrt((a**2).sum(axis=-1)) if red == GradientReduction.L2_NORM else np.abs(a).sum(axis=-1)
    elif method in VECTOR_METHODS:
        # reduced outputs were summed with weights 1/n (mean over samples)
        pass
    elems = aggregate(token_vals, problem.positions, aggregation)
    elems[~problem.coverage] = np.nan
    return elems


__all__ = ["gradient_attribution", "gauss_legendre", "aggregate", "batch_seed", "DOT_METHODS", "VECTOR_METHODS"]
