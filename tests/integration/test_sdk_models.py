"""Models as users hold them (xaimesh.models): a Hugging Face model object and
its tokenizer, or a name / path, given to explainers, metrics and splitters,
matched to what the model-server serves (by name, then configuration, then a
weights probe), served by a local stack when it is not, refused with the list
of served models by a mesh of running services."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def gpt2_dir():
    from tests.fixtures.family_models import family_dir

    return family_dir("gpt2")


@pytest.fixture(scope="module")
def local_mesh(gpt2_dir, tmp_path_factory):
    """A local stack (`connect(models=[path])`) of its own, in a fresh home."""
    import xaimesh

    from tests.fixtures.sdk_state import fresh_sdk_state

    with fresh_sdk_state(tmp_path_factory.mktemp("home")):
        yield xaimesh.connect(models=[str(gpt2_dir)], local=True)


@pytest.fixture(scope="module")
def hf_gpt2(gpt2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(gpt2_dir), AutoTokenizer.from_pretrained(gpt2_dir)


def test_a_name_a_path_and_an_object_are_the_served_model(local_mesh, gpt2_dir, hf_gpt2):
    from xaimesh.models import resolve_model, weights_agree

    served = local_mesh.model()
    model, tokenizer = hf_gpt2
    assert resolve_model(str(gpt2_dir)).model_id == served.model_id
    assert resolve_model(served.model_id).model_id == served.model_id
    assert resolve_model(model.to("cpu"), tokenizer).model_id == served.model_id  # .to(device): harmless
    assert weights_agree(model, served)


def test_explainers_metrics_and_splitters_take_the_object(local_mesh, hf_gpt2):
    import xaimesh
    from xaimesh import Occlusion
    from xaimesh.attributions.metrics import Deletion

    model, tokenizer = hf_gpt2
    text, target = "Alice and Bob enter the bar, ", "then Alice offers"
    by_object = Occlusion(model, tokenizer)(text, target)[0]
    by_handle = Occlusion(local_mesh.model())(text, target)[0]
    np.testing.assert_array_equal(by_object.attributions, by_handle.attributions)
    auc, _ = Deletion(model, tokenizer).evaluate([by_object])
    assert np.isfinite(auc)
    split = xaimesh.ModelWithSplitPoints(model, tokenizer=tokenizer, split_points=[1])
    assert split.model.model_id == local_mesh.model().model_id


def test_an_int_in_the_tokenizer_place_is_refused_not_bound(local_mesh, hf_gpt2):
    import xaimesh

    with pytest.raises(TypeError, match="split_points=4"):
        xaimesh.ModelWithSplitPoints(hf_gpt2[0], 4)


def test_a_mesh_of_running_services_refuses_an_unknown_model_naming_the_served_ones(local_mesh, hf_gpt2):
    import copy

    import torch

    from xaimesh.errors import NotFoundError
    from xaimesh.mesh import Mesh
    from xaimesh.models import resolve_model

    remote_mesh = Mesh(local_mesh.addresses)  # the same services, not started by this process
    changed = copy.deepcopy(hf_gpt2[0])
    with torch.no_grad():
        changed.transformer.h[0].mlp.c_fc.weight.mul_(1.5)  # same name and configuration, other weights
    with pytest.raises(NotFoundError) as info:
        resolve_model(changed, hf_gpt2[1], mesh=remote_mesh)
    assert local_mesh.model().model_id in str(info.value) and "differ in weights" in str(info.value)
    with pytest.raises(NotFoundError, match="it serves: "):
        resolve_model("no-such-model", mesh=remote_mesh)
    remote_mesh.close()


def test_a_local_stack_serves_an_object_it_does_not_serve(local_mesh, hf_gpt2):
    import torch
    from transformers import GPT2LMHeadModel

    from xaimesh import Saliency
    from xaimesh.models import resolve_model, saved_models_dir, weights_agree

    import xaimesh
    from xaimesh.concepts import PCAConcepts

    split = xaimesh.ModelWithSplitPoints(local_mesh.model(), split_points=[1])
    activations = split.get_activations(["Alice and Bob enter the bar.", "The cat sleeps on the mat."])
    pca = PCAConcepts(split, nb_concepts=2).fit(activations)
    codes = pca.encode_activations(activations)

    torch.manual_seed(1)  # not the fixture's seed: other weights
    only_an_object = GPT2LMHeadModel(hf_gpt2[0].config)  # built in memory, no folder of its own
    first = local_mesh.model().model_id
    remote = resolve_model(only_an_object, hf_gpt2[1])
    # the stack restarted to serve it: stored sets and concept models are still there
    np.testing.assert_array_equal(pca.encode_activations(activations), codes)
    assert remote.model_id != first and weights_agree(only_an_object, remote)
    assert (saved_models_dir() / remote.model_id / ".complete").exists()
    assert resolve_model(only_an_object, hf_gpt2[1]).model_id == remote.model_id  # saved and served once
    assert {m.model_id for m in local_mesh.models()} >= {first, remote.model_id}
    out = Saliency(only_an_object, hf_gpt2[1])("Alice and Bob", "then")[0]
    assert out.model_id == remote.model_id
    assert np.isfinite(out.attributions[:, :out.num_prompt_elements]).all()  # every row covers the prompt


def test_a_port_taken_before_the_service_binds_it_is_retried_on_another(gpt2_dir, tmp_path, monkeypatch):
    import socket

    from xaimesh import local_stack

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real_free_port = local_stack.free_port
    ports = iter([taken.getsockname()[1]])
    monkeypatch.setattr(local_stack, "free_port", lambda: next(ports, None) or real_free_port())
    stack = local_stack.LocalStack(models=[str(gpt2_dir)], home=tmp_path, services=["model"])
    try:
        addresses = stack.start(wait_seconds=120)
        assert addresses["model"] != f"127.0.0.1:{taken.getsockname()[1]}"
    finally:
        stack.stop()
        taken.close()
