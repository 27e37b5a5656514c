import pytest
import torch

from xaimesh_model_server.engine import Aggregation, Limits, activations, aggregate_rows, resolve_split_points
from xaimesh_runtime.errors import InvalidArgument
from xaimesh_model_server.tokenization import tokenize

TEXTS = [
    "Alice and Bob enter the bar. Then Alice offers a drink!",
    "Short one",
    "<|im_start|>user\nHello there, friend.<|im_end|>",
]


def _collect(job):
    batches = list(job)
    rows = {p: torch.cat([b.rows[p] for b in batches]) for p in job.split_points}
    prov = [r for b in batches for r in b.provenance]
    errors = [e for b in batches for e in b.errors]
    return batches, rows, prov, errors


def _hidden(lm, text):
    ids = tokenize(lm, text).token_ids
    with torch.no_grad():
        return lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states


def test_all_tokens_equal_hidden_states_of_full_forward(lm):
    n = lm.num_layers
    job = activations(lm, TEXTS, ["1", "model.layers.0", str(n - 1)], "ALL_TOKENS")
    assert job.split_points == ["model.layers.1", "model.layers.0", f"model.layers.{n - 1}"]
    _, rows, prov, errors = _collect(job)
    assert not errors
    start = 0
    for i, text in enumerate(TEXTS):
        hs = _hidden(lm, text)  # hs[k + 1] is the output of layer k; the last one is normed
        L = hs[0].shape[1]
        assert [(r.sample_index, r.token_start) for r in prov[start : start + L]] == [(i, t) for t in range(L)]
        torch.testing.assert_close(rows["model.layers.0"][start : start + L], hs[1][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(rows["model.layers.1"][start : start + L], hs[2][0], atol=1e-5, rtol=1e-5)
        last = rows[f"model.layers.{n - 1}"][start : start + L]
        with torch.no_grad():
            torch.testing.assert_close(lm.model.model.norm(last), hs[n][0], atol=1e-5, rtol=1e-5)
        start += L
    assert start == rows["model.layers.0"].shape[0]


def test_forward_stops_at_deepest_split_point(lm):
    calls = {"later": 0, "head": 0, "asked": 0}
    handles = [
        lm.layers[2].register_forward_hook(lambda *a: calls.__setitem__("later", calls["later"] + 1)),
        lm.layers[3].register_forward_hook(lambda *a: calls.__setitem__("later", calls["later"] + 1)),
        lm.model.lm_head.register_forward_hook(lambda *a: calls.__setitem__("head", calls["head"] + 1)),
        lm.layers[1].register_forward_hook(lambda *a: calls.__setitem__("asked", calls["asked"] + 1)),
    ]
    try:
        _collect(activations(lm, TEXTS, ["0", "1"], "TOKEN"))
    finally:
        for h in handles:
            h.remove()
    assert calls["asked"] >= 1
    assert calls["later"] == 0 and calls["head"] == 0


def test_token_word_sentence_sample_cls(lm):
    text = TEXTS[2]
    tk = tokenize(lm, text)
    hs = _hidden(lm, text)[2][0]  # layer 1 output
    special = torch.tensor(tk.special_mask)

    _, rows, prov, _ = _collect(activations(lm, [text], [1], "TOKEN"))
    torch.testing.assert_close(rows["model.layers.1"], hs[~special], atol=1e-5, rtol=1e-5)
    assert [r.text for r in prov] == [t for t, s in zip(tk.tokens, tk.special_mask) if not s]
    assert all(r.token_end == r.token_start + 1 for r in prov)

    for gran, segs in (("WORD", tk.words), ("SENTENCE", tk.sentences)):
        for agg in ("MEAN", "MAX", "MIN", "SUM", "SIGNED_MAX"):
            _, rows, prov, _ = _collect(activations(lm, [text], ["1"], gran, agg))
            assert [(r.token_start, r.token_end, r.text) for r in prov] == [
                (s.start_token, s.end_token, s.text) for s in segs
            ]
            for k, s in enumerate(segs):
                block = hs[s.start_token : s.end_token]
                want = {
                    "MEAN": block.mean(0), "MAX": block.max(0).values, "MIN": block.min(0).values,
                    "SUM": block.sum(0),
                    "SIGNED_MAX": block.gather(0, block.abs().argmax(0, keepdim=True))[0],
                }[agg]
                torch.testing.assert_close(rows["model.layers.1"][k], want, atol=1e-5, rtol=1e-5)

    _, rows, prov, _ = _collect(activations(lm, [text], ["1"], "SAMPLE", "MEAN"))
    torch.testing.assert_close(rows["model.layers.1"][0], hs[~special].mean(0), atol=1e-5, rtol=1e-5)
    assert len(prov) == 1 and prov[0].text == text

    _, rows, prov, _ = _collect(activations(lm, [text], ["1"], "CLS_TOKEN"))
    torch.testing.assert_close(rows["model.layers.1"], hs[:1], atol=1e-5, rtol=1e-5)
    assert prov[0].text == "<|im_start|>" and (prov[0].token_start, prov[0].token_end) == (0, 1)


def test_aggregate_rows():
    rows = torch.tensor([[1.0, -5.0], [3.0, 2.0], [-4.0, 0.0], [9.0, 9.0]])
    seg = torch.tensor([0, 0, 1, -1])
    torch.testing.assert_close(aggregate_rows(rows, seg, 2, Aggregation.MEAN), torch.tensor([[2.0, -1.5], [-4.0, 0.0]]))
    torch.testing.assert_close(aggregate_rows(rows, seg, 2, Aggregation.MAX), torch.tensor([[3.0, 2.0], [-4.0, 0.0]]))
    torch.testing.assert_close(aggregate_rows(rows, seg, 2, Aggregation.MIN), torch.tensor([[1.0, -5.0], [-4.0, 0.0]]))
    torch.testing.assert_close(aggregate_rows(rows, seg, 2, Aggregation.SUM), torch.tensor([[4.0, -3.0], [-4.0, 0.0]]))
    torch.testing.assert_close(
        aggregate_rows(rows, seg, 2, Aggregation.SIGNED_MAX), torch.tensor([[3.0, -5.0], [-4.0, 0.0]])
    )


def test_windows_keep_input_order_and_item_errors(lm):
    texts = ["first text here", "", "second one", "third, longer text with more words in it", "x"]
    job = activations(lm, texts, ["2"], "SAMPLE", limits=Limits(activation_window_tokens=4))
    assert job.num_samples == 5 and job.hidden_size == lm.hidden_size
    batches, rows, prov, errors = _collect(job)
    assert len(batches) > 2
    assert [r.sample_index for r in prov] == [0, 2, 3, 4]
    assert [e.index for e in errors] == [1] and isinstance(errors[0].error, InvalidArgument)
    assert batches[-1].samples_done == 5 and all(b.total_samples == 5 for b in batches)
    done = [b.samples_done for b in batches]
    assert done == sorted(done)
    # same numbers as one window
    _, rows_one, _, _ = _collect(activations(lm, texts, ["2"], "SAMPLE"))
    torch.testing.assert_close(rows["model.layers.2"], rows_one["model.layers.2"])


def test_submodule_split_point_and_truncation(lm):
    captured = {}
    h = lm.model.get_submodule("model.layers.1.mlp").register_forward_hook(
        lambda m, i, o: captured.__setitem__("mlp", o)
    )
    ids = tokenize(lm, TEXTS[0]).token_ids[:5]
    with torch.no_grad():
        lm.model(torch.tensor([ids]))
    h.remove()
    _, rows, prov, _ = _collect(activations(lm, [TEXTS[0]], ["model.layers.1.mlp"], "ALL_TOKENS", max_length=5))
    assert len(prov) == 5
    torch.testing.assert_close(rows["model.layers.1.mlp"], captured["mlp"][0], atol=1e-5, rtol=1e-5)


def test_split_point_errors(lm):
    with pytest.raises(InvalidArgument, match=r"split point 40 is out of range: model 'tiny-lm' has 4 layers: use a layer index 0\.\.3"):
        activations(lm, ["a"], ["40"])
    with pytest.raises(InvalidArgument, match="out of range"):
        activations(lm, ["a"], ["-1"])
    with pytest.raises(InvalidArgument, match="unknown split point 'transformer.h.2'"):
        activations(lm, ["a"], ["transformer.h.2"])
    with pytest.raises(InvalidArgument, match="no such module"):
        activations(lm, ["a"], ["model.layers.2.nothing"])
    with pytest.raises(InvalidArgument, match="out of range"):
        activations(lm, ["a"], ["model.layers.9"])
    with pytest.raises(InvalidArgument, match="split_points is empty"):
        activations(lm, ["a"], [])
    with pytest.raises(InvalidArgument, match="texts is empty"):
        activations(lm, [], ["1"])
    with pytest.raises(InvalidArgument, match="max_length 9999"):
        activations(lm, ["a"], ["1"], max_length=9999)
    with pytest.raises(InvalidArgument, match="unknown granularity"):
        activations(lm, ["a"], ["1"], "PARAGRAPH")
    assert [p.name for p in resolve_split_points(lm, [1, "1", "model.layers.1"])] == ["model.layers.1"]
