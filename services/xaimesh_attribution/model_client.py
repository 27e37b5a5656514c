"""`GrpcModelBackend`: the `ModelBackend` protocol over the model-server's gRPC API.

    channel = connect(config.downstream("model-server"))
    backend = GrpcModelBackend(channel, "tiny-lm", lambda: remaining_timeout(context),
                               address="127.0.0.1:50051")
    context.add_callback(backend.cancel)       # the caller went away: cancel what is in flight

Every upstream call carries the time the incoming call has left
(`timeout_fn()`, None = no deadline) and runs as a future that `cancel()`
cancels, so a cancelled or expired explanation stops at once instead of
finishing its current model-server request. The scorer keeps up to
`max_in_flight` (default 4) Score requests of one explanation in flight
(scoring.py), so the model-server's batcher always has the next batch
queued; `cancel()` cancels all of them. Every call carries the
`xaimesh-caller` metadata `caller` (default: a fresh key per backend, i.e.
per explanation), so that the model-server's batcher gives one explanation
one turn among concurrent callers.

Upstream failures become the runtime's `DownstreamError`, which keeps the model-server's
status code (INVALID_ARGUMENT stays INVALID_ARGUMENT, with its field
violations) — except that UNAVAILABLE says which address could not be
reached, and codes that describe this service's own credentials or
configuration (UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED) become
INTERNAL. A call cancelled by `cancel()` raises `errors.Cancelled`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import numpy as np

from xaimesh_contracts.channels import CALLER_METADATA
from xaimesh_contracts.enums import EnumValueError, to_name, to_number
from xaimesh_contracts.v1 import model_pb2, model_pb2_grpc, tensor_pb2
from xaimesh_runtime.errors import DownstreamError, downstream_error
from xaimesh_contracts.tensors import to_numpy, to_tensor
from xaimesh_runtime.errors import Cancelled, InvalidArgument

from .backend import EmbeddingSamples, ModelDescription, Replacement, Segment, Tokenized
from .concepts import ConceptEncoder
from .options import BaselineKind, InferenceMode, ReplacementPolicy, Task, from_proto, to_proto

__all__ = ["GrpcModelBackend"]

UPSTREAM = "model-server"
DEFAULT_MAX_IN_FLIGHT = 4

def _floats(t: tensor_pb2.Tensor, field: str) -> np.ndarray:
    return to_numpy(t, field=field).astype(np.float32, copy=False)


def _segment(s: Any) -> Segment:
    return Segment(s.text, s.start_char, s.end_char, s.start_token, s.end_token)


def _tokenized(t: model_pb2.TokenizedText) -> Tokenized:
    return Tokenized(
        token_ids=[int(i) for i in t.token_ids],
        tokens=list(t.tokens),
        token_start_chars=list(t.token_start_chars),
        token_end_chars=list(t.token_end_chars),
        special_mask=[bool(b) for b in t.special_mask],
        word_index=list(t.word_index),
        sentence_index=list(t.sentence_index),
        words=[_segment(s) for s in t.words],
        sentences=[_segment(s) for s in t.sentences],
        text=t.text,
        message_index=list(t.message_index),
        part_sentence_index=list(t.part_sentence_index),
        part_sentences=[_segment(s) for s in t.part_sentences],
    )


def _chat(messages: Sequence[dict]) -> model_pb2.ChatConversation:
    return model_pb2.ChatConversation(messages=[
        model_pb2.ChatMessage(role=str(m["role"]), content=str(m["content"])) for m in messages])


class GrpcModelBackend:
    """A `ModelBackend` that calls a ModelService.

    stub_or_channel: a `ModelServiceStub` or a channel to make one from;
    model_id: the model ("" = the model-server's default; after `describe()`
    every call names the resolved model); timeout_fn: seconds left for each
    upstream call (None = no deadline); address: shown in error messages.
    """

    def __init__(self, stub_or_channel: Any, model_id: str = "",
                 timeout_fn: Callable[[], float | None] | None = None, *, address: str = "",
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, caller: str = "") -> None:
        if isinstance(stub_or_channel, grpc.Channel):
            stub_or_channel = model_pb2_grpc.ModelServiceStub(stub_or_channel)
        self.stub = stub_or_channel
        self.model_id = model_id or ""
        self.timeout_fn = timeout_fn or (lambda: None)
        self.address = address
        self.max_in_flight = max(1, int(max_in_flight))  # concurrent Score requests per explanation
        self._description: ModelDescription | None = None
        self._lock = threading.Lock()
        self._in_flight: set[Any] = set()
        self._cancelled = False
        self.calls: dict[str, int] = {}  # upstream calls made, by method (for tests and logs)
        # Every call names the explanation it works for, so the model-server's batcher gives the
        # explanation one turn however many Score requests it keeps in flight (CALLER_METADATA).
        self.metadata = ((CALLER_METADATA, caller or uuid.uuid4().hex),)

    # ------------------------------------------------------------ plumbing

    def cancel(self) -> None:
        """Cancels the upstream calls in flight; later calls raise Cancelled.
        Safe to call from any thread, more than once."""
        with self._lock:
            self._cancelled = True
            futures = list(self._in_flight)
        for future in futures:
            future.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _call(self, method: str, request: Any) -> Any:
        timeout = self.timeout_fn()
        if timeout is not None and timeout <= 0:
            raise DownstreamError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"the deadline passed before calling the {UPSTREAM} ({method})")
        with self._lock:
            if self._cancelled:
                raise Cancelled("the attribution was cancelled")
            future = getattr(self.stub, method).future(request, timeout=timeout, metadata=self.metadata)
            self._in_flight.add(future)
            self.calls[method] = self.calls.get(method, 0) + 1
        try:
            return future.result()
        except grpc.FutureCancelledError:
            raise Cancelled("the attribution was cancelled") from None
        except grpc.RpcError as error:
            if self._cancelled and error.code() == grpc.StatusCode.CANCELLED:
                raise Cancelled("the attribution was cancelled") from None
            raise downstream_error(error, UPSTREAM, self.address, method) from None
        finally:
            with self._lock:
                self._in_flight.discard(future)

    # ------------------------------------------------------------ ModelBackend

    def describe(self) -> ModelDescription:
        if self._description is None:
            info = self._call("GetModel", model_pb2.GetModelRequest(model=self.model_id)).model
            sp = info.special_tokens

            def special(token: str, token_id: int) -> int:
                return int(token_id) if token else -1

            self._description = ModelDescription(
                model_id=info.model_id,
                task=from_proto(Task, info.task) or Task.CAUSAL_LM.value,
                labels=list(info.labels),
                max_sequence_length=int(info.max_sequence_length),
                bos_token_id=special(sp.bos_token, sp.bos_token_id),
                eos_token_id=special(sp.eos_token, sp.eos_token_id),
                pad_token_id=special(sp.pad_token, sp.pad_token_id),
                unk_token_id=special(sp.unk_token, sp.unk_token_id),
                mask_token_id=special(sp.mask_token, sp.mask_token_id),
                all_special_ids=[int(i) for i in sp.all_special_ids],
                vocab_size=int(info.vocab_size),
            )
            self.model_id = info.model_id  # pin the default model for every later call
        return self._description

    def tokenize(self, text: str, add_special_tokens: bool = False) -> Tokenized:
        request = model_pb2.TokenizeRequest(model=self.model_id, texts=[text],
                                            add_special_tokens=add_special_tokens)
        return _tokenized(self._call("Tokenize", request).results[0])

    def tokenize_ids(self, token_ids: Sequence[int]) -> Tokenized:
        request = model_pb2.TokenizeRequest(model=self.model_id,
                                            sequences=[model_pb2.TokenIds(ids=[int(i) for i in token_ids])])
        return _tokenized(self._call("Tokenize", request).results[0])

    def detokenize(self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool = False) -> list[str]:
        request = model_pb2.DetokenizeRequest(
            model=self.model_id, skip_special_tokens=skip_special_tokens,
            sequences=[model_pb2.TokenIds(ids=[int(i) for i in seq]) for seq in sequences])
        return list(self._call("Detokenize", request).texts)

    def score(self, input_ids: Sequence[int], keep_mask: np.ndarray | None, replacement: Replacement, *,
              target_positions: Sequence[int] | None = None, target_classes: Sequence[int] | None = None,
              inference_mode: str = "softmax", source_length: int = 0) -> np.ndarray:
        request = model_pb2.ScoreRequest(
            model=self.model_id,
            input_ids=[int(i) for i in input_ids],
            replacement=model_pb2.Replacement(
                policy=to_proto(ReplacementPolicy, replacement.policy),
                token_id=int(replacement.token_id)),
            target_positions=[int(p) for p in target_positions or ()],
            target_classes=[int(c) for c in target_classes or ()],
            inference_mode=to_proto(InferenceMode, inference_mode),
            source_length=int(source_length),
        )
        if keep_mask is not None:
            request.keep_mask.CopyFrom(to_tensor(np.ascontiguousarray(keep_mask, dtype=bool)))
        response = self._call("Score", request)
        return _floats(response.scores, "scores")

    def gradients(self, input_ids: Sequence[int], *, target_positions: Sequence[int] | None = None,
                  target_classes: Sequence[int] | None = None, inference_mode: str = "logits",
                  samples: EmbeddingSamples, outputs: Sequence[str] = ("dot_delta",),
                  source_length: int = 0) -> dict[str, np.ndarray]:
        spec = _samples(samples)
        request = model_pb2.ComputeGradientsRequest(
            model=self.model_id,
            input_ids=[int(i) for i in input_ids],
            target_positions=[int(p) for p in target_positions or ()],
            target_classes=[int(c) for c in target_classes or ()],
            inference_mode=to_proto(InferenceMode, inference_mode),
            samples=spec,
            outputs=[to_number(model_pb2.GradientOutput, o, field="outputs") for o in outputs],
            source_length=int(source_length),
        )
        response = self._call("ComputeGradients", request)
        out = {"scores": _floats(response.scores, "scores")}
        for key in outputs:
            out[key] = _floats(getattr(response, key), key)
        return out

    def concept_scores(self, input_ids: Sequence[int], keep_mask: np.ndarray | None, replacement: Replacement,
                       encoder: ConceptEncoder) -> np.ndarray:
        """Score with a concept encoder: float32 [n_sequences, concepts] (concepts.py)."""
        request = model_pb2.ScoreRequest(
            model=self.model_id, input_ids=[int(i) for i in input_ids],
            replacement=model_pb2.Replacement(policy=to_proto(ReplacementPolicy, replacement.policy),
                                              token_id=int(replacement.token_id)),
            concept_encoder=concept_encoder_proto(encoder))
        if keep_mask is not None:
            request.keep_mask.CopyFrom(to_tensor(np.ascontiguousarray(keep_mask, dtype=bool)))
        return _floats(self._call("Score", request).scores, "scores")

    def concept_gradients(self, input_ids: Sequence[int], encoder: ConceptEncoder, *, samples: EmbeddingSamples,
                          outputs: Sequence[str] = ("dot_delta",)) -> dict[str, np.ndarray]:
        """ComputeGradients of a concept encoder's pooled activations (concepts.py)."""
        request = model_pb2.ComputeGradientsRequest(
            model=self.model_id, input_ids=[int(i) for i in input_ids], samples=_samples(samples),
            outputs=[to_number(model_pb2.GradientOutput, o, field="outputs") for o in outputs],
            concept_encoder=concept_encoder_proto(encoder))
        response = self._call("ComputeGradients", request)
        out = {"scores": _floats(response.scores, "scores")}
        for key in outputs:
            out[key] = _floats(getattr(response, key), key)
        return out

    def generate(self, prompt: str, max_new_tokens: int) -> list[int]:
        request = model_pb2.GenerateRequest(model=self.model_id, text=prompt, max_new_tokens=int(max_new_tokens),
                                            do_sample=False)
        return [int(i) for i in self._call("Generate", request).token_ids]

    def tokenize_chat(self, messages: Sequence[dict]) -> Tokenized:
        request = model_pb2.TokenizeRequest(model=self.model_id, chats=[_chat(messages)])
        return _tokenized(self._call("Tokenize", request).results[0])

    def generate_chat(self, messages: Sequence[dict], max_new_tokens: int) -> list[int]:
        request = model_pb2.GenerateRequest(model=self.model_id, chat=_chat(messages),
                                            max_new_tokens=int(max_new_tokens), do_sample=False)
        return [int(i) for i in self._call("Generate", request).token_ids]


