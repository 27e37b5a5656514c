"""PART_SENTENCE (interpreto's granularity): sentences cut after a word ending
with ",", ";" or ":" — in tokenization and activation rows."""

import torch

from xaimesh_model_server.engine import activations
from xaimesh_model_server.tokenization import tokenize, tokenize_ids

TEXT = "Then Alice offers a drink, and Bob smiles: thanks. Good night; sleep well!"


def test_parts_of_sentences_nest_in_sentences(lm):
    tk = tokenize(lm, TEXT)
    assert [s.text for s in tk.sentences] == ["Then Alice offers a drink, and Bob smiles: thanks.",
                                             "Good night; sleep well!"]
    assert [s.text for s in tk.part_sentences] == ["Then Alice offers a drink,", "and Bob smiles:", "thanks.",
                                                  "Good night;", "sleep well!"]
    for i, segment in enumerate(tk.part_sentences):
        assert all(tk.part_sentence_index[t] == i for t in range(segment.start_token, segment.end_token))
    assert tk.segments("part_sentence") == tk.part_sentences
    # The same segments when the text is described from its ids.
    again = tokenize_ids(lm, tk.token_ids)
    assert [s.text for s in again.part_sentences] == [s.text for s in tk.part_sentences]


def test_part_sentence_rows_aggregate_their_tokens(lm):
    tk = tokenize(lm, TEXT)
    (tokens,) = list(activations(lm, [TEXT], ["1"], "ALL_TOKENS"))
    (parts,) = list(activations(lm, [TEXT], ["1"], "PART_SENTENCE", "MEAN"))
    rows = parts.rows["model.layers.1"]
    assert [p.text for p in parts.provenance] == [s.text for s in tk.part_sentences]
    for i, segment in enumerate(tk.part_sentences):
        expected = tokens.rows["model.layers.1"][segment.start_token:segment.end_token].mean(0)
        torch.testing.assert_close(rows[i], expected)
