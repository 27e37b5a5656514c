"""FIRST / LAST aggregations of activation rows (interpreto's strategies of
the same names): the row of an element's first / last token."""

import torch

from xaimesh_model_server.engine import Aggregation, activations, aggregate_rows
from xaimesh_model_server.tokenization import tokenize

TEXT = "Alice and Bob enter the bar. Then Alice offers a drink!"


def test_aggregate_rows_first_and_last():
    rows = torch.arange(12, dtype=torch.float32).view(6, 2)
    seg = torch.tensor([0, 0, 1, -1, 1, 1])  # row 3 belongs to no segment
    assert aggregate_rows(rows, seg, 2, Aggregation.FIRST).tolist() == [[0, 1], [4, 5]]
    assert aggregate_rows(rows, seg, 2, Aggregation.LAST).tolist() == [[2, 3], [10, 11]]


def test_word_rows_are_their_first_and_last_token_rows(lm):
    tk = tokenize(lm, TEXT)

    def rows(granularity, aggregation="MEAN"):
        (batch,) = list(activations(lm, [TEXT], ["1"], granularity, aggregation))
        return batch.rows["model.layers.1"], batch.provenance

    tokens, token_prov = rows("ALL_TOKENS")
    by_token = {p.token_start: tokens[i] for i, p in enumerate(token_prov)}
    first, prov = rows("WORD", "FIRST")
    last, _ = rows("WORD", "LAST")
    assert [p.text for p in prov] == [w.text for w in tk.words]
    multi = 0
    for i, p in enumerate(prov):
        torch.testing.assert_close(first[i], by_token[p.token_start])
        torch.testing.assert_close(last[i], by_token[p.token_end - 1])
        multi += p.token_end - p.token_start > 1
    assert multi  # some word has several tokens, so FIRST and LAST differ somewhere
    assert not torch.equal(first, last)
