"""Split points "<module>.input": the hidden state a module receives, in the
same forward as the other split points (what AllLayersSplitter reads: the
input of the first block, then every block's output). Checked against the
bare model's `hidden_states` (entry 0 is the input of the first block, entry
i the output of block i - 1; the last entry is normed in most families, so
the last block's output is checked against the input of the final norm)."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.family_models import FAMILIES
from tests.unit.model_server.test_ms_families import OneBatch, _family, _ids
from xaimesh_runtime.errors import InvalidArgument

FAMILY = {f.name: f for f in FAMILIES}
TEXTS = ["Alice offers a drink to Bob.", "The cat sat on the mat, then it slept."]
FINAL_NORM = {"gpt2": "transformer.ln_f", "gpt-neox": "gpt_neox.final_layer_norm"}


def _bare_states(fam, bare, ids):
    seen = {}
    norm = bare.get_submodule(FINAL_NORM.get(fam.name, "model.norm"))

    def before_norm(module, args):  # returns None: the input is left as it is
        seen["last"] = args[0][0]

    handle = norm.register_forward_pre_hook(before_norm)
    try:
        with torch.no_grad():
            out = bare(torch.tensor([ids]), output_hidden_states=True)
    finally:
        handle.remove()
    return [h[0] for h in out.hidden_states[:-1]] + [seen["last"]]


@pytest.mark.parametrize("name", ["gpt2", "gpt-neox", "llama-bos", "gemma2"])
def test_every_block_boundary_in_one_forward_equals_the_bare_model(name):
    from xaimesh_model_server import engine

    fam = FAMILY[name]
    loaded, bare = _family(fam)
    points = [f"{loaded.split_points[0]}.input", *loaded.split_points]
    executor = OneBatch(loaded)
    job = engine.activations(loaded, TEXTS, points, granularity="ALL_TOKENS", executor=executor)
    assert job.split_points == points
    batches = list(job)
    assert len(executor.batches) == 1  # one forward for every boundary and both texts
    rows = {p: torch.cat([b.rows[p] for b in batches]) for p in points}
    expected = [torch.cat(parts) for parts in zip(*(_bare_states(fam, bare, _ids(loaded, t)) for t in TEXTS),
                                                  strict=True)]
    for point, want in zip(points, expected, strict=True):
        error = float((rows[point].float() - want.float()).abs().max() / want.float().abs().max())
        assert error < 1e-5, (point, error)


def test_input_points_by_index_and_their_errors(lm):
    from xaimesh_model_server import engine

    (by_index,) = engine.resolve_split_points(lm, ["1.input"])
    assert by_index.name == f"{lm.split_points[1]}.input" and by_index.layer == 1
    assert engine.resolve_split_points(lm, [f"{lm.split_points[1]}.input"]) == [by_index]
    for bad in (f"{lm.num_layers}.input", "model.nosuch.input", ".input"):
        with pytest.raises(InvalidArgument) as info:
            engine.resolve_split_points(lm, [bad])
        assert info.value.field == "split_points"
    with pytest.raises(InvalidArgument, match="input") as info:
        engine.concept_gradients(lm, [1, 2, 3], "0.input", [[0.0]] * 3, [[0.0] * lm.hidden_size],
                                 target_positions=[1])
    assert info.value.field == "split_point"
