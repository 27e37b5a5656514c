"""Generate the Python stubs of protos/xaimesh/v1 into the contract package,
contracts/xaimesh_contracts/v1.

protoc names a generated module after the .proto path (``xaimesh.v1``); the
stubs live in ``xaimesh_contracts.v1`` so that the SDK package (``xaimesh``)
is not needed to read the contracts, and their imports are rewritten to match.

Reproducible: the output depends only on the .proto files and the pinned
grpcio-tools version. `--check` regenerates into a temporary folder and exits
non-zero when the committed stubs differ (run by the test suite).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = Path("xaimesh") / "v1"
PACKAGE_DIR = Path("xaimesh_contracts") / "v1"
OUT_ROOT = ROOT / "contracts"


def _relocate(source: str) -> str:
    """Imports and module names of ``xaimesh.v1`` -> ``xaimesh_contracts.v1``
    (service and message names, ``xaimesh.v1.ModelService``, stay)."""
    source = source.replace("from " + "xaimesh.v1 import", "from xaimesh_contracts.v1 import")
    return re.sub(r"'xaimesh\.v1\.(\w+_pb2)'", r"'xaimesh_contracts.v1.\1'", source)


def generate(out_root: Path) -> list[Path]:
    protos = sorted((PROTO_ROOT / PROTO_DIR).glob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            *[str(p.relative_to(PROTO_ROOT)) for p in protos],
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        (out_root / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
        for generated in sorted((Path(raw) / PROTO_DIR).glob("*.py*")):
            (out_root / PACKAGE_DIR / generated.name).write_text(_relocate(generated.read_text()))
    init = out_root / PACKAGE_DIR / "__init__.py"
    init.write_text('"""Generated protobuf and gRPC stubs of the xaimesh.v1 contracts (make protos)."""\n')
    return sorted((out_root / PACKAGE_DIR).glob("*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed stubs drift from the protos")
    args = parser.parse_args()
    if not args.check:
        target = OUT_ROOT / PACKAGE_DIR
        for old in target.glob("*_pb2*.py*"):
            old.unlink()
        for path in generate(OUT_ROOT):
            print(path.relative_to(ROOT))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed_dir = OUT_ROOT / PACKAGE_DIR
        drift = []
        names = {p.name for p in fresh} | {p.name for p in committed_dir.glob("*.py*")}
        for name in sorted(names):
            a, b = Path(tmp) / PACKAGE_DIR / name, committed_dir / name
            if not a.exists() or not b.exists() or not filecmp.cmp(a, b, shallow=False):
                drift.append(name)
        if drift:
            print("stubs drift from protos (run `make protos`):", ", ".join(drift), file=sys.stderr)
            return 1
    print("stubs match protos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
