"""The model-server's computations: scores, gradients, generation, activations.

Requests are validated here (InvalidArgument with a message that says what to
do), then split into row-level items of a *work kind* that go through an
executor (`batching.DirectExecutor` in the calling thread, or the model's
`DynamicBatcher`, which merges the rows of concurrent callers into shared
forward passes). One module per work kind, each registering its runner in
`work.RUNNERS`:

    limits.py       Limits (request limits, batching budgets)
    inputs.py       validation shared by the kinds (token ids, targets)
    forward.py      padding, position ids, the shared forward, target values
    work.py         WorkKind, the registry kind -> runner, run_rows, executors
    score.py        Score            ScoreWork(task)
    gradients.py    ComputeGradients GradWork(task)
    generation.py   Generate         GenWork()
    activations.py  StreamActivations ActWork(paths, stop); token semantics: docs/models.md, "Token semantics"
    lens.py         LogitLens        LensWork(top_k); definition: docs/lenses.md; UnembedDirections
    concept_gradients.py ConceptGradients ConceptGradWork(task); definition: docs/concept-gradients.md
    concept_readout.py  Score / ComputeGradients with a ConceptEncoder (inputs -> concepts), VocabularyConcepts
                        ConceptScoreWork(task, split point); definition: docs/inputs-to-concepts.md
    tuned_lens.py   FitLensTranslators (no work kind: one text per optimizer step, under the model's lock)

This package re-exports the public names, so callers write
`from xaimesh_model_server import engine; engine.score(...)`.
"""

from __future__ import annotations

from ..enums import (
    Aggregation,
    BaselineKind,
    GradientOutput,
    Granularity,
    InferenceMode,
    ReplacementPolicy,
    SpecialTokensPolicy,
)
from .activations import (
    ActivationBatch,
    ActivationJob,
    ActWork,
    ItemError,
    RowProvenance,
    SplitPoint,
    activations,
    aggregate_rows,
    resolve_special_tokens,
    resolve_split_points,
    split_point_candidates,
)
from .concept_gradients import ConceptGradWork, concept_gradients
from .concept_readout import (ConceptReadout, ConceptScoreWork, VocabularyTopTokens, concept_readout, concept_scores,
                              vocabulary_concepts)
from .generation import GENERATE_MAX_BATCH, GenerationResult, GenWork, generate
from .gradients import EmbeddingSamples, GradWork, gradients, input_embeddings, make_samples
from .inputs import check_input_ids
from .lens import LensResult, LensWork, Translators, UnembeddedDirections, check_translators, logit_lens, unembed_directions
from .tuned_lens import FittedTranslators, fit_lens_translators
from .limits import DEFAULT_LIMITS, MAX_NEW_TOKENS_WHEN_UNSET, Limits
from .score import Replacement, ScoreWork, score
from .work import RUNNERS, WorkKind, attach_dynamic_batcher, get_executor, make_dynamic_batcher, run_rows

__all__ = [
    "DEFAULT_LIMITS", "GENERATE_MAX_BATCH", "MAX_NEW_TOKENS_WHEN_UNSET", "RUNNERS",
    "ActWork", "ActivationBatch", "ActivationJob", "Aggregation", "BaselineKind", "ConceptGradWork", "EmbeddingSamples", "GenWork",
    "GenerationResult", "GradWork", "LensResult", "LensWork", "GradientOutput", "Granularity", "InferenceMode", "ItemError", "Limits",
    "Replacement", "ReplacementPolicy", "RowProvenance", "ScoreWork", "SpecialTokensPolicy", "SplitPoint",
    "FittedTranslators", "Translators", "UnembeddedDirections", "WorkKind",
    "activations", "aggregate_rows", "attach_dynamic_batcher", "concept_gradients", "check_input_ids", "check_translators",
    "fit_lens_translators", "generate", "get_executor",
    "gradients", "input_embeddings", "logit_lens", "make_dynamic_batcher", "make_samples", "resolve_special_tokens",
    "resolve_split_points", "run_rows", "split_point_candidates", "unembed_directions",
    "score", "ConceptReadout", "ConceptScoreWork", "VocabularyTopTokens", "concept_readout", "concept_scores",
    "vocabulary_concepts",
]
