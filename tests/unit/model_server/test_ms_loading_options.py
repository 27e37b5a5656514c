"""Loading options of the model-server: per-model syntax, trust_remote_code,
dtype, device_map, the fit check, and the sequence-length limit per RPC."""

from __future__ import annotations

import json
import shutil

import grpc
import numpy as np
import pytest
import torch

from xaimesh_contracts.v1 import model_pb2, tensor_pb2
from xaimesh_model_server import engine, loading
from xaimesh_model_server.loading import ModelOptions, load_model, parse_model_options
from xaimesh_runtime.errors import FailedPrecondition, InvalidArgument, ResourceExhausted

LONG_TEXT = "word " * 700  # > 512 tokens, the tiny LM's maximum


# --------------------------------------------------------------------------- syntax


def test_model_option_syntax():
    (m,) = parse_model_options(["org/model,dtype=bfloat16,trust_remote_code=true,id=big"])
    assert m == ModelOptions(spec="org/model", model_id="big", dtype="bfloat16", trust_remote_code=True)
    a, b = parse_model_options(["org/a", "./b,device_map=auto"])
    assert a.spec == "org/a" and not a.trust_remote_code and a.device_map is None
    assert b.spec == "./b" and b.device_map == "auto"
    assert parse_model_options(None) == [ModelOptions()]
    assert parse_model_options(["default,dtype=float16"])[0] == ModelOptions(dtype="float16")


def test_model_option_json_survives_the_env_split():
    # XAIMESH_MODEL arrives split on every comma (config.py's multiple=True).
    raw = 'org/a,device_map={"model.embed_tokens":"cpu","lm_head":0},org/b,max_memory={"0":"20GiB","cpu":"60GiB"}'
    a, b = parse_model_options(raw.split(","))
    assert a.device_map == {"model.embed_tokens": "cpu", "lm_head": 0}
    assert b.max_memory == {"0": "20GiB", "cpu": "60GiB"}


@pytest.mark.parametrize("value, match", [
    ("dtype=bfloat16", "before any model"),
    ("org/a,dtype=int3", "dtype"),
    ("org/a,trust_remote_code=maybe", "boolean"),
    ("org/a,colour=blue", "unknown model option"),
    ("org/a,max_memory=[1]", "max_memory"),
])
def test_bad_model_options(value, match):
    with pytest.raises(InvalidArgument, match=match):
        parse_model_options([value])


def test_cli_refuses_a_bad_model_option(capsys):
    from xaimesh_model_server.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["--model", "org/a,colour=blue"])
    assert info.value.code == 2
    assert "unknown model option" in capsys.readouterr().err


# --------------------------------------------------------------------------- trust_remote_code


