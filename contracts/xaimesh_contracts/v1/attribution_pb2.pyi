from xaimesh_contracts.v1 import model_pb2 as _model_pb2
from xaimesh_contracts.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttributionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTRIBUTION_METHOD_UNSPECIFIED: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_OCCLUSION: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_LIME: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_KERNEL_SHAP: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_SOBOL: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_SALIENCY: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_INPUT_X_GRADIENT: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_INTEGRATED_GRADIENTS: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_GRADIENT_SHAP: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_SMOOTH_GRAD: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_SQUARE_GRAD: _ClassVar[AttributionMethod]
    ATTRIBUTION_METHOD_VAR_GRAD: _ClassVar[AttributionMethod]

class SobolSampler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOBOL_SAMPLER_UNSPECIFIED: _ClassVar[SobolSampler]
    SOBOL_SAMPLER_SOBOL: _ClassVar[SobolSampler]
    SOBOL_SAMPLER_HALTON: _ClassVar[SobolSampler]
    SOBOL_SAMPLER_LATIN_HYPERCUBE: _ClassVar[SobolSampler]

class SobolIndex(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOBOL_INDEX_UNSPECIFIED: _ClassVar[SobolIndex]
    SOBOL_INDEX_TOTAL: _ClassVar[SobolIndex]
    SOBOL_INDEX_FIRST: _ClassVar[SobolIndex]

class GradientReduction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRADIENT_REDUCTION_UNSPECIFIED: _ClassVar[GradientReduction]
    GRADIENT_REDUCTION_L2_NORM: _ClassVar[GradientReduction]
    GRADIENT_REDUCTION_ABS_SUM: _ClassVar[GradientReduction]

class AttributionMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTRIBUTION_METRIC_UNSPECIFIED: _ClassVar[AttributionMetric]
    ATTRIBUTION_METRIC_DELETION: _ClassVar[AttributionMetric]
    ATTRIBUTION_METRIC_INSERTION: _ClassVar[AttributionMetric]
ATTRIBUTION_METHOD_UNSPECIFIED: AttributionMethod
ATTRIBUTION_METHOD_OCCLUSION: AttributionMethod
ATTRIBUTION_METHOD_LIME: AttributionMethod
ATTRIBUTION_METHOD_KERNEL_SHAP: AttributionMethod
ATTRIBUTION_METHOD_SOBOL: AttributionMethod
ATTRIBUTION_METHOD_SALIENCY: AttributionMethod
ATTRIBUTION_METHOD_INPUT_X_GRADIENT: AttributionMethod
ATTRIBUTION_METHOD_INTEGRATED_GRADIENTS: AttributionMethod
ATTRIBUTION_METHOD_GRADIENT_SHAP: AttributionMethod
ATTRIBUTION_METHOD_SMOOTH_GRAD: AttributionMethod
ATTRIBUTION_METHOD_SQUARE_GRAD: AttributionMethod
ATTRIBUTION_METHOD_VAR_GRAD: AttributionMethod
SOBOL_SAMPLER_UNSPECIFIED: SobolSampler
SOBOL_SAMPLER_SOBOL: SobolSampler
SOBOL_SAMPLER_HALTON: SobolSampler
SOBOL_SAMPLER_LATIN_HYPERCUBE: SobolSampler
SOBOL_INDEX_UNSPECIFIED: SobolIndex
SOBOL_INDEX_TOTAL: SobolIndex
SOBOL_INDEX_FIRST: SobolIndex
GRADIENT_REDUCTION_UNSPECIFIED: GradientReduction
GRADIENT_REDUCTION_L2_NORM: GradientReduction
GRADIENT_REDUCTION_ABS_SUM: GradientReduction
ATTRIBUTION_METRIC_UNSPECIFIED: AttributionMetric
ATTRIBUTION_METRIC_DELETION: AttributionMetric
ATTRIBUTION_METRIC_INSERTION: AttributionMetric

class MethodParameters(_message.Message):
    __slots__ = ("occlusion", "lime", "kernel_shap", "sobol", "saliency", "input_x_gradient", "integrated_gradients", "gradient_shap", "smooth_grad", "square_grad", "var_grad")
    OCCLUSION_FIELD_NUMBER: _ClassVar[int]
    LIME_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SHAP_FIELD_NUMBER: _ClassVar[int]
    SOBOL_FIELD_NUMBER: _ClassVar[int]
    SALIENCY_FIELD_NUMBER: _ClassVar[int]
    INPUT_X_GRADIENT_FIELD_NUMBER: _ClassVar[int]
    INTEGRATED_GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_SHAP_FIELD_NUMBER: _ClassVar[int]
    SMOOTH_GRAD_FIELD_NUMBER: _ClassVar[int]
    SQUARE_GRAD_FIELD_NUMBER: _ClassVar[int]
    VAR_GRAD_FIELD_NUMBER: _ClassVar[int]
    occlusion: OcclusionParameters
    lime: LimeParameters
    kernel_shap: KernelShapParameters
    sobol: SobolParameters
    saliency: SaliencyParameters
    input_x_gradient: InputXGradientParameters
    integrated_gradients: IntegratedGradientsParameters
    gradient_shap: GradientShapParameters
    smooth_grad: NoiseTunnelParameters
    square_grad: NoiseTunnelParameters
    var_grad: NoiseTunnelParameters
    def __init__(self, occlusion: _Optional[_Union[OcclusionParameters, _Mapping]] = ..., lime: _Optional[_Union[LimeParameters, _Mapping]] = ..., kernel_shap: _Optional[_Union[KernelShapParameters, _Mapping]] = ..., sobol: _Optional[_Union[SobolParameters, _Mapping]] = ..., saliency: _Optional[_Union[SaliencyParameters, _Mapping]] = ..., input_x_gradient: _Optional[_Union[InputXGradientParameters, _Mapping]] = ..., integrated_gradients: _Optional[_Union[IntegratedGradientsParameters, _Mapping]] = ..., gradient_shap: _Optional[_Union[GradientShapParameters, _Mapping]] = ..., smooth_grad: _Optional[_Union[NoiseTunnelParameters, _Mapping]] = ..., square_grad: _Optional[_Union[NoiseTunnelParameters, _Mapping]] = ..., var_grad: _Optional[_Union[NoiseTunnelParameters, _Mapping]] = ...) -> None: ...

class OcclusionParameters(_message.Message):
    __slots__ = ("window", "batch_size", "replacement")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    window: int
    batch_size: int
    replacement: _model_pb2.Replacement
    def __init__(self, window: _Optional[int] = ..., batch_size: _Optional[int] = ..., replacement: _Optional[_Union[_model_pb2.Replacement, _Mapping]] = ...) -> None: ...

class LimeParameters(_message.Message):
    __slots__ = ("n_perturbations", "keep_probability", "kernel_width", "regularization", "seed", "batch_size", "replacement")
    N_PERTURBATIONS_FIELD_NUMBER: _ClassVar[int]
    KEEP_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    KERNEL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    REGULARIZATION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    n_perturbations: int
    keep_probability: float
    kernel_width: float
    regularization: float
    seed: int
    batch_size: int
    replacement: _model_pb2.Replacement
    def __init__(self, n_perturbations: _Optional[int] = ..., keep_probability: _Optional[float] = ..., kernel_width: _Optional[float] = ..., regularization: _Optional[float] = ..., seed: _Optional[int] = ..., batch_size: _Optional[int] = ..., replacement: _Optional[_Union[_model_pb2.Replacement, _Mapping]] = ...) -> None: ...

class KernelShapParameters(_message.Message):
    __slots__ = ("n_perturbations", "regularization", "seed", "batch_size", "replacement", "exact")
    N_PERTURBATIONS_FIELD_NUMBER: _ClassVar[int]
    REGULARIZATION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    n_perturbations: int
    regularization: float
    seed: int
    batch_size: int
    replacement: _model_pb2.Replacement
    exact: bool
    def __init__(self, n_perturbations: _Optional[int] = ..., regularization: _Optional[float] = ..., seed: _Optional[int] = ..., batch_size: _Optional[int] = ..., replacement: _Optional[_Union[_model_pb2.Replacement, _Mapping]] = ..., exact: _Optional[bool] = ...) -> None: ...

class SobolParameters(_message.Message):
    __slots__ = ("n_perturbations", "sobol_sampler", "sobol_index", "keep_probability", "seed", "batch_size", "replacement")
    N_PERTURBATIONS_FIELD_NUMBER: _ClassVar[int]
    SOBOL_SAMPLER_FIELD_NUMBER: _ClassVar[int]
    SOBOL_INDEX_FIELD_NUMBER: _ClassVar[int]
    KEEP_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    n_perturbations: int
    sobol_sampler: SobolSampler
    sobol_index: SobolIndex
    keep_probability: float
    seed: int
    batch_size: int
    replacement: _model_pb2.Replacement
    def __init__(self, n_perturbations: _Optional[int] = ..., sobol_sampler: _Optional[_Union[SobolSampler, str]] = ..., sobol_index: _Optional[_Union[SobolIndex, str]] = ..., keep_probability: _Optional[float] = ..., seed: _Optional[int] = ..., batch_size: _Optional[int] = ..., replacement: _Optional[_Union[_model_pb2.Replacement, _Mapping]] = ...) -> None: ...

class SaliencyParameters(_message.Message):
    __slots__ = ("gradient_reduction", "batch_size")
    GRADIENT_REDUCTION_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    gradient_reduction: GradientReduction
    batch_size: int
    def __init__(self, gradient_reduction: _Optional[_Union[GradientReduction, str]] = ..., batch_size: _Optional[int] = ...) -> None: ...

class InputXGradientParameters(_message.Message):
    __slots__ = ("batch_size",)
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    def __init__(self, batch_size: _Optional[int] = ...) -> None: ...

class IntegratedGradientsParameters(_message.Message):
    __slots__ = ("n_steps", "baseline", "batch_size")
    N_STEPS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    n_steps: int
    baseline: _model_pb2.Baseline
    batch_size: int
    def __init__(self, n_steps: _Optional[int] = ..., baseline: _Optional[_Union[_model_pb2.Baseline, _Mapping]] = ..., batch_size: _Optional[int] = ...) -> None: ...

class GradientShapParameters(_message.Message):
    __slots__ = ("n_steps", "noise_std", "seed", "baseline", "batch_size")
    N_STEPS_FIELD_NUMBER: _ClassVar[int]
    NOISE_STD_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    n_steps: int
    noise_std: float
    seed: int
    baseline: _model_pb2.Baseline
    batch_size: int
    def __init__(self, n_steps: _Optional[int] = ..., noise_std: _Optional[float] = ..., seed: _Optional[int] = ..., baseline: _Optional[_Union[_model_pb2.Baseline, _Mapping]] = ..., batch_size: _Optional[int] = ...) -> None: ...

class NoiseTunnelParameters(_message.Message):
    __slots__ = ("n_steps", "noise_std", "seed", "gradient_reduction", "batch_size")
    N_STEPS_FIELD_NUMBER: _ClassVar[int]
    NOISE_STD_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_REDUCTION_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    n_steps: int
    noise_std: float
    seed: int
    gradient_reduction: GradientReduction
    batch_size: int
    def __init__(self, n_steps: _Optional[int] = ..., noise_std: _Optional[float] = ..., seed: _Optional[int] = ..., gradient_reduction: _Optional[_Union[GradientReduction, str]] = ..., batch_size: _Optional[int] = ...) -> None: ...

class Targets(_message.Message):
    __slots__ = ("text", "token_ids", "class_indices", "class_names", "max_new_tokens")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDICES_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    text: str
    token_ids: _model_pb2.TokenIds
    class_indices: ClassIndices
    class_names: ClassNames
    max_new_tokens: int
    def __init__(self, text: _Optional[str] = ..., token_ids: _Optional[_Union[_model_pb2.TokenIds, _Mapping]] = ..., class_indices: _Optional[_Union[ClassIndices, _Mapping]] = ..., class_names: _Optional[_Union[ClassNames, _Mapping]] = ..., max_new_tokens: _Optional[int] = ...) -> None: ...

class ClassIndices(_message.Message):
    __slots__ = ("indices",)
    INDICES_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, indices: _Optional[_Iterable[int]] = ...) -> None: ...

