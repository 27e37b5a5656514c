"""Split points: layer indices and module paths of several architectures,
several at once, sub-module outputs, and the nearest-valid error."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.special_token_models import SAMPLE_TEXTS, bert_classifier
from xaimesh_model_server.engine import activations, resolve_split_points, split_point_candidates
from xaimesh_runtime.errors import InvalidArgument

TEXTS = SAMPLE_TEXTS[:3]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    from xaimesh_model_server.loading import load_model

    return load_model(bert_classifier(tmp_path_factory.mktemp("bert") / "tiny-bert"), device="cpu")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory, tokenizer_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from xaimesh_model_server.loading import load_model

    target = tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"
    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=128,
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(target)
    tok.save_pretrained(target)
    return load_model(target, device="cpu")


def _collect(job):
    batches = list(job)
    assert not [e for b in batches for e in b.errors]
    return {p: torch.cat([b.rows[p] for b in batches]) for p in job.split_points}


def _module_outputs(loaded, paths, text):
    """Bare torch: each module's output (first element of a tuple) on the text with its special tokens."""
    got = {}

    def hook(path):
        def keep(module, args, out):
            got.setdefault(path, out[0] if isinstance(out, tuple) else out)  # returns None: output unchanged

        return keep

    handles = [loaded.model.get_submodule(p).register_forward_hook(hook(p)) for p in paths]
    ids = torch.tensor([loaded.tokenizer(text)["input_ids"]])
    try:
        with torch.no_grad():
            loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        for h in handles:
            h.remove()
    return {p: t[0] for p, t in got.items()}


@pytest.mark.parametrize("name, paths", [
    ("gpt2", ["transformer.h.1", "transformer.h.0.mlp", "transformer.h.1.attn"]),
    ("bert", ["bert.encoder.layer.1.output", "bert.encoder.layer.0", "bert.encoder.layer.1.attention.output.dense"]),
    ("lm", ["model.layers.2.mlp", "model.layers.1", "model.layers.0.self_attn"]),
])
def test_module_paths_of_several_architectures_at_once(request, name, paths):
    loaded = request.getfixturevalue(name)
    assert [p.name for p in resolve_split_points(loaded, paths)] == paths
    rows = _collect(activations(loaded, [TEXTS[0]], paths, "ALL_TOKENS"))
    expected = _module_outputs(loaded, paths, TEXTS[0])
    for p in paths:
        torch.testing.assert_close(rows[p], expected[p], atol=1e-5, rtol=1e-4)


def test_layer_indices_and_paths_are_the_same_split_point(bert, gpt2):
    assert bert.split_points == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    assert gpt2.split_points == ["transformer.h.0", "transformer.h.1"]
    assert [p.name for p in resolve_split_points(bert, [1, "1", "bert.encoder.layer.1"])] == ["bert.encoder.layer.1"]
    points = resolve_split_points(bert, ["bert.encoder.layer.1.output", 0])
    assert [(p.name, p.layer) for p in points] == [("bert.encoder.layer.1.output", 1), ("bert.encoder.layer.0", 0)]


def test_model_info_lists_the_layer_paths(bert):
    assert list(bert.info()["split_points"]) == ["bert.encoder.layer.0", "bert.encoder.layer.1"]


def test_unknown_paths_name_the_nearest_valid_ones(bert, lm):
    with pytest.raises(InvalidArgument, match=r"unknown split point 'bert.encoder.layers.1'.*nearest valid: "
                                              r"bert\.encoder\.layer\.1") as err:
        activations(bert, ["a"], ["bert.encoder.layers.1"])
    assert err.value.field == "split_points"
    # a path of another architecture: the layer of the same index
    with pytest.raises(InvalidArgument, match=r"nearest valid: bert\.encoder\.layer\.1"):
        activations(bert, ["a"], ["model.layers.1"])
    with pytest.raises(InvalidArgument, match=r"'model.layers.1.mlpp'.*nearest valid: model\.layers\.1\.mlp"):
        activations(lm, ["a"], ["model.layers.1.mlpp"])
    with pytest.raises(InvalidArgument, match="out of range"):
        activations(bert, ["a"], ["bert.encoder.layer.7"])
    with pytest.raises(InvalidArgument, match="a list of modules"):
        activations(bert, ["a"], ["bert.encoder.layer"])
    with pytest.raises(InvalidArgument, match="neither a layer index nor a module path"):
        activations(bert, ["a"], [1.5])
    candidates = split_point_candidates(bert)
    assert candidates[:2] == bert.split_points and "bert.encoder.layer" not in candidates


def test_a_module_without_one_row_per_token_is_invalid_argument(bert):
    job = activations(bert, TEXTS, ["bert.pooler"], "TOKEN")  # [batch, hidden]
    with pytest.raises(InvalidArgument, match="does not output one row per token"):
        list(job)


def test_modules_outside_the_layers(lm):
    rows = _collect(activations(lm, [TEXTS[0]], ["model.embed_tokens"], "ALL_TOKENS"))
    ids = torch.tensor(lm.tokenizer(TEXTS[0])["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(rows["model.embed_tokens"], lm.model.model.embed_tokens(ids))
