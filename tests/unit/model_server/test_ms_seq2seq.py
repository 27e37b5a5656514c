"""Encoder-decoders (T5, BART, Marian) outside the family matrix: what a
seq2seq model refuses and how, the dynamic batcher (batched == one at a
time), and the contract over real gRPC. The numbers themselves are checked
against bare transformers in test_ms_families.py."""

from __future__ import annotations

import threading
import warnings

import grpc
import numpy as np
import pytest

from tests.fixtures.family_models import family_dir


@pytest.fixture(scope="module")
def t5():
    from xaimesh_model_server.loading import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(family_dir("t5"), device="cpu", model_id="t5")


def _pair(loaded, source="Alice offers a drink to Bob.", target="the cat sat on the mat"):
    from xaimesh_model_server.tokenization import tokenize

    src = tokenize(loaded, source, add_special_tokens=True).token_ids
    return src, tokenize(loaded, target, add_special_tokens=True).token_ids


@pytest.mark.parametrize("case, field, words", [
    ("no_source_length", "source_length", "encoder-decoder"),
    ("source_length_too_long", "source_length", "1.."),
    ("target_in_source", "target_positions", "out of range"),
    ("target_classes", "target_classes", "target_positions"),
    ("remove_every_source_token", "keep_mask", "source token"),
])
def test_bad_seq2seq_scores_are_invalid_argument_naming_the_fix(t5, case, field, words):
    from xaimesh_model_server import engine
    from xaimesh_runtime.errors import InvalidArgument

    src, tgt = _pair(t5)
    ids, S, L = src + tgt, len(src), len(src) + len(tgt)
    kwargs = {
        "no_source_length": dict(target_positions=[L - 1]),
        "source_length_too_long": dict(source_length=L, target_positions=[L - 1]),
        "target_in_source": dict(source_length=S, target_positions=[S - 1]),
        "target_classes": dict(source_length=S, target_classes=[0]),
        "remove_every_source_token": dict(source_length=S, target_positions=[L - 1],
                                          keep_mask=np.r_[np.zeros(S, bool), np.ones(L - S, bool)][None],
                                          replacement="remove"),
    }[case]
    with pytest.raises(InvalidArgument) as info:
        engine.score(t5, ids, **kwargs)
    assert info.value.field == field and words in str(info.value)


def test_source_length_on_a_causal_lm_is_refused(lm, sentence_ids):
    from xaimesh_model_server import engine
    from xaimesh_runtime.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="encoder-decoder") as info:
        engine.gradients(lm, sentence_ids, target_positions=[3], source_length=2)
    assert info.value.field == "source_length"


def test_a_chat_on_a_model_without_template_is_refused(t5):
    from xaimesh_model_server import engine
    from xaimesh_runtime.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="no chat template"):
        engine.generate(t5, messages=[{"role": "user", "content": "hi"}], max_new_tokens=2)


def test_concurrent_callers_through_the_dynamic_batcher_get_their_own_numbers(t5):
    """Score and gradient calls of different source and target lengths,
    merged by the DynamicBatcher into shared forwards (each stack padded on
    its own), equal each call run alone."""
    from xaimesh_model_server import engine

    # one total length (the batcher groups rows by length), sources of 4, 7 and 10 tokens
    src, tgt = _pair(t5, "i had to give away my cat because of the new lease", "Bob offers a drink to Alice and the cat")
    pairs = [(src[:k], tgt[: 14 - k]) for k in (4, 7, 10)]

    def run(kind, s, t, executor=None):
        args = dict(source_length=len(s), target_positions=list(range(len(s), len(s) + len(t))),
                    inference_mode="log_softmax", executor=executor)
        if kind == "score":
            return engine.score(t5, s + t, **args)
        return engine.gradients(t5, s + t, samples=engine.EmbeddingSamples(alphas=[0.5, 1.0]), **args)["dot_delta"]

    calls = [(kind, i) for kind in ("score", "gradients") for i in range(len(pairs))]
    alone = {c: run(c[0], *pairs[c[1]]) for c in calls}
    stats: list = []
    batcher = engine.make_dynamic_batcher(t5, max_wait_s=0.2, on_batch=stats.append)
    got: dict = {}
    barrier = threading.Barrier(len(calls))

    def call(c):
        barrier.wait()
        got[c] = run(c[0], *pairs[c[1]], batcher)

    try:
        threads = [threading.Thread(target=call, args=(c,)) for c in calls]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        batcher.close()
    assert max(st.callers for st in stats) > 1  # rows of several callers shared forwards
    for c in calls:
        np.testing.assert_allclose(got[c], alone[c], rtol=1e-4, atol=1e-5 * float(np.abs(alone[c]).max()))


