"""Plain mirrors of concept.proto's ConceptExample / ContextToken /
ConceptExamples (what the concept-service's GetTopExamples returns).

The adapter converts field by field; ``RowProvenance`` is flattened into
``sample_index`` / ``token_start`` / ``token_end`` / ``text``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ContextToken:
    text: str
    highlighted: bool = False
    # This token's own concept activation, when known (0 otherwise).
    activation: float = 0.0


@dataclass(frozen=True)
class ConceptExample:
    # The row's own text (token, word, sentence or whole sample).
    text: str
    activation: float = 0.0
    # activation / the concept's max over the set (0..1).
    normalized_activation: float = 0.0
    # Tokens around the row (empty when k_context = 0); the row's own tokens
    # have highlighted = True.
    context: tuple[ContextToken, ...] | list[ContextToken] = ()
    sample_index: int = 0
    token_start: int = 0
    token_end: int = 0


@dataclass
class ConceptExamples:
    concept_index: int
    # Rows where the concept is non-zero; 0 = the concept never activates.
    num_active_rows: int = 0
    max_activation: float = 0.0
    examples: list[ConceptExample] = field(default_factory=list)


@dataclass(frozen=True)
class ErrorInfo:
    """A per-item failure: ``code`` is a gRPC status code name."""

    code: str
    message: str


@dataclass(frozen=True)
class RowProvenance:
    """Where one row of an activation set comes from (model.proto's RowProvenance)."""

    sample_index: int
    token_start: int = 0
    token_end: int = 0
    text: str = ""
