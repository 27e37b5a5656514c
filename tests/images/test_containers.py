"""The mesh as four containers of the built images, driven from the host
through the SDK (`make test-images`; see conftest.py for how each container
is started). The tests of this module share one mesh and run in order: the
seed flow first, then the checks that restart or replace containers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.images.conftest import ROOT, connect, podman

SERVICE_NAMES = {
    "model": "xaimesh.v1.ModelService",
    "attribution": "xaimesh.v1.AttributionService",
    "concept": "xaimesh.v1.ConceptService",
    "labeling": "xaimesh.v1.LabelingService",
}
BUF = str(Path(sys.executable).parent / "buf")


@pytest.fixture(scope="module")
def mesh(mesh_containers):
    handle = connect(mesh_containers)
    yield handle
    handle.close()


def _seed_demo():
    spec = importlib.util.spec_from_file_location("seed_demo", ROOT / "examples" / "seed_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_start_up(mesh_containers):
    for service, container in mesh_containers.items():
        # The fixture waited for SERVING after each `podman run`.
        assert container.ready_after_s is not None
        print(f"{service}: {container.spec.image} SERVING {container.ready_after_s:.1f} s after podman run")


def test_each_image_health_check_reports_healthy(mesh_containers):
    for service, container in mesh_containers.items():
        check = json.loads(container.inspect("{{json .Config.Healthcheck}}"))
        assert check and "/opt/xaimesh/healthcheck.py" in " ".join(check["Test"]), f"{service}: {check}"
        proc = podman("healthcheck", "run", container.name, check=False, timeout=60)
        assert proc.returncode == 0, f"{service}: {proc.stdout}{proc.stderr}"
        assert container.inspect("{{.State.Healthcheck.Status}}") == "healthy", service


def test_reflection_with_buf_curl(mesh_containers):
    for service, container in mesh_containers.items():
        listed = subprocess.run(
            [BUF, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services",
             f"http://{container.address}"],
            capture_output=True, text=True, timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        names = listed.stdout.split()
        assert SERVICE_NAMES[service] in names and "grpc.health.v1.Health" in names, names
    # A call described by reflection only (no .proto files given).
    reply = subprocess.run(
        [BUF, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", "{}",
         f"http://{mesh_containers['model'].address}/xaimesh.v1.ModelService/ListModels"],
        capture_output=True, text=True, timeout=60,
    )
    assert reply.returncode == 0, reply.stderr
    models = json.loads(reply.stdout)["models"]
    assert any("smollm2" in m.get("modelId", "").lower() for m in models), models


def test_seed_flow_short(mesh, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # labels by the model-server's own model
    result = _seed_demo().run(mesh, out_dir=tmp_path, n_texts=100, nb_concepts=5, score_labels=False)
    assert result["report"].exists()
    assert len(result["labels"]) == 5 and any(result["labels"].values()), result["labels"]
    assert result["mse"] > 0 and 0 < result["sparsity"] <= 1
    assert np.isfinite(result["auc"]) and np.isfinite(result["random_auc"])
    print(f"seed flow (100 texts, 5 concepts, SmolLM2) through the containers: {result['seconds']:.0f} s")


def _process_uids(container) -> dict[str, set[str]]:
    """Real uids of every process of the container (the init of `--init`,
    the server and its threads' processes, if any), by command line."""
    script = ("import os\n"
              "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
              "    if int(pid) == os.getpid(): continue\n"
              "    cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode().strip()\n"
              "    uid = [l for l in open(f'/proc/{pid}/status') if l.startswith('Uid:')][0].split()[1]\n"
              "    print(uid, cmd)\n")
    proc = container.exec("python", "-c", script)
    assert proc.returncode == 0, proc.stderr
    uids: dict[str, set[str]] = {}
    for line in proc.stdout.splitlines():
        uid, _, cmd = line.partition(" ")
        uids.setdefault(uid, set()).add(cmd)
    return uids


def test_non_root_with_a_read_only_root(mesh_containers):
    for service, container in mesh_containers.items():
        spec = container.spec
        uids = _process_uids(container)
        assert set(uids) == {str(spec.run_as_user)}, (service, uids)
        assert any("xaimesh serve" in cmd for cmd in uids[str(spec.run_as_user)]), (service, uids)
        assert spec.read_only_root, f"{service}: the manifest no longer asks for a read-only root"
        assert container.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
        denied = container.exec("sh", "-c", "touch /opt/xaimesh/probe")
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, (service, denied.stderr)
        for path in spec.empty_dirs + spec.persistent:
            wrote = container.exec("sh", "-c", f"touch {path}/probe && rm {path}/probe")
            assert wrote.returncode == 0, f"{service}: {path} is not writable: {wrote.stderr}"


def _volume_files(volume: str) -> list[tuple[str, int]]:
    mountpoint = podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip()
    return [(os.path.relpath(os.path.join(d, f), mountpoint), os.stat(os.path.join(d, f)).st_uid)
            for d, _, files in os.walk(mountpoint) for f in files]


def test_concept_data_survives_a_new_container_on_the_same_volume(containers, mesh_containers, mesh):
    import xaimesh
    from xaimesh.concepts import ActivationSet, SemiNMFConcepts, list_concept_models

    split_model = xaimesh.ModelWithSplitPoints(mesh.model(), split_points=[2])
    acts = split_model.get_activations(["a first text", "and a second one, longer"],
                                       activation_granularity=split_model.activation_granularities.TOKEN)
    concepts = SemiNMFConcepts(split_model, nb_concepts=3, device="cpu", max_iterations=30, seed=0)
    concepts.fit(acts)
    rows, codes = acts.numpy(show_progress=False), concepts.encode_activations(acts)
    sets_before = {s.name for s in ActivationSet.list(mesh)}
    models_before = {c.concept_model_ for c in list_concept_models(mesh)}
    assert acts.name in sets_before and concepts.concept_model_ in models_before

    old = mesh_containers["concept"]
    files = _volume_files(old.volume)
    assert files and all(uid == old.spec.run_as_user for _, uid in files), files
    podman("rm", "--force", "--time", "30", old.name)
    new = containers.run("concept", label="concept-2", peers={"model": mesh_containers["model"]},
                         volume=old.volume, port=old.port)
    mesh_containers["concept"] = new  # same address: the labeling-service keeps working

    assert {s.name for s in ActivationSet.list(mesh)} == sets_before
    assert {c.concept_model_ for c in list_concept_models(mesh)} == models_before
    same = ActivationSet.get(mesh, acts.name)
    np.testing.assert_array_equal(same.numpy(show_progress=False), rows)
    reloaded = SemiNMFConcepts.load(split_model, concepts.concept_model_)
    np.testing.assert_array_equal(reloaded.encode_activations(same), codes)


def test_two_concept_containers_on_one_volume(containers, mesh_containers, mesh):
    from xaimesh.concepts import ActivationSet, SemiNMFConcepts
    from xaimesh.concepts._rpc import upload_activations

    first = mesh_containers["concept"]
    second = containers.run("concept", label="concept-b", peers={"model": mesh_containers["model"]},
                            volume=first.volume)
    mesh_b = connect(mesh_containers, concept=second)
    try:
        written: dict[str, np.ndarray] = {}
        errors: list[BaseException] = []
        lock = threading.Lock()

        def writer(handle, seed):
            rng = np.random.default_rng(seed)
            try:
                for _ in range(6):
                    rows = rng.standard_normal((int(rng.integers(50, 400)), 48)).astype(np.float32)
                    name = upload_activations(handle, rows).name
                    with lock:
                        written[name] = rows
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(handle, seed))
                   for seed, handle in enumerate([mesh, mesh_b, mesh, mesh_b])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors
        assert len(written) == 24
        for handle in (mesh, mesh_b):
            listed = {s.name for s in ActivationSet.list(handle)}
            assert set(written) <= listed
            for name, rows in written.items():
                np.testing.assert_array_equal(ActivationSet.get(handle, name).numpy(show_progress=False), rows)
        # A concept model fitted through one is usable through the other.
        base = ActivationSet.get(mesh, next(iter(written)))
        concepts = SemiNMFConcepts(mesh.model(), nb_concepts=3, device="cpu", max_iterations=20, seed=0)
        concepts.fit(base)
        elsewhere = SemiNMFConcepts.load(mesh_b.model(), concepts.concept_model_)
        np.testing.assert_array_equal(elsewhere.encode_activations(ActivationSet.get(mesh_b, base.name)),
                                      concepts.encode_activations(base))
    finally:
        mesh_b.close()


