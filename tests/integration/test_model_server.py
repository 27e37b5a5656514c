"""The model-server as a real process over real gRPC."""

from __future__ import annotations

import threading
import urllib.request

import grpc
import numpy as np
import pytest
import torch

import xaimesh
from xaimesh.errors import InvalidArgumentError, NotFoundError, from_rpc_error
from xaimesh_contracts.v1 import model_pb2, model_pb2_grpc, tensor_pb2
from xaimesh_runtime.client import make_channel
from xaimesh_contracts.tensors import to_numpy, to_tensor

PROMPT = "Alice and Bob enter the bar, then Alice offers a drink to Bob."


@pytest.fixture(scope="module")
def stub(model_server):
    channel = make_channel(model_server.address)
    yield model_pb2_grpc.ModelServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def mesh(model_server):
    with xaimesh.connect(model_server.address) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def hf_lm(tiny_lm_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_path).eval()
    return model, AutoTokenizer.from_pretrained(tiny_lm_path)


def test_describe_models(mesh):
    models = mesh.models()
    assert [m.model_id for m in models] == ["tiny-llama-causal", "tiny-llama-classifier"]
    lm, clf = models
    assert lm.info.is_default and lm.num_layers == 4 and lm.hidden_size == 64
    assert list(lm.info.split_points) == [f"model.layers.{i}" for i in range(4)]
    assert lm.info.special_tokens.eos_token == "<|im_end|>" and lm.info.has_chat_template
    assert clf.is_classifier and list(clf.info.labels) == ["negative", "neutral", "positive"]
    assert mesh.model().model_id == "tiny-llama-causal"


def test_tokenizer_matches_hugging_face(mesh, hf_lm):
    _, tokenizer = hf_lm
    remote = mesh.model().tokenizer
    assert remote.encode(PROMPT) == tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    segmented = remote.segment(PROMPT)
    assert [w.text for w in segmented.words] == PROMPT.split()
    assert remote.decode(remote.encode(PROMPT)) == PROMPT


def test_score_equals_a_direct_forward(stub, hf_lm):
    model, tokenizer = hf_lm
    ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    rng = np.random.default_rng(0)
    mask = rng.random((7, len(ids))) < 0.7
    targets = list(range(8, len(ids)))
    response = stub.Score(model_pb2.ScoreRequest(
        input_ids=ids, keep_mask=to_tensor(mask), target_positions=targets,
        replacement=model_pb2.Replacement(policy=model_pb2.REPLACEMENT_POLICY_PAD_TOKEN),
        inference_mode=tensor_pb2.INFERENCE_MODE_LOG_SOFTMAX))
    scores = to_numpy(response.scores)
    assert scores.shape == (7, len(targets))
    expected = []
    with torch.no_grad():
        for row in mask:
            seq = torch.tensor([[t if keep else tokenizer.pad_token_id for t, keep in zip(ids, row)]])
            logp = model(seq).logits.log_softmax(-1)[0]
            expected.append([logp[p - 1, ids[p]].item() for p in targets])
    np.testing.assert_allclose(scores, np.array(expected), rtol=1e-4, atol=1e-5)


def test_gradients_of_input_x_gradient(stub, hf_lm):
    model, tokenizer = hf_lm
    ids = tokenizer("The cat sat on the mat", add_special_tokens=False)["input_ids"]
    target = len(ids) - 1
    response = stub.ComputeGradients(model_pb2.ComputeGradientsRequest(
        input_ids=ids, target_positions=[target], inference_mode=tensor_pb2.INFERENCE_MODE_LOGITS,
        samples=model_pb2.EmbeddingSamples(), outputs=[model_pb2.GRADIENT_OUTPUT_DOT_INPUT]))
    got = to_numpy(response.dot_input)[0, 0]
    embeddings = model.get_input_embeddings()(torch.tensor([ids])).detach().requires_grad_(True)
    logit = model(inputs_embeds=embeddings).logits[0, target - 1, ids[target]]
    (grad,) = torch.autograd.grad(logit, embeddings)
    np.testing.assert_allclose(got, (grad * embeddings).sum(-1)[0].detach().numpy(), rtol=1e-4, atol=1e-6)


def test_generate_chat_and_text(mesh):
    model = mesh.model()
    first = model.generate([{"role": "user", "content": "Hi"}], max_new_tokens=6)
    again = model.generate([{"role": "user", "content": "Hi"}], max_new_tokens=6)
    assert first == again and len(first.token_ids) <= 6 and first.finish_reason in ("eos", "length")
    sampled = model.generate("Once upon a time", max_new_tokens=5, do_sample=True, seed=3)
    assert sampled == model.generate("Once upon a time", max_new_tokens=5, do_sample=True, seed=3)


