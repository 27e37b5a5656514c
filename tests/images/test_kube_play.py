"""`podman kube play` of the rendered cpu overlay: a smoke test of the
Deployments, standing in for a Kubernetes cluster (none can run on these
machines). It is NOT conformant, and says so in docs/deploy.md: podman runs
each Deployment as one pod on the host network (hostNetwork: true, free
loopback ports instead of the Services and their DNS names), the
ConfigMaps are inlined as env, and what podman does not implement is left
out of the variant: gRPC probes (the health is checked from the host
instead), the preStop sleep, the optional Secret reference (the key is
empty anyway), replicas > 1, HPAs, NetworkPolicies and Services. What it
does run as the manifests say: the images, the user, the read-only root,
the emptyDir and PersistentVolumeClaim mounts, the resource limits and the
environment. `kube down` always runs afterwards.

The gpu overlay runs too, on the stand-in of its CUDA image (`make images`
builds docker/model-server.Dockerfile on a CPU torch base): with no GPU here,
its model-server is told XAIMESH_DEVICE=cpu / float32 and its
`nvidia.com/gpu` resource is dropped; everything else is the overlay's
(the -cuda image, its memory limit, the /dev/shm emptyDir).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.images.conftest import ROOT, free_port, memory_bytes

KUBECTL = str(Path(sys.executable).parent / "kubectl")
PODMAN = str(ROOT / "scripts" / "podman")
# Pods need cgroups: runc, with its own settings (see that file).
KUBE_CONF = str(ROOT / "docker" / "podman" / "containers-kube.conf")
SERVICE_OF = {"model-server": "model", "attribution-service": "attribution", "concept-service": "concept",
              "labeling-service": "labeling"}
PEER_VARIABLES = {"XAIMESH_MODEL_SERVER": "model", "XAIMESH_CONCEPT_SERVICE": "concept"}
# Per overlay, what this machine cannot honour (module docstring).
OVERLAY_OVERRIDES = {
    "cpu": {},
    "gpu": {"model": {"XAIMESH_DEVICE": "cpu", "XAIMESH_DTYPE": "float32"}},
}
# What podman kube play does not implement (module docstring).
UNSUPPORTED_CONTAINER_FIELDS = ("startupProbe", "readinessProbe", "livenessProbe", "lifecycle", "ports")


def kube_podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "XAIMESH_CONTAINERS_CONF": KUBE_CONF}
    proc = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def host_network_variant(rendered: list[dict], prefix: str, overrides: dict[str, dict[str, str]]
                         ) -> tuple[list[dict], dict[str, int]]:
    """The overlay's Deployments and PersistentVolumeClaims, each Deployment
    as one host-network pod on free loopback ports; returns them and the
    gRPC port of each service."""
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in rendered if d["kind"] == "ConfigMap"}
    claims = {d["metadata"]["name"] for d in rendered if d["kind"] == "PersistentVolumeClaim"}
    deployments = [d for d in rendered if d["kind"] == "Deployment"]
    ports = {SERVICE_OF[d["metadata"]["name"]]: free_port() for d in deployments}
    variant = []
    for claim in rendered:
        if claim["kind"] == "PersistentVolumeClaim":
            claim = copy.deepcopy(claim)
            claim["metadata"] = {"name": f"{prefix}-{claim['metadata']['name']}"}
            variant.append(claim)
    for deployment in deployments:
        deployment = copy.deepcopy(deployment)
        service = SERVICE_OF[deployment["metadata"]["name"]]
        deployment["metadata"] = {"name": f"{prefix}-{deployment['metadata']['name']}",
                                  "labels": deployment["metadata"].get("labels", {})}
        deployment["spec"]["replicas"] = 1
        pod = deployment["spec"]["template"]["spec"]
        pod["hostNetwork"] = True
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                name = volume["persistentVolumeClaim"]["claimName"]
                assert name in claims, f"{service}: claim {name} is not in the overlay"
                volume["persistentVolumeClaim"]["claimName"] = f"{prefix}-{name}"
        (container,) = pod["containers"]
        env: dict[str, str] = {}
        for source in container.pop("envFrom", []):
            env.update(config_maps[source["configMapRef"]["name"]])
        for item in container.pop("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:  # the optional OpenAI key from a Secret: empty in the overlay
                assert item["valueFrom"]["secretKeyRef"].get("optional"), item
        env.update({"XAIMESH_HOST": "127.0.0.1", "XAIMESH_PORT": str(ports[service]), "XAIMESH_METRICS_PORT": "-1",
                    "OMP_NUM_THREADS": "1"})
        for variable, peer in PEER_VARIABLES.items():
            if variable in env:
                env[variable] = f"127.0.0.1:{ports[peer]}"
        env.update(overrides.get(service, {}))
        if service in overrides:
            for requirements in container.get("resources", {}).values():
                requirements.pop("nvidia.com/gpu", None)
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
        for unsupported in UNSUPPORTED_CONTAINER_FIELDS:
            container.pop(unsupported, None)
        variant.append(deployment)
    return variant, ports


@pytest.fixture(params=sorted(OVERLAY_OVERRIDES))
def played(request, tmp_path):
    overlay = request.param
    rendered = list(yaml.safe_load_all(subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "docker" / "k8s" / "overlays" / overlay)],
        capture_output=True, text=True, check=True, timeout=120).stdout))
    prefix = f"xaimesh-kube-{uuid.uuid4().hex[:8]}"
    variant, ports = host_network_variant(rendered, prefix, OVERLAY_OVERRIDES[overlay])
    manifest = tmp_path / f"{overlay}-host-network.yaml"
    manifest.write_text(yaml.safe_dump_all(variant, sort_keys=False))
    claims = [d["metadata"]["name"] for d in variant if d["kind"] == "PersistentVolumeClaim"]
    try:
        kube_podman("kube", "play", str(manifest))
        yield variant, ports
    finally:
        kube_podman("kube", "down", str(manifest), check=False)
        for claim in claims:
            kube_podman("volume", "rm", "--force", claim, check=False)


def test_overlay_runs_under_podman_kube_play(played):
    import xaimesh
    from xaimesh import KernelShap
    from xaimesh.concepts import LLMLabels, SemiNMFConcepts
    from xaimesh.llm import ModelServerLLM

    variant, ports = played
    pods = kube_podman("pod", "ps", "--format", "{{.Name}} {{.Status}}").stdout
    for deployment in (d for d in variant if d["kind"] == "Deployment"):
        assert f"{deployment['metadata']['name']}-pod-0 Running" in pods, pods
        # Run as the manifest says: its user, a read-only root, its memory limit.
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        name = f"{deployment['metadata']['name']}-pod-0-{container['name']}"
        image, read_only, user, memory = kube_podman(
            "inspect", "--format",
            "{{.ImageName}} {{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{.HostConfig.Memory}}",
            name).stdout.split()
        assert image.endswith(container["image"]), (name, image)  # the overlay's tag (-cpu / -cuda)
        assert read_only == "true" and user.split(":")[0] == str(pod["securityContext"]["runAsUser"]), (name, user)
        assert int(memory) == memory_bytes(container["resources"]["limits"]["memory"]), (name, memory)
    address = {service: f"127.0.0.1:{port}" for service, port in ports.items()}
    with xaimesh.connect(address["model"], attribution=address["attribution"], concept=address["concept"],
                         labeling=address["labeling"], wait_seconds=300) as mesh:
        model = mesh.model()
        assert len(KernelShap(model, model.tokenizer, n_perturbations=20)(
            model_inputs="Alice and Bob", targets=" enter")) == 1
        split_model = xaimesh.ModelWithSplitPoints(model, split_points=[4])
        texts = [f"text number {i} about cats and dogs" for i in range(20)]
        activations = split_model.get_activations(texts, activation_granularity=split_model.activation_granularities.TOKEN)
        concepts = SemiNMFConcepts(split_model, nb_concepts=2, device="cpu", max_iterations=10, seed=0)
        concepts.fit(activations)
        labels = LLMLabels(concept_explainer=concepts, activation_granularity=split_model.activation_granularities.TOKEN,
                           llm_interface=ModelServerLLM(), k_examples=3).interpret(
            inputs=texts, latent_activations=activations, concepts_indices="all")
        assert len(labels) == 2
    # The concept data went to the claim's volume, as the user of the manifest.
    concept = next(d for d in variant if d["metadata"]["name"].endswith("concept-service"))
    uid = concept["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    claim = next(d["metadata"]["name"] for d in variant if d["kind"] == "PersistentVolumeClaim")
    mountpoint = kube_podman("volume", "inspect", "--format", "{{.Mountpoint}}", claim).stdout.strip()
    files = [os.path.join(d, f) for d, _, names in os.walk(mountpoint) for f in names]
    assert files and all(os.stat(f).st_uid == uid for f in files)
