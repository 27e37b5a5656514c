"""What the labeling-service asks of the other services, behind two protocols.

* :class:`ConceptSource` - the concept-service: an activation set's summary,
  a concept model's top examples, and windows of codes + provenance (for the
  non-activating examples of :mod:`xaimesh_labeling.sampling`).
* :class:`ModelGenerator` - the model-server: resolve a model id, and
  ``Generate`` on a chat conversation (the local LLM of
  :mod:`xaimesh_labeling.llm_policy`).

Both speak plain values (:mod:`xaimesh_labeling.examples`). The gRPC
implementations are made per incoming call (``GrpcConceptSource(stub,
context)``): every call they make carries the caller's remaining deadline,
and a stream whose caller went away stops with ``Cancelled``. Failed calls
keep the other service's code and name it and its address (the runtime's
``ReplicaPool`` stubs); the unit tests give in-process implementations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import numpy as np

from xaimesh_contracts.enums import to_name
from xaimesh_contracts.tensors import to_numpy
from xaimesh_contracts.v1 import concept_pb2, model_pb2, tensor_pb2
from xaimesh_runtime.client import remaining_timeout
from xaimesh_runtime.errors import Cancelled, ServiceError

from .examples import ConceptExample, ConceptExamples, ContextToken, RowProvenance
from .prompts import plain_chat_prompt

__all__ = ["ActivationSetSummary", "ConceptSource", "GrpcConceptSource", "GrpcModelGenerator", "ModelGenerator",
           "Progress", "TopExamplesQuery", "examples_from_proto", "example_from_proto", "example_to_proto"]

# No caller deadline: bound each control call and each generation anyway.
CONTROL_TIMEOUT = 60.0
GENERATE_TIMEOUT = 600.0


# --------------------------------------------------------------------------
# plain values


@dataclass(frozen=True)
class ActivationSetSummary:
    name: str
    num_rows: int
    #: "token", "word", ... (tensor.proto Granularity short name; "" = unspecified)
    granularity: str
    has_provenance: bool


@dataclass(frozen=True)
class TopExamplesQuery:
    """concept.proto's GetTopExamplesRequest (``sampling``: the ExampleSampling number)."""

    concept_model: str
    activation_set: str
    concept_indices: Sequence[int] = ()
    k: int = 0
    sampling: int = 0
    k_quantile: int = 0
    k_context: int = 0
    seed: int = 0


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int
    message: str = ""


# --------------------------------------------------------------------------
# protocols


class ConceptSource(Protocol):
    def activation_set(self, name: str) -> ActivationSetSummary:
        """GetActivationSet."""
        ...

    def top_examples(self, query: TopExamplesQuery) -> Iterator[Progress | ConceptExamples]:
        """GetTopExamples: progress events, then one ConceptExamples per concept."""
        ...

    def read_window(self, concept_model: str, activation_set: str, lo: int, hi: int
                    ) -> tuple[np.ndarray, list[RowProvenance]]:
        """Codes ``[hi - lo, concepts]`` of rows [lo, hi) and their provenance."""
        ...


class ModelGenerator(Protocol):
    def resolve_model(self, model: str) -> str:
        """The model-server's id of ``model`` ("" = its default model)."""
        ...

    def generate(self, model_id: str, messages: Sequence[dict[str, str]], *, max_new_tokens: int,
                 temperature: float, seed: int) -> str:
        """The reply to a chat conversation."""
        ...


# --------------------------------------------------------------------------
# conversions (exact both ways: the examples travel on inside ConceptLabel)


def example_from_proto(e: concept_pb2.ConceptExample) -> ConceptExample:
    p = e.provenance
    return ConceptExample(
        text=p.text,
        activation=float(e.activation),
        normalized_activation=float(e.normalized_activation),
        context=tuple(ContextToken(t.text, bool(t.highlighted), float(t.activation)) for t in e.context),
        sample_index=int(p.sample_index),
        token_start=int(p.token_start),
        token_end=int(p.token_end),
    )


def examples_from_proto(c: concept_pb2.ConceptExamples) -> ConceptExamples:
    return ConceptExamples(
        concept_index=int(c.concept_index),
        num_active_rows=int(c.num_active_rows),
        max_activation=float(c.max_activation),
        examples=[example_from_proto(e) for e in c.examples],
    )


def example_to_proto(e: ConceptExample) -> concept_pb2.ConceptExample:
    return concept_pb2.ConceptExample(
        provenance=model_pb2.RowProvenance(sample_index=e.sample_index, token_start=e.token_start,
                                           token_end=e.token_end, text=e.text),
        activation=e.activation, normalized_activation=e.normalized_activation,
        context=[concept_pb2.ContextToken(text=t.text, highlighted=t.highlighted, activation=t.activation)
                 for t in e.context])


# --------------------------------------------------------------------------
# gRPC implementations