def test_tokenize_a_generated_continuation_by_its_ids(stub):
    generated = stub.Generate(model_pb2.GenerateRequest(text=PROMPT, max_new_tokens=8), timeout=60)
    ids = list(generated.token_ids) + [2]  # and the <|im_end|> that ended it
    (result,) = stub.Tokenize(model_pb2.TokenizeRequest(sequences=[model_pb2.TokenIds(ids=ids)]),
                              timeout=30).results
    decoded = stub.Detokenize(model_pb2.DetokenizeRequest(sequences=[model_pb2.TokenIds(ids=ids)]),
                              timeout=30).texts[0]
    assert list(result.token_ids) == ids and result.text == decoded
    spans = zip(result.token_start_chars, result.token_end_chars)
    assert "".join(result.text[a:b] for a, b in spans) == result.text
    assert result.special_mask[-1] and result.word_index[-1] == -1
    (by_text,) = stub.Tokenize(model_pb2.TokenizeRequest(texts=[PROMPT]), timeout=30).results
    assert by_text.text == PROMPT
    with pytest.raises(grpc.RpcError) as info:
        stub.Tokenize(model_pb2.TokenizeRequest(texts=[PROMPT], sequences=[model_pb2.TokenIds(ids=ids)]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not both" in info.value.details()


def test_activations_equal_hidden_states(mesh, hf_lm):
    model, tokenizer = hf_lm
    texts = ["The cat sat.", PROMPT, "I am happy today! Are you?"]
    fetched = mesh.model().activations(texts, split_points=[2], granularity="TOKEN", show_progress=False)
    rows = fetched["model.layers.2"]
    expected = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            expected.append(model(ids, output_hidden_states=True).hidden_states[3][0])
    np.testing.assert_allclose(rows.rows, torch.cat(expected).numpy(), rtol=1e-4, atol=1e-5)
    assert rows.sample_index == sorted(rows.sample_index) and rows.text[:3] == ["The", " cat", " sat"]


def test_activations_by_sentence_and_sample(mesh):
    model = mesh.model()
    text = "I am happy today! Are you?"
    sentences = model.activations([text], split_points=[1], granularity="SENTENCE", show_progress=False)
    assert sentences["model.layers.1"].text == ["I am happy today!", "Are you?"]
    samples = model.activations([text, "Hello."], split_points=[1], granularity="SAMPLE",
                                aggregation="MAX", show_progress=False)
    assert samples["model.layers.1"].shape == (2, 64)


def test_activations_stream_in_chunks(stub):
    texts = [f"Sentence number {i} is here." for i in range(40)]
    request = model_pb2.StreamActivationsRequest(texts=texts, split_points=["3"], chunk_bytes=4096,
                                                 granularity=tensor_pb2.GRANULARITY_ALL_TOKENS)
    kinds = [event.WhichOneof("event") for event in stub.StreamActivations(request)]
    assert kinds[0] == "header" and kinds[-1] == "summary" and kinds.count("chunk") > 5 and "progress" in kinds


def test_an_empty_text_is_an_item_error_and_the_others_continue(stub):
    request = model_pb2.StreamActivationsRequest(texts=["Good.", "", "Fine."], split_points=["1"])
    events = list(stub.StreamActivations(request))
    errors = [e.item_error for e in events if e.WhichOneof("event") == "item_error"]
    assert [e.index for e in errors] == [1] and "empty" in errors[0].status.message
    summary = [e.summary for e in events if e.WhichOneof("event") == "summary"][0]
    assert summary.num_samples == 3


@pytest.mark.parametrize("request_, field", [
    (model_pb2.ScoreRequest(input_ids=[1, 2, 3], target_positions=[5]), "target_positions"),
    (model_pb2.ScoreRequest(input_ids=[10**9, 2], target_positions=[1]), "input_ids"),
    (model_pb2.ScoreRequest(input_ids=[1, 2, 3], target_positions=[2],
                            keep_mask=to_tensor(np.ones((2, 5), bool))), "keep_mask"),
    (model_pb2.ScoreRequest(input_ids=[1, 2, 3], target_positions=[2],
                            keep_mask=tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_BOOL, shape=[1, 3],
                                                        raw_contents=b"\x01")), "keep_mask"),
    (model_pb2.ScoreRequest(input_ids=[], target_positions=[1]), "input_ids"),
])
def test_bad_score_requests_name_the_field(stub, request_, field):
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = from_rpc_error(info.value, "model-server")
    assert [v.field.split(".")[0] for v in error.field_violations] == [field], error


def test_nan_embeddings_are_refused(stub):
    embeddings = np.full((1, 3, 64), np.nan, np.float32)
    with pytest.raises(grpc.RpcError) as info:
        stub.ComputeGradients(model_pb2.ComputeGradientsRequest(input_ids=[1, 2, 3], target_positions=[2],
                                                                 embeddings=to_tensor(embeddings)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "finite" in info.value.details()


def test_errors_through_the_sdk(mesh):
    with pytest.raises(NotFoundError, match="available models"):
        mesh.model("gpt-17")
    with pytest.raises(InvalidArgumentError, match="out of range"):
        mesh.model().activations(["x"], split_points=[40], show_progress=False)
    with pytest.raises(InvalidArgumentError, match="empty"):
        mesh.model().tokenizer.encode("")


def test_concurrent_callers_share_forward_passes(model_server, stub, tokenizer_path):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tokenizer_path)(PROMPT, add_special_tokens=False)["input_ids"]
    mask = np.random.default_rng(1).random((64, len(ids))) < 0.5
    request = model_pb2.ScoreRequest(input_ids=ids, keep_mask=to_tensor(mask), target_positions=[len(ids) - 1])
    results: list = [None] * 6

    def call(i):
        results[i] = to_numpy(stub.Score(request).scores)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-5, atol=1e-6)
    if model_server.metrics_port:
        text = urllib.request.urlopen(f"http://127.0.0.1:{model_server.metrics_port}/metrics").read().decode()
        assert "xaimesh_model_batch_callers" in text


def test_health_and_reflection(model_server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = make_channel(model_server.address)
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="xaimesh.v1.ModelService"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = [s.name for r in responses for s in r.list_services_response.service]
    assert "xaimesh.v1.ModelService" in names
    channel.close()
