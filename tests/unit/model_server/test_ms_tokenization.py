import pytest

from xaimesh_runtime.errors import InvalidArgument
from xaimesh_model_server import tokenization
from xaimesh_model_server.tokenization import detokenize, tokenize, tokenize_ids


def _check_invariants(t):
    n = len(t)
    assert len(t.tokens) == len(t.token_start_chars) == len(t.token_end_chars) == n
    assert len(t.special_mask) == len(t.word_index) == len(t.sentence_index) == n
    # monotone, non-overlapping spans; token string = text slice
    cursor = 0
    for i in range(n):
        a, b = t.token_start_chars[i], t.token_end_chars[i]
        assert cursor <= a <= b <= len(t.text)
        cursor = b
        if not t.special_mask[i]:
            assert t.tokens[i] == t.text[a:b]
            assert t.word_index[i] >= 0 and t.sentence_index[i] >= 0
        else:
            assert t.word_index[i] == -1 and t.sentence_index[i] == -1
    # segments: contiguous token ranges that agree with the per-token indices
    for segs, index in ((t.words, t.word_index), (t.sentences, t.sentence_index)):
        for k, s in enumerate(segs):
            assert s.text == t.text[s.start_char : s.end_char]
            assert s.start_token < s.end_token
            assert [i for i in range(n) if index[i] == k] == list(range(s.start_token, s.end_token))
        assert [s.start_token for s in segs] == sorted(s.start_token for s in segs)
    # words never straddle sentences
    for w in t.words:
        assert len({t.sentence_index[i] for i in range(w.start_token, w.end_token)}) == 1


def test_offsets_words_sentences_punctuation_and_spaces(lm):
    text = "Hello,  world!  How are you? Fine."
    t = tokenize(lm, text)
    _check_invariants(t)
    assert "".join(t.tokens) == text
    assert [w.text for w in t.words] == ["Hello,", "world!", "How", "are", "you?", "Fine."]
    assert [s.text for s in t.sentences] == ["Hello,  world!", "How are you?", "Fine."]
    # a whitespace-only token goes with the next word
    space = t.tokens.index(" ")
    assert t.words[t.word_index[space]].text == "world!"
    assert t.words[0].start_char == 0 and t.words[0].end_char == 6


def test_unicode_split_characters_get_empty_spans(lm):
    text = "Héllo 日本語… ok"
    t = tokenize(lm, text)
    _check_invariants(t)
    assert "".join(t.tokens) == text
    assert [w.text for w in t.words] == ["Héllo", "日本語…", "ok"]
    # "語" is split over several byte tokens: only the first carries it
    assert any(a == b for a, b in zip(t.token_start_chars, t.token_end_chars))
    assert [s.text for s in t.sentences] == ["Héllo 日本語…", "ok"]


def test_newline_ends_sentence_and_numbers_do_not(lm):
    text = "Pi is 3.14 roughly\nNext line e.g. here!Yes"
    t = tokenize(lm, text)
    _check_invariants(t)
    assert [s.text for s in t.sentences] == ["Pi is 3.14 roughly", "Next line e.g.", "here!Yes"]
    assert "3.14" in [w.text for w in t.words]


def test_quotes_close_sentences(lm):
    t = tokenize(lm, 'He said "stop." Then left.')
    _check_invariants(t)
    assert [s.text for s in t.sentences] == ['He said "stop."', "Then left."]


def test_special_tokens_in_chat_text(lm):
    text = "<|im_start|>user\nHi there.<|im_end|>\n<|im_start|>assistant\n"
    t = tokenize(lm, text)
    _check_invariants(t)
    assert t.tokens[0] == "<|im_start|>" and t.special_mask[0]
    assert sum(t.special_mask) == 3
    assert "Hi" in [w.text for w in t.words]
    # the newline between two special tokens is a word of its own
    assert "\n" in [w.text for w in t.words]
    # special tokens break sentences
    assert "Hi there." in [s.text for s in t.sentences]


def test_whitespace_only_and_leading_trailing_spaces(lm):
    t = tokenize(lm, "   ")
    _check_invariants(t)
    assert len(t.words) == 1 and len(t.sentences) == 1
    t = tokenize(lm, "  lead and trail  ")
    _check_invariants(t)
    assert [w.text for w in t.words] == ["lead", "and", "trail"]
    assert t.word_index[-1] == 2  # trailing spaces stay with the last word


