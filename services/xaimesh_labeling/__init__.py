"""labeling-service logic: LLM-written concept labels and their scoring.

Plain modules, no gRPC: ``labeling`` (labels), ``scoring`` (label scores),
``sampling`` (non-activating examples), ``llm_policy`` (which LLM, with which
key), ``llm`` / ``prompts`` / ``redaction``. ``downstream.py`` holds the calls
to the concept-service and the model-server behind the ``ConceptSource`` and
``ModelGenerator`` protocols; ``server.py`` (the adapter) decodes requests,
calls these and lets ``map_errors`` turn each ``ServiceError`` into a status.
"""

from xaimesh_runtime.errors import Cancelled, FailedPrecondition, InvalidArgument, ServiceError

from .errors import LabelParseError, LLMError
from .examples import ConceptExample, ConceptExamples, ContextToken, ErrorInfo
from .labeling import ConceptLabelResult, label_concepts
from .llm import LLM, CallableLLM, OpenAIChatLLM
from .prompts import DEFAULT_SYSTEM_PROMPT, build_label_messages, clean_label, render_prompt
from .scoring import (
    DETECTION,
    FUZZING,
    LabelScoreResult,
    LabelScoresSummary,
    ScoringInput,
    balanced_accuracy,
    score_labels,
    summarize_scores,
)
from .redaction import Secret

__all__ = [
    "CallableLLM", "Cancelled", "ConceptExample", "ConceptExamples", "ConceptLabelResult",
    "ContextToken", "DEFAULT_SYSTEM_PROMPT", "DETECTION", "ErrorInfo", "FUZZING",
    "FailedPrecondition", "InvalidArgument", "LLM", "LLMError", "LabelParseError",
    "LabelScoreResult", "LabelScoresSummary", "ServiceError", "OpenAIChatLLM", "ScoringInput",
    "Secret", "balanced_accuracy", "build_label_messages", "clean_label", "label_concepts",
    "render_prompt", "score_labels", "summarize_scores",
]