def _samples(samples: EmbeddingSamples) -> model_pb2.EmbeddingSamples:
    return model_pb2.EmbeddingSamples(
        baseline=model_pb2.Baseline(kind=to_proto(BaselineKind, samples.baseline_kind),
                                    token_id=int(samples.baseline_token_id)),
        alphas=[float(a) for a in samples.alphas],
        noise_stddev=float(samples.noise_stddev),
        baseline_noise_stddev=float(samples.baseline_noise_stddev),
        seed=int(samples.seed),
        position_mask=[bool(b) for b in samples.position_mask or ()],
    )


def concept_encoder_proto(encoder: ConceptEncoder) -> model_pb2.ConceptEncoder:
    message = model_pb2.ConceptEncoder(
        split_point=encoder.split_point,
        weight=to_tensor(np.ascontiguousarray(encoder.weight, dtype=np.float32)),
        bias=to_tensor(np.ascontiguousarray(encoder.bias, dtype=np.float32)),
        activation=to_number(model_pb2.ConceptActivation, encoder.activation, field="concept_encoder.activation"),
        top_k=int(encoder.top_k),
        pooling=to_number(tensor_pb2.Aggregation, encoder.pooling, field="concept_encoder.pooling"),
        concepts=[int(c) for c in encoder.concepts])
    if encoder.thresholds is not None:
        message.thresholds.CopyFrom(to_tensor(np.ascontiguousarray(encoder.thresholds, dtype=np.float32)))
    return message


