from xaimesh_contracts.v1 import model_pb2 as _model_pb2
from xaimesh_contracts.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConceptMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONCEPT_METHOD_UNSPECIFIED: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_SEMI_NMF: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_NMF: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_CONVEX_NMF: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_PCA: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_ICA: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_SVD: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_KMEANS: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_DICTIONARY_LEARNING: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_SPARSE_PCA: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_NEURONS_AS_CONCEPTS: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_SAE_VANILLA: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_SAE_TOPK: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_SAE_BATCH_TOPK: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_SAE_JUMP_RELU: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_LINEAR_PROBE: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_SAE_MP: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_SAE_MATRYOSHKA: _ClassVar[ConceptMethod]
    CONCEPT_METHOD_CENTROID_PROBE: _ClassVar[ConceptMethod]

class SaeLoss(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAE_LOSS_UNSPECIFIED: _ClassVar[SaeLoss]
    SAE_LOSS_MSE: _ClassVar[SaeLoss]
    SAE_LOSS_DEAD_NEURONS_REANIMATION: _ClassVar[SaeLoss]

class SaeOptimizer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAE_OPTIMIZER_UNSPECIFIED: _ClassVar[SaeOptimizer]
    SAE_OPTIMIZER_ADAM: _ClassVar[SaeOptimizer]
    SAE_OPTIMIZER_ADAMW: _ClassVar[SaeOptimizer]
    SAE_OPTIMIZER_SGD: _ClassVar[SaeOptimizer]

class SaeScheduler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAE_SCHEDULER_UNSPECIFIED: _ClassVar[SaeScheduler]
    SAE_SCHEDULER_CONSTANT: _ClassVar[SaeScheduler]
    SAE_SCHEDULER_COSINE: _ClassVar[SaeScheduler]
    SAE_SCHEDULER_LINEAR: _ClassVar[SaeScheduler]
    SAE_SCHEDULER_WARMUP: _ClassVar[SaeScheduler]

class TrainingLogKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_LOG_KIND_UNSPECIFIED: _ClassVar[TrainingLogKind]
    TRAINING_LOG_KIND_EPOCH: _ClassVar[TrainingLogKind]
    TRAINING_LOG_KIND_STEP: _ClassVar[TrainingLogKind]
    TRAINING_LOG_KIND_FINAL: _ClassVar[TrainingLogKind]

class ConceptMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONCEPT_METRIC_UNSPECIFIED: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_MSE: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_EXPLAINED_VARIANCE: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_SPARSITY: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_SPARSITY_RATIO: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_L0: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_DEAD_CONCEPTS: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_FID: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_STABILITY: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_FROBENIUS: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_AVERAGE_EUCLIDEAN: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_COSINE_DISTANCE: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_STABILITY_MAX: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_LP: _ClassVar[ConceptMetric]
    CONCEPT_METRIC_AVERAGE_LP: _ClassVar[ConceptMetric]

class ExampleSampling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXAMPLE_SAMPLING_UNSPECIFIED: _ClassVar[ExampleSampling]
    EXAMPLE_SAMPLING_TOP: _ClassVar[ExampleSampling]
    EXAMPLE_SAMPLING_QUANTILE: _ClassVar[ExampleSampling]
    EXAMPLE_SAMPLING_RANDOM: _ClassVar[ExampleSampling]

class ProbeMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROBE_METHOD_UNSPECIFIED: _ClassVar[ProbeMethod]
    PROBE_METHOD_LINEAR_REGRESSION: _ClassVar[ProbeMethod]
    PROBE_METHOD_MEANS_DIFF: _ClassVar[ProbeMethod]
    PROBE_METHOD_LOGISTIC_REGRESSION: _ClassVar[ProbeMethod]
    PROBE_METHOD_LINEAR_SVM: _ClassVar[ProbeMethod]
    PROBE_METHOD_CENTROID_DOT_PRODUCT: _ClassVar[ProbeMethod]
    PROBE_METHOD_CENTROID_COSINE: _ClassVar[ProbeMethod]
    PROBE_METHOD_CENTROID_SQ_L2: _ClassVar[ProbeMethod]
    PROBE_METHOD_CENTROID_DIAGONAL_MAHALANOBIS: _ClassVar[ProbeMethod]
    PROBE_METHOD_CENTROID_SVDD: _ClassVar[ProbeMethod]

class ProbeNormalization(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROBE_NORMALIZATION_UNSPECIFIED: _ClassVar[ProbeNormalization]
    PROBE_NORMALIZATION_NONE: _ClassVar[ProbeNormalization]
    PROBE_NORMALIZATION_STANDARDIZATION: _ClassVar[ProbeNormalization]
    PROBE_NORMALIZATION_WHITENING: _ClassVar[ProbeNormalization]

class BiasCalibration(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BIAS_CALIBRATION_UNSPECIFIED: _ClassVar[BiasCalibration]
    BIAS_CALIBRATION_PREVALENCE: _ClassVar[BiasCalibration]
    BIAS_CALIBRATION_MIDPOINT: _ClassVar[BiasCalibration]
    BIAS_CALIBRATION_FPR: _ClassVar[BiasCalibration]
    BIAS_CALIBRATION_BCE: _ClassVar[BiasCalibration]
    BIAS_CALIBRATION_LDA: _ClassVar[BiasCalibration]
CONCEPT_METHOD_UNSPECIFIED: ConceptMethod
CONCEPT_METHOD_SEMI_NMF: ConceptMethod
CONCEPT_METHOD_NMF: ConceptMethod
CONCEPT_METHOD_CONVEX_NMF: ConceptMethod
CONCEPT_METHOD_PCA: ConceptMethod
CONCEPT_METHOD_ICA: ConceptMethod
CONCEPT_METHOD_SVD: ConceptMethod
CONCEPT_METHOD_KMEANS: ConceptMethod
CONCEPT_METHOD_DICTIONARY_LEARNING: ConceptMethod
CONCEPT_METHOD_SPARSE_PCA: ConceptMethod
CONCEPT_METHOD_NEURONS_AS_CONCEPTS: ConceptMethod
CONCEPT_METHOD_SAE_VANILLA: ConceptMethod
CONCEPT_METHOD_SAE_TOPK: ConceptMethod
CONCEPT_METHOD_SAE_BATCH_TOPK: ConceptMethod
CONCEPT_METHOD_SAE_JUMP_RELU: ConceptMethod
CONCEPT_METHOD_LINEAR_PROBE: ConceptMethod
CONCEPT_METHOD_SAE_MP: ConceptMethod
CONCEPT_METHOD_SAE_MATRYOSHKA: ConceptMethod
CONCEPT_METHOD_CENTROID_PROBE: ConceptMethod
SAE_LOSS_UNSPECIFIED: SaeLoss
SAE_LOSS_MSE: SaeLoss
SAE_LOSS_DEAD_NEURONS_REANIMATION: SaeLoss
SAE_OPTIMIZER_UNSPECIFIED: SaeOptimizer
SAE_OPTIMIZER_ADAM: SaeOptimizer
SAE_OPTIMIZER_ADAMW: SaeOptimizer
SAE_OPTIMIZER_SGD: SaeOptimizer
SAE_SCHEDULER_UNSPECIFIED: SaeScheduler
SAE_SCHEDULER_CONSTANT: SaeScheduler
SAE_SCHEDULER_COSINE: SaeScheduler
SAE_SCHEDULER_LINEAR: SaeScheduler
SAE_SCHEDULER_WARMUP: SaeScheduler
TRAINING_LOG_KIND_UNSPECIFIED: TrainingLogKind
TRAINING_LOG_KIND_EPOCH: TrainingLogKind
TRAINING_LOG_KIND_STEP: TrainingLogKind
TRAINING_LOG_KIND_FINAL: TrainingLogKind
CONCEPT_METRIC_UNSPECIFIED: ConceptMetric
CONCEPT_METRIC_MSE: ConceptMetric
CONCEPT_METRIC_EXPLAINED_VARIANCE: ConceptMetric
CONCEPT_METRIC_SPARSITY: ConceptMetric
CONCEPT_METRIC_SPARSITY_RATIO: ConceptMetric
CONCEPT_METRIC_L0: ConceptMetric
CONCEPT_METRIC_DEAD_CONCEPTS: ConceptMetric
CONCEPT_METRIC_FID: ConceptMetric
CONCEPT_METRIC_STABILITY: ConceptMetric
CONCEPT_METRIC_FROBENIUS: ConceptMetric
CONCEPT_METRIC_AVERAGE_EUCLIDEAN: ConceptMetric
CONCEPT_METRIC_COSINE_DISTANCE: ConceptMetric
CONCEPT_METRIC_STABILITY_MAX: ConceptMetric
CONCEPT_METRIC_LP: ConceptMetric
CONCEPT_METRIC_AVERAGE_LP: ConceptMetric
EXAMPLE_SAMPLING_UNSPECIFIED: ExampleSampling
EXAMPLE_SAMPLING_TOP: ExampleSampling
EXAMPLE_SAMPLING_QUANTILE: ExampleSampling
EXAMPLE_SAMPLING_RANDOM: ExampleSampling
PROBE_METHOD_UNSPECIFIED: ProbeMethod
PROBE_METHOD_LINEAR_REGRESSION: ProbeMethod
PROBE_METHOD_MEANS_DIFF: ProbeMethod
PROBE_METHOD_LOGISTIC_REGRESSION: ProbeMethod
PROBE_METHOD_LINEAR_SVM: ProbeMethod
PROBE_METHOD_CENTROID_DOT_PRODUCT: ProbeMethod
PROBE_METHOD_CENTROID_COSINE: ProbeMethod
PROBE_METHOD_CENTROID_SQ_L2: ProbeMethod
PROBE_METHOD_CENTROID_DIAGONAL_MAHALANOBIS: ProbeMethod
PROBE_METHOD_CENTROID_SVDD: ProbeMethod
PROBE_NORMALIZATION_UNSPECIFIED: ProbeNormalization
PROBE_NORMALIZATION_NONE: ProbeNormalization
PROBE_NORMALIZATION_STANDARDIZATION: ProbeNormalization
PROBE_NORMALIZATION_WHITENING: ProbeNormalization
BIAS_CALIBRATION_UNSPECIFIED: BiasCalibration
BIAS_CALIBRATION_PREVALENCE: BiasCalibration
BIAS_CALIBRATION_MIDPOINT: BiasCalibration
BIAS_CALIBRATION_FPR: BiasCalibration
BIAS_CALIBRATION_BCE: BiasCalibration
BIAS_CALIBRATION_LDA: BiasCalibration

class ActivationSet(_message.Message):
    __slots__ = ("name", "id", "display_name", "shape", "dtype", "model", "split_point", "granularity", "aggregation", "num_samples", "create_time", "has_provenance", "size_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPLIT_POINT_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    HAS_PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    display_name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: _tensor_pb2.DataType
    model: str
    split_point: str
    granularity: _tensor_pb2.Granularity
    aggregation: _tensor_pb2.Aggregation
    num_samples: int
    create_time: int
    has_provenance: bool
    size_bytes: int
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., display_name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[_tensor_pb2.DataType, str]] = ..., model: _Optional[str] = ..., split_point: _Optional[str] = ..., granularity: _Optional[_Union[_tensor_pb2.Granularity, str]] = ..., aggregation: _Optional[_Union[_tensor_pb2.Aggregation, str]] = ..., num_samples: _Optional[int] = ..., create_time: _Optional[int] = ..., has_provenance: _Optional[bool] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class CreateActivationSetsRequest(_message.Message):
    __slots__ = ("model", "texts", "split_points", "granularity", "aggregation", "add_special_tokens", "max_length", "display_name", "special_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_POINTS_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    ADD_SPECIAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SPECIAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    split_points: _containers.RepeatedScalarFieldContainer[str]
    granularity: _tensor_pb2.Granularity
    aggregation: _tensor_pb2.Aggregation
    add_special_tokens: bool
    max_length: int
    display_name: str
    special_tokens: _model_pb2.SpecialTokensPolicy
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., split_points: _Optional[_Iterable[str]] = ..., granularity: _Optional[_Union[_tensor_pb2.Granularity, str]] = ..., aggregation: _Optional[_Union[_tensor_pb2.Aggregation, str]] = ..., add_special_tokens: _Optional[bool] = ..., max_length: _Optional[int] = ..., display_name: _Optional[str] = ..., special_tokens: _Optional[_Union[_model_pb2.SpecialTokensPolicy, str]] = ...) -> None: ...

class CreateActivationSetsResponse(_message.Message):
    __slots__ = ("progress", "sets", "item_error")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    ITEM_ERROR_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    sets: ActivationSets
    item_error: _model_pb2.ItemError
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., sets: _Optional[_Union[ActivationSets, _Mapping]] = ..., item_error: _Optional[_Union[_model_pb2.ItemError, _Mapping]] = ...) -> None: ...

class ActivationSets(_message.Message):
    __slots__ = ("sets",)
    SETS_FIELD_NUMBER: _ClassVar[int]
    sets: _containers.RepeatedCompositeFieldContainer[ActivationSet]
    def __init__(self, sets: _Optional[_Iterable[_Union[ActivationSet, _Mapping]]] = ...) -> None: ...

class UploadActivationSetHeader(_message.Message):
    __slots__ = ("display_name", "model", "split_point", "granularity")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPLIT_POINT_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    model: str
    split_point: str
    granularity: _tensor_pb2.Granularity
    def __init__(self, display_name: _Optional[str] = ..., model: _Optional[str] = ..., split_point: _Optional[str] = ..., granularity: _Optional[_Union[_tensor_pb2.Granularity, str]] = ...) -> None: ...

class ProvenanceBatch(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[_model_pb2.RowProvenance]
    def __init__(self, rows: _Optional[_Iterable[_Union[_model_pb2.RowProvenance, _Mapping]]] = ...) -> None: ...

class UploadActivationSetRequest(_message.Message):
    __slots__ = ("header", "chunk", "provenance")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    header: UploadActivationSetHeader
    chunk: _tensor_pb2.TensorChunk
    provenance: ProvenanceBatch
    def __init__(self, header: _Optional[_Union[UploadActivationSetHeader, _Mapping]] = ..., chunk: _Optional[_Union[_tensor_pb2.TensorChunk, _Mapping]] = ..., provenance: _Optional[_Union[ProvenanceBatch, _Mapping]] = ...) -> None: ...

class UploadActivationSetResponse(_message.Message):
    __slots__ = ("set",)
    SET_FIELD_NUMBER: _ClassVar[int]
    set: ActivationSet
    def __init__(self, set: _Optional[_Union[ActivationSet, _Mapping]] = ...) -> None: ...

class GetActivationSetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetActivationSetResponse(_message.Message):
    __slots__ = ("set",)
    SET_FIELD_NUMBER: _ClassVar[int]
    set: ActivationSet
    def __init__(self, set: _Optional[_Union[ActivationSet, _Mapping]] = ...) -> None: ...

class ListActivationSetsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListActivationSetsResponse(_message.Message):
    __slots__ = ("sets", "next_page_token")
    SETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sets: _containers.RepeatedCompositeFieldContainer[ActivationSet]
    next_page_token: str
    def __init__(self, sets: _Optional[_Iterable[_Union[ActivationSet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteActivationSetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteActivationSetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReadActivationSetRequest(_message.Message):
    __slots__ = ("name", "row_start", "row_end", "include_provenance", "chunk_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    ROW_END_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    row_start: int
    row_end: int
    include_provenance: bool
    chunk_bytes: int
    def __init__(self, name: _Optional[str] = ..., row_start: _Optional[int] = ..., row_end: _Optional[int] = ..., include_provenance: _Optional[bool] = ..., chunk_bytes: _Optional[int] = ...) -> None: ...

class ReadActivationSetResponse(_message.Message):
    __slots__ = ("row_start", "rows", "provenance")
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    row_start: int
    rows: _tensor_pb2.Tensor
    provenance: _containers.RepeatedCompositeFieldContainer[_model_pb2.RowProvenance]
    def __init__(self, row_start: _Optional[int] = ..., rows: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., provenance: _Optional[_Iterable[_Union[_model_pb2.RowProvenance, _Mapping]]] = ...) -> None: ...

class ConceptFitOptions(_message.Message):
    __slots__ = ("seed", "device", "max_iterations", "tolerance", "relu_negative_inputs", "epochs", "batch_size", "learning_rate", "top_k", "l1_coefficient", "jump_threshold", "jump_bandwidth", "alpha", "standardize", "loss", "optimizer", "scheduler", "weight_decay", "clip_grad", "warmup_steps", "log_every_steps", "matryoshka_prefixes")
    SEED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    RELU_NEGATIVE_INPUTS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    L1_COEFFICIENT_FIELD_NUMBER: _ClassVar[int]
    JUMP_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    JUMP_BANDWIDTH_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    STANDARDIZE_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    CLIP_GRAD_FIELD_NUMBER: _ClassVar[int]
    WARMUP_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOG_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    MATRYOSHKA_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    seed: int
    device: str
    max_iterations: int
    tolerance: float
    relu_negative_inputs: bool
    epochs: int
    batch_size: int
    learning_rate: float
    top_k: int
    l1_coefficient: float
    jump_threshold: float
    jump_bandwidth: float
    alpha: float
    standardize: bool
    loss: SaeLoss
    optimizer: SaeOptimizer
    scheduler: SaeScheduler
    weight_decay: float
    clip_grad: float
    warmup_steps: int
    log_every_steps: int
    matryoshka_prefixes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, seed: _Optional[int] = ..., device: _Optional[str] = ..., max_iterations: _Optional[int] = ..., tolerance: _Optional[float] = ..., relu_negative_inputs: _Optional[bool] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., top_k: _Optional[int] = ..., l1_coefficient: _Optional[float] = ..., jump_threshold: _Optional[float] = ..., jump_bandwidth: _Optional[float] = ..., alpha: _Optional[float] = ..., standardize: _Optional[bool] = ..., loss: _Optional[_Union[SaeLoss, str]] = ..., optimizer: _Optional[_Union[SaeOptimizer, str]] = ..., scheduler: _Optional[_Union[SaeScheduler, str]] = ..., weight_decay: _Optional[float] = ..., clip_grad: _Optional[float] = ..., warmup_steps: _Optional[int] = ..., log_every_steps: _Optional[int] = ..., matryoshka_prefixes: _Optional[_Iterable[int]] = ...) -> None: ...

class ConceptModel(_message.Message):
    __slots__ = ("name", "id", "display_name", "method", "nb_concepts", "hidden_size", "activation_set", "model", "split_point", "options_json", "final_loss", "device", "create_time", "fit_seconds", "granularity")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    NB_CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_SET_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPLIT_POINT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    FINAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    display_name: str
    method: ConceptMethod
    nb_concepts: int
    hidden_size: int
    activation_set: str
    model: str
    split_point: str
    options_json: str
    final_loss: float
    device: str
    create_time: int
    fit_seconds: float
    granularity: _tensor_pb2.Granularity
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., display_name: _Optional[str] = ..., method: _Optional[_Union[ConceptMethod, str]] = ..., nb_concepts: _Optional[int] = ..., hidden_size: _Optional[int] = ..., activation_set: _Optional[str] = ..., model: _Optional[str] = ..., split_point: _Optional[str] = ..., options_json: _Optional[str] = ..., final_loss: _Optional[float] = ..., device: _Optional[str] = ..., create_time: _Optional[int] = ..., fit_seconds: _Optional[float] = ..., granularity: _Optional[_Union[_tensor_pb2.Granularity, str]] = ...) -> None: ...

class FitConceptModelRequest(_message.Message):
    __slots__ = ("activation_set", "method", "nb_concepts", "options", "display_name")
    ACTIVATION_SET_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    NB_CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    activation_set: str
    method: ConceptMethod
    nb_concepts: int
    options: ConceptFitOptions
    display_name: str
    def __init__(self, activation_set: _Optional[str] = ..., method: _Optional[_Union[ConceptMethod, str]] = ..., nb_concepts: _Optional[int] = ..., options: _Optional[_Union[ConceptFitOptions, _Mapping]] = ..., display_name: _Optional[str] = ...) -> None: ...

class TrainingLogEntry(_message.Message):
    __slots__ = ("step", "epoch", "loss", "values", "kind", "learning_rate")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    step: int
    epoch: int
    loss: float
    values: _containers.ScalarMap[str, float]
    kind: TrainingLogKind
    learning_rate: float
    def __init__(self, step: _Optional[int] = ..., epoch: _Optional[int] = ..., loss: _Optional[float] = ..., values: _Optional[_Mapping[str, float]] = ..., kind: _Optional[_Union[TrainingLogKind, str]] = ..., learning_rate: _Optional[float] = ...) -> None: ...

class FitConceptModelResponse(_message.Message):
    __slots__ = ("progress", "log", "model")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    log: TrainingLogEntry
    model: ConceptModel
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., log: _Optional[_Union[TrainingLogEntry, _Mapping]] = ..., model: _Optional[_Union[ConceptModel, _Mapping]] = ...) -> None: ...

class GetConceptModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetConceptModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ConceptModel
    def __init__(self, model: _Optional[_Union[ConceptModel, _Mapping]] = ...) -> None: ...

class ListConceptModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListConceptModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ConceptModel]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[ConceptModel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteConceptModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteConceptModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ActivationSource(_message.Message):
    __slots__ = ("activation_set", "tensor")
    ACTIVATION_SET_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    activation_set: ActivationSetRange
    tensor: _tensor_pb2.Tensor
    def __init__(self, activation_set: _Optional[_Union[ActivationSetRange, _Mapping]] = ..., tensor: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class ActivationSetRange(_message.Message):
    __slots__ = ("name", "row_start", "row_end")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    ROW_END_FIELD_NUMBER: _ClassVar[int]
    name: str
    row_start: int
    row_end: int
    def __init__(self, name: _Optional[str] = ..., row_start: _Optional[int] = ..., row_end: _Optional[int] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("concept_model", "source", "chunk_bytes")
    CONCEPT_MODEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    concept_model: str
    source: ActivationSource
    chunk_bytes: int
    def __init__(self, concept_model: _Optional[str] = ..., source: _Optional[_Union[ActivationSource, _Mapping]] = ..., chunk_bytes: _Optional[int] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("row_start", "codes")
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    row_start: int
    codes: _tensor_pb2.Tensor
    def __init__(self, row_start: _Optional[int] = ..., codes: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class DecodeRequest(_message.Message):
    __slots__ = ("concept_model", "codes", "chunk_bytes")
    CONCEPT_MODEL_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    concept_model: str
    codes: _tensor_pb2.Tensor
    chunk_bytes: int
    def __init__(self, concept_model: _Optional[str] = ..., codes: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., chunk_bytes: _Optional[int] = ...) -> None: ...

class DecodeResponse(_message.Message):
    __slots__ = ("row_start", "reconstructions")
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    row_start: int
    reconstructions: _tensor_pb2.Tensor
    def __init__(self, row_start: _Optional[int] = ..., reconstructions: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class GetDictionaryRequest(_message.Message):
    __slots__ = ("concept_model",)
    CONCEPT_MODEL_FIELD_NUMBER: _ClassVar[int]
    concept_model: str
    def __init__(self, concept_model: _Optional[str] = ...) -> None: ...

class GetDictionaryResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: _tensor_pb2.TensorChunk
    def __init__(self, chunk: _Optional[_Union[_tensor_pb2.TensorChunk, _Mapping]] = ...) -> None: ...

class ComputeConceptMetricsRequest(_message.Message):
    __slots__ = ("concept_models", "source", "metrics", "lp_p", "activation_epsilon")
    CONCEPT_MODELS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LP_P_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_EPSILON_FIELD_NUMBER: _ClassVar[int]
    concept_models: _containers.RepeatedScalarFieldContainer[str]
    source: ActivationSource
    metrics: _containers.RepeatedScalarFieldContainer[ConceptMetric]
    lp_p: float
    activation_epsilon: float
    def __init__(self, concept_models: _Optional[_Iterable[str]] = ..., source: _Optional[_Union[ActivationSource, _Mapping]] = ..., metrics: _Optional[_Iterable[_Union[ConceptMetric, str]]] = ..., lp_p: _Optional[float] = ..., activation_epsilon: _Optional[float] = ...) -> None: ...

class ConceptMetricValue(_message.Message):
    __slots__ = ("metric", "value", "concept_model")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_MODEL_FIELD_NUMBER: _ClassVar[int]
    metric: ConceptMetric
    value: float
    concept_model: str
    def __init__(self, metric: _Optional[_Union[ConceptMetric, str]] = ..., value: _Optional[float] = ..., concept_model: _Optional[str] = ...) -> None: ...

class ConceptMetricsResult(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[ConceptMetricValue]
    def __init__(self, values: _Optional[_Iterable[_Union[ConceptMetricValue, _Mapping]]] = ...) -> None: ...

class ComputeConceptMetricsResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    result: ConceptMetricsResult
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., result: _Optional[_Union[ConceptMetricsResult, _Mapping]] = ...) -> None: ...

class GetTopExamplesRequest(_message.Message):
    __slots__ = ("concept_model", "activation_set", "concept_indices", "k", "sampling", "k_quantile", "k_context", "seed", "keep_duplicates")
    CONCEPT_MODEL_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_SET_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_INDICES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    K_QUANTILE_FIELD_NUMBER: _ClassVar[int]
    K_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    KEEP_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    concept_model: str
    activation_set: str
    concept_indices: _containers.RepeatedScalarFieldContainer[int]
    k: int
    sampling: ExampleSampling
    k_quantile: int
    k_context: int
    seed: int
    keep_duplicates: bool
    def __init__(self, concept_model: _Optional[str] = ..., activation_set: _Optional[str] = ..., concept_indices: _Optional[_Iterable[int]] = ..., k: _Optional[int] = ..., sampling: _Optional[_Union[ExampleSampling, str]] = ..., k_quantile: _Optional[int] = ..., k_context: _Optional[int] = ..., seed: _Optional[int] = ..., keep_duplicates: _Optional[bool] = ...) -> None: ...

class ConceptExample(_message.Message):
    __slots__ = ("provenance", "activation", "normalized_activation", "context")
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    provenance: _model_pb2.RowProvenance
    activation: float
    normalized_activation: float
    context: _containers.RepeatedCompositeFieldContainer[ContextToken]
    def __init__(self, provenance: _Optional[_Union[_model_pb2.RowProvenance, _Mapping]] = ..., activation: _Optional[float] = ..., normalized_activation: _Optional[float] = ..., context: _Optional[_Iterable[_Union[ContextToken, _Mapping]]] = ...) -> None: ...

class ContextToken(_message.Message):
    __slots__ = ("text", "highlighted", "activation")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    HIGHLIGHTED_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    text: str
    highlighted: bool
    activation: float
    def __init__(self, text: _Optional[str] = ..., highlighted: _Optional[bool] = ..., activation: _Optional[float] = ...) -> None: ...

class ConceptExamples(_message.Message):
    __slots__ = ("concept_index", "num_active_rows", "max_activation", "examples")
    CONCEPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    NUM_ACTIVE_ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    concept_index: int
    num_active_rows: int
    max_activation: float
    examples: _containers.RepeatedCompositeFieldContainer[ConceptExample]
    def __init__(self, concept_index: _Optional[int] = ..., num_active_rows: _Optional[int] = ..., max_activation: _Optional[float] = ..., examples: _Optional[_Iterable[_Union[ConceptExample, _Mapping]]] = ...) -> None: ...

class GetTopExamplesResponse(_message.Message):
    __slots__ = ("progress", "concept")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    concept: ConceptExamples
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., concept: _Optional[_Union[ConceptExamples, _Mapping]] = ...) -> None: ...

class ExportConceptModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ExportConceptModelResponse(_message.Message):
    __slots__ = ("model", "data")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    model: ConceptModel
    data: bytes
    def __init__(self, model: _Optional[_Union[ConceptModel, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportConceptModelRequest(_message.Message):
    __slots__ = ("data", "display_name")
    DATA_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    display_name: str
    def __init__(self, data: _Optional[bytes] = ..., display_name: _Optional[str] = ...) -> None: ...

class ImportConceptModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ConceptModel
    def __init__(self, model: _Optional[_Union[ConceptModel, _Mapping]] = ...) -> None: ...

class ExtractLabelsRequest(_message.Message):
    __slots__ = ("concept_model", "activation_set", "concept_indices", "k_examples", "max_terms", "max_ngram", "min_count")
    CONCEPT_MODEL_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_SET_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_INDICES_FIELD_NUMBER: _ClassVar[int]
    K_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    MAX_TERMS_FIELD_NUMBER: _ClassVar[int]
    MAX_NGRAM_FIELD_NUMBER: _ClassVar[int]
    MIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    concept_model: str
    activation_set: str
    concept_indices: _containers.RepeatedScalarFieldContainer[int]
    k_examples: int
    max_terms: int
    max_ngram: int
    min_count: int
    def __init__(self, concept_model: _Optional[str] = ..., activation_set: _Optional[str] = ..., concept_indices: _Optional[_Iterable[int]] = ..., k_examples: _Optional[int] = ..., max_terms: _Optional[int] = ..., max_ngram: _Optional[int] = ..., min_count: _Optional[int] = ...) -> None: ...

class LabelTerm(_message.Message):
    __slots__ = ("text", "score", "concept_count", "corpus_count")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CORPUS_COUNT_FIELD_NUMBER: _ClassVar[int]
    text: str
    score: float
    concept_count: int
    corpus_count: int
    def __init__(self, text: _Optional[str] = ..., score: _Optional[float] = ..., concept_count: _Optional[int] = ..., corpus_count: _Optional[int] = ...) -> None: ...

class ExtractiveLabel(_message.Message):
    __slots__ = ("concept_index", "label", "has_label", "terms", "num_active_rows", "num_examples")
    CONCEPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    HAS_LABEL_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    NUM_ACTIVE_ROWS_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    concept_index: int
    label: str
    has_label: bool
    terms: _containers.RepeatedCompositeFieldContainer[LabelTerm]
    num_active_rows: int
    num_examples: int
    def __init__(self, concept_index: _Optional[int] = ..., label: _Optional[str] = ..., has_label: _Optional[bool] = ..., terms: _Optional[_Iterable[_Union[LabelTerm, _Mapping]]] = ..., num_active_rows: _Optional[int] = ..., num_examples: _Optional[int] = ...) -> None: ...

class ExtractLabelsResponse(_message.Message):
    __slots__ = ("progress", "label")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    label: ExtractiveLabel
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., label: _Optional[_Union[ExtractiveLabel, _Mapping]] = ...) -> None: ...

class FitProbeRequest(_message.Message):
    __slots__ = ("activation_set", "labels", "method", "normalization", "bias_calibration", "l2", "learning_rate", "max_iterations", "test_fraction", "seed", "display_name", "concept_names", "shrinkage", "svdd_c")
    ACTIVATION_SET_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    BIAS_CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    L2_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    TEST_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_NAMES_FIELD_NUMBER: _ClassVar[int]
    SHRINKAGE_FIELD_NUMBER: _ClassVar[int]
    SVDD_C_FIELD_NUMBER: _ClassVar[int]
    activation_set: str
    labels: _tensor_pb2.Tensor
    method: ProbeMethod
    normalization: ProbeNormalization
    bias_calibration: BiasCalibration
    l2: float
    learning_rate: float
    max_iterations: int
    test_fraction: float
    seed: int
    display_name: str
    concept_names: _containers.RepeatedScalarFieldContainer[str]
    shrinkage: float
    svdd_c: float
    def __init__(self, activation_set: _Optional[str] = ..., labels: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., method: _Optional[_Union[ProbeMethod, str]] = ..., normalization: _Optional[_Union[ProbeNormalization, str]] = ..., bias_calibration: _Optional[_Union[BiasCalibration, str]] = ..., l2: _Optional[float] = ..., learning_rate: _Optional[float] = ..., max_iterations: _Optional[int] = ..., test_fraction: _Optional[float] = ..., seed: _Optional[int] = ..., display_name: _Optional[str] = ..., concept_names: _Optional[_Iterable[str]] = ..., shrinkage: _Optional[float] = ..., svdd_c: _Optional[float] = ...) -> None: ...

class ProbeMetrics(_message.Message):
    __slots__ = ("concept_name", "concept_index", "test_accuracy", "test_balanced_accuracy", "test_auc", "test_positives", "test_negatives", "train_accuracy", "train_balanced_accuracy", "train_auc")
    CONCEPT_NAME_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TEST_BALANCED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TEST_AUC_FIELD_NUMBER: _ClassVar[int]
    TEST_POSITIVES_FIELD_NUMBER: _ClassVar[int]
    TEST_NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TRAIN_BALANCED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TRAIN_AUC_FIELD_NUMBER: _ClassVar[int]
    concept_name: str
    concept_index: int
    test_accuracy: float
    test_balanced_accuracy: float
    test_auc: float
    test_positives: int
    test_negatives: int
    train_accuracy: float
    train_balanced_accuracy: float
    train_auc: float
    def __init__(self, concept_name: _Optional[str] = ..., concept_index: _Optional[int] = ..., test_accuracy: _Optional[float] = ..., test_balanced_accuracy: _Optional[float] = ..., test_auc: _Optional[float] = ..., test_positives: _Optional[int] = ..., test_negatives: _Optional[int] = ..., train_accuracy: _Optional[float] = ..., train_balanced_accuracy: _Optional[float] = ..., train_auc: _Optional[float] = ...) -> None: ...

class ProbeResult(_message.Message):
    __slots__ = ("model", "metrics", "train_rows", "test_rows")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ROWS_FIELD_NUMBER: _ClassVar[int]
    TEST_ROWS_FIELD_NUMBER: _ClassVar[int]
    model: ConceptModel
    metrics: _containers.RepeatedCompositeFieldContainer[ProbeMetrics]
    train_rows: int
    test_rows: int
    def __init__(self, model: _Optional[_Union[ConceptModel, _Mapping]] = ..., metrics: _Optional[_Iterable[_Union[ProbeMetrics, _Mapping]]] = ..., train_rows: _Optional[int] = ..., test_rows: _Optional[int] = ...) -> None: ...

class FitProbeResponse(_message.Message):
    __slots__ = ("progress", "log", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    log: TrainingLogEntry
    result: ProbeResult
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., log: _Optional[_Union[TrainingLogEntry, _Mapping]] = ..., result: _Optional[_Union[ProbeResult, _Mapping]] = ...) -> None: ...

class GetConceptEncoderRequest(_message.Message):
    __slots__ = ("name", "concepts", "pooling")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    name: str
    concepts: _containers.RepeatedScalarFieldContainer[int]
    pooling: _tensor_pb2.Aggregation
    def __init__(self, name: _Optional[str] = ..., concepts: _Optional[_Iterable[int]] = ..., pooling: _Optional[_Union[_tensor_pb2.Aggregation, str]] = ...) -> None: ...

class GetConceptEncoderResponse(_message.Message):
    __slots__ = ("encoder", "model")
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    encoder: _model_pb2.ConceptEncoder
    model: ConceptModel
    def __init__(self, encoder: _Optional[_Union[_model_pb2.ConceptEncoder, _Mapping]] = ..., model: _Optional[_Union[ConceptModel, _Mapping]] = ...) -> None: ...

class TunedLens(_message.Message):
    __slots__ = ("name", "id", "display_name", "model", "layers", "hidden_size", "epochs", "learning_rate", "weight_decay", "epoch_losses", "train_kl_logit_lens", "train_kl_tuned_lens", "held_out_kl_logit_lens", "held_out_kl_tuned_lens", "train_texts", "held_out_texts", "train_tokens", "held_out_tokens", "create_time", "fit_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    EPOCH_LOSSES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_KL_LOGIT_LENS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_KL_TUNED_LENS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_KL_LOGIT_LENS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_KL_TUNED_LENS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_TEXTS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_TEXTS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    display_name: str
    model: str
    layers: _containers.RepeatedScalarFieldContainer[str]
    hidden_size: int
    epochs: int
    learning_rate: float
    weight_decay: float
    epoch_losses: _containers.RepeatedScalarFieldContainer[float]
    train_kl_logit_lens: _containers.RepeatedScalarFieldContainer[float]
    train_kl_tuned_lens: _containers.RepeatedScalarFieldContainer[float]
    held_out_kl_logit_lens: _containers.RepeatedScalarFieldContainer[float]
    held_out_kl_tuned_lens: _containers.RepeatedScalarFieldContainer[float]
    train_texts: int
    held_out_texts: int
    train_tokens: int
    held_out_tokens: int
    create_time: int
    fit_seconds: float
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., display_name: _Optional[str] = ..., model: _Optional[str] = ..., layers: _Optional[_Iterable[str]] = ..., hidden_size: _Optional[int] = ..., epochs: _Optional[int] = ..., learning_rate: _Optional[float] = ..., weight_decay: _Optional[float] = ..., epoch_losses: _Optional[_Iterable[float]] = ..., train_kl_logit_lens: _Optional[_Iterable[float]] = ..., train_kl_tuned_lens: _Optional[_Iterable[float]] = ..., held_out_kl_logit_lens: _Optional[_Iterable[float]] = ..., held_out_kl_tuned_lens: _Optional[_Iterable[float]] = ..., train_texts: _Optional[int] = ..., held_out_texts: _Optional[int] = ..., train_tokens: _Optional[int] = ..., held_out_tokens: _Optional[int] = ..., create_time: _Optional[int] = ..., fit_seconds: _Optional[float] = ...) -> None: ...

class FitTunedLensRequest(_message.Message):
    __slots__ = ("model", "texts", "held_out_texts", "epochs", "learning_rate", "weight_decay", "display_name")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_TEXTS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    held_out_texts: _containers.RepeatedScalarFieldContainer[str]
    epochs: int
    learning_rate: float
    weight_decay: float
    display_name: str
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., held_out_texts: _Optional[_Iterable[str]] = ..., epochs: _Optional[int] = ..., learning_rate: _Optional[float] = ..., weight_decay: _Optional[float] = ..., display_name: _Optional[str] = ...) -> None: ...

class FitTunedLensResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    result: TunedLens
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., result: _Optional[_Union[TunedLens, _Mapping]] = ...) -> None: ...

class GetTunedLensRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetTunedLensResponse(_message.Message):
    __slots__ = ("lens",)
    LENS_FIELD_NUMBER: _ClassVar[int]
    lens: TunedLens
    def __init__(self, lens: _Optional[_Union[TunedLens, _Mapping]] = ...) -> None: ...

class ListTunedLensesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTunedLensesResponse(_message.Message):
    __slots__ = ("lenses", "next_page_token")
    LENSES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    lenses: _containers.RepeatedCompositeFieldContainer[TunedLens]
    next_page_token: str
    def __init__(self, lenses: _Optional[_Iterable[_Union[TunedLens, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteTunedLensRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteTunedLensResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ApplyTunedLensRequest(_message.Message):
    __slots__ = ("tuned_lens", "input_ids", "top_k")
    TUNED_LENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    tuned_lens: str
    input_ids: _containers.RepeatedScalarFieldContainer[int]
    top_k: int
    def __init__(self, tuned_lens: _Optional[str] = ..., input_ids: _Optional[_Iterable[int]] = ..., top_k: _Optional[int] = ...) -> None: ...

class ApplyTunedLensResponse(_message.Message):
    __slots__ = ("lens",)
    LENS_FIELD_NUMBER: _ClassVar[int]
    lens: _model_pb2.LogitLensResponse
    def __init__(self, lens: _Optional[_Union[_model_pb2.LogitLensResponse, _Mapping]] = ...) -> None: ...
