"""The built images (`make images`) run as containers with podman, as the
Kubernetes manifests run them, and driven from the host through the SDK.

`make test-images` runs these; plain `make test` does not collect them
(`--ignore=tests/images`): they need the images, podman and minutes.

Every container is started the way the base manifests (docker/k8s/base)
describe its pod: the image's own non-root user, a read-only root
filesystem when the manifest says so with tmpfs for its emptyDir mounts, a
named podman volume for its PersistentVolumeClaim, no capabilities, no
privilege escalation, the memory limit of the manifest and the environment
of its ConfigMap, plus `--init` (as PID 1 without it, the server would
ignore SIGTERM). Host network only: each container binds 127.0.0.1 on free
ports. Every container and volume a test makes is removed at teardown,
whether the test passed or not.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PODMAN = str(ROOT / "scripts" / "podman")
BASE = ROOT / "docker" / "k8s" / "base"
TAG = os.environ.get("XAIMESH_IMAGE_TAG", "0.1.0")

# service -> (image, Deployment manifest, ConfigMap)
SERVICES = {
    "model": (f"xaimesh/model-server:{TAG}-cpu", "model-server.yaml", "model-server-config"),
    "attribution": (f"xaimesh/attribution-service:{TAG}", "attribution-service.yaml", "attribution-service-config"),
    "concept": (f"xaimesh/concept-service:{TAG}", "concept-service.yaml", "concept-service-config"),
    "labeling": (f"xaimesh/labeling-service:{TAG}", "labeling-service.yaml", "labeling-service-config"),
}
# What the address variables of the ConfigMaps point at: here, host ports.
PEER_VARIABLES = {"model": "XAIMESH_MODEL_SERVER", "concept": "XAIMESH_CONCEPT_SERVICE"}


def memory_ulimits(limit: int) -> list[str]:
    """`--memory` needs cgroups, which podman runs without on these machines
    (docker/podman/containers.conf), so the limit is also set as the data
    segment limit, which the kernel enforces per process. Giving one --ulimit
    drops the configured defaults, hence nofile and nproc again."""
    return ["--ulimit", f"data={limit}:{limit}", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def podman(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


@dataclass(frozen=True)
class PodSpec:
    """What a base manifest says about one service's pod."""

    image: str
    env: dict[str, str]
    run_as_user: int
    run_as_group: int
    read_only_root: bool
    drop_all_capabilities: bool
    no_privilege_escalation: bool
    memory_limit: int
    termination_grace_s: int
    empty_dirs: tuple[str, ...]          # mount paths of emptyDir volumes
    persistent: tuple[str, ...]          # mount paths of PersistentVolumeClaims


def pod_spec(service: str) -> PodSpec:
    image, manifest, config_name = SERVICES[service]
    docs = list(yaml.safe_load_all((BASE / manifest).read_text()))
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container.get("securityContext", {})
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    (config,) = [c for c in kustomization["configMapGenerator"] if c["name"] == config_name]
    env = dict(literal.split("=", 1) for literal in config["literals"])
    return PodSpec(
        image=image,
        env=env,
        run_as_user=pod["securityContext"]["runAsUser"],
        run_as_group=pod["securityContext"]["runAsGroup"],
        read_only_root=bool(security.get("readOnlyRootFilesystem")),
        drop_all_capabilities="ALL" in security.get("capabilities", {}).get("drop", []),
        no_privilege_escalation=security.get("allowPrivilegeEscalation") is False,
        memory_limit=memory_bytes(container["resources"]["limits"]["memory"]),
        termination_grace_s=int(pod.get("terminationGracePeriodSeconds", 30)),
        empty_dirs=tuple(path for path, volume in mounts.items() if "emptyDir" in volume),
        persistent=tuple(path for path, volume in mounts.items() if "persistentVolumeClaim" in volume),
    )


@dataclass
class Container:
    name: str
    service: str
    spec: PodSpec
    port: int
    metrics_port: int
    volume: str | None = None
    started: float = field(default_factory=time.monotonic)
    ready_after_s: float | None = None  # from `podman run` / `podman start` to SERVING

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def exec(self, *command: str, check: bool = False) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *command, check=check, timeout=60)

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False, timeout=30)
        return proc.stdout + proc.stderr

    def wait_serving(self, timeout: float = 300.0) -> float:
        """Seconds from `podman run` until gRPC health answers SERVING."""
        from xaimesh_contracts.channels import wait_for_health

        deadline = time.monotonic() + timeout
        while True:
            state = self.inspect("{{.State.Status}}")
            if state in ("exited", "stopped"):
                raise AssertionError(f"{self.name} exited ({self.inspect('{{.State.ExitCode}}')}):\n"
                                     f"{self.logs()[-4000:]}")
            try:
                wait_for_health(self.address, timeout=min(5.0, max(deadline - time.monotonic(), 0.1)))
                self.ready_after_s = time.monotonic() - self.started
                return self.ready_after_s
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} not SERVING after {timeout} s:\n{self.logs()[-4000:]}")

    def start(self) -> None:
        self.started = time.monotonic()
        podman("start", self.name)