def test_an_unknown_decoder_split_point_names_both_stacks(t5):
    from xaimesh_model_server import engine
    from xaimesh_runtime.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as info:
        engine.activations(t5, ["the cat"], ["decoder.blocks.1"])
    assert "decoder.block.1" in str(info.value) and "encoder.block.0" in str(info.value)


def test_grpc_contract_of_an_encoder_decoder(t5_stub, t5):
    """GetModel says what the model is; Score / Generate / StreamActivations
    over the wire give the engine's numbers; a missing source_length is
    INVALID_ARGUMENT with the field."""
    from xaimesh_contracts.status import field_violations
    from xaimesh_contracts.tensors import to_numpy
    from xaimesh_contracts.v1 import model_pb2
    from xaimesh_model_server import engine

    info = t5_stub.GetModel(model_pb2.GetModelRequest()).model
    assert info.task == model_pb2.MODEL_TASK_SEQ2SEQ_LM
    assert info.num_encoder_layers == 2 and list(info.split_points)[2:] == ["decoder.block.0", "decoder.block.1"]
    assert info.decoder_start_token_id == t5.decoder_start_token_id
    src, tgt = _pair(t5)
    S, L = len(src), len(src) + len(tgt)
    request = model_pb2.ScoreRequest(input_ids=src + tgt, source_length=S, target_positions=range(S, L),
                                     inference_mode=3)
    got = to_numpy(t5_stub.Score(request).scores)
    want = engine.score(t5, src + tgt, source_length=S, target_positions=list(range(S, L)), inference_mode=3)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    with pytest.raises(grpc.RpcError) as info:
        t5_stub.Score(model_pb2.ScoreRequest(input_ids=src + tgt, target_positions=[L - 1]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "source_length" in info.value.details()
    assert [field for field, _ in field_violations(info.value)] == ["source_length"]
    gen = t5_stub.Generate(model_pb2.GenerateRequest(text="Alice offers a drink to Bob.", max_new_tokens=4))
    assert list(gen.prompt_token_ids) == src
    assert list(gen.token_ids) == engine.generate(t5, "Alice offers a drink to Bob.", max_new_tokens=4).token_ids
    chunks = [r.chunk for r in t5_stub.StreamActivations(model_pb2.StreamActivationsRequest(
        texts=["the cat sat"], split_points=["encoder.block.1", "decoder.block.1"])) if r.HasField("chunk")]
    assert {c.split_point for c in chunks} == {"encoder.block.1", "decoder.block.1"}


def test_a_concept_fits_on_encoder_and_decoder_activations(t5):
    """TOKEN activations of sample texts at an encoder and a decoder layer
    (one forward for both) feed a SemiNMF concept fit, which reconstructs
    them better than their mean does."""
    import torch

    from xaimesh.datasets import sample_texts
    from xaimesh_concept.methods import build_method
    from xaimesh_model_server import engine

    job = engine.activations(t5, sample_texts()[:40], ["encoder.block.1", "decoder.block.1"], granularity="token")
    rows = {p: torch.cat([b.rows[p] for b in job]).numpy() for p in job.split_points}
    assert rows["encoder.block.1"].shape == rows["decoder.block.1"].shape and rows["encoder.block.1"].shape[1] == 64
    for X in rows.values():
        concepts = build_method("SEMI_NMF", 8, {"device": "cpu", "seed": 0, "max_iterations": 50}).fit(X)
        error = np.square(concepts.decode(concepts.encode(X)) - X).mean()
        assert np.isfinite(error) and error < np.square(X - X.mean(0)).mean()


def test_an_encoder_decoder_classifier_is_refused_at_load(tmp_path):
    """BartForSequenceClassification takes no inputs_embeds (gradients would
    fail inside transformers): refused from its config, naming what to serve."""
    from transformers import BartConfig

    from xaimesh_model_server.loading import load_model
    from xaimesh_runtime.errors import InvalidArgument

    BartConfig(architectures=["BartForSequenceClassification"], d_model=16, encoder_layers=1, decoder_layers=1,
               encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
               decoder_ffn_dim=32).save_pretrained(tmp_path)
    with pytest.raises(InvalidArgument, match="ForConditionalGeneration") as info:
        load_model(tmp_path, device="cpu")
    assert info.value.field == "model"


@pytest.mark.parametrize("name", ["t5", "bart"])
def test_each_stack_has_the_model_length(t5, name):
    """The source and the target each hold up to the model's maximum (not
    their sum); a longer one is INVALID_ARGUMENT naming it. Activations
    leave the decoder its start token: texts of at most max - 1 tokens
    (BART's learned decoder positions ran out, an IndexError, before)."""
    from xaimesh_model_server import engine
    from xaimesh_model_server.loading import load_model
    from xaimesh_runtime.errors import InvalidArgument

    model = t5
    if name != "t5":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load_model(family_dir(name), device="cpu", model_id=name)
    M = model.max_sequence_length
    source, target = [5] * M, [6] * M
    scores = engine.score(model, source + target, source_length=M, target_positions=[M, 2 * M - 1])
    assert scores.shape == (1, 2) and np.isfinite(scores).all()
    grads = engine.gradients(model, source[:4] + target, source_length=4, target_positions=[4 + M - 1])
    assert grads["dot_delta"].shape == (1, 1, 4 + M)
    for ids, S, which in ((source + [7] + target[:3], M + 1, "source"), (source[:3] + target + [7], 3, "target")):
        with pytest.raises(InvalidArgument, match=f"the {which} has"):
            engine.score(model, ids, source_length=S, target_positions=[len(ids) - 1])
    with pytest.raises(InvalidArgument, match=f"1..{M - 1}"):
        engine.activations(model, ["the cat"], [model.split_points[-1]], max_length=M)
    long_text = " ".join(["cat"] * M)
    rows = list(engine.activations(model, [long_text], [model.split_points[-1]], max_length=M - 1,
                                   granularity="all_tokens"))
    assert rows[0].rows[model.split_points[-1]].shape[0] == M - 1 and not rows[0].errors
    (batch,) = list(engine.activations(model, [long_text], [model.split_points[-1]]))
    assert batch.errors and "at most" in str(batch.errors[0].error)


def test_lens_output_tokens_and_concept_gradients_refuse_an_encoder_decoder(t5):
    """They are defined on a causal LM's (or classifier's) single stack: a clear refusal, not numbers."""
    from xaimesh_model_server import engine
    from xaimesh_runtime.errors import FailedPrecondition

    src, _ = _pair(t5)
    with pytest.raises(FailedPrecondition, match="not a causal LM"):
        engine.logit_lens(t5, src)
    with pytest.raises(FailedPrecondition, match="not a causal LM"):
        engine.unembed_directions(t5, np.ones((1, t5.hidden_size), dtype=np.float32))
    with pytest.raises(FailedPrecondition, match="encoder-decoder"):
        engine.concept_gradients(t5, src, "encoder.block.0", np.ones((len(src), 2), dtype=np.float32),
                                 np.ones((2, t5.hidden_size), dtype=np.float32))
