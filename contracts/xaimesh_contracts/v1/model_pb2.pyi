from google.rpc import status_pb2 as _status_pb2
from xaimesh_contracts.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SpecialTokensPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPECIAL_TOKENS_POLICY_UNSPECIFIED: _ClassVar[SpecialTokensPolicy]
    SPECIAL_TOKENS_POLICY_OMIT: _ClassVar[SpecialTokensPolicy]
    SPECIAL_TOKENS_POLICY_ADD: _ClassVar[SpecialTokensPolicy]

class ModelTask(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_TASK_UNSPECIFIED: _ClassVar[ModelTask]
    MODEL_TASK_CAUSAL_LM: _ClassVar[ModelTask]
    MODEL_TASK_SEQUENCE_CLASSIFICATION: _ClassVar[ModelTask]
    MODEL_TASK_SEQ2SEQ_LM: _ClassVar[ModelTask]

class ReplacementPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLACEMENT_POLICY_UNSPECIFIED: _ClassVar[ReplacementPolicy]
    REPLACEMENT_POLICY_PAD_TOKEN: _ClassVar[ReplacementPolicy]
    REPLACEMENT_POLICY_UNK_TOKEN: _ClassVar[ReplacementPolicy]
    REPLACEMENT_POLICY_MASK_TOKEN: _ClassVar[ReplacementPolicy]
    REPLACEMENT_POLICY_TOKEN_ID: _ClassVar[ReplacementPolicy]
    REPLACEMENT_POLICY_ZERO_EMBEDDING: _ClassVar[ReplacementPolicy]
    REPLACEMENT_POLICY_REMOVE: _ClassVar[ReplacementPolicy]

class ConceptActivation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONCEPT_ACTIVATION_UNSPECIFIED: _ClassVar[ConceptActivation]
    CONCEPT_ACTIVATION_IDENTITY: _ClassVar[ConceptActivation]
    CONCEPT_ACTIVATION_RELU: _ClassVar[ConceptActivation]
    CONCEPT_ACTIVATION_TOP_K: _ClassVar[ConceptActivation]
    CONCEPT_ACTIVATION_JUMP_RELU: _ClassVar[ConceptActivation]

class BaselineKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BASELINE_KIND_UNSPECIFIED: _ClassVar[BaselineKind]
    BASELINE_KIND_ZERO: _ClassVar[BaselineKind]
    BASELINE_KIND_PAD_TOKEN: _ClassVar[BaselineKind]
    BASELINE_KIND_UNK_TOKEN: _ClassVar[BaselineKind]
    BASELINE_KIND_MASK_TOKEN: _ClassVar[BaselineKind]
    BASELINE_KIND_TOKEN_ID: _ClassVar[BaselineKind]

class GradientOutput(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRADIENT_OUTPUT_UNSPECIFIED: _ClassVar[GradientOutput]
    GRADIENT_OUTPUT_FULL: _ClassVar[GradientOutput]
    GRADIENT_OUTPUT_DOT_DELTA: _ClassVar[GradientOutput]
    GRADIENT_OUTPUT_ABS_SUM: _ClassVar[GradientOutput]
    GRADIENT_OUTPUT_SQUARE_SUM: _ClassVar[GradientOutput]
    GRADIENT_OUTPUT_L2_NORM: _ClassVar[GradientOutput]
    GRADIENT_OUTPUT_DOT_INPUT: _ClassVar[GradientOutput]
SPECIAL_TOKENS_POLICY_UNSPECIFIED: SpecialTokensPolicy
SPECIAL_TOKENS_POLICY_OMIT: SpecialTokensPolicy
SPECIAL_TOKENS_POLICY_ADD: SpecialTokensPolicy
MODEL_TASK_UNSPECIFIED: ModelTask
MODEL_TASK_CAUSAL_LM: ModelTask
MODEL_TASK_SEQUENCE_CLASSIFICATION: ModelTask
MODEL_TASK_SEQ2SEQ_LM: ModelTask
REPLACEMENT_POLICY_UNSPECIFIED: ReplacementPolicy
REPLACEMENT_POLICY_PAD_TOKEN: ReplacementPolicy
REPLACEMENT_POLICY_UNK_TOKEN: ReplacementPolicy
REPLACEMENT_POLICY_MASK_TOKEN: ReplacementPolicy
REPLACEMENT_POLICY_TOKEN_ID: ReplacementPolicy
REPLACEMENT_POLICY_ZERO_EMBEDDING: ReplacementPolicy
REPLACEMENT_POLICY_REMOVE: ReplacementPolicy
CONCEPT_ACTIVATION_UNSPECIFIED: ConceptActivation
CONCEPT_ACTIVATION_IDENTITY: ConceptActivation
CONCEPT_ACTIVATION_RELU: ConceptActivation
CONCEPT_ACTIVATION_TOP_K: ConceptActivation
CONCEPT_ACTIVATION_JUMP_RELU: ConceptActivation
BASELINE_KIND_UNSPECIFIED: BaselineKind
BASELINE_KIND_ZERO: BaselineKind
BASELINE_KIND_PAD_TOKEN: BaselineKind
BASELINE_KIND_UNK_TOKEN: BaselineKind
BASELINE_KIND_MASK_TOKEN: BaselineKind
BASELINE_KIND_TOKEN_ID: BaselineKind
GRADIENT_OUTPUT_UNSPECIFIED: GradientOutput
GRADIENT_OUTPUT_FULL: GradientOutput
GRADIENT_OUTPUT_DOT_DELTA: GradientOutput
GRADIENT_OUTPUT_ABS_SUM: GradientOutput
GRADIENT_OUTPUT_SQUARE_SUM: GradientOutput
GRADIENT_OUTPUT_L2_NORM: GradientOutput
GRADIENT_OUTPUT_DOT_INPUT: GradientOutput

class SpecialTokens(_message.Message):
    __slots__ = ("bos_token", "bos_token_id", "eos_token", "eos_token_id", "pad_token", "pad_token_id", "unk_token", "unk_token_id", "mask_token", "mask_token_id", "all_special_ids")
    BOS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BOS_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    EOS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EOS_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    PAD_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAD_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    UNK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UNK_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    MASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MASK_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    ALL_SPECIAL_IDS_FIELD_NUMBER: _ClassVar[int]
    bos_token: str
    bos_token_id: int
    eos_token: str
    eos_token_id: int
    pad_token: str
    pad_token_id: int
    unk_token: str
    unk_token_id: int
    mask_token: str
    mask_token_id: int
    all_special_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, bos_token: _Optional[str] = ..., bos_token_id: _Optional[int] = ..., eos_token: _Optional[str] = ..., eos_token_id: _Optional[int] = ..., pad_token: _Optional[str] = ..., pad_token_id: _Optional[int] = ..., unk_token: _Optional[str] = ..., unk_token_id: _Optional[int] = ..., mask_token: _Optional[str] = ..., mask_token_id: _Optional[int] = ..., all_special_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "model_id", "source", "task", "architecture", "num_layers", "hidden_size", "vocab_size", "max_sequence_length", "num_parameters", "split_points", "special_tokens", "has_chat_template", "device", "dtype", "labels", "is_default", "num_encoder_layers", "decoder_start_token_id", "device_map")
    class DeviceMapEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    NUM_LAYERS_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQUENCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    NUM_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_POINTS_FIELD_NUMBER: _ClassVar[int]
    SPECIAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    HAS_CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    NUM_ENCODER_LAYERS_FIELD_NUMBER: _ClassVar[int]
    DECODER_START_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_MAP_FIELD_NUMBER: _ClassVar[int]
    name: str
    model_id: str
    source: str
    task: ModelTask
    architecture: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    max_sequence_length: int
    num_parameters: int
    split_points: _containers.RepeatedScalarFieldContainer[str]
    special_tokens: SpecialTokens
    has_chat_template: bool
    device: str
    dtype: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    is_default: bool
    num_encoder_layers: int
    decoder_start_token_id: int
    device_map: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., model_id: _Optional[str] = ..., source: _Optional[str] = ..., task: _Optional[_Union[ModelTask, str]] = ..., architecture: _Optional[str] = ..., num_layers: _Optional[int] = ..., hidden_size: _Optional[int] = ..., vocab_size: _Optional[int] = ..., max_sequence_length: _Optional[int] = ..., num_parameters: _Optional[int] = ..., split_points: _Optional[_Iterable[str]] = ..., special_tokens: _Optional[_Union[SpecialTokens, _Mapping]] = ..., has_chat_template: _Optional[bool] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., is_default: _Optional[bool] = ..., num_encoder_layers: _Optional[int] = ..., decoder_start_token_id: _Optional[int] = ..., device_map: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class TokenizeRequest(_message.Message):
    __slots__ = ("model", "texts", "add_special_tokens", "sequences", "chats")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    ADD_SPECIAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    CHATS_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    add_special_tokens: bool
    sequences: _containers.RepeatedCompositeFieldContainer[TokenIds]
    chats: _containers.RepeatedCompositeFieldContainer[ChatConversation]
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., add_special_tokens: _Optional[bool] = ..., sequences: _Optional[_Iterable[_Union[TokenIds, _Mapping]]] = ..., chats: _Optional[_Iterable[_Union[ChatConversation, _Mapping]]] = ...) -> None: ...