class Containers:
    """Starts containers as their manifests describe them; removes them all."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.containers: list[Container] = []
        self.volumes: list[str] = []

    def volume(self, label: str) -> str:
        name = f"xaimesh-test-{self.run_id}-{label}"
        podman("volume", "create", name)
        self.volumes.append(name)
        return name

    def run(self, service: str, *, label: str = "", peers: dict[str, Container] | None = None,
            volume: str | None = None, env: dict[str, str] | None = None, port: int | None = None,
            wait: bool = True) -> Container:
        spec = pod_spec(service)
        name = f"xaimesh-test-{self.run_id}-{label or service}"
        port, metrics_port = port or free_port(), free_port()
        environment = {**spec.env, "XAIMESH_HOST": "127.0.0.1", "XAIMESH_PORT": str(port),
                       "XAIMESH_METRICS_PORT": str(metrics_port), "OMP_NUM_THREADS": "1"}
        for peer, variable in PEER_VARIABLES.items():
            if variable in environment:
                if not peers or peer not in peers:
                    raise ValueError(f"{service} needs the {peer} container: pass peers={{'{peer}': ...}}")
                environment[variable] = peers[peer].address
        environment.update(env or {})
        args = ["run", "-d", "--init", "--name", name, "--network", "host",
                "--memory", str(spec.memory_limit), *memory_ulimits(spec.memory_limit),
                "--user", f"{spec.run_as_user}:{spec.run_as_group}",
                "--stop-timeout", str(spec.termination_grace_s)]
        if spec.read_only_root:
            # Only what the manifest mounts is writable (not podman's default /run, /var/tmp tmpfs).
            args += ["--read-only", "--read-only-tmpfs=false"]
        for path in spec.empty_dirs:
            args += ["--tmpfs", f"{path}:rw,size=1g,mode=1777"]
        if spec.persistent:
            (path,) = spec.persistent
            volume = volume or self.volume(label or service)
            args += ["-v", f"{volume}:{path}:rw"]
        if spec.drop_all_capabilities:
            args += ["--cap-drop", "ALL"]
        if spec.no_privilege_escalation:
            args += ["--security-opt", "no-new-privileges"]
        for key, value in environment.items():
            args += ["-e", f"{key}={value}"]
        container = Container(name, service, spec, port, metrics_port, volume)
        self.containers.append(container)
        podman(*args, spec.image)
        if wait:
            container.wait_serving()
        return container

    def remove_all(self) -> None:
        for container in reversed(self.containers):
            podman("rm", "--force", "--time", "0", container.name, check=False, timeout=60)
        for volume in self.volumes:
            podman("volume", "rm", "--force", volume, check=False, timeout=60)


@pytest.fixture(scope="session", autouse=True)
def quiet_progress():
    # The SDK's progress bars would fill the -s output of make test-images.
    previous = os.environ.get("XAIMESH_PROGRESS")
    os.environ["XAIMESH_PROGRESS"] = "0"
    yield
    if previous is None:
        os.environ.pop("XAIMESH_PROGRESS", None)
    else:
        os.environ["XAIMESH_PROGRESS"] = previous


@pytest.fixture(scope="session", autouse=True)
def images_present():
    missing = [spec[0] for spec in SERVICES.values() if podman("image", "exists", spec[0], check=False).returncode]
    assert not missing, f"build the images first (make images): missing {missing}"


@pytest.fixture(scope="module")
def containers():
    started = Containers()
    try:
        yield started
    finally:
        started.remove_all()


@pytest.fixture(scope="module")
def mesh_containers(containers) -> dict[str, Container]:
    """The four services as containers, each pointed at the others' host ports."""
    model = containers.run("model")
    concept = containers.run("concept", peers={"model": model})
    attribution = containers.run("attribution", peers={"model": model})
    labeling = containers.run("labeling", peers={"model": model, "concept": concept})
    return {"model": model, "attribution": attribution, "concept": concept, "labeling": labeling}


def connect(mesh_containers: dict[str, Container], **overrides: Container):
    import xaimesh

    chosen = {**mesh_containers, **overrides}
    return xaimesh.connect(chosen["model"].address, attribution=chosen["attribution"].address,
                           concept=chosen["concept"].address, labeling=chosen["labeling"].address,
                           wait_seconds=60)

