"""Concept interpretation: top-k inputs, extractive and LLM-written labels, and their scores.

    from xaimesh.concepts.interpretations import LLMLabels, TopKInputs
    from xaimesh.llm import OpenAILLM

    top = TopKInputs(concepts, split_model.activation_granularities.TOKEN, k=5).interpret(
        latent_activations=activations)                       # {concept: {text: activation}}
    labeller = LLMLabels(concepts, split_model.activation_granularities.TOKEN,
                         llm_interface=OpenAILLM(api_key=...), k_examples=20)
    labels = labeller.interpret(inputs=dataset, latent_activations=activations)   # {concept: label or None}
    labeller.results_[3].examples, labeller.results_[3].error
    scores = labeller.score(labels)                           # detection / fuzzing balanced accuracies
    words = ExtractiveLabels(concepts).interpret(latent_activations=activations)  # no LLM: distinctive words

The examples come from the concept-service (the rows of the activation set
where each concept is most active, with their texts from the set's
provenance); the labeling-service asks the LLM. ``inputs`` is accepted for
compatibility with the in-process toolkit: the texts are already in the
activation set, so it is not sent again.
"""

from __future__ import annotations

import logging
import math
import queue
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from xaimesh.concepts import _rpc
from xaimesh.errors import from_rpc_error
from xaimesh.llm import CallerLLM, LLMInterface, OpenAILLM, as_llm_interface
from xaimesh_contracts.enums import to_name, to_number
from xaimesh_contracts.status import status_code
from xaimesh_contracts.v1 import concept_pb2, labeling_pb2

__all__ = ["ConceptLabel", "ExtractiveLabel", "ExtractiveLabels", "LLMLabels", "LabelError", "LabelScore",
           "LabelScores", "LabelTerm", "TopKInputs"]

log = logging.getLogger("xaimesh.concepts")



