"""interpreto.concepts.interpretations over the mesh: LLMLabels and TopKInputs,
computed by the labeling-service from the stored activation set."""

from __future__ import annotations

from typing import Any

from xaimesh.concepts import interpretations as native
from xaimesh.llm import CallerLLM
from xaimesh.llm import LLMInterface as NativeLLMInterface

from ...commons.llm_interface import Role
from ..._compat import (
    ActivationGranularity,
    GranularityAggregationStrategy,
    SamplingMethod,
    accept_noop,
    member,
    mesh_activations,
    refuse,
)

__all__ = ["LLMLabels", "SamplingMethod", "TopKInputs"]


def _interpreto_generate(llm: Any) -> Any:
    """fn(messages) for CallerLLM from interpreto's generate(prompt), prompt a list of (Role, text)."""
    def generate(messages: list[dict[str, str]]) -> str | None:
        return llm.generate([(Role(m["role"]), m["content"]) for m in messages])

    return generate


def native_llm(llm: Any, who: str, field: str) -> Any:
    """The native LLM of an interpreto LLM argument: ours as they are, a
    user's own ``LLMInterface`` (``generate(prompt)``) as a CallerLLM, which
    runs in this process on the labeling-service's prompts."""
    if llm is None or isinstance(llm, (NativeLLMInterface, CallerLLM)):
        return llm
    if not callable(getattr(llm, "generate", None)):
        raise refuse(who, field, f"an LLMInterface with generate(prompt), not {type(llm).__name__}")
    return CallerLLM(_interpreto_generate(llm), name=type(llm).__name__)


def _common(who: str, concept_encoding_batch_size: int, use_vocab: bool, use_unique_words: Any,
            unique_words_kwargs: dict | None, aggregation_strategy: Any, *, inputs_supported: bool = False) -> None:
    accept_noop(who, "concept_encoding_batch_size", concept_encoding_batch_size)
    # the activation set was aggregated when get_activations made it
    member(GranularityAggregationStrategy, aggregation_strategy, "aggregation_strategy")
    if use_vocab and not inputs_supported:
        raise refuse(who, "use_vocab", "the labels' examples are read from a stored activation set; use "
                     "TopKInputs(use_vocab=True) for the vocabulary's top tokens")
    if use_vocab and (use_unique_words or unique_words_kwargs):
        raise refuse(who, "use_unique_words", "cannot use both use_unique_words and use_vocab (as interpreto)")
    if "lemmatize" in (unique_words_kwargs or {}):
        raise refuse(who, "unique_words_kwargs", "lemmatize needs nltk's WordNet, which the mesh does not use; "
                     "count_min_threshold and words_to_ignore are supported")
    if inputs_supported:
        return
    if use_unique_words or unique_words_kwargs:
        raise refuse(who, "use_unique_words", "the mesh's examples are the activation set's rows")


def _granularity(value: Any) -> Any:
    return None if value is None else member(ActivationGranularity, value, "activation_granularity").name


def _latent(who: str, explainer: Any, latent_activations: Any, concepts_activations: Any) -> Any:
    if concepts_activations is not None:
        raise refuse(who, "concepts_activations", "the labeling-service encodes the stored activation set itself: "
                     "pass latent_activations (the tensor get_activations returned)")
    if latent_activations is None:
        return None
    resolved = mesh_activations(latent_activations, explainer.split_point)
    if not hasattr(resolved, "info"):
        raise refuse(who, "latent_activations", "give the tensor get_activations returned, unchanged: the "
                     "labels' examples are the texts of its stored rows")
    return resolved


class LLMLabels:
    def __init__(self, *, concept_explainer: Any, activation_granularity: Any = None,
                 aggregation_strategy: Any = GranularityAggregationStrategy.MEAN, llm_interface: Any,
                 concept_encoding_batch_size: int = 1024, sampling_method: Any = SamplingMethod.TOP,
                 k_examples: int = 30, k_context: int = 0, use_vocab: bool = False, use_unique_words: Any = 0,
                 unique_words_kwargs: dict | None = None, k_quantile: int = 5, system_prompt: str | None = None,
                 concept_model_device: Any = None) -> None:
        _common("LLMLabels", concept_encoding_batch_size, use_vocab, use_unique_words, unique_words_kwargs,
                aggregation_strategy)
        accept_noop("LLMLabels", "concept_model_device", concept_model_device)
        llm_interface = native_llm(llm_interface, "LLMLabels", "llm_interface")
        self.concept_explainer = concept_explainer
        self.native = native.LLMLabels(
            concept_explainer.native, _granularity(activation_granularity), llm_interface=llm_interface,
            k_examples=k_examples, sampling=member(SamplingMethod, sampling_method, "sampling_method").value,
            k_quantile=k_quantile, k_context=k_context, system_prompt=system_prompt)

    def interpret(self, concepts_indices: Any = "all", inputs: Any = None, latent_activations: Any = None,
                  concepts_activations: Any = None) -> dict[int, str | None]:
        del inputs  # the examples' texts are the stored rows' provenance
        return self.native.interpret(latent_activations=_latent("LLMLabels.interpret", self.concept_explainer,
                                                                 latent_activations, concepts_activations),
                                     concepts_indices=concepts_indices)


class TopKInputs:
    activation_granularities = ActivationGranularity

    def __init__(self, *, concept_explainer: Any, activation_granularity: Any = None,
                 aggregation_strategy: Any = GranularityAggregationStrategy.MEAN,
                 concept_encoding_batch_size: int = 1024, k: int = 5, use_vocab: bool = False,
                 use_unique_words: Any = 0, unique_words_kwargs: dict | None = None) -> None:
        _common("TopKInputs", concept_encoding_batch_size, use_vocab, use_unique_words, unique_words_kwargs,
                aggregation_strategy, inputs_supported=True)
        self.concept_explainer = concept_explainer
        self.native = native.TopKInputs(concept_explainer.native, _granularity(activation_granularity), k=k,
                                        use_vocab=use_vocab, use_unique_words=int(use_unique_words),
                                        unique_words_kwargs=unique_words_kwargs)

    def interpret(self, concepts_indices: Any = "all", inputs: Any = None, latent_activations: Any = None,
                  concepts_activations: Any = None) -> dict[int, dict[str, float]]:
        if self.native.use_vocab:
            return self.native.interpret(concepts_indices=concepts_indices)
        if self.native.use_unique_words:
            return self.native.interpret(inputs=inputs, concepts_indices=concepts_indices)
        del inputs
        return self.native.interpret(latent_activations=_latent("TopKInputs.interpret", self.concept_explainer,
                                                                latent_activations, concepts_activations),
                                     concepts_indices=concepts_indices)