class ClassNames(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class ExplainInput(_message.Message):
    __slots__ = ("text", "targets", "chat", "chat_template")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    text: str
    targets: Targets
    chat: _model_pb2.ChatConversation
    chat_template: bool
    def __init__(self, text: _Optional[str] = ..., targets: _Optional[_Union[Targets, _Mapping]] = ..., chat: _Optional[_Union[_model_pb2.ChatConversation, _Mapping]] = ..., chat_template: _Optional[bool] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("model", "method", "parameters", "inputs", "granularity", "aggregation", "inference_mode", "concept_encoder")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MODE_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_ENCODER_FIELD_NUMBER: _ClassVar[int]
    model: str
    method: AttributionMethod
    parameters: MethodParameters
    inputs: _containers.RepeatedCompositeFieldContainer[ExplainInput]
    granularity: _tensor_pb2.Granularity
    aggregation: _tensor_pb2.Aggregation
    inference_mode: _tensor_pb2.InferenceMode
    concept_encoder: _model_pb2.ConceptEncoder
    def __init__(self, model: _Optional[str] = ..., method: _Optional[_Union[AttributionMethod, str]] = ..., parameters: _Optional[_Union[MethodParameters, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[ExplainInput, _Mapping]]] = ..., granularity: _Optional[_Union[_tensor_pb2.Granularity, str]] = ..., aggregation: _Optional[_Union[_tensor_pb2.Aggregation, str]] = ..., inference_mode: _Optional[_Union[_tensor_pb2.InferenceMode, str]] = ..., concept_encoder: _Optional[_Union[_model_pb2.ConceptEncoder, _Mapping]] = ...) -> None: ...

class Attribution(_message.Message):
    __slots__ = ("model", "task", "method", "parameters", "granularity", "aggregation", "inference_mode", "input_elements", "num_prompt_elements", "target_elements", "target_classes", "target_token_ids", "target_element_token_ends", "scores", "target_scores", "text", "input_ids", "explains_concepts")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MODE_FIELD_NUMBER: _ClassVar[int]
    INPUT_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    NUM_PROMPT_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_CLASSES_FIELD_NUMBER: _ClassVar[int]
    TARGET_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    TARGET_ELEMENT_TOKEN_ENDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    TARGET_SCORES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPLAINS_CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    task: _model_pb2.ModelTask
    method: AttributionMethod
    parameters: MethodParameters
    granularity: _tensor_pb2.Granularity
    aggregation: _tensor_pb2.Aggregation
    inference_mode: _tensor_pb2.InferenceMode
    input_elements: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Segment]
    num_prompt_elements: int
    target_elements: _containers.RepeatedScalarFieldContainer[str]
    target_classes: _containers.RepeatedScalarFieldContainer[int]
    target_token_ids: _containers.RepeatedScalarFieldContainer[int]
    target_element_token_ends: _containers.RepeatedScalarFieldContainer[int]
    scores: _tensor_pb2.Tensor
    target_scores: _containers.RepeatedScalarFieldContainer[float]
    text: str
    input_ids: _containers.RepeatedScalarFieldContainer[int]
    explains_concepts: bool
    def __init__(self, model: _Optional[str] = ..., task: _Optional[_Union[_model_pb2.ModelTask, str]] = ..., method: _Optional[_Union[AttributionMethod, str]] = ..., parameters: _Optional[_Union[MethodParameters, _Mapping]] = ..., granularity: _Optional[_Union[_tensor_pb2.Granularity, str]] = ..., aggregation: _Optional[_Union[_tensor_pb2.Aggregation, str]] = ..., inference_mode: _Optional[_Union[_tensor_pb2.InferenceMode, str]] = ..., input_elements: _Optional[_Iterable[_Union[_tensor_pb2.Segment, _Mapping]]] = ..., num_prompt_elements: _Optional[int] = ..., target_elements: _Optional[_Iterable[str]] = ..., target_classes: _Optional[_Iterable[int]] = ..., target_token_ids: _Optional[_Iterable[int]] = ..., target_element_token_ends: _Optional[_Iterable[int]] = ..., scores: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., target_scores: _Optional[_Iterable[float]] = ..., text: _Optional[str] = ..., input_ids: _Optional[_Iterable[int]] = ..., explains_concepts: _Optional[bool] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("progress", "result", "item_error")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ERROR_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    result: AttributionResult
    item_error: _model_pb2.ItemError
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., result: _Optional[_Union[AttributionResult, _Mapping]] = ..., item_error: _Optional[_Union[_model_pb2.ItemError, _Mapping]] = ...) -> None: ...

class AttributionResult(_message.Message):
    __slots__ = ("input_index", "attribution")
    INPUT_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    input_index: int
    attribution: Attribution
    def __init__(self, input_index: _Optional[int] = ..., attribution: _Optional[_Union[Attribution, _Mapping]] = ...) -> None: ...

class ListMethodsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MethodInfo(_message.Message):
    __slots__ = ("method", "family", "description", "granularities", "defaults")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    GRANULARITIES_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    method: AttributionMethod
    family: str
    description: str
    granularities: _containers.RepeatedScalarFieldContainer[_tensor_pb2.Granularity]
    defaults: MethodParameters
    def __init__(self, method: _Optional[_Union[AttributionMethod, str]] = ..., family: _Optional[str] = ..., description: _Optional[str] = ..., granularities: _Optional[_Iterable[_Union[_tensor_pb2.Granularity, str]]] = ..., defaults: _Optional[_Union[MethodParameters, _Mapping]] = ...) -> None: ...

class ListMethodsResponse(_message.Message):
    __slots__ = ("methods",)
    METHODS_FIELD_NUMBER: _ClassVar[int]
    methods: _containers.RepeatedCompositeFieldContainer[MethodInfo]
    def __init__(self, methods: _Optional[_Iterable[_Union[MethodInfo, _Mapping]]] = ...) -> None: ...

class EvaluateAttributionsRequest(_message.Message):
    __slots__ = ("model", "metric", "attributions", "n_steps", "replacement", "inference_mode", "n_random_orders", "seed", "batch_size")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    N_STEPS_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MODE_FIELD_NUMBER: _ClassVar[int]
    N_RANDOM_ORDERS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    model: str
    metric: AttributionMetric
    attributions: _containers.RepeatedCompositeFieldContainer[Attribution]
    n_steps: int
    replacement: _model_pb2.Replacement
    inference_mode: _tensor_pb2.InferenceMode
    n_random_orders: int
    seed: int
    batch_size: int
    def __init__(self, model: _Optional[str] = ..., metric: _Optional[_Union[AttributionMetric, str]] = ..., attributions: _Optional[_Iterable[_Union[Attribution, _Mapping]]] = ..., n_steps: _Optional[int] = ..., replacement: _Optional[_Union[_model_pb2.Replacement, _Mapping]] = ..., inference_mode: _Optional[_Union[_tensor_pb2.InferenceMode, str]] = ..., n_random_orders: _Optional[int] = ..., seed: _Optional[int] = ..., batch_size: _Optional[int] = ...) -> None: ...

class MetricCurve(_message.Message):
    __slots__ = ("fractions", "scores", "auc")
    FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    AUC_FIELD_NUMBER: _ClassVar[int]
    fractions: _containers.RepeatedScalarFieldContainer[float]
    scores: _containers.RepeatedScalarFieldContainer[float]
    auc: float
    def __init__(self, fractions: _Optional[_Iterable[float]] = ..., scores: _Optional[_Iterable[float]] = ..., auc: _Optional[float] = ...) -> None: ...

class AttributionMetricResult(_message.Message):
    __slots__ = ("input_index", "metric", "curve", "random_curve", "per_target_scores")
    INPUT_INDEX_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    CURVE_FIELD_NUMBER: _ClassVar[int]
    RANDOM_CURVE_FIELD_NUMBER: _ClassVar[int]
    PER_TARGET_SCORES_FIELD_NUMBER: _ClassVar[int]
    input_index: int
    metric: AttributionMetric
    curve: MetricCurve
    random_curve: MetricCurve
    per_target_scores: _tensor_pb2.Tensor
    def __init__(self, input_index: _Optional[int] = ..., metric: _Optional[_Union[AttributionMetric, str]] = ..., curve: _Optional[_Union[MetricCurve, _Mapping]] = ..., random_curve: _Optional[_Union[MetricCurve, _Mapping]] = ..., per_target_scores: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class EvaluateAttributionsResponse(_message.Message):
    __slots__ = ("progress", "result", "item_error")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ERROR_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    result: AttributionMetricResult
    item_error: _model_pb2.ItemError
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., result: _Optional[_Union[AttributionMetricResult, _Mapping]] = ..., item_error: _Optional[_Union[_model_pb2.ItemError, _Mapping]] = ...) -> None: ...