class GrpcConceptSource:
    """``ConceptSource`` over a concept-service stub whose failures are ``DownstreamError``s (a ``ReplicaPool`` stub),
    for the incoming call ``context``."""

    def __init__(self, stub: Any, context: grpc.ServicerContext) -> None:
        self._stub = stub
        self._context = context

    def _check_active(self) -> None:
        if not self._context.is_active():
            raise Cancelled("the call was cancelled")

    def activation_set(self, name: str) -> ActivationSetSummary:
        reply = self._stub.GetActivationSet(concept_pb2.GetActivationSetRequest(name=name),
                                            timeout=remaining_timeout(self._context, CONTROL_TIMEOUT))
        s = reply.set
        granularity = to_name(tensor_pb2.Granularity, s.granularity) if s.granularity in \
            tensor_pb2.Granularity.values() else ""
        return ActivationSetSummary(name=s.name or name, num_rows=int(s.shape[0]) if s.shape else 0,
                                    granularity=granularity, has_provenance=bool(s.has_provenance))

    def top_examples(self, query: TopExamplesQuery) -> Iterator[Progress | ConceptExamples]:
        request = concept_pb2.GetTopExamplesRequest(
            concept_model=query.concept_model, activation_set=query.activation_set,
            concept_indices=list(query.concept_indices), k=query.k, sampling=query.sampling,
            k_quantile=query.k_quantile, k_context=query.k_context, seed=query.seed)
        call = self._stub.GetTopExamples(request, timeout=remaining_timeout(self._context))
        try:
            for event in call:
                self._check_active()
                kind = event.WhichOneof("event")
                if kind == "progress":
                    p = event.progress
                    yield Progress(p.stage, p.done, p.total, p.message)
                elif kind == "concept":
                    yield examples_from_proto(event.concept)
        finally:
            call.cancel()

    def _codes(self, concept_model: str, activation_set: str, lo: int, hi: int) -> np.ndarray:
        request = concept_pb2.EncodeRequest(
            concept_model=concept_model,
            source=concept_pb2.ActivationSource(
                activation_set=concept_pb2.ActivationSetRange(name=activation_set, row_start=lo, row_end=hi)))
        parts = []
        call = self._stub.Encode(request, timeout=remaining_timeout(self._context))
        try:
            for reply in call:
                parts.append(to_numpy(reply.codes, field="codes"))
        finally:
            call.cancel()
        if not parts:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(parts, axis=0)

    def _provenance(self, activation_set: str, lo: int, hi: int) -> list[RowProvenance]:
        request = concept_pb2.ReadActivationSetRequest(name=activation_set, row_start=lo, row_end=hi,
                                                       include_provenance=True)
        out: list[RowProvenance] = []
        call = self._stub.ReadActivationSet(request, timeout=remaining_timeout(self._context))
        try:
            for reply in call:
                out.extend(RowProvenance(p.sample_index, p.token_start, p.token_end, p.text)
                           for p in reply.provenance)
        finally:
            call.cancel()
        return out

    def read_window(self, concept_model: str, activation_set: str, lo: int, hi: int
                    ) -> tuple[np.ndarray, list[RowProvenance]]:
        codes = self._codes(concept_model, activation_set, lo, hi)
        prov = self._provenance(activation_set, lo, hi)
        if codes.shape[0] != len(prov):
            raise ServiceError(f"concept-service returned {codes.shape[0]} codes but {len(prov)} "
                               f"provenance rows for rows {lo}..{hi}", code="INTERNAL")
        return codes, prov


class GrpcModelGenerator:
    """``ModelGenerator`` over a model-server stub whose failures are ``DownstreamError``s (a ``ReplicaPool`` stub),
    for the incoming call ``context``."""

    def __init__(self, stub: Any, context: grpc.ServicerContext) -> None:
        self._stub = stub
        self._context = context
        self._base_models: set[str] = set()  # models without a chat template

    def resolve_model(self, model: str) -> str:
        info = self._stub.GetModel(model_pb2.GetModelRequest(model=model),
                                   timeout=remaining_timeout(self._context, CONTROL_TIMEOUT)).model
        if not info.has_chat_template:
            self._base_models.add(info.model_id)
        return info.model_id

    def generate(self, model_id: str, messages: Sequence[dict[str, str]], *, max_new_tokens: int,
                 temperature: float, seed: int) -> str:
        if model_id in self._base_models:  # a base model (GPT-2...) continues a plain-text transcript
            prompt: dict[str, Any] = {"text": plain_chat_prompt(messages)}
        else:
            prompt = {"chat": model_pb2.ChatConversation(
                messages=[model_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in messages])}
        request = model_pb2.GenerateRequest(
            model=model_id,
            **prompt,
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature,
            seed=int(seed),
        )
        return self._stub.Generate(request, timeout=remaining_timeout(self._context, GENERATE_TIMEOUT)).text
