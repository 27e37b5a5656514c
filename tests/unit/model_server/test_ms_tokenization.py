import pytest

from xaimesh_runtime.errors import InvalidArgument
from xaimesh_model_server.tokenization import detokenize, tokenize


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
        "token_ids", "tokens", "token_start_chars", "token_end_chars", "special_mask",
        "word_index", "sentence_index", "words", "sentences",
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
