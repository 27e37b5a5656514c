from google.rpc import status_pb2 as _status_pb2
from xaimesh_contracts.v1 import concept_pb2 as _concept_pb2
from xaimesh_contracts.v1 import model_pb2 as _model_pb2
from xaimesh_contracts.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabelScoringMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABEL_SCORING_METHOD_UNSPECIFIED: _ClassVar[LabelScoringMethod]
    LABEL_SCORING_METHOD_DETECTION: _ClassVar[LabelScoringMethod]
    LABEL_SCORING_METHOD_FUZZING: _ClassVar[LabelScoringMethod]

class SimulatabilityPrompt(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIMULATABILITY_PROMPT_UNSPECIFIED: _ClassVar[SimulatabilityPrompt]
    SIMULATABILITY_PROMPT_L1_BASELINE_WITHOUT_LP: _ClassVar[SimulatabilityPrompt]
    SIMULATABILITY_PROMPT_E1_GLOBAL_CONCEPTS_WITHOUT_LP: _ClassVar[SimulatabilityPrompt]
    SIMULATABILITY_PROMPT_L2_BASELINE_WITH_LP: _ClassVar[SimulatabilityPrompt]
    SIMULATABILITY_PROMPT_E2_GLOBAL_CONCEPTS_WITH_LP: _ClassVar[SimulatabilityPrompt]
    SIMULATABILITY_PROMPT_E3_GLOBAL_AND_LOCAL_CONCEPTS_WITH_LP: _ClassVar[SimulatabilityPrompt]
    SIMULATABILITY_PROMPT_U1_UPPER_BOUND_CONCEPTS_AT_EP: _ClassVar[SimulatabilityPrompt]
LABEL_SCORING_METHOD_UNSPECIFIED: LabelScoringMethod
LABEL_SCORING_METHOD_DETECTION: LabelScoringMethod
LABEL_SCORING_METHOD_FUZZING: LabelScoringMethod
SIMULATABILITY_PROMPT_UNSPECIFIED: SimulatabilityPrompt
SIMULATABILITY_PROMPT_L1_BASELINE_WITHOUT_LP: SimulatabilityPrompt
SIMULATABILITY_PROMPT_E1_GLOBAL_CONCEPTS_WITHOUT_LP: SimulatabilityPrompt
SIMULATABILITY_PROMPT_L2_BASELINE_WITH_LP: SimulatabilityPrompt
SIMULATABILITY_PROMPT_E2_GLOBAL_CONCEPTS_WITH_LP: SimulatabilityPrompt
SIMULATABILITY_PROMPT_E3_GLOBAL_AND_LOCAL_CONCEPTS_WITH_LP: SimulatabilityPrompt
SIMULATABILITY_PROMPT_U1_UPPER_BOUND_CONCEPTS_AT_EP: SimulatabilityPrompt

class OpenAIBackend(_message.Message):
    __slots__ = ("model", "base_url", "temperature", "max_tokens", "timeout_seconds", "max_retries")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    model: str
    base_url: str
    temperature: float
    max_tokens: int
    timeout_seconds: float
    max_retries: int
    def __init__(self, model: _Optional[str] = ..., base_url: _Optional[str] = ..., temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., timeout_seconds: _Optional[float] = ..., max_retries: _Optional[int] = ...) -> None: ...

class ModelServerBackend(_message.Message):
    __slots__ = ("model", "max_new_tokens", "temperature")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    model: str
    max_new_tokens: int
    temperature: float
    def __init__(self, model: _Optional[str] = ..., max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ...) -> None: ...

class LlmBackend(_message.Message):
    __slots__ = ("openai", "model_server")
    OPENAI_FIELD_NUMBER: _ClassVar[int]
    MODEL_SERVER_FIELD_NUMBER: _ClassVar[int]
    openai: OpenAIBackend
    model_server: ModelServerBackend
    def __init__(self, openai: _Optional[_Union[OpenAIBackend, _Mapping]] = ..., model_server: _Optional[_Union[ModelServerBackend, _Mapping]] = ...) -> None: ...

class LabelConceptsRequest(_message.Message):
    __slots__ = ("concept_model", "activation_set", "concept_indices", "llm", "sampling", "k_examples", "k_quantile", "k_context", "system_prompt", "max_concurrency", "seed")
    CONCEPT_MODEL_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_SET_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_INDICES_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    K_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    K_QUANTILE_FIELD_NUMBER: _ClassVar[int]
    K_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    concept_model: str
    activation_set: str
    concept_indices: _containers.RepeatedScalarFieldContainer[int]
    llm: LlmBackend
    sampling: _concept_pb2.ExampleSampling
    k_examples: int
    k_quantile: int
    k_context: int
    system_prompt: str
    max_concurrency: int
    seed: int
    def __init__(self, concept_model: _Optional[str] = ..., activation_set: _Optional[str] = ..., concept_indices: _Optional[_Iterable[int]] = ..., llm: _Optional[_Union[LlmBackend, _Mapping]] = ..., sampling: _Optional[_Union[_concept_pb2.ExampleSampling, str]] = ..., k_examples: _Optional[int] = ..., k_quantile: _Optional[int] = ..., k_context: _Optional[int] = ..., system_prompt: _Optional[str] = ..., max_concurrency: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class ConceptLabel(_message.Message):
    __slots__ = ("concept_index", "label", "has_label", "llm", "error", "examples", "prompt")
    CONCEPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    HAS_LABEL_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    concept_index: int
    label: str
    has_label: bool
    llm: str
    error: _status_pb2.Status
    examples: _containers.RepeatedCompositeFieldContainer[_concept_pb2.ConceptExample]
    prompt: str
    def __init__(self, concept_index: _Optional[int] = ..., label: _Optional[str] = ..., has_label: _Optional[bool] = ..., llm: _Optional[str] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., examples: _Optional[_Iterable[_Union[_concept_pb2.ConceptExample, _Mapping]]] = ..., prompt: _Optional[str] = ...) -> None: ...

class LabelConceptsResponse(_message.Message):
    __slots__ = ("progress", "label")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    label: ConceptLabel
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., label: _Optional[_Union[ConceptLabel, _Mapping]] = ...) -> None: ...

class CallerLlmStart(_message.Message):
    __slots__ = ("request", "description", "max_retries", "timeout_seconds")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    request: LabelConceptsRequest
    description: str
    max_retries: int
    timeout_seconds: float
    def __init__(self, request: _Optional[_Union[LabelConceptsRequest, _Mapping]] = ..., description: _Optional[str] = ..., max_retries: _Optional[int] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class GenerateCall(_message.Message):
    __slots__ = ("id", "messages")
    ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    id: int
    messages: _containers.RepeatedCompositeFieldContainer[_model_pb2.ChatMessage]
    def __init__(self, id: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[_model_pb2.ChatMessage, _Mapping]]] = ...) -> None: ...

