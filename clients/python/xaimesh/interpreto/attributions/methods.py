"""interpreto's attribution methods over the mesh: interpreto's class names,
argument names and defaults (0.5.2), computed by the attribution-service.

Where interpreto's definition and the mesh's coincide the numbers are
interpreto's (Occlusion; Saliency and SmoothGrad with
``input_x_gradient=False``, the mesh's sum of |gradient| over the hidden
dimension scaled to interpreto's mean). Elsewhere the mesh's documented
definition is computed and the difference is listed in
docs/interpreto-compat.md (a warning says so once per class).
"""

from __future__ import annotations

from typing import Any

from xaimesh import attributions as native

from .._compat import (
    DistancesFromMask,
    Granularity,
    GranularityAggregationStrategy,
    InferenceModes,
    SequenceSamplers,
    SobolIndicesOrders,
    member,
    refuse,
    warn_once,
)
from .base import AttributionExplainer

__all__ = ["GradientShap", "IntegratedGradients", "KernelShap", "Lime", "Occlusion", "Saliency", "SmoothGrad",
           "Sobol", "SquareGrad", "VarGrad"]

_WORD = Granularity.WORD
_MEAN = GranularityAggregationStrategy.MEAN
_LOGITS = InferenceModes.LOGITS


class Occlusion(AttributionExplainer):
    native_class = native.Occlusion

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 4, granularity: Any = _WORD,
                 granularity_aggregation_strategy: Any = _MEAN, inference_mode: Any = _LOGITS,
                 device: Any = None) -> None:
        self._setup(model, tokenizer, batch_size=batch_size, granularity=granularity,
                    granularity_aggregation_strategy=granularity_aggregation_strategy,
                    inference_mode=inference_mode, device=device)


class KernelShap(AttributionExplainer):
    native_class = native.KernelShap

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 4, granularity: Any = _WORD,
                 granularity_aggregation_strategy: Any = _MEAN, inference_mode: Any = _LOGITS,
                 n_perturbations: int = 100, device: Any = None) -> None:
        warn_once("KernelShap", "xaimesh.interpreto.KernelShap: the mesh fits Shapley values with the efficiency "
                  "constraint (interpreto: an unconstrained weighted regression); see docs/interpreto-compat.md")
        self._setup(model, tokenizer, batch_size=batch_size, granularity=granularity,
                    granularity_aggregation_strategy=granularity_aggregation_strategy,
                    inference_mode=inference_mode, device=device, n_perturbations=n_perturbations)


class Lime(AttributionExplainer):
    native_class = native.Lime
    distance_functions = DistancesFromMask

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 4, granularity: Any = _WORD,
                 granularity_aggregation_strategy: Any = _MEAN, inference_mode: Any = _LOGITS,
                 n_perturbations: int = 100, perturb_probability: float = 0.5,
                 distance_function: Any = DistancesFromMask.COSINE, kernel_width: float | None = None,
                 device: Any = None) -> None:
        if member(DistancesFromMask, distance_function, "distance_function") is not DistancesFromMask.COSINE:
            raise refuse("Lime", "distance_function", "the mesh's Lime weighs masks by their cosine distance "
                         "only: use Lime.distance_functions.COSINE (the default)")
        if callable(kernel_width):
            raise refuse("Lime", "kernel_width", "give a number: the attribution-service cannot run a function")
        if kernel_width is None:
            warn_once("Lime", "xaimesh.interpreto.Lime: kernel_width=None is the mesh's default width 0.25 "
                      "(interpreto: 0.75 * sqrt(number of elements)); see docs/interpreto-compat.md")
        # interpreto: a weighted least-squares fit without ridge (1e-6 on the diagonal for stability)
        self._setup(model, tokenizer, batch_size=batch_size, granularity=granularity,
                    granularity_aggregation_strategy=granularity_aggregation_strategy,
                    inference_mode=inference_mode, device=device, n_perturbations=n_perturbations,
                    keep_probability=1.0 - float(perturb_probability), kernel_width=kernel_width,
                    regularization=0.0)


class Sobol(AttributionExplainer):
    native_class = native.Sobol
    samplers = SequenceSamplers
    sobol_indices_orders = SobolIndicesOrders

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 4, granularity: Any = _WORD,
                 granularity_aggregation_strategy: Any = _MEAN, inference_mode: Any = _LOGITS,
                 n_token_perturbations: int = 32, sobol_indices_order: Any = SobolIndicesOrders.FIRST_ORDER,
                 sampler: Any = SequenceSamplers.SOBOL, device: Any = None) -> None:
        order = member(SobolIndicesOrders, sobol_indices_order, "sobol_indices_order")
        self._setup(model, tokenizer, batch_size=batch_size, granularity=granularity,
                    granularity_aggregation_strategy=granularity_aggregation_strategy,
                    inference_mode=inference_mode, device=device, n_perturbations=n_token_perturbations,
                    sobol_index="first" if order is SobolIndicesOrders.FIRST_ORDER else "total",
                    sobol_sampler=member(SequenceSamplers, sampler, "sampler").value)