def test_truncation(lm):
    text = "one two three four five six seven"
    t = tokenize(lm, text, max_length=3)
    _check_invariants(t)
    assert len(t) == 3 and t.truncated
    assert [w.text for w in t.words] == ["one", "two", "three"]
    assert not tokenize(lm, text).truncated


def test_empty_text_is_rejected(lm):
    with pytest.raises(InvalidArgument, match="empty"):
        tokenize(lm, "")


def test_detokenize_roundtrip_and_range(lm):
    text = "Hello,  world! 日本語"
    t = tokenize(lm, text)
    assert detokenize(lm, t.token_ids) == text
    with pytest.raises(InvalidArgument, match="out of the vocabulary"):
        detokenize(lm, [1, 10**7])


def test_to_dict_matches_proto_fields(lm):
    d = tokenize(lm, "Hi. Bye").to_dict()
    assert set(d) == {
        "text", "token_ids", "tokens", "token_start_chars", "token_end_chars", "special_mask",
        "word_index", "sentence_index", "words", "sentences", "part_sentence_index", "part_sentences",
    }
    assert set(d["words"][0]) == {"text", "start_char", "end_char", "start_token", "end_token"}


def test_segments_by_granularity(lm):
    t = tokenize(lm, "<|im_start|>Hi there. Bye")
    assert [s.text for s in t.segments("word")] == ["Hi", "there.", "Bye"]
    assert [s.text for s in t.segments("sentence")] == ["Hi there.", "Bye"]
    assert len(t.segments("all_tokens")) == len(t) == len(t.segments("token")) + 1
    (sample,) = t.segments("sample")
    assert (sample.start_token, sample.end_token) == (1, len(t))
    with pytest.raises(InvalidArgument):
        t.segments("paragraph")


# --------------------------------------------------------------------------- tokenize_ids

TEXTS = [
    "Hello,  world!  How are you? Fine.",
    "Héllo 日本語… ok",
    "Pi is 3.14 roughly\nNext line e.g. here!Yes",
    'He said "stop." Then left.',
    "<|im_start|>user\nHi there.<|im_end|>\n<|im_start|>assistant\n",
    "   ",
    "  lead and trail  ",
    "😀🎉 emoji, ok. 語",
]


@pytest.mark.parametrize("text", TEXTS)
def test_ids_of_a_text_describe_it_as_the_text_does(lm, text):
    t = tokenize(lm, text)
    by_ids = tokenize_ids(lm, t.token_ids)
    _check_invariants(by_ids)
    assert by_ids == t
    assert by_ids.text == detokenize(lm, t.token_ids)


def test_ids_that_are_not_a_text_tokenization(lm):
    # a generated continuation: special tokens kept in the text, non-canonical splits
    ids = tokenize(lm, " Alice smiles.").token_ids + [lm.tokenizer.eos_token_id]
    ids = ids[:1] + tokenize(lm, " sm").token_ids + tokenize(lm, "iles.").token_ids[:1] + ids[2:]
    t = tokenize_ids(lm, ids)
    _check_invariants(t)
    assert t.token_ids == ids
    assert t.text == detokenize(lm, ids) and t.text.endswith("<|im_end|>")
    assert t.special_mask[-1] and t.tokens[-1] == "<|im_end|>"
    assert "".join(t.text[a:b] for a, b in zip(t.token_start_chars, t.token_end_chars)) == t.text
    assert [w.text for w in t.words][:1] == ["Alice"]


def test_ids_with_split_and_stray_bytes(lm):
    ids = tokenize(lm, "語").token_ids
    assert len(ids) > 1  # one character over several byte tokens
    t = tokenize_ids(lm, ids)
    assert t.tokens[0] == "語" and all(s == "" for s in t.tokens[1:])
    # a lone lead byte followed by ".": the decoder writes U+FFFD, each token keeps its own
    stray = tokenize_ids(lm, ids[:1] + tokenize(lm, ".").token_ids)
    _check_invariants(stray)
    assert stray.text == detokenize(lm, stray.token_ids) == "\ufffd."
    assert stray.tokens == ["\ufffd", "."]


