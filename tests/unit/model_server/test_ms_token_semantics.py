"""The token semantics of activations (docs/models.md, "Token semantics").

With tokenizers that add special tokens (a WordPiece BERT with [CLS] ... [SEP],
a Llama tokenizer that prepends a BOS), the model runs on the text with its
special tokens; TOKEN / WORD / SENTENCE / SAMPLE leave their rows out,
ALL_TOKENS keeps them, CLS_TOKEN is row 0; OMIT gives the old behaviour.
The reference is bare transformers: `hidden_states` of the same model.
"""

from __future__ import annotations

import grpc
import pytest
import torch

from tests.fixtures.special_token_models import SAMPLE_TEXTS, bert_classifier, bos_causal_lm
from xaimesh_model_server.engine import activations
from xaimesh_model_server.tokenization import tokenize
from xaimesh_runtime.errors import InvalidArgument

TEXTS = SAMPLE_TEXTS[:4]  # different lengths


@pytest.fixture(scope="module")
def bert_path(tmp_path_factory):
    return bert_classifier(tmp_path_factory.mktemp("bert") / "tiny-bert")


@pytest.fixture(scope="module")
def bert(bert_path):
    from xaimesh_model_server.loading import load_model

    return load_model(bert_path, device="cpu", model_id="tiny-bert")


@pytest.fixture(scope="module")
def bos_lm(tmp_path_factory):
    from xaimesh_model_server.loading import load_model

    return load_model(bos_causal_lm(tmp_path_factory.mktemp("bos")), device="cpu", model_id="tiny-bos")


@pytest.fixture(params=["bert", "bos_lm"])
def special_model(request):
    return request.getfixturevalue(request.param)


def _collect(job):
    batches = list(job)
    rows = {p: torch.cat([b.rows[p] for b in batches]) for p in job.split_points}
    prov = [r for b in batches for r in b.provenance]
    assert not [e for b in batches for e in b.errors]
    return rows, prov


def _reference(loaded, text, add_special_tokens=True):
    """(ids, special mask, hidden_states) of bare transformers on one text."""
    enc = loaded.tokenizer(text, add_special_tokens=add_special_tokens, return_special_tokens_mask=True)
    ids = torch.tensor([enc["input_ids"]])
    with torch.no_grad():
        hs = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True).hidden_states
    return enc["input_ids"], [bool(m) for m in enc["special_tokens_mask"]], hs


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def test_the_tokenizers_add_special_tokens(bert, bos_lm):
    ids, special, _ = _reference(bert, TEXTS[0])
    assert special[0] and special[-1] and not any(special[1:-1])
    assert bert.tokenizer.convert_ids_to_tokens(ids[0]) == "[CLS]"
    ids, special, _ = _reference(bos_lm, TEXTS[0])
    assert special[0] and not any(special[1:])


@pytest.mark.parametrize("batched", [False, True], ids=["one-at-a-time", "batched"])
def test_token_rows_are_the_block_outputs_at_non_special_positions(special_model, batched):
    layers = [0, 1]
    groups = [TEXTS] if batched else [[t] for t in TEXTS]
    got_rows, got_prov = [], []
    for group in groups:
        rows, prov = _collect(activations(special_model, group, [str(k) for k in layers], "TOKEN"))
        got_rows.append(rows)
        got_prov.extend(prov)
    merged = {p: torch.cat([r[p] for r in got_rows]) for p in got_rows[0]}
    start = 0
    for i, text in enumerate(TEXTS):
        ids, special, hs = _reference(special_model, text)
        keep = [t for t in range(len(ids)) if not special[t]]
        mine = got_prov[start : start + len(keep)]
        sample = i if batched else 0
        assert [(r.sample_index, r.token_start, r.token_end) for r in mine] == [(sample, t, t + 1) for t in keep]
        for k in layers:
            path = special_model.split_points[k]
            expected = hs[k + 1][0, keep]
            assert _rel(merged[path][start : start + len(keep)], expected) <= 1e-4
        start += len(keep)
    assert start == merged[special_model.split_points[0]].shape[0]


def test_omit_differs_for_bert(bert):
    """Without [CLS] / [SEP] a BERT's rows are far from the block's output: why the default changed."""
    ids, special, hs = _reference(bert, TEXTS[0])
    keep = [t for t in range(len(ids)) if not special[t]]
    rows, _ = _collect(activations(bert, [TEXTS[0]], ["1"], "TOKEN", special_tokens="OMIT"))
    assert _rel(rows[bert.split_points[1]], hs[2][0, keep]) > 1e-2


