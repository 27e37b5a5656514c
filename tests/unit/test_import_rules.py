"""The house rules of imports, checked on every module (lazy imports inside
functions included):

- ``xaimesh_contracts`` (stubs, tensor codec, enums, rich status, channels)
  imports no other package of ours: both sides of the wire depend on it;
- the SDK (``xaimesh``) imports no server code: neither the runtime nor a service;
- the runtime (``xaimesh_runtime``) imports no service and not the SDK;
- a service imports no other service and not the SDK.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("xaimesh_model_server", "xaimesh_attribution", "xaimesh_concept", "xaimesh_labeling")
PACKAGES = {
    "xaimesh_contracts": ROOT / "contracts" / "xaimesh_contracts",
    "xaimesh": ROOT / "clients" / "python" / "xaimesh",
    "xaimesh_runtime": ROOT / "services" / "xaimesh_runtime",
    **{name: ROOT / "services" / name for name in SERVICES},
}
OURS = set(PACKAGES)
ALLOWED = {
    "xaimesh_contracts": {"xaimesh_contracts"},
    "xaimesh": {"xaimesh", "xaimesh_contracts"},
    "xaimesh_runtime": {"xaimesh_runtime", "xaimesh_contracts"},
    **{name: {name, "xaimesh_runtime", "xaimesh_contracts"} for name in SERVICES},
}


def imported_packages(path: Path, package: str) -> set[tuple[str, int]]:
    """(top-level package of ours, line) of every import in ``path``; relative
    imports stay inside ``package``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package] if node.level else [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in OURS:
                found.add((top, node.lineno))
    return found


def _modules():
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            yield pytest.param(package, path, id=str(path.relative_to(ROOT)))


@pytest.mark.parametrize(("package", "path"), list(_modules()))
def test_module_imports_only_what_its_package_may(package: str, path: Path) -> None:
    bad = sorted((top, line) for top, line in imported_packages(path, package) if top not in ALLOWED[package])
    assert not bad, (f"{path.relative_to(ROOT)} imports {', '.join(f'{t} (line {n})' for t, n in bad)}; "
                     f"{package} may import only {sorted(ALLOWED[package])}")


def test_the_walk_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from . import x\n\ndef f():\n    import xaimesh_runtime.errors\n    from xaimesh.v import y\n")
    assert imported_packages(module, "xaimesh_concept") == {
        ("xaimesh_concept", 1), ("xaimesh_runtime", 4), ("xaimesh", 5)}


def test_every_package_of_ours_is_checked() -> None:
    on_disk = {p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists()}
    assert on_disk <= OURS, f"packages without import rules: {sorted(on_disk - OURS)}"