class TokenizedText(_message.Message):
    __slots__ = ("token_ids", "tokens", "token_start_chars", "token_end_chars", "special_mask", "word_index", "sentence_index", "words", "sentences", "text", "message_index", "part_sentence_index", "part_sentences")
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_START_CHARS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_END_CHARS_FIELD_NUMBER: _ClassVar[int]
    SPECIAL_MASK_FIELD_NUMBER: _ClassVar[int]
    WORD_INDEX_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    PART_SENTENCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    PART_SENTENCES_FIELD_NUMBER: _ClassVar[int]
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    tokens: _containers.RepeatedScalarFieldContainer[str]
    token_start_chars: _containers.RepeatedScalarFieldContainer[int]
    token_end_chars: _containers.RepeatedScalarFieldContainer[int]
    special_mask: _containers.RepeatedScalarFieldContainer[bool]
    word_index: _containers.RepeatedScalarFieldContainer[int]
    sentence_index: _containers.RepeatedScalarFieldContainer[int]
    words: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Segment]
    sentences: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Segment]
    text: str
    message_index: _containers.RepeatedScalarFieldContainer[int]
    part_sentence_index: _containers.RepeatedScalarFieldContainer[int]
    part_sentences: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Segment]
    def __init__(self, token_ids: _Optional[_Iterable[int]] = ..., tokens: _Optional[_Iterable[str]] = ..., token_start_chars: _Optional[_Iterable[int]] = ..., token_end_chars: _Optional[_Iterable[int]] = ..., special_mask: _Optional[_Iterable[bool]] = ..., word_index: _Optional[_Iterable[int]] = ..., sentence_index: _Optional[_Iterable[int]] = ..., words: _Optional[_Iterable[_Union[_tensor_pb2.Segment, _Mapping]]] = ..., sentences: _Optional[_Iterable[_Union[_tensor_pb2.Segment, _Mapping]]] = ..., text: _Optional[str] = ..., message_index: _Optional[_Iterable[int]] = ..., part_sentence_index: _Optional[_Iterable[int]] = ..., part_sentences: _Optional[_Iterable[_Union[_tensor_pb2.Segment, _Mapping]]] = ...) -> None: ...

class TokenizeResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TokenizedText]
    def __init__(self, results: _Optional[_Iterable[_Union[TokenizedText, _Mapping]]] = ...) -> None: ...

class TokenIds(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class DetokenizeRequest(_message.Message):
    __slots__ = ("model", "sequences", "skip_special_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    SKIP_SPECIAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    sequences: _containers.RepeatedCompositeFieldContainer[TokenIds]
    skip_special_tokens: bool
    def __init__(self, model: _Optional[str] = ..., sequences: _Optional[_Iterable[_Union[TokenIds, _Mapping]]] = ..., skip_special_tokens: _Optional[bool] = ...) -> None: ...

class DetokenizeResponse(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class Replacement(_message.Message):
    __slots__ = ("policy", "token_id")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    policy: ReplacementPolicy
    token_id: int
    def __init__(self, policy: _Optional[_Union[ReplacementPolicy, str]] = ..., token_id: _Optional[int] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("model", "input_ids", "keep_mask", "replacement", "target_positions", "target_classes", "inference_mode", "source_length", "concept_encoder")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    KEEP_MASK_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    TARGET_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    TARGET_CLASSES_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_ENCODER_FIELD_NUMBER: _ClassVar[int]
    model: str
    input_ids: _containers.RepeatedScalarFieldContainer[int]
    keep_mask: _tensor_pb2.Tensor
    replacement: Replacement
    target_positions: _containers.RepeatedScalarFieldContainer[int]
    target_classes: _containers.RepeatedScalarFieldContainer[int]
    inference_mode: _tensor_pb2.InferenceMode
    source_length: int
    concept_encoder: ConceptEncoder
    def __init__(self, model: _Optional[str] = ..., input_ids: _Optional[_Iterable[int]] = ..., keep_mask: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., replacement: _Optional[_Union[Replacement, _Mapping]] = ..., target_positions: _Optional[_Iterable[int]] = ..., target_classes: _Optional[_Iterable[int]] = ..., inference_mode: _Optional[_Union[_tensor_pb2.InferenceMode, str]] = ..., source_length: _Optional[int] = ..., concept_encoder: _Optional[_Union[ConceptEncoder, _Mapping]] = ...) -> None: ...

class ConceptEncoder(_message.Message):
    __slots__ = ("split_point", "weight", "bias", "activation", "top_k", "thresholds", "pooling", "concepts")
    SPLIT_POINT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    split_point: str
    weight: _tensor_pb2.Tensor
    bias: _tensor_pb2.Tensor
    activation: ConceptActivation
    top_k: int
    thresholds: _tensor_pb2.Tensor
    pooling: _tensor_pb2.Aggregation
    concepts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, split_point: _Optional[str] = ..., weight: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., bias: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., activation: _Optional[_Union[ConceptActivation, str]] = ..., top_k: _Optional[int] = ..., thresholds: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., pooling: _Optional[_Union[_tensor_pb2.Aggregation, str]] = ..., concepts: _Optional[_Iterable[int]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("scores", "model")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    scores: _tensor_pb2.Tensor
    model: str
    def __init__(self, scores: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class Baseline(_message.Message):
    __slots__ = ("kind", "token_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    kind: BaselineKind
    token_id: int
    def __init__(self, kind: _Optional[_Union[BaselineKind, str]] = ..., token_id: _Optional[int] = ...) -> None: ...

class EmbeddingSamples(_message.Message):
    __slots__ = ("baseline", "alphas", "noise_stddev", "baseline_noise_stddev", "seed", "position_mask")
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    ALPHAS_FIELD_NUMBER: _ClassVar[int]
    NOISE_STDDEV_FIELD_NUMBER: _ClassVar[int]
    BASELINE_NOISE_STDDEV_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    POSITION_MASK_FIELD_NUMBER: _ClassVar[int]
    baseline: Baseline
    alphas: _containers.RepeatedScalarFieldContainer[float]
    noise_stddev: float
    baseline_noise_stddev: float
    seed: int
    position_mask: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, baseline: _Optional[_Union[Baseline, _Mapping]] = ..., alphas: _Optional[_Iterable[float]] = ..., noise_stddev: _Optional[float] = ..., baseline_noise_stddev: _Optional[float] = ..., seed: _Optional[int] = ..., position_mask: _Optional[_Iterable[bool]] = ...) -> None: ...

class ComputeGradientsRequest(_message.Message):
    __slots__ = ("model", "input_ids", "target_positions", "target_classes", "inference_mode", "samples", "embeddings", "outputs", "source_length", "concept_encoder")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    TARGET_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    TARGET_CLASSES_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_ENCODER_FIELD_NUMBER: _ClassVar[int]
    model: str
    input_ids: _containers.RepeatedScalarFieldContainer[int]
    target_positions: _containers.RepeatedScalarFieldContainer[int]
    target_classes: _containers.RepeatedScalarFieldContainer[int]
    inference_mode: _tensor_pb2.InferenceMode
    samples: EmbeddingSamples
    embeddings: _tensor_pb2.Tensor
    outputs: _containers.RepeatedScalarFieldContainer[GradientOutput]
    source_length: int
    concept_encoder: ConceptEncoder
    def __init__(self, model: _Optional[str] = ..., input_ids: _Optional[_Iterable[int]] = ..., target_positions: _Optional[_Iterable[int]] = ..., target_classes: _Optional[_Iterable[int]] = ..., inference_mode: _Optional[_Union[_tensor_pb2.InferenceMode, str]] = ..., samples: _Optional[_Union[EmbeddingSamples, _Mapping]] = ..., embeddings: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., outputs: _Optional[_Iterable[_Union[GradientOutput, str]]] = ..., source_length: _Optional[int] = ..., concept_encoder: _Optional[_Union[ConceptEncoder, _Mapping]] = ...) -> None: ...

class ComputeGradientsResponse(_message.Message):
    __slots__ = ("scores", "full", "dot_delta", "abs_sum", "square_sum", "l2_norm", "dot_input", "model")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    DOT_DELTA_FIELD_NUMBER: _ClassVar[int]
    ABS_SUM_FIELD_NUMBER: _ClassVar[int]
    SQUARE_SUM_FIELD_NUMBER: _ClassVar[int]
    L2_NORM_FIELD_NUMBER: _ClassVar[int]
    DOT_INPUT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    scores: _tensor_pb2.Tensor
    full: _tensor_pb2.Tensor
    dot_delta: _tensor_pb2.Tensor
    abs_sum: _tensor_pb2.Tensor
    square_sum: _tensor_pb2.Tensor
    l2_norm: _tensor_pb2.Tensor
    dot_input: _tensor_pb2.Tensor
    model: str
    def __init__(self, scores: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., full: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., dot_delta: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., abs_sum: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., square_sum: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., l2_norm: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., dot_input: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "text", "token_ids", "chat", "max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "seed")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DO_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    token_ids: TokenIds
    chat: ChatConversation
    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    top_k: int
    seed: int
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Union[TokenIds, _Mapping]] = ..., chat: _Optional[_Union[ChatConversation, _Mapping]] = ..., max_new_tokens: _Optional[int] = ..., do_sample: _Optional[bool] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class ChatConversation(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("text", "token_ids", "prompt_token_ids", "finish_reason", "model")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    finish_reason: str
    model: str
    def __init__(self, text: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., finish_reason: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class StreamActivationsRequest(_message.Message):
    __slots__ = ("model", "texts", "split_points", "granularity", "aggregation", "add_special_tokens", "max_length", "chunk_bytes", "dtype", "special_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_POINTS_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    ADD_SPECIAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SPECIAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    split_points: _containers.RepeatedScalarFieldContainer[str]
    granularity: _tensor_pb2.Granularity
    aggregation: _tensor_pb2.Aggregation
    add_special_tokens: bool
    max_length: int
    chunk_bytes: int
    dtype: _tensor_pb2.DataType
    special_tokens: SpecialTokensPolicy
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., split_points: _Optional[_Iterable[str]] = ..., granularity: _Optional[_Union[_tensor_pb2.Granularity, str]] = ..., aggregation: _Optional[_Union[_tensor_pb2.Aggregation, str]] = ..., add_special_tokens: _Optional[bool] = ..., max_length: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., dtype: _Optional[_Union[_tensor_pb2.DataType, str]] = ..., special_tokens: _Optional[_Union[SpecialTokensPolicy, str]] = ...) -> None: ...

class RowProvenance(_message.Message):
    __slots__ = ("sample_index", "token_start", "token_end", "text")
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOKEN_START_FIELD_NUMBER: _ClassVar[int]
    TOKEN_END_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    sample_index: int
    token_start: int
    token_end: int
    text: str
    def __init__(self, sample_index: _Optional[int] = ..., token_start: _Optional[int] = ..., token_end: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class ActivationsHeader(_message.Message):
    __slots__ = ("split_points", "hidden_size", "num_samples", "dtype", "granularity", "aggregation", "model")
    SPLIT_POINTS_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    split_points: _containers.RepeatedScalarFieldContainer[str]
    hidden_size: int
    num_samples: int
    dtype: _tensor_pb2.DataType
    granularity: _tensor_pb2.Granularity
    aggregation: _tensor_pb2.Aggregation
    model: str
    def __init__(self, split_points: _Optional[_Iterable[str]] = ..., hidden_size: _Optional[int] = ..., num_samples: _Optional[int] = ..., dtype: _Optional[_Union[_tensor_pb2.DataType, str]] = ..., granularity: _Optional[_Union[_tensor_pb2.Granularity, str]] = ..., aggregation: _Optional[_Union[_tensor_pb2.Aggregation, str]] = ..., model: _Optional[str] = ...) -> None: ...

class ActivationsChunk(_message.Message):
    __slots__ = ("split_point", "rows", "provenance")
    SPLIT_POINT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    split_point: str
    rows: _tensor_pb2.Tensor
    provenance: _containers.RepeatedCompositeFieldContainer[RowProvenance]
    def __init__(self, split_point: _Optional[str] = ..., rows: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., provenance: _Optional[_Iterable[_Union[RowProvenance, _Mapping]]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("index", "status")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    index: int
    status: _status_pb2.Status
    def __init__(self, index: _Optional[int] = ..., status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class ActivationsSummary(_message.Message):
    __slots__ = ("num_rows", "num_samples", "truncated_samples")
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    num_rows: int
    num_samples: int
    truncated_samples: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, num_rows: _Optional[int] = ..., num_samples: _Optional[int] = ..., truncated_samples: _Optional[_Iterable[int]] = ...) -> None: ...

class StreamActivationsResponse(_message.Message):
    __slots__ = ("header", "progress", "chunk", "item_error", "summary")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    ITEM_ERROR_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    header: ActivationsHeader
    progress: _tensor_pb2.Progress
    chunk: ActivationsChunk
    item_error: ItemError
    summary: ActivationsSummary
    def __init__(self, header: _Optional[_Union[ActivationsHeader, _Mapping]] = ..., progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., chunk: _Optional[_Union[ActivationsChunk, _Mapping]] = ..., item_error: _Optional[_Union[ItemError, _Mapping]] = ..., summary: _Optional[_Union[ActivationsSummary, _Mapping]] = ...) -> None: ...

class LogitLensRequest(_message.Message):
    __slots__ = ("model", "input_ids", "top_k", "translator_weights", "translator_biases")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TRANSLATOR_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    TRANSLATOR_BIASES_FIELD_NUMBER: _ClassVar[int]
    model: str
    input_ids: _containers.RepeatedScalarFieldContainer[int]
    top_k: int
    translator_weights: _tensor_pb2.Tensor
    translator_biases: _tensor_pb2.Tensor
    def __init__(self, model: _Optional[str] = ..., input_ids: _Optional[_Iterable[int]] = ..., top_k: _Optional[int] = ..., translator_weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., translator_biases: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class LogitLensResponse(_message.Message):
    __slots__ = ("layers", "top_token_ids", "top_probabilities", "top_tokens", "next_token_probabilities", "input_tokens", "model")
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    TOP_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    TOP_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    TOP_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEXT_TOKEN_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedScalarFieldContainer[str]
    top_token_ids: _tensor_pb2.Tensor
    top_probabilities: _tensor_pb2.Tensor
    top_tokens: _containers.RepeatedScalarFieldContainer[str]
    next_token_probabilities: _tensor_pb2.Tensor
    input_tokens: _containers.RepeatedScalarFieldContainer[str]
    model: str
    def __init__(self, layers: _Optional[_Iterable[str]] = ..., top_token_ids: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., top_probabilities: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., top_tokens: _Optional[_Iterable[str]] = ..., next_token_probabilities: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., input_tokens: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ...) -> None: ...

class ConceptGradientsRequest(_message.Message):
    __slots__ = ("model", "input_ids", "split_point", "codes", "decoder", "offset", "target_positions", "target_classes", "inference_mode")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_POINT_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    DECODER_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TARGET_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    TARGET_CLASSES_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MODE_FIELD_NUMBER: _ClassVar[int]
    model: str
    input_ids: _containers.RepeatedScalarFieldContainer[int]
    split_point: str
    codes: _tensor_pb2.Tensor
    decoder: _tensor_pb2.Tensor
    offset: _tensor_pb2.Tensor
    target_positions: _containers.RepeatedScalarFieldContainer[int]
    target_classes: _containers.RepeatedScalarFieldContainer[int]
    inference_mode: _tensor_pb2.InferenceMode
    def __init__(self, model: _Optional[str] = ..., input_ids: _Optional[_Iterable[int]] = ..., split_point: _Optional[str] = ..., codes: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., decoder: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., offset: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., target_positions: _Optional[_Iterable[int]] = ..., target_classes: _Optional[_Iterable[int]] = ..., inference_mode: _Optional[_Union[_tensor_pb2.InferenceMode, str]] = ...) -> None: ...

class ConceptGradientsResponse(_message.Message):
    __slots__ = ("gradients", "scores", "model")
    GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    gradients: _tensor_pb2.Tensor
    scores: _tensor_pb2.Tensor
    model: str
    def __init__(self, gradients: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., scores: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class UnembedDirectionsRequest(_message.Message):
    __slots__ = ("model", "directions", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    directions: _tensor_pb2.Tensor
    top_k: int
    def __init__(self, model: _Optional[str] = ..., directions: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., top_k: _Optional[int] = ...) -> None: ...

class UnembedDirectionsResponse(_message.Message):
    __slots__ = ("promoted_ids", "promoted_values", "suppressed_ids", "suppressed_values", "promoted_tokens", "suppressed_tokens", "model")
    PROMOTED_IDS_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_VALUES_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_IDS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_VALUES_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    promoted_ids: _tensor_pb2.Tensor
    promoted_values: _tensor_pb2.Tensor
    suppressed_ids: _tensor_pb2.Tensor
    suppressed_values: _tensor_pb2.Tensor
    promoted_tokens: _containers.RepeatedScalarFieldContainer[str]
    suppressed_tokens: _containers.RepeatedScalarFieldContainer[str]
    model: str
    def __init__(self, promoted_ids: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., promoted_values: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., suppressed_ids: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., suppressed_values: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., promoted_tokens: _Optional[_Iterable[str]] = ..., suppressed_tokens: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ...) -> None: ...

class VocabularyConceptsRequest(_message.Message):
    __slots__ = ("model", "concept_encoder", "k", "add_special_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONCEPT_ENCODER_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    ADD_SPECIAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    concept_encoder: ConceptEncoder
    k: int
    add_special_tokens: bool
    def __init__(self, model: _Optional[str] = ..., concept_encoder: _Optional[_Union[ConceptEncoder, _Mapping]] = ..., k: _Optional[int] = ..., add_special_tokens: _Optional[bool] = ...) -> None: ...

class ConceptTopTokens(_message.Message):
    __slots__ = ("concept", "token_ids", "tokens", "activations")
    CONCEPT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    concept: int
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    tokens: _containers.RepeatedScalarFieldContainer[str]
    activations: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, concept: _Optional[int] = ..., token_ids: _Optional[_Iterable[int]] = ..., tokens: _Optional[_Iterable[str]] = ..., activations: _Optional[_Iterable[float]] = ...) -> None: ...

class VocabularyConceptsResponse(_message.Message):
    __slots__ = ("model", "concepts", "num_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONCEPTS_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    concepts: _containers.RepeatedCompositeFieldContainer[ConceptTopTokens]
    num_tokens: int
    def __init__(self, model: _Optional[str] = ..., concepts: _Optional[_Iterable[_Union[ConceptTopTokens, _Mapping]]] = ..., num_tokens: _Optional[int] = ...) -> None: ...

class FitLensTranslatorsRequest(_message.Message):
    __slots__ = ("model", "texts", "held_out_texts", "epochs", "learning_rate", "weight_decay")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_TEXTS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    held_out_texts: _containers.RepeatedScalarFieldContainer[str]
    epochs: int
    learning_rate: float
    weight_decay: float
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., held_out_texts: _Optional[_Iterable[str]] = ..., epochs: _Optional[int] = ..., learning_rate: _Optional[float] = ..., weight_decay: _Optional[float] = ...) -> None: ...

class LensTranslators(_message.Message):
    __slots__ = ("layers", "weights", "biases", "epoch_losses", "train_kl_logit_lens", "train_kl_tuned_lens", "held_out_kl_logit_lens", "held_out_kl_tuned_lens", "train_tokens", "held_out_tokens", "model", "epochs", "learning_rate", "weight_decay")
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    BIASES_FIELD_NUMBER: _ClassVar[int]
    EPOCH_LOSSES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_KL_LOGIT_LENS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_KL_TUNED_LENS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_KL_LOGIT_LENS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_KL_TUNED_LENS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedScalarFieldContainer[str]
    weights: _tensor_pb2.Tensor
    biases: _tensor_pb2.Tensor
    epoch_losses: _containers.RepeatedScalarFieldContainer[float]
    train_kl_logit_lens: _containers.RepeatedScalarFieldContainer[float]
    train_kl_tuned_lens: _containers.RepeatedScalarFieldContainer[float]
    held_out_kl_logit_lens: _containers.RepeatedScalarFieldContainer[float]
    held_out_kl_tuned_lens: _containers.RepeatedScalarFieldContainer[float]
    train_tokens: int
    held_out_tokens: int
    model: str
    epochs: int
    learning_rate: float
    weight_decay: float
    def __init__(self, layers: _Optional[_Iterable[str]] = ..., weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., biases: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., epoch_losses: _Optional[_Iterable[float]] = ..., train_kl_logit_lens: _Optional[_Iterable[float]] = ..., train_kl_tuned_lens: _Optional[_Iterable[float]] = ..., held_out_kl_logit_lens: _Optional[_Iterable[float]] = ..., held_out_kl_tuned_lens: _Optional[_Iterable[float]] = ..., train_tokens: _Optional[int] = ..., held_out_tokens: _Optional[int] = ..., model: _Optional[str] = ..., epochs: _Optional[int] = ..., learning_rate: _Optional[float] = ..., weight_decay: _Optional[float] = ...) -> None: ...

class FitLensTranslatorsResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: _tensor_pb2.Progress
    result: LensTranslators
    def __init__(self, progress: _Optional[_Union[_tensor_pb2.Progress, _Mapping]] = ..., result: _Optional[_Union[LensTranslators, _Mapping]] = ...) -> None: ...
