"""Score / ComputeGradients with a concept encoder (inputs -> concepts,
docs/inputs-to-concepts.md) against a brute-force computation on the bare
transformers model with the same encoder, and against autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fixtures.family_models import FAMILIES
from tests.unit.model_server.test_ms_families import OneBatch, _family, _ids, _rel
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument

TEXT = "Alice offers a drink to Bob."
K = 6
PARAMS = [pytest.param(f, id=f.name) for f in FAMILIES
          if f.name in ("gpt2", "llama-spm", "bert", "qwen2-classifier")]
ACTIVATIONS = ["identity", "relu", "top_k", "jump_relu"]
POOLINGS = ["max", "mean", "sum", "first", "last"]


def _encoder(loaded, activation="identity", pooling="max", concepts=(1, 4, 0), seed=0):
    rng = np.random.default_rng(seed)
    width = loaded.hidden_size
    return dict(weight=(rng.normal(size=(width, K)) / np.sqrt(width)).astype(np.float32),
                bias=(rng.normal(size=K) * 0.1).astype(np.float32), activation=activation, top_k=2,
                thresholds=np.full(K, 0.05, np.float32), pooling=pooling, concepts=list(concepts))


def _readout(loaded, enc):
    from xaimesh_model_server import engine

    return engine.concept_readout(loaded, "0", enc["weight"], enc["bias"], activation=enc["activation"],
                                  top_k=enc["top_k"], thresholds=enc["thresholds"], pooling=enc["pooling"],
                                  concepts=enc["concepts"])


def _bare_pooled(bare, split, enc, *, input_ids=None, inputs_embeds=None):
    """Pooled concept activations of one unpadded bare forward (float64 encoder)."""
    captured = []

    def hook(module, args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = bare.get_submodule(split).register_forward_hook(hook)
    try:
        bare(input_ids=input_ids, inputs_embeds=inputs_embeds)
    finally:
        handle.remove()
    h = captured[0][0].double()
    pre = h @ torch.from_numpy(enc["weight"]).double() + torch.from_numpy(enc["bias"]).double()
    act = enc["activation"]
    if act == "relu":
        z = torch.relu(pre)
    elif act == "top_k":
        values, index = pre.topk(enc["top_k"], dim=-1)
        z = torch.zeros_like(pre).scatter(-1, index, torch.relu(values))
    elif act == "jump_relu":
        z = pre * (pre > torch.from_numpy(enc["thresholds"]).double())
    else:
        z = pre
    z = z[:, enc["concepts"]]
    return {"max": lambda: z.max(0).values, "mean": lambda: z.mean(0), "sum": lambda: z.sum(0),
            "first": lambda: z[0], "last": lambda: z[-1]}[enc["pooling"]]()


@pytest.mark.parametrize("fam", PARAMS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_perturbed_concept_scores_equal_the_bare_model_with_the_encoder(fam, activation):
    from xaimesh_model_server import engine

    loaded, bare = _family(fam)
    ids = _ids(loaded, TEXT)
    L = len(ids)
    rng = np.random.default_rng(1)
    keep = rng.random((5, L)) < 0.6
    keep[0] = True
    keep[:, 0] = True  # REMOVE keeps a token in every row
    split = loaded.split_points[0]
    repl_id = 5
    for pooling in POOLINGS:
        enc = _encoder(loaded, activation, pooling)
        readout = _readout(loaded, enc)
        for policy in ("token_id", "remove", "zero_embedding"):
            got = engine.concept_scores(loaded, ids, keep, engine.Replacement(policy, repl_id), readout,
                                        executor=OneBatch(loaded))
            expected = []
            with torch.no_grad():
                for row in keep:
                    t = torch.tensor(ids)
                    if policy == "token_id":
                        value = _bare_pooled(bare, split, enc, input_ids=torch.where(torch.from_numpy(row), t,
                                                                                      repl_id)[None])
                    elif policy == "remove":
                        value = _bare_pooled(bare, split, enc, input_ids=t[torch.from_numpy(row)][None])
                    else:
                        emb = bare.get_input_embeddings()(t[None]) * torch.from_numpy(row)[None, :, None].float()
                        value = _bare_pooled(bare, split, enc, inputs_embeds=emb)
                    expected.append(value.numpy())
            assert got.shape == (len(keep), 3)
            assert _rel(got, np.stack(expected)) <= 1e-4, (pooling, policy)


@pytest.mark.parametrize("fam", PARAMS)
@pytest.mark.parametrize("activation", ["identity", "top_k", "jump_relu"])
def test_concept_gradients_equal_autograd_on_the_bare_model(fam, activation):
    from xaimesh_model_server import engine

    loaded, bare = _family(fam)
    ids = _ids(loaded, TEXT)
    split = loaded.split_points[0]
    for pooling in ("max", "mean"):
        enc = _encoder(loaded, activation, pooling)
        out = engine.gradients(loaded, ids, outputs=["full", "dot_input"], concept_readout=_readout(loaded, enc))
        emb = bare.get_input_embeddings()(torch.tensor([ids])).detach().requires_grad_(True)
        pooled = _bare_pooled(bare, split, enc, inputs_embeds=emb)
        grads = torch.stack([torch.autograd.grad(v, emb, retain_graph=True)[0][0] for v in pooled]).numpy()
        assert out["full"].shape == (1, 3, len(ids), emb.shape[-1])
        assert _rel(out["scores"][0], pooled.detach().numpy()) <= 1e-4
        assert _rel(out["full"][0], grads) <= 1e-4
        assert _rel(out["dot_input"][0], (grads * emb.detach()[0].numpy()).sum(-1)) <= 1e-4


def test_gradient_samples_of_concepts_batch_with_padding(lm):
    """Integrated-gradient points go through the batched gradient path: the
    last point (alpha 1) equals the single-point gradient."""
    from xaimesh_model_server import engine

    ids = _ids(lm, TEXT)
    readout = _readout(lm, _encoder(lm))
    one = engine.gradients(lm, ids, concept_readout=readout, outputs=["dot_delta"])
    path = engine.gradients(lm, ids, concept_readout=readout, outputs=["dot_delta"],
                            samples=engine.EmbeddingSamples(alphas=[0.25, 0.5, 1.0]))
    assert path["dot_delta"].shape == (3, 3, len(ids))
    assert _rel(path["dot_delta"][-1], one["dot_delta"][0]) <= 1e-5


def test_bad_encoders_are_refused_with_the_field_at_fault(lm):
    from xaimesh_model_server import engine

    enc = _encoder(lm)
    with pytest.raises(InvalidArgument) as e:
        engine.concept_readout(lm, "0", enc["weight"], enc["bias"], concepts=[K])
    assert e.value.field == "concept_encoder.concepts" and f"{K} concepts" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        engine.concept_readout(lm, "0", enc["weight"], enc["bias"], activation="top_k", top_k=0)
    assert e.value.field == "concept_encoder.top_k"
    with pytest.raises(InvalidArgument) as e:
        engine.concept_readout(lm, "0", enc["weight"], enc["bias"], activation="jump_relu")
    assert e.value.field == "concept_encoder.thresholds"
    with pytest.raises(InvalidArgument) as e:
        engine.concept_readout(lm, "0", enc["weight"], enc["bias"], pooling="signed_max")
    assert e.value.field == "concept_encoder.pooling"
    with pytest.raises(InvalidArgument) as e:
        engine.concept_readout(lm, "99", enc["weight"], enc["bias"])
    assert e.value.field == "concept_encoder.split_point"
    wrong_width = np.zeros((lm.hidden_size + 1, K), np.float32)
    with pytest.raises(InvalidArgument) as e:
        engine.concept_scores(lm, _ids(lm, TEXT), None, None, engine.concept_readout(lm, "0", wrong_width))
    assert "width" in e.value.message and e.value.field == "concept_encoder.weight"
    with pytest.raises(InvalidArgument) as e:
        engine.gradients(lm, _ids(lm, TEXT), target_positions=[2], concept_readout=_readout(lm, enc))
    assert e.value.field == "concept_encoder"


def test_an_encoder_decoder_is_refused(tmp_path):
    from tests.fixtures.family_models import family_dir
    from xaimesh_model_server import engine
    from xaimesh_model_server.loading import load_model

    t5 = load_model(family_dir("t5"), device="cpu", model_id="t5")
    with pytest.raises(FailedPrecondition) as e:
        engine.concept_readout(t5, "0", np.zeros((t5.hidden_size, 2), np.float32))
    assert "encoder-decoder" in e.value.message


def test_score_and_gradients_over_grpc_take_the_encoder(stub, lm):
    import grpc
    from xaimesh_contracts.tensors import to_numpy, to_tensor
    from xaimesh_contracts.v1 import model_pb2, tensor_pb2

    from xaimesh_model_server import engine

    ids = _ids(lm, TEXT)
    enc = _encoder(lm, "top_k", "mean")
    message = model_pb2.ConceptEncoder(split_point="0", weight=to_tensor(enc["weight"]), bias=to_tensor(enc["bias"]),
                                       activation=model_pb2.CONCEPT_ACTIVATION_TOP_K, top_k=2,
                                       pooling=tensor_pb2.AGGREGATION_MEAN, concepts=enc["concepts"])
    keep = np.ones((2, len(ids)), bool)
    keep[1, 2] = False
    response = stub.Score(model_pb2.ScoreRequest(model="", input_ids=ids, keep_mask=to_tensor(keep),
                                                 concept_encoder=message))
    expected = engine.concept_scores(lm, ids, keep, None, _readout(lm, enc))
    assert _rel(to_numpy(response.scores), expected) <= 1e-5
    grads = stub.ComputeGradients(model_pb2.ComputeGradientsRequest(model="", input_ids=ids,
                                                                    concept_encoder=message))
    assert to_numpy(grads.dot_delta).shape == (1, 3, len(ids))
    with pytest.raises(grpc.RpcError) as e:
        stub.Score(model_pb2.ScoreRequest(model="", input_ids=ids, concept_encoder=message,
                                          inference_mode=tensor_pb2.INFERENCE_MODE_SOFTMAX))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "inference_mode" in e.value.details()
    del message.concepts[:]
    message.concepts.append(K)
    with pytest.raises(grpc.RpcError) as e:
        stub.ComputeGradients(model_pb2.ComputeGradientsRequest(model="", input_ids=ids,
                                                                concept_encoder=message))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "out of range" in e.value.details()


def test_vocabulary_scan_with_special_tokens_reads_cls(tmp_path):
    """VocabularyConcepts with add_special_tokens on a BERT classifier: each
    token as [CLS] token [SEP], FIRST pooling = the CLS position; the top-k
    equal a brute force over the whole vocabulary on the bare model."""
    from xaimesh_model_server import engine

    (fam,) = [f for f in FAMILIES if f.name == "bert"]
    loaded, bare = _family(fam)
    enc = _encoder(loaded, "relu", "first", concepts=(2, 5))
    out = engine.vocabulary_concepts(loaded, _readout(loaded, enc), k=4, add_special_tokens=True)
    tokenizer = loaded.tokenizer
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    wrapped = torch.tensor([[cls_id, i, sep_id] for i in ids])
    assert out.num_tokens == len(ids)
    captured = []
    handle = bare.get_submodule(loaded.split_points[0]).register_forward_hook(
        lambda m, a, o: captured.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        bare(input_ids=wrapped)
    handle.remove()
    cls = captured[0][:, 0].double().numpy()
    z = np.maximum(cls @ enc["weight"].astype(np.float64) + enc["bias"], 0)[:, enc["concepts"]]
    for row, concept in enumerate(enc["concepts"]):
        order = np.argsort(-z[:, row], kind="stable")[:4]
        np.testing.assert_allclose(out.activations[row], z[order, row], rtol=1e-4, atol=1e-6)
        assert out.concepts[row] == concept