def test_all_tokens_keep_the_special_rows(special_model):
    rows, prov = _collect(activations(special_model, TEXTS[:2], ["0"], "ALL_TOKENS"))
    start = 0
    for i, text in enumerate(TEXTS[:2]):
        ids, special, hs = _reference(special_model, text)
        n = len(ids)
        assert [(r.sample_index, r.token_start) for r in prov[start : start + n]] == [(i, t) for t in range(n)]
        assert prov[start].text == special_model.tokenizer.convert_ids_to_tokens(ids[0])
        assert _rel(rows[special_model.split_points[0]][start : start + n], hs[1][0]) <= 1e-4
        start += n


def test_sample_is_the_mean_of_the_non_special_rows(special_model):
    rows, prov = _collect(activations(special_model, TEXTS, ["1"], "SAMPLE"))
    got = rows[special_model.split_points[1]]
    assert got.shape[0] == len(TEXTS)
    for i, text in enumerate(TEXTS):
        ids, special, hs = _reference(special_model, text)
        keep = [t for t in range(len(ids)) if not special[t]]
        assert _rel(got[i], hs[2][0, keep].mean(0)) <= 1e-4
        assert (prov[i].token_start, prov[i].token_end, prov[i].text) == (keep[0], keep[-1] + 1, text)


def test_cls_token_is_row_zero(special_model):
    rows, prov = _collect(activations(special_model, TEXTS, ["1"], "CLS_TOKEN"))
    for i, text in enumerate(TEXTS):
        ids, special, hs = _reference(special_model, text)
        assert special[0]  # [CLS] of the encoder, BOS of the causal LM
        assert _rel(rows[special_model.split_points[1]][i], hs[2][0, 0]) <= 1e-4
        assert (prov[i].token_start, prov[i].token_end) == (0, 1)


def test_word_and_sentence_spans_index_the_sequence_with_special_tokens(special_model):
    for granularity, attr in (("WORD", "words"), ("SENTENCE", "sentences")):
        rows, prov = _collect(activations(special_model, TEXTS[:2], ["1"], granularity))
        start = 0
        for i, text in enumerate(TEXTS[:2]):
            tk = tokenize(special_model, text, True)
            segments = getattr(tk, attr)
            mine = prov[start : start + len(segments)]
            assert [(r.token_start, r.token_end, r.text) for r in mine] == [
                (s.start_token, s.end_token, s.text) for s in segments]
            _, special, hs = _reference(special_model, text)
            for r, row in zip(mine, rows[special_model.split_points[1]][start:]):
                assert not any(special[r.token_start : r.token_end])
                assert _rel(row, hs[2][0, r.token_start : r.token_end].mean(0)) <= 1e-4
            start += len(segments)


def test_omit_reproduces_the_old_behaviour(special_model):
    rows, prov = _collect(activations(special_model, TEXTS, ["1"], "TOKEN", special_tokens="OMIT"))
    start = 0
    for i, text in enumerate(TEXTS):
        ids, special, hs = _reference(special_model, text, add_special_tokens=False)
        assert not any(special)
        n = len(ids)
        assert [r.token_start for r in prov[start : start + n]] == list(range(n))
        assert _rel(rows[special_model.split_points[1]][start : start + n], hs[2][0]) <= 1e-4
        start += n
    # CLS_TOKEN with OMIT: the first text token
    rows, _ = _collect(activations(special_model, [TEXTS[0]], ["1"], "CLS_TOKEN", special_tokens="OMIT"))
    _, _, hs = _reference(special_model, TEXTS[0], add_special_tokens=False)
    assert _rel(rows[special_model.split_points[1]][0], hs[2][0, 0]) <= 1e-4


def test_add_and_the_deprecated_bool_equal_the_default(bert):
    default, _ = _collect(activations(bert, TEXTS, ["1"], "ALL_TOKENS"))
    for kwargs in ({"special_tokens": "ADD"}, {"add_special_tokens": True},
                   {"special_tokens": "SPECIAL_TOKENS_POLICY_UNSPECIFIED", "add_special_tokens": False}):
        got, _ = _collect(activations(bert, TEXTS, ["1"], "ALL_TOKENS", **kwargs))
        torch.testing.assert_close(got, default)
    with pytest.raises(InvalidArgument, match="contradicts") as err:
        activations(bert, TEXTS, ["1"], add_special_tokens=True, special_tokens="OMIT")
    assert err.value.field == "special_tokens"
    with pytest.raises(InvalidArgument, match="unknown special_tokens") as err:
        activations(bert, TEXTS, ["1"], special_tokens=7)