def test_bad_ids_are_invalid_argument(lm):
    with pytest.raises(InvalidArgument, match="out of the vocabulary") as info:
        tokenize_ids(lm, [1, 10**7], field="sequences[3].ids")
    assert info.value.field == "sequences[3].ids"
    with pytest.raises(InvalidArgument, match="out of the vocabulary"):
        tokenize_ids(lm, [-1])
    with pytest.raises(InvalidArgument, match="empty"):
        tokenize_ids(lm, [])
    with pytest.raises(InvalidArgument, match="integers"):
        tokenize_ids(lm, [1.5])


def test_ids_cost_is_linear(lm, monkeypatch):
    """One decode of the whole sequence for a byte-level tokenizer, not one per prefix."""
    ids = tokenize(lm, " ".join(["The quick brown fox jumps over the lazy dog. 日本語"] * 50)).token_ids
    calls = []
    decode = type(lm.tokenizer).decode
    monkeypatch.setattr(type(lm.tokenizer), "decode", lambda self, *a, **k: calls.append(1) or decode(self, *a, **k))
    t = tokenize_ids(lm, ids)
    assert len(calls) == 1 and len(t) == len(ids) > 500


def _sentencepiece_like():
    """A SentencePiece-style tokenizer (Metaspace, byte fallback), not byte-level:
    the decoder drops the first token's leading space."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    corpus = ["Hello world. How are you? Fine, thanks.", "The quick brown fox jumps over the lazy dog."] * 20
    backend.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=320, special_tokens=specials))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def test_ids_with_a_sentencepiece_like_tokenizer():
    tok = _sentencepiece_like()
    for text in ["Hello world. How are you?", "The fox ß語 jumps. Fine"]:
        t = tokenize(tok, text)
        by_ids = tokenize_ids(tok, t.token_ids)
        _check_invariants(by_ids)
        assert by_ids.text == detokenize(tok, t.token_ids) == text
        # the same words and sentences; token spans may differ where the
        # tokenizer's own offsets overlap (a bare "▁" first token gets (0, 1))
        for name in ("words", "sentences", "word_index", "sentence_index", "special_mask"):
            assert getattr(by_ids, name) == getattr(t, name), name
    # byte-fallback tokens of one character: the first carries it
    ids = tokenize(tok, "ß").token_ids
    t = tokenize_ids(tok, ids)
    assert t.text == "ß" and "".join(t.tokens) == "ß"
    assert tok.convert_ids_to_tokens(ids) == ["▁", "<0xC3>", "<0x9F>"]
    assert t.tokens == ["", "ß", ""]
    # special tokens stay in the text and break words
    ids = tok("Hello", add_special_tokens=False)["input_ids"] + [tok.eos_token_id] + tok(
        "world")["input_ids"]
    t = tokenize_ids(tok, ids)
    _check_invariants(t)
    assert "</s>" in t.text and [w.text for w in t.words] == ["Hello", "world"]


def test_ids_with_a_decoder_whose_pieces_do_not_concatenate(lm, monkeypatch):
    """The last resort (decoded prefixes, at most 256 of them) still gives
    contiguous spans over the decoded text."""
    monkeypatch.setattr(tokenization, "_byte_level_pieces", lambda *a: None)
    monkeypatch.setattr(tokenization, "_window_pieces", lambda *a: None)
    for text in TEXTS[:5]:
        t = tokenize(lm, text)
        by_ids = tokenize_ids(lm, t.token_ids)
        _check_invariants(by_ids)
        assert by_ids.text == text and by_ids.tokens == t.tokens  # short: every prefix decoded
    ids = tokenize(lm, " ".join(["The fox jumps. 語"] * 150)).token_ids
    assert len(ids) > 512
    calls = []
    decode = type(lm.tokenizer).decode
    monkeypatch.setattr(type(lm.tokenizer), "decode", lambda self, *a, **k: calls.append(1) or decode(self, *a, **k))
    t = tokenize_ids(lm, ids)
    _check_invariants(t)
    assert len(calls) <= 257
    assert "".join(t.text[a:b] for a, b in zip(t.token_start_chars, t.token_end_chars)) == t.text
