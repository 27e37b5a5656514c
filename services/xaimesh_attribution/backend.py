"""`ModelBackend`: the model-server operations the attribution logic calls.

The attribution service never holds a model. Everything it needs from one
goes through this Protocol, in plain Python / numpy types that mirror
model.proto (GetModel, Tokenize, Detokenize, Score, ComputeGradients,
Generate). The gRPC adapter implements it over a ModelService channel; the
unit tests implement it in-process (over the model-server engine, or over a
synthetic game).

String values used across the protocol:

- task: "causal_lm" | "sequence_classification" | "seq2seq_lm"
- inference_mode: "logits" | "softmax" | "log_softmax"
- Replacement.policy: a `ReplacementPolicy` (a str: "pad_token" | "unk_token"
  | "mask_token" | "token_id" | "zero_embedding" | "remove"; model.proto
  ReplacementPolicy). `Replacement` is the one form of a replacement inside
  the service: the server decodes the proto into it once, the model client
  encodes it once.
- Baseline.kind / EmbeddingSamples.baseline_kind: a `BaselineKind` ("zero" |
  "pad_token" | "unk_token" | "mask_token" | "token_id"; model.proto
  BaselineKind)
- gradient outputs: "full" | "dot_delta" | "abs_sum" | "square_sum" |
  "l2_norm" | "dot_input"  (model.proto GradientOutput)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from .options import BaselineKind, ReplacementPolicy

GRADIENT_OUTPUTS = ("full", "dot_delta", "abs_sum", "square_sum", "l2_norm", "dot_input")


@dataclass
class Segment:
    """A span of text and the tokens that cover it (tensor.proto Segment).
    Character offsets are code points into the text; token indices are into
    the tokenized sequence, end exclusive."""

    text: str
    start_char: int
    end_char: int
    start_token: int
    end_token: int

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "start_char": self.start_char,
            "end_char": self.end_char,
            "start_token": self.start_token,
            "end_token": self.end_token,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Segment":
        return cls(
            str(d.get("text", "")),
            int(d.get("start_char", 0)),
            int(d.get("end_char", 0)),
            int(d.get("start_token", 0)),
            int(d.get("end_token", 0)),
        )


@dataclass
class Tokenized:
    """One tokenized text (model.proto TokenizedText). Per token: id, string,
    character span, whether it is special, index into `words` /
    `sentences` / `part_sentences` (-1 for special tokens)."""

    token_ids: list[int]
    tokens: list[str]
    token_start_chars: list[int]
    token_end_chars: list[int]
    special_mask: list[bool]
    word_index: list[int]
    sentence_index: list[int]
    words: list[Segment] = field(default_factory=list)
    sentences: list[Segment] = field(default_factory=list)
    # The text the character spans refer to (TokenizedText.text): the input
    # text, or the decoded text of a sequence of token ids.
    text: str = ""
    # A chat (`tokenize_chat`): per token, the index of the message whose
    # content holds it, -1 for template tokens. Empty for texts.
    message_index: list[int] = field(default_factory=list)
    # Parts of sentences (PART_SENTENCE) and each token's index into them.
    part_sentence_index: list[int] = field(default_factory=list)
    part_sentences: list[Segment] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.token_ids)


@dataclass
class ModelDescription:
    """What the attribution logic needs of model.proto ModelInfo. Absent
    special tokens have id -1."""

    model_id: str
    task: str  # "causal_lm" | "sequence_classification" | "seq2seq_lm"
    labels: list[str] = field(default_factory=list)  # classifier labels, class-index order
    max_sequence_length: int = 0  # 0 = unknown / unbounded
    bos_token_id: int = -1
    eos_token_id: int = -1
    pad_token_id: int = -1
    unk_token_id: int = -1
    mask_token_id: int = -1
    all_special_ids: list[int] = field(default_factory=list)
    vocab_size: int = 0


@dataclass(frozen=True)
class Replacement:
    """What a masked-out token becomes (model.proto Replacement). ``policy``
    None is the model's default, resolved once per request against the model
    (`methods.base.resolve_replacement`: its mask token, else its pad token,
    else its unk token). Once resolved, ``token_id`` is the id that replaces
    a token (the TOKEN_ID policy's id, or the mask / pad / unk id chosen), so
    every output says which token was used."""

    policy: ReplacementPolicy | None = None
    token_id: int = 0

    def to_dict(self) -> dict:
        policy = None if self.policy is None else ReplacementPolicy(self.policy).value
        return {"policy": policy, "token_id": int(self.token_id)}


@dataclass(frozen=True)
class Baseline:
    """The baseline of IntegratedGradients / GradientShap (model.proto
    Baseline). token_id is used by the TOKEN_ID kind."""

    kind: BaselineKind = BaselineKind.ZERO
    token_id: int = 0

    def to_dict(self) -> dict:
        return {"kind": BaselineKind(self.kind).value, "token_id": int(self.token_id)}


@dataclass
class EmbeddingSamples:
    """Embedding points where gradients are taken (model.proto
    EmbeddingSamples). Sample i is baseline_i + alphas[i] * (x - baseline_i)
    + noise_i with baseline_i = baseline + N(0, baseline_noise_stddev) and
    noise_i = N(0, noise_stddev), drawn by the model-server from `seed`.
    Empty alphas = one sample with alpha 1. position_mask: only positions
    with True are moved (None = all)."""

    baseline_kind: str = "zero"
    baseline_token_id: int = 0
    alphas: list[float] = field(default_factory=list)
    noise_stddev: float = 0.0
    baseline_noise_stddev: float = 0.0
    seed: int = 0
    position_mask: list[bool] | None = None


@runtime_checkable
class ModelBackend(Protocol):
    """The model-server, as the attribution logic sees it.

    All methods may raise the backend's own errors (they are passed through).
    """

    def describe(self) -> ModelDescription:
        """GetModel: task, labels, special token ids, max length, model id."""
        ...

    def tokenize(self, text: str, add_special_tokens: bool = False) -> Tokenized:
        """Tokenize one text with offsets, words and sentences."""
        ...

    def tokenize_ids(self, token_ids: Sequence[int]) -> Tokenized:
        """Tokenize with `sequences`: the Tokenized of exactly these ids, its
        `text` their decoded text (special tokens kept), with each token's
        span in it and its words and sentences, aligned by the model-server."""
        ...

    def detokenize(self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool = False) -> list[str]:
        """Detokenize: token ids back to text, one string per sequence (no
        clean-up of spaces)."""
        ...

    def score(
        self,
        input_ids: Sequence[int],
        keep_mask: np.ndarray | None,
        replacement: Replacement,
        *,
        target_positions: Sequence[int] | None = None,
        target_classes: Sequence[int] | None = None,
        inference_mode: str = "softmax",
        source_length: int = 0,
    ) -> np.ndarray:
        """Score: float32 [n_sequences, n_targets].

        keep_mask: bool [n, len(input_ids)] (True keeps the token, False
        replaces it per `replacement`); None scores input_ids alone (n = 1).
        Causal LM: target_positions p (1 <= p < len) — token input_ids[p]
        scored from the logits at p - 1, every target from one teacher-forced
        forward per sequence. Classifier: target_classes (None / empty = all
        classes). Encoder-decoder: input_ids[:source_length] is the source,
        target positions p >= source_length are scored by the decoder
        (model.proto ScoreRequest.source_length); 0 for other models.
        """
        ...

    def gradients(
        self,
        input_ids: Sequence[int],
        *,
        target_positions: Sequence[int] | None = None,
        target_classes: Sequence[int] | None = None,
        inference_mode: str = "logits",
        samples: EmbeddingSamples,
        outputs: Sequence[str] = ("dot_delta",),
        source_length: int = 0,
    ) -> dict[str, np.ndarray]:
        """ComputeGradients (source_length: as in `score`): gradients of each target's score with respect to
        the input embeddings, at the points `samples` describes.

        Returns a dict with "scores" float32 [n_samples, n_targets] and one
        entry per requested output: "full" [n_samples, n_targets, seq_len,
        hidden]; "dot_delta", "abs_sum", "square_sum", "l2_norm",
        "dot_input": [n_samples, n_targets, seq_len] (model.proto
        GradientOutput).
        """
        ...

    def generate(self, prompt: str, max_new_tokens: int) -> list[int]:
        """Generate greedily (no chat template, the prompt tokenized with the
        tokenizer's special tokens): the continuation's token ids only (an
        encoder-decoder's: the decoder's tokens after its start token)."""
        ...

    # Chats (explainer inputs that are conversations). A backend without
    # them cannot explain chats (FAILED_PRECONDITION); texts still work.

    def tokenize_chat(self, messages: Sequence[dict]) -> Tokenized:
        """Tokenize with `chats`: the chat ({"role", "content"} dicts)
        rendered with the model's chat template and its generation prompt,
        tokenized as Generate does; `message_index` per token."""
        ...

    def generate_chat(self, messages: Sequence[dict], max_new_tokens: int) -> list[int]:
        """Generate greedily from the chat rendered with the template (its
        generation prompt added): the continuation's token ids only."""
        ...


__all__ = [
    "GRADIENT_OUTPUTS",
    "Segment",
    "Tokenized",
    "ModelDescription",
    "Replacement",
    "Baseline",
    "EmbeddingSamples",
    "ModelBackend",
]