@pytest.fixture()
def remote_code_dir(tiny_lm_path, tmp_path):
    target = tmp_path / "custom"
    shutil.copytree(tiny_lm_path, target)
    config = json.loads((target / "config.json").read_text())
    config["model_type"] = "xaimesh_custom_llama"
    config["architectures"] = ["CustomForCausalLM"]
    config["auto_map"] = {"AutoConfig": "configuration_custom.CustomConfig",
                          "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (target / "config.json").write_text(json.dumps(config))
    (target / "configuration_custom.py").write_text(
        "from transformers import LlamaConfig\n\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'xaimesh_custom_llama'\n")
    (target / "modeling_custom.py").write_text(
        "from transformers import LlamaForCausalLM\nfrom .configuration_custom import CustomConfig\n\n"
        "class CustomForCausalLM(LlamaForCausalLM):\n    config_class = CustomConfig\n")
    return target


def test_remote_code_is_refused_unless_trusted(remote_code_dir):
    with pytest.raises(FailedPrecondition, match="trust_remote_code=true") as info:
        load_model(remote_code_dir, device="cpu")
    assert info.value.field == "model"


def test_remote_code_loads_when_trusted(remote_code_dir, lm, sentence_ids):
    custom = load_model(remote_code_dir, device="cpu", trust_remote_code=True, model_id="custom")
    assert custom.architecture == "CustomForCausalLM"
    pos = [len(sentence_ids) - 1]
    np.testing.assert_allclose(engine.score(custom, sentence_ids, target_positions=pos),
                               engine.score(lm, sentence_ids, target_positions=pos), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- dtype and device_map


def test_dtype_per_model_and_model_info(tiny_lm_path):
    from xaimesh_model_server.server import ModelServicer, _model_info

    servicer = ModelServicer([ModelOptions(spec=str(tiny_lm_path), model_id="bf", dtype="bfloat16"),
                              ModelOptions(spec=str(tiny_lm_path), model_id="fp32")], device="cpu",
                             dtype="float16")
    try:
        servicer.warm_up()
        infos = {i["model_id"]: _model_info(i) for i in servicer.registry.list_info()}
        assert infos["bf"].dtype == "bfloat16"  # its own dtype wins
        assert infos["fp32"].dtype == "float16"  # the server-wide --dtype
        assert servicer.registry.get("bf").model.get_input_embeddings().weight.dtype == torch.bfloat16
    finally:
        servicer.close()


@pytest.mark.parametrize("device_map", ["cpu", "auto", {"": "cpu"}])
def test_device_map_scores_the_same(tiny_lm_path, lm, sentence_ids, device_map):
    placed = load_model(tiny_lm_path, device_map=device_map, model_id="placed")
    assert placed.device == torch.device("cpu")
    assert placed.device_map  # accelerate's map, e.g. {"": "cpu"}
    # ModelInfo.device_map says where the modules are; a model moved whole to its device has none
    from xaimesh_model_server.server import _model_info

    assert dict(_model_info(placed.info()).device_map) == placed.device_map
    assert set(placed.device_map.values()) == {"cpu"}
    assert not _model_info(lm.info()).device_map
    pos = [len(sentence_ids) - 1, len(sentence_ids) - 2]
    np.testing.assert_allclose(engine.score(placed, sentence_ids, target_positions=pos),
                               engine.score(lm, sentence_ids, target_positions=pos), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- fit check


def test_estimate_matches_the_real_parameter_count(lm):
    from transformers import AutoModelForCausalLM

    needed = loading.estimate_weight_bytes(AutoModelForCausalLM, lm.model.config, torch.bfloat16)
    assert needed == 2 * lm.info()["num_parameters"]


def test_a_model_that_cannot_fit_is_refused(tiny_lm_path, monkeypatch):
    asked = []

    def tiny_free(device):
        asked.append(device)
        return 1 << 20  # 1 MiB free

    monkeypatch.setattr(loading, "free_memory_bytes", tiny_free)
    with pytest.raises(ResourceExhausted) as info:
        load_model(tiny_lm_path, device="cpu", model_id="big")
    msg = info.value.message
    assert "needs ~" in msg and "GiB for its weights in float32" in msg
    assert "cpu has 0.00 GiB free" in msg and "dtype=bfloat16" in msg and "device_map=auto" in msg
    assert asked == ["cpu"]
    # max_memory caps the budget too
    monkeypatch.setattr(loading, "free_memory_bytes", lambda device: 1 << 40)
    with pytest.raises(ResourceExhausted, match=r"cpu \(max_memory\)"):
        load_model(tiny_lm_path, max_memory={"cpu": "1MiB"}, model_id="big")
    # enough memory: loads
    assert load_model(tiny_lm_path, device="cpu", dtype="bfloat16").dtype == torch.bfloat16


def test_start_up_refuses_a_model_that_cannot_fit(tiny_lm_path, monkeypatch):
    from xaimesh_model_server.server import ModelServicer

    monkeypatch.setattr(loading, "free_memory_bytes", lambda device: 0)
    servicer = ModelServicer([str(tiny_lm_path)], device="cpu")
    try:
        with pytest.raises(ResourceExhausted, match="needs ~"):
            servicer.warm_up()
    finally:
        servicer.close()


# --------------------------------------------------------------------------- sequence length


def _too_long_ids():
    return [5] * 600  # > 512


@pytest.mark.parametrize("rpc", ["Score", "ComputeGradients", "Generate", "StreamActivations", "LogitLens",
                                 "ConceptGradients"])
def test_a_request_longer_than_the_model_is_invalid_argument(stub, rpc):
    """Every RPC that runs the model refuses an input past its maximum length
    up front (Tokenize / Detokenize only convert: a long text's ids are what
    a caller needs to shorten it)."""
    if rpc == "Score":
        call = lambda: stub.Score(model_pb2.ScoreRequest(input_ids=_too_long_ids(), target_positions=[599]),
                                  timeout=60)
    elif rpc == "ComputeGradients":
        call = lambda: stub.ComputeGradients(model_pb2.ComputeGradientsRequest(
            input_ids=_too_long_ids(), target_positions=[599]), timeout=60)
    elif rpc == "Generate":
        call = lambda: stub.Generate(model_pb2.GenerateRequest(
            token_ids=model_pb2.TokenIds(ids=_too_long_ids()), max_new_tokens=2), timeout=60)
    elif rpc == "LogitLens":
        call = lambda: stub.LogitLens(model_pb2.LogitLensRequest(input_ids=_too_long_ids(), top_k=1), timeout=60)
    elif rpc == "ConceptGradients":
        from xaimesh_contracts.tensors import to_tensor

        call = lambda: stub.ConceptGradients(model_pb2.ConceptGradientsRequest(
            input_ids=_too_long_ids(), split_point="1", target_positions=[599],
            codes=to_tensor(np.ones((600, 2), np.float32)), decoder=to_tensor(np.ones((2, 64), np.float32))),
            timeout=60)
    else:
        def call():
            events = list(stub.StreamActivations(model_pb2.StreamActivationsRequest(
                texts=["short text", LONG_TEXT], split_points=["1"]), timeout=60))
            errors = [e.item_error for e in events if e.WhichOneof("event") == "item_error"]
            # The long text is an item error; it is not silently cut.
            assert [e.index for e in errors] == [1]
            raise _ItemError(errors[0].status.code, errors[0].status.message)
    with pytest.raises((grpc.RpcError, _ItemError)) as info:
        call()
    err = info.value
    code = err.code if isinstance(err, _ItemError) else err.code().value[0]
    message = err.message if isinstance(err, _ItemError) else err.details()
    assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0], message
    assert "512" in message


class _ItemError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def test_generate_text_prompt_too_long_is_invalid_argument(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.Generate(model_pb2.GenerateRequest(text=LONG_TEXT, max_new_tokens=2), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_truncation_only_when_asked_and_reported(stub):
    events = list(stub.StreamActivations(model_pb2.StreamActivationsRequest(
        texts=["short text", LONG_TEXT], split_points=["1"], max_length=32,
        granularity=tensor_pb2.GRANULARITY_ALL_TOKENS), timeout=60))
    kinds = [e.WhichOneof("event") for e in events]
    assert "item_error" not in kinds
    summary = events[-1].summary
    assert list(summary.truncated_samples) == [1]
    ends = [p.token_end for e in events if e.WhichOneof("event") == "chunk" for p in e.chunk.provenance
            if p.sample_index == 1]
    assert max(ends) == 32