def test_max_length_counts_the_special_tokens(bert):
    rows, prov = _collect(activations(bert, [TEXTS[0]], ["1"], "ALL_TOKENS", max_length=5))
    assert len(prov) == 5
    assert prov[0].text == "[CLS]" and prov[-1].text == "[SEP]"


def test_nothing_changes_for_a_tokenizer_without_special_tokens(lm):
    """SmolLM2's tokenizer adds none: the default and OMIT are the same rows."""
    texts = ["Alice and Bob enter the bar.", "Short one"]
    for g in ("TOKEN", "ALL_TOKENS", "WORD", "SAMPLE", "CLS_TOKEN"):
        default, p1 = _collect(activations(lm, texts, ["1"], g))
        old, p2 = _collect(activations(lm, texts, ["1"], g, special_tokens="OMIT"))
        torch.testing.assert_close(default, old, atol=0, rtol=0)
        assert p1 == p2


def test_the_adapter_reads_the_new_field(bert_path):
    from xaimesh_contracts.v1 import model_pb2, model_pb2_grpc
    from xaimesh_model_server.server import ModelServicer
    from xaimesh_runtime.config import ServerConfig
    from xaimesh_runtime.server import start_server

    servicer = ModelServicer([str(bert_path)], device="cpu")
    handle = start_server(ServerConfig(service="model-server", workers=2), servicer.register,
                          warmup=servicer.warm_up)
    assert handle.wait_ready(120)
    channel = grpc.insecure_channel(handle.address)
    try:
        stub = model_pb2_grpc.ModelServiceStub(channel)

        def texts(**kw):
            req = model_pb2.StreamActivationsRequest(model="tiny-bert", texts=[TEXTS[0]], split_points=["1"],
                                                     granularity=1, **kw)  # ALL_TOKENS
            chunks = [e.chunk for e in stub.StreamActivations(req, timeout=60) if e.HasField("chunk")]
            return [p.text for c in chunks for p in c.provenance]

        assert texts()[0] == "[CLS]" and texts()[-1] == "[SEP]"
        assert texts(add_special_tokens=True) == texts()
        assert texts(special_tokens=model_pb2.SPECIAL_TOKENS_POLICY_ADD) == texts()
        assert "[CLS]" not in texts(special_tokens=model_pb2.SPECIAL_TOKENS_POLICY_OMIT)
        for bad in ({"special_tokens": 9},
                    {"special_tokens": model_pb2.SPECIAL_TOKENS_POLICY_OMIT, "add_special_tokens": True}):
            with pytest.raises(grpc.RpcError) as err:
                texts(**bad)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        channel.close()
        handle.stop(grace=0)
        servicer.close()


@pytest.mark.parametrize("granularity", ["TOKEN", "WORD", "SENTENCE"])
def test_attribution_elements_never_perturb_special_tokens(bos_lm, bert, granularity):
    """The attribution-service tokenizes prompts with add_special_tokens=True: its
    elements must leave the BOS / [CLS] / [SEP] out (they are never masked)."""
    from xaimesh_attribution import backend, elements
    from xaimesh_attribution.options import Granularity as AttrGranularity

    def convert(tk):
        seg = lambda s: backend.Segment(s.text, s.start_char, s.end_char, s.start_token, s.end_token)  # noqa: E731
        return backend.Tokenized(tk.token_ids, tk.tokens, tk.token_start_chars, tk.token_end_chars, tk.special_mask,
                                 tk.word_index, tk.sentence_index, [seg(s) for s in tk.words],
                                 [seg(s) for s in tk.sentences], tk.text)

    g = AttrGranularity[granularity]
    text = TEXTS[0]
    prompt = convert(tokenize(bos_lm, text, True))
    target = convert(tokenize(bos_lm, " Yes.", False))
    problem = elements.generation_problem(text, prompt, " Yes.", target, g)
    covered = {int(i) for pos in problem.positions for i in pos}
    assert 0 not in covered and prompt.special_mask[0]
    assert covered >= {i for i in range(len(prompt)) if not prompt.special_mask[i]}
    tok = convert(tokenize(bert, text, True))
    problem = elements.classification_problem(text, tok, g, [1], ["negative", "positive"])
    covered = {int(i) for pos in problem.positions for i in pos}
    assert covered == {i for i in range(len(tok)) if not tok.special_mask[i]}
    assert 0 not in covered and len(tok) - 1 not in covered