# --------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class LabelError:
    """Why one concept (or one score) has no result: a gRPC status code name
    ("UNAVAILABLE", "DEADLINE_EXCEEDED"...) and the service's message."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class Example:
    """One example shown to the LLM."""

    text: str
    activation: float
    normalized_activation: float
    sample_index: int
    token_start: int
    token_end: int
    # (token text, highlighted, activation) around the row, when context was asked for.
    context: tuple[tuple[str, bool, float], ...] = ()

    @property
    def context_text(self) -> str:
        """The context with the row's tokens between << >> (the row's own text without context)."""
        if not self.context:
            return self.text
        out, open_ = [], False
        for text, highlighted, _ in self.context:
            if highlighted and not open_:
                out.append("<<")
                open_ = True
            elif not highlighted and open_:
                out.append(">>")
                open_ = False
            out.append(text)
        if open_:
            out.append(">>")
        return "".join(out)


@dataclass
class ConceptLabel:
    """The full result of one concept: its label (``None`` when the concept
    never activates or labelling failed, see ``error``), the LLM that wrote
    it, the examples it was shown and the prompt."""

    concept_index: int
    label: str | None
    llm: str = ""
    error: LabelError | None = None
    examples: list[Example] = field(default_factory=list)
    prompt: str = ""

    @property
    def is_dead(self) -> bool:
        """True when the concept never activates on the set (no LLM call was made)."""
        return self.label is None and self.error is None


@dataclass(frozen=True)
class LabelScore:
    concept_index: int
    label: str
    method: str  # "detection" or "fuzzing"
    # Balanced accuracy of the scorer (0.5 = chance); None when scoring failed.
    balanced_accuracy: float | None
    n_examples: int
    error: LabelError | None = None


@dataclass
class LabelScores:
    """What :meth:`LLMLabels.score` returns.

    ``scores``: ``{concept_index: {"detection": acc, "fuzzing": acc}}`` (None
    where scoring failed; the last label wins if a concept had several);
    ``details``: every :class:`LabelScore`; the means are over concepts
    scored without error (None when there were none); ``scorer_is_labeller``
    warns that the scores are optimistic (the LLM grades its own labels).
    """

    scores: dict[int, dict[str, float | None]]
    details: list[LabelScore]
    mean_detection: float | None
    mean_fuzzing: float | None
    scorer: str
    scorer_is_labeller: bool

    @property
    def summary(self) -> dict[str, Any]:
        return {"mean_detection": self.mean_detection, "mean_fuzzing": self.mean_fuzzing,
                "scorer": self.scorer, "scorer_is_labeller": self.scorer_is_labeller}

    def __repr__(self) -> str:
        def fmt(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.3f}"

        flag = ", scorer is the labeller" if self.scorer_is_labeller else ""
        return (f"LabelScores({len(self.scores)} concepts, detection={fmt(self.mean_detection)}, "
                f"fuzzing={fmt(self.mean_fuzzing)}, scorer={self.scorer!r}{flag})")


# --------------------------------------------------------------------------
# helpers


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _error(status: Any) -> LabelError | None:
    if status is None or status.code == 0:
        return None
    return LabelError(status_code(status.code).name, status.message)


def _example(e: concept_pb2.ConceptExample) -> Example:
    p = e.provenance
    return Example(text=p.text, activation=float(e.activation), normalized_activation=float(e.normalized_activation),
                   sample_index=int(p.sample_index), token_start=int(p.token_start), token_end=int(p.token_end),
                   context=tuple((t.text, bool(t.highlighted), float(t.activation)) for t in e.context))


def _indices(concepts_indices: Any) -> list[int] | None:
    """None = every concept."""
    if concepts_indices is None or (isinstance(concepts_indices, str) and concepts_indices.lower() == "all"):
        return None
    if isinstance(concepts_indices, str):
        raise ValueError(f"concepts_indices must be 'all', an index or a list of indices, not {concepts_indices!r}")
    if isinstance(concepts_indices, bool):
        raise TypeError("concepts_indices must be 'all', an index or a list of indices")
    if hasattr(concepts_indices, "__index__"):
        indices = [int(concepts_indices)]
    else:
        indices = [int(i) for i in concepts_indices]
    if any(i < 0 for i in indices):
        raise ValueError(f"concept indices must be >= 0, got {indices}")
    return list(dict.fromkeys(indices))


def _sampling(value: Any) -> int:
    return to_number(concept_pb2.ExampleSampling, value, field="sampling_method", allow_unspecified=False)


def _model_name(concept_explainer: Any) -> str:
    if isinstance(concept_explainer, str):
        return concept_explainer
    name = getattr(concept_explainer, "concept_model_", None)
    if not name:
        raise ValueError("the concept explainer is not fitted: call fit() first")
    return name


def _progress_bar(show: bool, total: int | None, description: str):
    from xaimesh._client import progress_enabled

    if not show or not progress_enabled():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, leave=False)


def _caller_requests(request: Any, llm: CallerLLM, replies: queue.Queue) -> Iterator[Any]:
    """The caller's side of LabelConceptsWithCallerLlm: the start, then each
    reply as the SDK makes it, until None."""
    yield labeling_pb2.LabelConceptsWithCallerLlmRequest(start=labeling_pb2.CallerLlmStart(
        request=request, description=llm.name, max_retries=llm.max_retries, timeout_seconds=llm.timeout_seconds))
    while (reply := replies.get()) is not None:
        yield reply


def _stream(client: Any, method: str, request: Any, *, metadata: list[tuple[str, str]],
            timeout: float | None, on_progress: Callable[[Any], None] | None = None) -> Iterator[Any]:
    """A server-streaming call with call metadata (the API key) and the SDK's
    error mapping; yields non-progress events, cancels the call if the
    consumer stops early."""
    call = getattr(client.stub, method)(request, timeout=timeout or client.timeout, metadata=metadata or None)
    try:
        for event in call:
            if event.WhichOneof("event") == "progress":
                if on_progress is not None:
                    on_progress(event.progress)
                continue
            yield event
    except grpc.RpcError as error:
        raise from_rpc_error(error, client.service, client.address) from None
    finally:
        call.cancel()


class _Base:
    def __init__(self, concept_explainer: Any, activation_granularity: Any = None) -> None:
        self.concept_explainer = concept_explainer
        self.activation_granularity = activation_granularity

    @property
    def mesh(self):
        return _rpc.mesh_of(self.concept_explainer)

    def _activation_set(self, latent_activations: Any, timeout: float | None):
        """The stored set to take examples from: the given handle / dict /
        name, else the set the concept model was fitted on."""
        from xaimesh.split_model import ActivationGranularity, ActivationSet

        mesh = self.mesh
        if latent_activations is None:
            name = getattr(self.concept_explainer, "activation_set_", None)
            if not name:
                info = mesh.client("concept").call(
                    "GetConceptModel", concept_pb2.GetConceptModelRequest(name=_model_name(self.concept_explainer)),
                    timeout=timeout)
                name = info.model.activation_set
            if not name:
                raise ValueError("pass latent_activations (the activation set from get_activations)")
            aset = ActivationSet.get(mesh, name)
        else:
            split_point = getattr(self.concept_explainer, "split_point", None)
            aset = _rpc.resolve_activations(latent_activations, split_point, mesh)
            if not isinstance(aset, ActivationSet):
                raise TypeError("latent_activations must be an activation set handle (from get_activations), "
                                "its name or a {split_point: handle} dict: labels need the texts of the rows, "
                                "which a bare array does not have")
        if self.activation_granularity is not None and aset.granularity is not None:
            wanted = ActivationGranularity.coerce(self.activation_granularity)
            if wanted != aset.granularity:
                raise ValueError(f"activation_granularity is {wanted.name} but {aset.name} holds "
                                 f"{aset.granularity.name} rows; pass the matching activations")
        return aset


# --------------------------------------------------------------------------
# TopKInputs


class TopKInputs(_Base):
    """The ``k`` inputs (tokens, words, sentences or samples, as the
    activation set's granularity says) where each concept is most active.

    ``interpret`` returns ``{concept_index: {text: activation}}``, highest
    first; a text seen several times keeps its highest activation.

    ``use_vocab=True``: the inputs are the model's vocabulary instead, each
    token run alone through the model (wrapped in the tokenizer's special
    tokens, the first position read, when ``activation_granularity`` is
    CLS_TOKEN), and no activation set is needed; a concept's tokens stop at
    the first zero activation (None when none is active), as interpreto.
    The concept method needs a closed-form encoder (docs/inputs-to-concepts.md).

    ``use_unique_words=n``: the inputs are the distinct 1- to n-grams of the
    ``inputs`` texts (:func:`xaimesh.concepts.ngrams.extract_ngrams`, with
    ``unique_words_kwargs`` ``count_min_threshold`` / ``words_to_ignore``),
    each run as its own text at CLS_TOKEN or SAMPLE granularity (default
    SAMPLE) in a temporary activation set, as interpreto.
    """

    def __init__(self, concept_explainer: Any, activation_granularity: Any = None, k: int = 5, *,
                 use_vocab: bool = False, use_unique_words: int = 0, unique_words_kwargs: dict | None = None,
                 show_progress: bool = True, timeout: float | None = None) -> None:
        super().__init__(concept_explainer, activation_granularity)
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if use_vocab and use_unique_words:
            raise ValueError("use_vocab and use_unique_words exclude each other: choose one")
        granularity = str(getattr(activation_granularity, "name", activation_granularity or "")).upper()
        if use_unique_words and granularity not in ("", "CLS_TOKEN", "SAMPLE"):
            raise ValueError(f"use_unique_words runs each n-gram as one text: activation_granularity must be "
                             f"CLS_TOKEN or SAMPLE, got {granularity}")
        self.k = int(k)
        self.use_vocab = bool(use_vocab)
        self.use_unique_words = int(use_unique_words)
        self.unique_words_kwargs = dict(unique_words_kwargs or {})
        self.show_progress = show_progress
        self.timeout = timeout

    def interpret(self, inputs: Any = None, latent_activations: Any = None,
                  concepts_indices: Any = "all") -> dict[int, dict[str, float]]:
        indices = _indices(concepts_indices)
        granularity = str(getattr(self.activation_granularity, "name", self.activation_granularity or "")).upper()
        if self.use_vocab:
            from xaimesh.concepts.inputs import vocabulary_top_tokens

            return vocabulary_top_tokens(self.concept_explainer, indices, self.k, cls_token=granularity == "CLS_TOKEN",
                                         timeout=self.timeout)
        if self.use_unique_words:
            return self._over_ngrams(inputs, indices, granularity or "SAMPLE")
        # (the texts are in the activation set's provenance)
        return self._top(latent_activations, indices)

    def _over_ngrams(self, inputs: Any, indices: list[int] | None, granularity: str) -> dict[int, dict[str, float]]:
        from xaimesh.concepts.inputs import fitted_model
        from xaimesh.concepts.ngrams import extract_ngrams
        from xaimesh.split_model import ModelWithSplitPoints, load_texts

        if inputs is None:
            raise ValueError("use_unique_words ranks the words of `inputs`: pass the texts")
        ngrams = extract_ngrams(load_texts(inputs), self.use_unique_words, **self.unique_words_kwargs)
        if not ngrams:
            raise ValueError("the inputs have no word (or none reaches count_min_threshold)")
        split_point = self.concept_explainer._info().split_point or self.concept_explainer._split_point_str()
        split_model = ModelWithSplitPoints(fitted_model(self.concept_explainer), split_points=[split_point])
        aset = split_model.get_activations(ngrams, activation_granularity=granularity,
                                           show_progress=self.show_progress, timeout=self.timeout)
        try:
            return self._top(aset, indices)
        finally:
            aset.delete()

    def _top(self, latent_activations: Any, indices: list[int] | None) -> dict[int, dict[str, float]]:
        aset = self._activation_set(latent_activations, self.timeout)
        out: dict[int, dict[str, float]] = {}
        for ce in _rpc.iter_top_examples(_model_name(self.concept_explainer), aset, indices or "all", k=self.k,
                                         sampling="TOP", show_progress=self.show_progress, timeout=self.timeout):
            best: dict[str, float] = {}
            for ex in ce.examples:
                text = ex.provenance.text
                if text not in best or ex.activation > best[text]:
                    best[text] = float(ex.activation)
            out[int(ce.concept_index)] = dict(sorted(best.items(), key=lambda kv: -kv[1])[: self.k])
        order = indices if indices is not None else sorted(out)
        return {c: out.get(c, {}) for c in order}


# --------------------------------------------------------------------------
# LLMLabels


class LLMLabels(_Base):
    """Labels of concepts written by an LLM from each concept's examples.

    ``llm_interface``: :class:`~xaimesh.llm.OpenAILLM`,
    :class:`~xaimesh.llm.ModelServerLLM`, :class:`~xaimesh.llm.CallerLLM`
    (a function of this process, called back over a bidirectional stream)
    or ``None`` (the labeling-service decides: its configured OpenAI key /
    endpoint, else the model-server's model). ``k_examples`` examples per concept, chosen by ``sampling``:
    "top" (highest activations), "quantile" (spread over ``k_quantile``
    quantile bins) or "random" (random active rows); ``k_context``
    neighbouring tokens are shown around each (token-level sets), the row's
    own tokens marked. ``system_prompt`` replaces the default one;
    ``max_concurrency`` LLM calls run at once.

    After :meth:`interpret`, ``results_`` holds a :class:`ConceptLabel` per
    concept (examples shown, prompt, LLM, error) and ``activation_set_`` the
    set used.
    """

    def __init__(self, concept_explainer: Any, activation_granularity: Any = None,
                 llm_interface: LLMInterface | None = None, k_examples: int = 20, sampling: Any = "top",
                 k_quantile: int | None = None, k_context: int = 0, system_prompt: str | None = None,
                 max_concurrency: int = 4, *, seed: int = 0, show_progress: bool = True,
                 timeout: float | None = None) -> None:
        super().__init__(concept_explainer, activation_granularity)
        if int(k_examples) != k_examples or k_examples < 1:
            raise ValueError(f"k_examples must be a positive integer, got {k_examples!r}")
        if k_quantile is not None and (int(k_quantile) != k_quantile or k_quantile < 1):
            raise ValueError(f"k_quantile must be a positive integer or None, got {k_quantile!r}")
        if int(k_context) != k_context or k_context < 0:
            raise ValueError(f"k_context must be an integer >= 0, got {k_context!r}")
        if int(max_concurrency) != max_concurrency or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
        self.llm_interface = as_llm_interface(llm_interface)
        self.k_examples = int(k_examples)
        self.sampling = sampling
        self._sampling = _sampling(sampling)
        self.k_quantile = None if k_quantile is None else int(k_quantile)
        self.k_context = int(k_context)
        self.system_prompt = system_prompt
        self.max_concurrency = int(max_concurrency)
        self.seed = int(seed)
        self.show_progress = show_progress
        self.timeout = timeout
        self.results_: dict[int, ConceptLabel] = {}
        self.activation_set_: Any = None

    def __repr__(self) -> str:
        return (f"LLMLabels(concept_model={getattr(self.concept_explainer, 'concept_model_', self.concept_explainer)!r}, "
                f"llm_interface={self.llm_interface!r}, k_examples={self.k_examples}, sampling={self.sampling!r}, "
                f"k_context={self.k_context})")

    # -- labels ---------------------------------------------------------------

    def interpret(self, inputs: Any = None, latent_activations: Any = None,
                  concepts_indices: Any = "all") -> dict[int, str | None]:
        """``{concept_index: label}`` in concept order (the order given, or
        ascending for "all"); ``None`` for a concept that never activates or
        whose labelling failed (``results_[c].error`` says why)."""
        del inputs  # the texts are in the activation set's provenance
        indices = _indices(concepts_indices)
        aset = self._activation_set(latent_activations, self.timeout)
        self.activation_set_ = aset
        llm = self.llm_interface
        request = labeling_pb2.LabelConceptsRequest(
            concept_model=_model_name(self.concept_explainer), activation_set=aset.name,
            concept_indices=indices or [], k_examples=self.k_examples, sampling=self._sampling,
            k_quantile=self.k_quantile or 0, k_context=self.k_context, system_prompt=self.system_prompt or "",
            max_concurrency=self.max_concurrency, seed=self.seed)
        caller = isinstance(llm, CallerLLM)
        replies: queue.Queue = queue.Queue()
        if caller:  # the caller's LLM answers the service's prompts over a bidirectional stream
            method, metadata = "LabelConceptsWithCallerLlm", []
            call_request: Any = _caller_requests(request, llm, replies)
        else:
            if llm is not None:
                request.llm.CopyFrom(llm.to_proto())
            method, metadata, call_request = "LabelConcepts", llm.metadata() if llm else [], request
        total = len(indices) if indices is not None else (getattr(self.concept_explainer, "nb_concepts", 0) or None)
        bar = _progress_bar(self.show_progress, total, "labeling")
        results: dict[int, ConceptLabel] = {}

        def on_progress(p: Any) -> None:
            if bar is not None and p.stage == "labeling" and p.total and bar.total != p.total:
                bar.total = p.total
                bar.refresh()

        try:
            client = self.mesh.client("labeling")
            for event in _stream(client, method, call_request, metadata=metadata, timeout=self.timeout,
                                 on_progress=on_progress):
                if event.WhichOneof("event") == "generate":
                    replies.put(labeling_pb2.LabelConceptsWithCallerLlmRequest(reply=llm.reply(event.generate)))
                    continue
                if event.WhichOneof("event") != "label":
                    continue
                lab = event.label
                results[int(lab.concept_index)] = ConceptLabel(
                    concept_index=int(lab.concept_index), label=lab.label if lab.has_label else None,
                    llm=lab.llm, error=_error(lab.error) if lab.HasField("error") else None,
                    examples=[_example(e) for e in lab.examples], prompt=lab.prompt)
                if bar is not None:
                    bar.update(1)
        finally:
            replies.put(None)  # ends the caller's side of the stream
            if bar is not None:
                bar.close()
        order = indices if indices is not None else sorted(results)
        self.results_ = {c: results[c] for c in order if c in results}
        failed = [r for r in self.results_.values() if r.error is not None]
        if failed:
            shown = "; ".join(f"concept {r.concept_index}: {r.error}" for r in failed[:3])
            more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
            log.warning("%d of %d concepts could not be labelled: %s%s", len(failed), len(self.results_), shown, more)
        used = self.labeller_
        if isinstance(llm, OpenAILLM) and llm.fallback is None and used.startswith("model-server:"):
            log.warning("the labeling-service had no OpenAI key for this request: the labels come from %s", used)
        return {c: r.label for c, r in self.results_.items()}

    @property
    def labeller_(self) -> str:
        """The LLM that wrote the last labels ("" before :meth:`interpret`)."""
        return next((r.llm for r in self.results_.values() if r.llm), "")

    # -- scoring --------------------------------------------------------------

    def score(self, labels: Any = None, scorer: LLMInterface | None = None,
              methods: Iterable[str] | str = ("detection", "fuzzing"), n_examples: int = 5, *,
              k_context: int | None = None, latent_activations: Any = None, seed: int | None = None,
              max_concurrency: int | None = None) -> LabelScores:
        """Scores labels with a scorer LLM (default: the labeller, which makes
        the scores optimistic; ``scorer_is_labeller`` says so).

        ``labels``: ``{concept_index: label}`` (``None`` labels are skipped),
        pairs ``(concept_index, label)``, or ``None`` = the last
        :meth:`interpret`. ``methods``: "detection" (tell activating from
        non-activating excerpts: rows where the concept is at most a tenth of
        its top activation) and / or "fuzzing" (tell true highlights from
        random ones). ``n_examples`` excerpts of each kind per label;
        ``k_context`` tokens of context (default: this labeller's, else 4).
        """
        if labels is None:
            if not self.results_:
                raise ValueError("no labels: call interpret() first or pass labels")
            labels = {c: r.label for c, r in self.results_.items()}
        pairs = list(labels.items()) if isinstance(labels, dict) else [tuple(p) for p in labels]
        pairs = [(int(c), str(t)) for c, t in pairs if t is not None]
        if not pairs:
            raise ValueError("no labels to score (every label is None)")
        if isinstance(methods, str):
            methods = [methods]
        method_enums = [to_number(labeling_pb2.LabelScoringMethod, m, field="methods", allow_unspecified=False)
                        for m in methods]
        if int(n_examples) != n_examples or n_examples < 1:
            raise ValueError(f"n_examples must be a positive integer, got {n_examples!r}")
        if latent_activations is None and self.activation_set_ is not None:
            aset = self.activation_set_
        else:
            aset = self._activation_set(latent_activations, self.timeout)
        scorer = as_llm_interface(scorer) if scorer is not None else self.llm_interface
        if isinstance(scorer, CallerLLM):
            raise ValueError(f"{scorer!r} labels concepts but cannot score labels yet (ScoreLabels calls a service "
                             "LLM): pass scorer=OpenAILLM(...) or ModelServerLLM()")
        kc = self.k_context if k_context is None else int(k_context)
        request = labeling_pb2.ScoreLabelsRequest(
            concept_model=_model_name(self.concept_explainer), activation_set=aset.name,
            labels=[labeling_pb2.LabelToScore(concept_index=c, label=t) for c, t in pairs],
            methods=method_enums, n_examples=int(n_examples), k_context=max(kc, 0),
            seed=self.seed if seed is None else int(seed),
            max_concurrency=int(max_concurrency or self.max_concurrency), labeller=self.labeller_)
        if scorer is not None:
            request.scorer.CopyFrom(scorer.to_proto())
        bar = _progress_bar(self.show_progress, len(pairs) * len(method_enums), "scoring labels")
        details: list[LabelScore] = []
        summary = None
        try:
            client = self.mesh.client("labeling")
            for event in _stream(client, "ScoreLabels", request, metadata=scorer.metadata() if scorer else [],
                                 timeout=self.timeout):
                kind = event.WhichOneof("event")
                if kind == "score":
                    s = event.score
                    details.append(LabelScore(
                        concept_index=int(s.concept_index), label=s.label, method=to_name(labeling_pb2.LabelScoringMethod, s.method),
                        balanced_accuracy=None if s.HasField("error") else _nan_to_none(s.balanced_accuracy),
                        n_examples=int(s.n_examples), error=_error(s.error) if s.HasField("error") else None))
                    if bar is not None:
                        bar.update(1)
                elif kind == "summary":
                    summary = event.summary
        finally:
            if bar is not None:
                bar.close()
        if summary is None:
            raise RuntimeError("the labeling-service ended the call without a summary")
        by_key = {(d.concept_index, d.label, d.method): d for d in details}
        scores: dict[int, dict[str, float | None]] = {c: {} for c, _ in pairs}
        for c, text in pairs:  # in the order given: the last label of a concept wins
            for m in method_enums:
                d = by_key.get((c, text.strip(), to_name(labeling_pb2.LabelScoringMethod, m))) or by_key.get((c, text, to_name(labeling_pb2.LabelScoringMethod, m)))
                if d is not None:
                    scores[c][d.method] = d.balanced_accuracy
        failed = [d for d in details if d.error is not None]
        if failed:
            shown = "; ".join(f"concept {d.concept_index} {d.method}: {d.error}" for d in failed[:3])
            more = f"; and {len(failed) - 3} more (see .details)" if len(failed) > 3 else ""
            log.warning("%d of %d scores failed: %s%s", len(failed), len(details), shown, more)
        return LabelScores(scores=scores, details=details, mean_detection=_nan_to_none(summary.mean_detection),
                           mean_fuzzing=_nan_to_none(summary.mean_fuzzing), scorer=summary.scorer,
                           scorer_is_labeller=summary.scorer_is_labeller)


# --------------------------------------------------------------------------
# ExtractiveLabels


@dataclass(frozen=True)
class LabelTerm:
    text: str  # lower-cased word or word n-gram
    score: float  # z-score of the log odds ratio, top rows vs the rest of the set
    concept_count: int  # top rows containing it
    corpus_count: int  # rows of the set containing it


@dataclass(frozen=True)
class ExtractiveLabel:
    """One concept's extractive label (``None`` when it is never > 0 on the
    set; "" when its top rows share no distinctive term) and its terms."""

    concept_index: int
    label: str | None
    terms: list[LabelTerm]
    num_active_rows: int
    num_examples: int


class ExtractiveLabels(_Base):
    """Labels without an LLM: each concept is named by the words and word
    n-grams that set its ``k_examples`` most activating rows apart from the
    rest of the activation set (z-scores of log odds ratios, computed by the
    concept-service next to the data). Definition: docs/concept-labels.md.

    ``interpret`` returns ``{concept_index: label}`` like :class:`LLMLabels`;
    ``results_`` holds an :class:`ExtractiveLabel` (terms, scores, counts)
    per concept.
    """

    def __init__(self, concept_explainer: Any, activation_granularity: Any = None, k_examples: int = 50,
                 max_terms: int = 3, max_ngram: int = 2, min_count: int = 2, *, show_progress: bool = True,
                 timeout: float | None = None) -> None:
        super().__init__(concept_explainer, activation_granularity)
        self.k_examples, self.max_terms, self.max_ngram, self.min_count = (
            int(k_examples), int(max_terms), int(max_ngram), int(min_count))
        self.show_progress = show_progress
        self.timeout = timeout
        self.results_: dict[int, ExtractiveLabel] = {}

    def interpret(self, inputs: Any = None, latent_activations: Any = None,
                  concepts_indices: Any = "all") -> dict[int, str | None]:
        del inputs  # the texts are in the activation set's provenance
        indices = _indices(concepts_indices)
        aset = self._activation_set(latent_activations, self.timeout)
        request = concept_pb2.ExtractLabelsRequest(
            concept_model=_model_name(self.concept_explainer), activation_set=aset.name,
            concept_indices=indices or [], k_examples=self.k_examples, max_terms=self.max_terms,
            max_ngram=self.max_ngram, min_count=self.min_count)
        results: dict[int, ExtractiveLabel] = {}
        for event in self.mesh.client("concept").stream("ExtractLabels", request, timeout=self.timeout,
                                                        show_progress=self.show_progress,
                                                        description="extractive labels"):
            if event.WhichOneof("event") != "label":
                continue
            lab = event.label
            results[int(lab.concept_index)] = ExtractiveLabel(
                concept_index=int(lab.concept_index), label=lab.label if lab.has_label else None,
                terms=[LabelTerm(t.text, float(t.score), int(t.concept_count), int(t.corpus_count))
                       for t in lab.terms],
                num_active_rows=int(lab.num_active_rows), num_examples=int(lab.num_examples))
        order = indices if indices is not None else sorted(results)
        self.results_ = {c: results[c] for c in order if c in results}
        return {c: r.label for c, r in self.results_.items()}
