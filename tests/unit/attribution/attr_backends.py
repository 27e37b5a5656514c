"""ModelBackend implementations for the attribution tests.

- `SyntheticBackend`: a toy tokenizer and a user-given game (scores as a
  function of the token keep-mask), for methods with known answers.
- `EngineBackend`: the in-process adapter of the model-server engine
  (services/xaimesh_model_server), used to cross-check against captum with
  the tiny models.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from xaimesh_attribution.backend import EmbeddingSamples, ModelDescription, Replacement, Segment, Tokenized

# --------------------------------------------------------------------------- synthetic

PAD, BOS, EOS = 0, 1, 2
SPECIAL = {PAD: "<pad>", BOS: "<s>", EOS: "</s>"}


class SyntheticBackend:
    """Whitespace words, each cut into pieces of `piece` characters (the
    whitespace before a word goes with its first piece). Sentences end after
    a word ending with ".". Token ids come from a growing vocabulary (3+).

    game(keep [n, L] bool, input_ids [L], targets, mode) -> [n, T]: for a
    causal LM `targets` are positions and the value of position p must depend
    on keep[:, :p] only (teacher forcing); for a classifier they are classes.
    """

    def __init__(
        self,
        game: Callable,
        *,
        task: str = "causal_lm",
        labels: Sequence[str] = (),
        piece: int = 100,
        bos: bool = False,
        max_len: int = 0,
        generated: Sequence[int] = (),
    ) -> None:
        self.game = game
        self.task = task
        self.labels = list(labels)
        self.piece = piece
        self.bos = bos
        self.max_len = max_len
        self.generated = list(generated)
        self.vocab: dict[str, int] = {}
        self.score_calls: list[dict] = []

    # vocabulary
    def _id(self, s: str) -> int:
        if s not in self.vocab:
            self.vocab[s] = 3 + len(self.vocab)
        return self.vocab[s]

    def _str(self, i: int) -> str:
        if i in SPECIAL:
            return SPECIAL[i]
        inv = {v: k for k, v in self.vocab.items()}
        return inv[i]

    def describe(self) -> ModelDescription:
        return ModelDescription(
            model_id="synthetic",
            task=self.task,
            labels=self.labels,
            max_sequence_length=self.max_len,
            bos_token_id=BOS,
            eos_token_id=EOS,
            pad_token_id=PAD,
            all_special_ids=[PAD, BOS, EOS],
            vocab_size=0,
        )

    def tokenize(self, text: str, add_special_tokens: bool = False) -> Tokenized:
        ids, toks, st, en, sp, wi = [], [], [], [], [], []

        def add(tid: int, s: str, a: int, b: int, special: bool, w: int) -> None:
            ids.append(tid)
            toks.append(s)
            st.append(a)
            en.append(b)
            sp.append(special)
            wi.append(w)

        if add_special_tokens and self.bos:
            add(BOS, "<s>", 0, 0, True, -1)
        words: list[Segment] = []
        i = 0
        n = len(text)
        while i < n:
            j = i
            while j < n and text[j].isspace():
                j += 1
            if j >= n:  # trailing whitespace: its own token, on the previous word
                add(self._id(text[i:n]), text[i:n], i, n, False, len(words) - 1)
                if words:
                    words[-1].end_token = len(ids)
                break
            k = j
            while k < n and not text[k].isspace():
                k += 1
            w = len(words)
            first_tok = len(ids)
            pos = start = j
            start = i
            while pos < k:
                end = min(k, pos + self.piece)
                add(self._id(text[start:end]), text[start:end], start, end, False, w)
                start = pos = end
            words.append(Segment(text[j:k], j, k, first_tok, len(ids)))
            i = k
        # sentences
        sentences: list[Segment] = []
        sent_of_word = []
        first = 0
        for w, seg in enumerate(words):
            sent_of_word.append(len(sentences))
            if seg.text.endswith(".") or w == len(words) - 1:
                a, b = words[first].start_char, seg.end_char
                sentences.append(Segment(text[a:b], a, b, words[first].start_token, seg.end_token))
                first = w + 1
        si = [sent_of_word[w] if w >= 0 else -1 for w in wi]
        return Tokenized(ids, toks, st, en, sp, wi, si, words, sentences, text)

    def tokenize_ids(self, token_ids):
        """The model-server's Tokenize of `sequences`, for this toy tokenizer:
        the decoded text, contiguous token spans, the words and sentences of
        the text; a token belongs to the word holding its first non-space
        character (whitespace-only tokens to the next word, else the previous)."""
        ids = [int(i) for i in token_ids]
        pieces = [self._str(i) for i in ids]
        text = "".join(pieces)
        seg = self.tokenize(text)
        if seg.token_ids == ids:
            return seg
        starts, ends, pos = [], [], 0
        for piece in pieces:
            starts.append(pos)
            pos += len(piece)
            ends.append(pos)
        special = [i in SPECIAL for i in ids]
        word_index = [-1] * len(ids)
        for k in range(len(ids)):
            if special[k]:
                continue
            c = next((c for c in range(starts[k], ends[k]) if not text[c].isspace()), None)
            if c is not None:
                word_index[k] = next((w for w, s in enumerate(seg.words) if s.start_char <= c < s.end_char), -1)
        nxt = -1
        for k in range(len(ids) - 1, -1, -1):
            if not special[k] and word_index[k] < 0:
                word_index[k] = nxt
            nxt = -1 if special[k] else word_index[k]
        prev = -1
        for k in range(len(ids)):
            if not special[k] and word_index[k] < 0:
                word_index[k] = prev
            if not special[k]:
                prev = word_index[k]
        words = []
        for w, s in enumerate(seg.words):
            toks = [k for k in range(len(ids)) if word_index[k] == w]
            words.append(Segment(s.text, s.start_char, s.end_char, toks[0] if toks else 0,
                                 toks[-1] + 1 if toks else 0))
        sent_of_word = [next((j for j, st in enumerate(seg.sentences) if st.start_char <= s.start_char < st.end_char),
                             -1) for s in seg.words]
        sentence_index = [sent_of_word[w] if w >= 0 else -1 for w in word_index]
        return Tokenized(ids, pieces, starts, ends, special, word_index, sentence_index, words,
                         list(seg.sentences), text)

    def detokenize(self, sequences, skip_special_tokens=False):
        return [
            "".join("" if (skip_special_tokens and i in SPECIAL) else self._str(int(i)) for i in seq)
            for seq in sequences
        ]

    def score(
        self,
        input_ids,
        keep_mask,
        replacement: Replacement,
        *,
        target_positions=None,
        target_classes=None,
        inference_mode="softmax",
        source_length=0,
    ):
        assert source_length == 0, "synthetic games are causal LMs or classifiers"
        ids = np.asarray(input_ids)
        keep = np.ones((1, len(ids)), dtype=bool) if keep_mask is None else np.asarray(keep_mask, dtype=bool)
        targets = list(target_positions) if target_positions is not None else list(target_classes or [])
        self.score_calls.append({"n": len(keep), "targets": targets, "policy": replacement.policy, "keep": keep})
        if self.task == "causal_lm":
            out = self.game(keep, ids, targets, inference_mode)
        else:
            out = self.game(keep, ids, targets if targets else list(range(len(self.labels))), inference_mode)
        return np.asarray(out, dtype=np.float32)

    def gradients(self, *a, **k):  # pragma: no cover - synthetic games have no gradients
        raise NotImplementedError

    def generate(self, prompt: str, max_new_tokens: int):
        return list(self.generated[:max_new_tokens])

    @property
    def n_forwards(self) -> int:
        return sum(c["n"] for c in self.score_calls)


# --------------------------------------------------------------------------- engine


class EngineBackend:
    """The model-server engine (in-process), as a ModelBackend."""

    def __init__(self, loaded) -> None:
        from xaimesh_model_server import engine, tokenization

        self.loaded = loaded
        self.engine = engine
        self.tokenization = tokenization
        self.score_calls = 0
        self.gradient_calls = 0

    def describe(self) -> ModelDescription:
        info = self.loaded.info()
        sp = self.loaded.special_tokens()
        return ModelDescription(
            model_id=info["model_id"],
            task=info["task"],
            labels=list(info.get("labels") or []),
            max_sequence_length=int(info.get("max_sequence_length") or 0),
            bos_token_id=int(sp.get("bos_token_id", -1)),
            eos_token_id=int(sp.get("eos_token_id", -1)),
            pad_token_id=int(sp.get("pad_token_id", -1)),
            unk_token_id=int(sp.get("unk_token_id", -1)),
            mask_token_id=int(sp.get("mask_token_id", -1)),
            all_special_ids=list(sp.get("all_special_ids", [])),
            vocab_size=int(info.get("vocab_size") or 0),
        )

    def tokenize(self, text: str, add_special_tokens: bool = False) -> Tokenized:
        return self._tokenized(self.tokenization.tokenize(self.loaded, text, add_special_tokens))

    @staticmethod
    def _tokenized(t) -> Tokenized:
        seg = lambda s: Segment(s.text, s.start_char, s.end_char, s.start_token, s.end_token)  # noqa: E731
        return Tokenized(
            list(t.token_ids),
            list(t.tokens),
            list(t.token_start_chars),
            list(t.token_end_chars),
            list(t.special_mask),
            list(t.word_index),
            list(t.sentence_index),
            [seg(s) for s in t.words],
            [seg(s) for s in t.sentences],
            t.text,
            part_sentence_index=list(t.part_sentence_index),
            part_sentences=[seg(s) for s in t.part_sentences],
        )

    def tokenize_ids(self, token_ids) -> Tokenized:
        return self._tokenized(self.tokenization.tokenize_ids(self.loaded, list(token_ids)))

    def detokenize(self, sequences, skip_special_tokens=False):
        return [self.tokenization.detokenize(self.loaded, list(s), skip_special_tokens) for s in sequences]

    def score(
        self, input_ids, keep_mask, replacement, *, target_positions=None, target_classes=None, inference_mode="softmax",
        source_length=0,
    ):
        self.score_calls += 1
        return self.engine.score(
            self.loaded,
            list(input_ids),
            keep_mask,
            self.engine.Replacement(replacement.policy, int(replacement.token_id)),
            target_positions=list(target_positions or ()),
            target_classes=list(target_classes or ()),
            inference_mode=inference_mode,
            source_length=source_length,
        )

    def gradients(
        self,
        input_ids,
        *,
        target_positions=None,
        target_classes=None,
        inference_mode="logits",
        samples: EmbeddingSamples,
        outputs=("dot_delta",),
        source_length=0,
    ):
        self.gradient_calls += 1
        spec = self._samples(samples)
        return self.engine.gradients(
            self.loaded,
            list(input_ids),
            target_positions=list(target_positions or ()),
            target_classes=list(target_classes or ()),
            inference_mode=inference_mode,
            samples=spec,
            outputs=list(outputs),
            source_length=source_length,
        )

    def _samples(self, samples: EmbeddingSamples):
        return self.engine.EmbeddingSamples(
            baseline=samples.baseline_kind,
            baseline_token_id=samples.baseline_token_id,
            alphas=list(samples.alphas),
            noise_stddev=samples.noise_stddev,
            baseline_noise_stddev=samples.baseline_noise_stddev,
            seed=samples.seed,
            position_mask=list(samples.position_mask or ()),
        )

    def generate(self, prompt: str, max_new_tokens: int):
        return list(self.engine.generate(self.loaded, prompt, max_new_tokens=max_new_tokens).token_ids)

    def _readout(self, encoder):
        return self.engine.concept_readout(
            self.loaded, encoder.split_point, encoder.weight, encoder.bias, activation=encoder.activation,
            top_k=encoder.top_k, thresholds=encoder.thresholds, pooling=encoder.pooling, concepts=encoder.concepts)

    def concept_scores(self, input_ids, keep_mask, replacement, encoder):
        self.score_calls += 1
        return self.engine.concept_scores(self.loaded, list(input_ids), keep_mask,
                                          self.engine.Replacement(replacement.policy, int(replacement.token_id)),
                                          self._readout(encoder))

    def concept_gradients(self, input_ids, encoder, *, samples: EmbeddingSamples, outputs=("dot_delta",)):
        self.gradient_calls += 1
        return self.engine.gradients(self.loaded, list(input_ids), samples=self._samples(samples),
                                     outputs=list(outputs), concept_readout=self._readout(encoder))


def engine_backend(path, model_id: str) -> EngineBackend:
    from xaimesh_model_server.loading import load_model

    return EngineBackend(load_model(path, device="cpu", model_id=model_id))