class _Gradient(AttributionExplainer):
    """interpreto's gradient methods: per token, the mean over the hidden
    dimension of |gradient| (``input_x_gradient=False``) or |gradient x
    input| (True, interpreto's default)."""

    gradient = True
    #: Whether the mesh's method with gradient_reduction abs_sum, divided by
    #: the hidden size, is interpreto's definition (input_x_gradient=False).
    exact_without_input = False

    def _gradient_setup(self, model: Any, tokenizer: Any, input_x_gradient: bool, **kwargs: Any) -> None:
        if not isinstance(input_x_gradient, bool):
            raise refuse(type(self).__name__, "input_x_gradient", f"True or False, not {input_x_gradient!r}")
        self.input_x_gradient = input_x_gradient
        self._exact = self.exact_without_input and not input_x_gradient
        if self.exact_without_input:
            kwargs["gradient_reduction"] = "abs_sum"
        if not self._exact:
            warn_once(type(self).__name__, f"xaimesh.interpreto.{type(self).__name__}"
                      f"(input_x_gradient={input_x_gradient}): the mesh computes its documented "
                      f"{type(self).__name__}, not interpreto's mean |.| over the hidden dimension"
                      + (" of gradient x input" if input_x_gradient else "")
                      + "; see docs/interpreto-compat.md")
        self._setup(model, tokenizer, **kwargs)

    def _scale(self) -> float:
        return 1.0 / self.model.hidden_size if self._exact else 1.0


class Saliency(_Gradient):
    native_class = native.Saliency
    exact_without_input = True

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 4, granularity: Any = _WORD,
                 granularity_aggregation_strategy: Any = _MEAN, device: Any = None, inference_mode: Any = _LOGITS,
                 input_x_gradient: bool = True) -> None:
        self._gradient_setup(model, tokenizer, input_x_gradient, batch_size=batch_size, granularity=granularity,
                             granularity_aggregation_strategy=granularity_aggregation_strategy,
                             inference_mode=inference_mode, device=device)


class IntegratedGradients(_Gradient):
    native_class = native.IntegratedGradients

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 4, granularity: Any = _WORD,
                 granularity_aggregation_strategy: Any = _MEAN, device: Any = None, inference_mode: Any = _LOGITS,
                 input_x_gradient: bool = True, n_perturbations: int = 10, baseline: Any = None) -> None:
        self._gradient_setup(model, tokenizer, input_x_gradient, batch_size=batch_size, granularity=granularity,
                             granularity_aggregation_strategy=granularity_aggregation_strategy,
                             inference_mode=inference_mode, device=device, n_steps=n_perturbations,
                             baseline=_baseline("IntegratedGradients", baseline))


class GradientShap(_Gradient):
    native_class = native.GradientShap

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 4, granularity: Any = _WORD,
                 granularity_aggregation_strategy: Any = _MEAN, device: Any = None, inference_mode: Any = _LOGITS,
                 input_x_gradient: bool = True, n_perturbations: int = 10, baseline: Any = None,
                 noise_std: float = 0.1) -> None:
        self._gradient_setup(model, tokenizer, input_x_gradient, batch_size=batch_size, granularity=granularity,
                             granularity_aggregation_strategy=granularity_aggregation_strategy,
                             inference_mode=inference_mode, device=device, n_steps=n_perturbations,
                             noise_std=noise_std, baseline=_baseline("GradientShap", baseline))


class _NoiseTunnel(_Gradient):
    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 4, granularity: Any = _WORD,
                 granularity_aggregation_strategy: Any = _MEAN, device: Any = None, inference_mode: Any = _LOGITS,
                 input_x_gradient: bool = True, n_perturbations: int = 10, noise_std: float = 0.1) -> None:
        self._gradient_setup(model, tokenizer, input_x_gradient, batch_size=batch_size, granularity=granularity,
                             granularity_aggregation_strategy=granularity_aggregation_strategy,
                             inference_mode=inference_mode, device=device, n_steps=n_perturbations,
                             noise_std=noise_std)


class SmoothGrad(_NoiseTunnel):
    native_class = native.SmoothGrad
    exact_without_input = True


class SquareGrad(_NoiseTunnel):
    native_class = native.SquareGrad


class VarGrad(_NoiseTunnel):
    native_class = native.VarGrad


def _baseline(who: str, baseline: Any) -> Any:
    """interpreto's baseline: None (zeros) or 0.0 is the mesh's zero baseline;
    a tensor or another number is not sent over the wire."""
    if baseline is None or (isinstance(baseline, (int, float)) and float(baseline) == 0.0):
        return "zero"
    raise refuse(who, "baseline", "the mesh's baselines are 'zero' (interpreto's None / 0.0) or a token; a tensor "
                 "or another constant is not supported")
