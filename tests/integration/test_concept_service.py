"""The concept-service as a real process, pulling from a real model-server
(the tiny 4-layer Llama), driven through the SDK; persistence across a
graceful restart and after a SIGKILL in the middle of a write."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

TEXTS = [
    "The cat sat on the mat.",
    "Alice and Bob enter the bar, then Alice offers a drink to Bob.",
    "Gradient descent follows the slope downhill.",
    "Paris is the capital of France.",
    "A small model is enough for a test.",
    "Rain fell all night over the quiet town.",
]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")


def start_concept(launcher, model_server, data_dir):
    return launcher.start("concept", "--model-server-address", model_server.address, "--data-dir", str(data_dir),
                          "--device", "cpu", "--grace-seconds", "2")


def connect(model_server, concept):
    import xaimesh

    return xaimesh.connect(model_server.address, concept=concept.address, wait_seconds=30)


def test_sdk_flow_and_restart(launcher, model_server, tmp_path):
    import xaimesh
    from xaimesh.concepts import ActivationSet, SemiNMFConcepts, list_concept_models, load_file
    from xaimesh.concepts.metrics import MSE, Sparsity

    data_dir = tmp_path / "concept-data"
    concept = start_concept(launcher, model_server, data_dir)
    mesh = connect(model_server, concept)
    model = mesh.model()
    split_model = xaimesh.ModelWithSplitPoints(model, split_points=[2])
    acts = split_model.get_activations(TEXTS, activation_granularity=split_model.activation_granularities.TOKEN)
    assert isinstance(acts, ActivationSet)
    direct = model.activations(TEXTS, split_points=[2], granularity="TOKEN", show_progress=False)
    (fetched,) = direct.values()
    X = acts.numpy()
    assert acts.shape == fetched.rows.shape and acts.hidden_size == model.hidden_size
    np.testing.assert_allclose(X, fetched.rows, rtol=1e-5, atol=1e-5)
    assert [p.text for p in acts.provenance()] == fetched.text
    assert acts.num_samples == len(TEXTS) and acts.split_point == fetched.split_point

    two = xaimesh.ModelWithSplitPoints(model, split_points=[1, 3]).get_activations(TEXTS)
    assert list(two) == [1, 3] and all(s.shape == acts.shape for s in two.values())
    assert two[1].split_point != two[3].split_point

    concepts = SemiNMFConcepts(split_model, nb_concepts=4, device="cpu", max_iterations=60, seed=0)
    concepts.fit(acts)
    assert concepts.is_fitted and concepts.training_log_
    codes = concepts.encode_activations(acts)
    np.testing.assert_array_equal(codes, concepts.encode_activations(acts))
    rec = concepts.decode_concepts(codes)
    assert MSE(concepts).compute(acts) == pytest.approx(float(np.mean((X - rec) ** 2)), rel=1e-4)
    assert Sparsity(concepts).compute(acts) == pytest.approx(float(np.mean(codes != 0)), rel=1e-6)

    path = concepts.export(tmp_path / "concepts.safetensors")
    imported = load_file(split_model, path)
    assert imported.concept_model_ != concepts.concept_model_
    np.testing.assert_array_equal(imported.encode_activations(acts), codes)

    # a graceful restart on the same data dir keeps everything usable
    assert concept.stop(signal.SIGTERM) == 0
    mesh.close()
    concept = start_concept(launcher, model_server, data_dir)
    mesh = connect(model_server, concept)
    names = [s.name for s in ActivationSet.list(mesh)]
    assert acts.name in names and two[1].name in names and two[3].name in names
    stored = {c.concept_model_ for c in list_concept_models(mesh)}
    assert {concepts.concept_model_, imported.concept_model_} <= stored
    split_model = xaimesh.ModelWithSplitPoints(mesh.model(), split_points=[2])
    reloaded = SemiNMFConcepts.load(split_model, concepts.concept_model_)
    same_set = ActivationSet.get(mesh, acts.name)
    np.testing.assert_array_equal(same_set.numpy(), X)
    np.testing.assert_array_equal(reloaded.encode_activations(same_set), codes)
    assert MSE(reloaded).compute(same_set) == pytest.approx(float(np.mean((X - rec) ** 2)), rel=1e-4)
    mesh.close()


def test_sigkill_during_a_write_leaves_nothing_half_written(launcher, model_server, tmp_path):
    from xaimesh.concepts import ActivationSet, upload_activations
    from xaimesh_contracts.v1 import concept_pb2, concept_pb2_grpc
    from xaimesh_runtime.client import make_channel
    from xaimesh_contracts.tensors import iter_chunks

    data_dir = tmp_path / "concept-data"
    concept = start_concept(launcher, model_server, data_dir)
    mesh = connect(model_server, concept)
    rng = np.random.default_rng(0)
    small = rng.standard_normal((50, 16)).astype(np.float32)
    kept = upload_activations(mesh, small, display_name="kept")

    # an upload that stops half-way: the service is killed while it holds the partial set
    big = rng.standard_normal((4000, 16)).astype(np.float32)
    release = threading.Event()

    def requests():
        yield concept_pb2.UploadActivationSetRequest(header=concept_pb2.UploadActivationSetHeader(
            display_name="half"))
        for i, chunk in enumerate(iter_chunks(big, 16 * 1024)):
            if i == 2:
                release.wait(30)
                return
            yield concept_pb2.UploadActivationSetRequest(chunk=chunk)

    channel = make_channel(concept.address)
    stub = concept_pb2_grpc.ConceptServiceStub(channel)
    future = stub.UploadActivationSet.future(requests(), timeout=30)
    tmp_dir = data_dir / "tmp"
    deadline = time.monotonic() + 15
    while not (tmp_dir.is_dir() and os.listdir(tmp_dir)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.listdir(tmp_dir), "the partial upload never reached the data dir"
    time.sleep(0.2)  # let it write the chunks it has
    concept.stop(signal.SIGKILL)
    release.set()
    with pytest.raises(Exception):
        future.result(timeout=10)
    channel.close()
    mesh.close()
    assert os.listdir(tmp_dir)  # the leftovers are only in tmp/

    concept = start_concept(launcher, model_server, data_dir)
    mesh = connect(model_server, concept)
    listed = ActivationSet.list(mesh)
    assert [s.name for s in listed] == [kept.name]
    assert os.listdir(tmp_dir) == []
    assert sorted(os.listdir(data_dir / "activation_sets")) == [kept.id]
    np.testing.assert_array_equal(listed[0].numpy(), small)
    mesh.close()


def test_sigkill_amid_concurrent_writes_keeps_every_acknowledged_one(launcher, model_server, tmp_path):
    """Writers upload sets and fit models until the concept-service is
    SIGKILLed in the middle of their writes; after a restart every write
    that was acknowledged is listed and intact (same rows, same dictionary),
    and whatever else is listed is complete too (its reply was lost, not its
    data); nothing is left in tmp/."""
    import grpc

    from xaimesh_contracts.v1 import concept_pb2, concept_pb2_grpc
    from xaimesh_runtime.client import make_channel
    from xaimesh_contracts.tensors import iter_chunks, to_numpy

    data_dir = tmp_path / "concept-data"
    concept = start_concept(launcher, model_server, data_dir)
    stop = threading.Event()
    acked_sets: dict[str, np.ndarray] = {}
    acked_models: dict[str, np.ndarray | None] = {}
    lock = threading.Lock()

    def upload(stub, rows):
        def requests():
            yield concept_pb2.UploadActivationSetRequest(header=concept_pb2.UploadActivationSetHeader())
            for chunk in iter_chunks(rows, 64 * 1024):
                yield concept_pb2.UploadActivationSetRequest(chunk=chunk)
        return stub.UploadActivationSet(requests(), timeout=30).set.name

    def uploader(seed):
        rng = np.random.default_rng(seed)
        with make_channel(concept.address) as channel:
            stub = concept_pb2_grpc.ConceptServiceStub(channel)
            while not stop.is_set():
                rows = rng.standard_normal((int(rng.integers(200, 3000)), 32)).astype(np.float32)
                try:
                    name = upload(stub, rows)
                except grpc.RpcError:
                    return  # the service is gone
                with lock:
                    acked_sets[name] = rows

    def fitter():
        with make_channel(concept.address) as channel:
            stub = concept_pb2_grpc.ConceptServiceStub(channel)
            try:
                base = upload(stub, np.random.default_rng(99).standard_normal((500, 32)).astype(np.float32))
                with lock:
                    acked_sets[base] = None  # checked for presence only
                while not stop.is_set():
                    (*_, last) = stub.FitConceptModel(concept_pb2.FitConceptModelRequest(
                        activation_set=base, method=concept_pb2.CONCEPT_METHOD_PCA, nb_concepts=4), timeout=30)
                    name = last.model.name
                    with lock:
                        acked_models[name] = None
                    chunks = list(stub.GetDictionary(concept_pb2.GetDictionaryRequest(concept_model=name),
                                                     timeout=30))
                    with lock:
                        acked_models[name] = np.frombuffer(b"".join(c.chunk.data for c in chunks), np.float32)
            except grpc.RpcError:
                return

    threads = [threading.Thread(target=uploader, args=(i,), daemon=True) for i in range(3)]
    threads.append(threading.Thread(target=fitter, daemon=True))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while (len(acked_sets) < 8 or len(acked_models) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    concept.stop(signal.SIGKILL)  # writes are in flight
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked_sets) >= 8 and len(acked_models) >= 2

    concept = start_concept(launcher, model_server, data_dir)
    assert os.listdir(data_dir / "tmp") == []
    with make_channel(concept.address) as channel:
        stub = concept_pb2_grpc.ConceptServiceStub(channel)
        sets = {s.name: s for s in stub.ListActivationSets(concept_pb2.ListActivationSetsRequest(page_size=1000),
                                                           timeout=10).sets}
        models = {m.name for m in stub.ListConceptModels(concept_pb2.ListConceptModelsRequest(page_size=1000),
                                                         timeout=10).models}
        assert set(acked_sets) <= set(sets) and set(acked_models) <= models
        for name, info in sets.items():  # acknowledged or not, every listed set reads back whole
            rows = np.concatenate([to_numpy(r.rows) for r in stub.ReadActivationSet(
                concept_pb2.ReadActivationSetRequest(name=name), timeout=30)])
            assert rows.shape == tuple(info.shape)
            if acked_sets.get(name) is not None:
                np.testing.assert_array_equal(rows, acked_sets[name])
        for name in models:
            chunks = list(stub.GetDictionary(concept_pb2.GetDictionaryRequest(concept_model=name), timeout=30))
            dictionary = np.frombuffer(b"".join(c.chunk.data for c in chunks), np.float32)
            assert dictionary.size == 4 * 32
            if acked_models.get(name) is not None:
                np.testing.assert_array_equal(dictionary, acked_models[name])


def test_sae_variants_stream_their_training_log(launcher, model_server, tmp_path):
    """MpSAE and Matryoshka with training options, fitted by the real
    concept-service on the real model-server's activations: the log's FINAL
    entry equals the service's own MSE and DEAD_CONCEPTS metrics of the
    fitted model on the fitting set."""
    import xaimesh
    from xaimesh.concepts import MatryoshkaSAEConcepts, MpSAEConcepts
    from xaimesh.concepts.metrics import MSE, DeadConcepts

    concept = start_concept(launcher, model_server, tmp_path / "concept-data")
    mesh = connect(model_server, concept)
    split_model = xaimesh.ModelWithSplitPoints(mesh.model(), split_points=[2])
    acts = split_model.get_activations(TEXTS, activation_granularity=split_model.activation_granularities.TOKEN)
    for explainer in (
            MpSAEConcepts(split_model, nb_concepts=16, top_k=4, epochs=3, batch_size=16, learning_rate=3e-3,
                          scheduler="cosine", loss="dead_neurons_reanimation", log_every_steps=2),
            MatryoshkaSAEConcepts(split_model, nb_concepts=16, top_k=4, epochs=3, batch_size=16,
                                  matryoshka_prefixes=[4, 8], optimizer="adamw", weight_decay=0.01)):
        explainer.fit(acts)
        log = explainer.training_log
        kinds = [e["kind"] for e in log]
        assert kinds.count("epoch") == 3 and kinds[-1] == "final" and explainer.device_ == "cpu"
        final = log[-1]
        assert final["loss"] == pytest.approx(explainer.final_loss_, rel=1e-6)
        assert final["values"]["dead_fraction"] == pytest.approx(DeadConcepts(explainer).compute(acts))
        if isinstance(explainer, MpSAEConcepts):
            assert "step" in kinds and final["values"]["reconstruction"] == pytest.approx(
                MSE(explainer).compute(acts), rel=1e-4)
        else:
            assert final["values"]["mse_prefix_16"] == pytest.approx(MSE(explainer).compute(acts), rel=1e-4)