class GenerateReply(_message.Message):
    __slots__ = ("id", "text", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    text: str
    error: _status_pb2.Status
    def __init__(self, id: _Optional[int] = ..., text: _Optional[str] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class LabelConceptsWithCallerLlmRequest(_message.Message):
    __slots__ = ("start", "reply")
    START_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    start: CallerLlmStart
    reply: GenerateReply
    def __init__(self, start: _Optional[_Union[CallerLlmStart, _Mapping]] = ..., reply: _Optional[_Union[GenerateReply, _Mapping]] = ...) -> None: ...

class LabelConceptsWithCallerLlmResponse(_message.Message):
    __slots__ = ("progress", "label", "generate")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    GENERATE_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    label: ConceptLabel
    generate: GenerateCall
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., label: _Optional[_Union[ConceptLabel, _Mapping]] = ..., generate: _Optional[_Union[GenerateCall, _Mapping]] = ...) -> None: ...

class LabelToScore(_message.Message):
    __slots__ = ("concept_index", "label")
    CONCEPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    concept_index: int
    label: str
    def __init__(self, concept_index: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class ScoreLabelsRequest(_message.Message):
    __slots__ = ("concept_model", "activation_set", "labels", "scorer", "methods", "n_examples", "k_context", "seed", "max_concurrency", "labeller")
    CONCEPT_MODEL_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_SET_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    N_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    K_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LABELLER_FIELD_NUMBER: _ClassVar[int]
    concept_model: str
    activation_set: str
    labels: _containers.RepeatedCompositeFieldContainer[LabelToScore]
    scorer: LlmBackend
    methods: _containers.RepeatedScalarFieldContainer[LabelScoringMethod]
    n_examples: int
    k_context: int
    seed: int
    max_concurrency: int
    labeller: str
    def __init__(self, concept_model: _Optional[str] = ..., activation_set: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[LabelToScore, _Mapping]]] = ..., scorer: _Optional[_Union[LlmBackend, _Mapping]] = ..., methods: _Optional[_Iterable[_Union[LabelScoringMethod, str]]] = ..., n_examples: _Optional[int] = ..., k_context: _Optional[int] = ..., seed: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., labeller: _Optional[str] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("concept_index", "label", "method", "balanced_accuracy", "n_examples", "error")
    CONCEPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    BALANCED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    N_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    concept_index: int
    label: str
    method: LabelScoringMethod
    balanced_accuracy: float
    n_examples: int
    error: _status_pb2.Status
    def __init__(self, concept_index: _Optional[int] = ..., label: _Optional[str] = ..., method: _Optional[_Union[LabelScoringMethod, str]] = ..., balanced_accuracy: _Optional[float] = ..., n_examples: _Optional[int] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class LabelScoresSummary(_message.Message):
    __slots__ = ("mean_detection", "mean_fuzzing", "scorer", "scorer_is_labeller")
    MEAN_DETECTION_FIELD_NUMBER: _ClassVar[int]
    MEAN_FUZZING_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    SCORER_IS_LABELLER_FIELD_NUMBER: _ClassVar[int]
    mean_detection: float
    mean_fuzzing: float
    scorer: str
    scorer_is_labeller: bool
    def __init__(self, mean_detection: _Optional[float] = ..., mean_fuzzing: _Optional[float] = ..., scorer: _Optional[str] = ..., scorer_is_labeller: _Optional[bool] = ...) -> None: ...

class ScoreLabelsResponse(_message.Message):
    __slots__ = ("progress", "score", "summary")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    score: LabelScore
    summary: LabelScoresSummary
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., score: _Optional[_Union[LabelScore, _Mapping]] = ..., summary: _Optional[_Union[LabelScoresSummary, _Mapping]] = ...) -> None: ...

class ConceptValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class ScoreSimulatabilityRequest(_message.Message):
    __slots__ = ("samples", "predictions", "classes", "concept_labels", "class_importances", "sample_contributions", "prompt_type", "anonymize_classes", "importance_threshold", "llm", "seed", "prompt_only", "reply")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_LABELS_FIELD_NUMBER: _ClassVar[int]
    CLASS_IMPORTANCES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ANONYMIZE_CLASSES_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ONLY_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedScalarFieldContainer[str]
    predictions: _containers.RepeatedScalarFieldContainer[int]
    classes: _containers.RepeatedScalarFieldContainer[str]
    concept_labels: _containers.RepeatedScalarFieldContainer[str]
    class_importances: _containers.RepeatedCompositeFieldContainer[ConceptValues]
    sample_contributions: _containers.RepeatedCompositeFieldContainer[ConceptValues]
    prompt_type: SimulatabilityPrompt
    anonymize_classes: bool
    importance_threshold: float
    llm: LlmBackend
    seed: int
    prompt_only: bool
    reply: str
    def __init__(self, samples: _Optional[_Iterable[str]] = ..., predictions: _Optional[_Iterable[int]] = ..., classes: _Optional[_Iterable[str]] = ..., concept_labels: _Optional[_Iterable[str]] = ..., class_importances: _Optional[_Iterable[_Union[ConceptValues, _Mapping]]] = ..., sample_contributions: _Optional[_Iterable[_Union[ConceptValues, _Mapping]]] = ..., prompt_type: _Optional[_Union[SimulatabilityPrompt, str]] = ..., anonymize_classes: _Optional[bool] = ..., importance_threshold: _Optional[float] = ..., llm: _Optional[_Union[LlmBackend, _Mapping]] = ..., seed: _Optional[int] = ..., prompt_only: _Optional[bool] = ..., reply: _Optional[str] = ...) -> None: ...

class ScoreSimulatabilityResponse(_message.Message):
    __slots__ = ("score", "n_evaluated", "n_answered", "model_predictions", "simulator_predictions", "prompt", "reply", "llm")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    N_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    N_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    MODEL_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    SIMULATOR_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    score: float
    n_evaluated: int
    n_answered: int
    model_predictions: _containers.RepeatedScalarFieldContainer[str]
    simulator_predictions: _containers.RepeatedScalarFieldContainer[str]
    prompt: _containers.RepeatedCompositeFieldContainer[_model_pb2.ChatMessage]
    reply: str
    llm: str
    def __init__(self, score: _Optional[float] = ..., n_evaluated: _Optional[int] = ..., n_answered: _Optional[int] = ..., model_predictions: _Optional[_Iterable[str]] = ..., simulator_predictions: _Optional[_Iterable[str]] = ..., prompt: _Optional[_Iterable[_Union[_model_pb2.ChatMessage, _Mapping]]] = ..., reply: _Optional[str] = ..., llm: _Optional[str] = ...) -> None: ...
