"""The reference toolkit (interpreto) in its own venv, and one call to run it.

`ensure_interpreto_venv()` builds `~/.cache/xaimesh/bench-interpreto/venv` once
(outside the checkout, so fresh clones on one machine share it; torch
first, pinned, then interpreto with a constraints file that keeps that torch)
and returns its python, or a one-line reason when it cannot. A stamp file
makes later calls instant. `run_reference()` runs
`benchmarks/reference_interpreto.py` in that venv on the given model and
texts and returns its parsed JSON, or a one-line reason string.

interpreto 0.5.2 declares `bitsandbytes` (a wheel of CUDA kernels that
nothing in interpreto imports) and ten `nvidia-*-cu11` wheels (several GB)
guarded by `sys_platform == "Linux"`, a marker that never matches
(`sys.platform` is "linux"). To keep the resolver from ever pulling CUDA
wheels, interpreto itself is installed with `--no-deps` and the rest of its
declared requirements are installed explicitly (same version ranges, minus
those), under a constraints file that pins torch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INTERPRETO_VERSION = "0.5.2"
TORCH_SPEC = "torch==2.13.0"
# interpreto 0.5.2's Requires-Dist minus bitsandbytes and nvidia-*-cu11 (see module docstring), plus what its
# import chain needs at run time (nnsight -> accelerate, ipython); transformers is pinned to the main venv's.
INTERPRETO_DEPS = [
    "nnsight>=0.7.0,<0.8.0",
    "jaxtyping<=0.2.36",
    "beartype",
    "nltk",
    "scipy",
    "scikit-learn",
    "matplotlib",
    "einops",
    "pymdown-extensions",
    "accelerate",
    "ipython",
    "numpy",
    "tqdm",
]
INSTALL_TIMEOUT_S = 1800
# Outside the checkout: CI's fresh clones on one machine reuse the venv instead of rebuilding it (minutes).
REFERENCE_ROOT = Path(os.environ.get("XAIMESH_REFERENCE_DIR", Path.home() / ".cache" / "xaimesh" / "bench-interpreto"))


def _transformers_spec() -> str:
    """Same transformers as the calling (main) venv, so both sides load the model identically."""
    try:
        return f"transformers=={importlib.metadata.version('transformers')}"
    except importlib.metadata.PackageNotFoundError:
        return "transformers>=4.22.0"


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors[:1] or lines[-1:] or ["no output"])[0][:300]


def ensure_interpreto_venv(root: str | os.PathLike = REFERENCE_ROOT, *, quiet: bool = True) -> Path | str:
    """Path of the venv python with interpreto installed, or a one-line reason it cannot be installed."""
    root = Path(root)
    if not root.is_absolute():
        root = ROOT / root
    venv = root / "venv"
    python = _venv_python(venv)
    specs = [TORCH_SPEC, f"interpreto=={INTERPRETO_VERSION}", _transformers_spec(), *INTERPRETO_DEPS]
    key = hashlib.sha1("\n".join([sys.version.split()[0], *specs]).encode()).hexdigest()[:12]
    stamp = venv / f".installed-{key}"
    if stamp.exists() and python.exists():
        return python

    def step(args: list[str], what: str) -> str | None:
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"{what} timed out after {INSTALL_TIMEOUT_S} s"
        except OSError as exc:
            return f"{what} failed: {exc}"
        if done.returncode != 0:
            return f"{what} failed: {_last_line(done.stderr or done.stdout)}"
        return None

    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    for old in venv.glob(".installed-*"):
        old.unlink()
    if not python.exists():
        reason = step([sys.executable, "-m", "venv", str(venv)], "python -m venv")
        if reason:
            return reason
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"] + (["-q"] if quiet else [])
    constraints = root / "constraints.txt"
    constraints.write_text(f"{TORCH_SPEC}\n")
    for args, what in [
        # torch alone first, pinned: never let a resolver pick an unpinned (CUDA) build.
        (pip + [TORCH_SPEC], f"pip install {TORCH_SPEC}"),
        (pip + ["--no-deps", f"interpreto=={INTERPRETO_VERSION}"], f"pip install interpreto=={INTERPRETO_VERSION}"),
        (pip + ["-c", str(constraints), _transformers_spec(), *INTERPRETO_DEPS],
         "pip install interpreto's dependencies"),
    ]:
        reason = step(args, what)
        if reason:
            return reason
    reason = step([str(python), "-c", "import interpreto, torch; assert torch.__version__.startswith('2.13.0')"],
                  "import interpreto")
    if reason:
        return reason
    stamp.write_text(f"installed in {time.perf_counter() - started:.0f} s\n" + "\n".join(specs) + "\n")
    return python


def run_reference(model_path: str | os.PathLike, texts: list[str], *, timeout_s: float = 1800,
                  root: str | os.PathLike = REFERENCE_ROOT) -> dict | str:
    """Run the interpreto reference benchmarks in their venv: the parsed JSON, or a one-line reason string.

    The JSON is {"version", "rows": {"kernelshap", "deletion", "activations", "semi_nmf"}, "notes"}; a row whose
    step failed has an "error" key instead of "seconds". Threads follow OMP_NUM_THREADS like the main harness.
    """
    python = ensure_interpreto_venv(root)
    if isinstance(python, str):
        return python
    with tempfile.TemporaryDirectory(prefix="bench-interpreto-") as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(list(texts)))
        out = Path(tmp) / "result.json"
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
        env.update(TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   PYTHONWARNINGS="ignore")
        env.pop("PYTHONPATH", None)
        args = [str(python), str(ROOT / "benchmarks" / "reference_interpreto.py"), "--model", str(model_path),
                "--out", str(out), "--texts-file", str(texts_file)]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            return f"reference run timed out after {timeout_s:.0f} s"
        if not out.exists():
            return f"reference run exited {done.returncode}: {_last_line(done.stderr or done.stdout)}"
        try:
            return json.loads(out.read_text())
        except json.JSONDecodeError as exc:
            return f"unreadable reference result: {exc}"


def reference_seconds(ref: dict | str | None, step: str) -> float | None:
    """Median seconds of one step ("kernelshap", "deletion", "activations", "semi_nmf"); None if skipped/failed."""
    if not isinstance(ref, dict):
        return None
    row = ref.get("rows", {}).get(step) or {}
    return row.get("seconds")


if __name__ == "__main__":
    # python benchmarks/reference_env.py  -> build (or find) the venv and print its python
    started = time.perf_counter()
    result = ensure_interpreto_venv(quiet=False)
    print(result, f"({time.perf_counter() - started:.1f} s)")
    sys.exit(0 if isinstance(result, Path) else 1)