def test_podman_stop_drains_in_flight_calls(mesh_containers, mesh):
    from xaimesh.errors import UnavailableError

    container = mesh_containers["model"]
    model = mesh.model()
    outcome: dict[str, object] = {}

    def long_generation():
        try:
            # Seconds of work: longer than the pause below, well within the 20 s drain.
            outcome["result"] = model.generate("Once upon a time", max_new_tokens=30)
        except BaseException as exc:
            outcome["error"] = exc

    call = threading.Thread(target=long_generation)
    call.start()
    time.sleep(0.5)  # let the call reach the server
    assert call.is_alive(), "the generation ended before the stop: make it longer"
    stopped = time.monotonic()
    podman("stop", "--time", str(container.spec.termination_grace_s), container.name, timeout=120)
    print(f"podman stop of the model-server with a call in flight: {time.monotonic() - stopped:.1f} s")
    call.join(60)
    assert not call.is_alive(), "the in-flight call hangs after the stop"
    # Exit 0: the server drained and exited by itself (143 / 137: killed).
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()[-3000:]
    if "error" in outcome:
        assert isinstance(outcome["error"], UnavailableError), outcome["error"]
        print(f"the call in flight got UNAVAILABLE: {outcome['error']}")
    else:
        assert outcome["result"].text
        print(f"the call in flight completed: {len(outcome['result'].token_ids)} tokens")
    container.start()
    container.wait_serving()