def concept_encoder_from_proto(message: model_pb2.ConceptEncoder) -> ConceptEncoder:
    """The request's ConceptEncoder (INVALID_ARGUMENT when its weight is missing or malformed)."""
    def tensor(name: str, ndim: int) -> np.ndarray | None:
        if not message.HasField(name):
            return None
        return to_numpy(getattr(message, name), field=f"concept_encoder.{name}", ndim=ndim, finite=True,
                        dtype=["float32", "float16", "bfloat16", "float64"]).astype(np.float32)

    def name(proto_enum, number: int, field: str, default: str) -> str:
        try:
            return to_name(proto_enum, number) or default
        except EnumValueError as error:
            raise InvalidArgument(str(error), field=f"concept_encoder.{field}") from None

    weight = tensor("weight", 2)
    if weight is None:
        raise InvalidArgument("concept_encoder.weight is missing: take the encoder from the concept-service's "
                              "GetConceptEncoder", field="concept_encoder.weight")
    bias = tensor("bias", 1)
    if bias is not None and bias.shape != (weight.shape[1],):
        raise InvalidArgument(f"concept_encoder.bias must have shape [{weight.shape[1]}] (one per weight column), "
                              f"got {list(bias.shape)}", field="concept_encoder.bias")
    return ConceptEncoder(
        split_point=message.split_point, weight=weight,
        bias=np.zeros(weight.shape[1], np.float32) if bias is None else bias,
        activation=name(model_pb2.ConceptActivation, message.activation, "activation", "identity"),
        top_k=int(message.top_k), thresholds=tensor("thresholds", 1),
        pooling=name(tensor_pb2.Aggregation, message.pooling, "pooling", "max"),
        concepts=tuple(int(c) for c in message.concepts))