def test_model_server_restart_mid_explanation(mesh_containers, mesh):
    from xaimesh import KernelShap
    from xaimesh.errors import UnavailableError

    container = mesh_containers["model"]
    model = mesh.model()
    tokenizer = model.tokenizer
    explainer = KernelShap(model, tokenizer, n_perturbations=2000)
    text = "Alice and Bob enter the bar where the band plays every Friday night, "
    outcome: dict[str, object] = {}

    def explain():
        try:
            outcome["result"] = explainer(model_inputs=text, targets="then Alice offers a drink to Bob.")
        except BaseException as exc:
            outcome["error"] = exc

    call = threading.Thread(target=explain)
    call.start()
    time.sleep(2.0)  # the explanation is under way
    assert call.is_alive(), "the explanation ended before the restart: make it longer"
    podman("kill", container.name)
    killed = time.monotonic()
    call.join(60)
    assert not call.is_alive(), "the explanation hangs after the model-server died"
    print(f"explanation failed {time.monotonic() - killed:.1f} s after the model-server was killed")
    assert isinstance(outcome.get("error"), UnavailableError), outcome
    # `podman kill` only sends the signal: starting again before the container
    # is cleaned up races with that cleanup (seen: /run/podman-init denied).
    podman("wait", container.name, timeout=120)
    container.start()
    container.wait_serving()
    # The same SDK objects work again.
    small = KernelShap(model, tokenizer, n_perturbations=20)(model_inputs="Alice and Bob", targets=" enter")
    assert len(small) == 1
    assert model.generate("The capital of France is", max_new_tokens=4).text
