"""`make bench`: every benchmark side by side in one run; writes docs/benchmarks.md.

Starts a local mesh on the embedded default model (SmolLM2-135M-Instruct),
runs each benchmark against the bare-torch floor (same forward passes in one
process) and, where it applies, the reference toolkit, and prints one table.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import xaimesh  # noqa: E402
from benchmarks import (  # noqa: E402
    bench_concurrency,
    bench_families,
    bench_flow,
    bench_long,
    bench_model_server,
    bench_prefix_sample,
    bench_replicas,
)
from benchmarks.common import Row, sample_texts  # noqa: E402
from benchmarks.reference_env import reference_seconds, run_reference  # noqa: E402


def _fmt(value, unit="s"):
    if value is None:
        return "—"
    if not unit:
        return f"{value:.2f}×"
    return f"{value * 1000:.1f} ms" if value < 0.1 else f"{value:.2f} {unit}"  # tiny-model rows take ms


def table(rows: list[Row]) -> str:
    lines = ["| benchmark | bare torch | xaimesh | xaimesh / floor | interpreto | interpreto / xaimesh | notes |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        notes = "; ".join(row.notes).replace("|", "\\|")  # a "|Δ|" in a note would end the cell
        lines.append(f"| {row.name} | {_fmt(row.floor_s)} | {_fmt(row.xaimesh_s)} | {_fmt(row.ratio, '')} | "
                     f"{_fmt(row.reference_s)} | {_fmt(row.reference_ratio, '')} | {notes} |")
    return "\n".join(lines)


def main() -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    from xaimesh.local_stack import LocalStack
    from xaimesh_model_server.loading import embedded_default_path

    model_path = embedded_default_path()
    stack = LocalStack()
    with xaimesh.Mesh(stack.start(), stack=stack) as mesh:
        model = mesh.model()
        rows: list[Row] = bench_model_server.run(mesh, model_path)
        flow_rows, flow = bench_flow.run(mesh, model_path, {"activations": rows[1].floor_s})
        rows += flow_rows
        rows += bench_concurrency.run(mesh, model_path)
    # The reference runs after the services stopped, so it has the cores to itself.
    if os.environ.get("XAIMESH_BENCH_REFERENCE", "1") != "0":
        ref = run_reference(model_path, sample_texts(200))
    else:
        ref = "XAIMESH_BENCH_REFERENCE=0"
    if isinstance(ref, str):
        print(f"interpreto: skipped ({ref})")
    else:
        by_prefix = {"KernelShap": "kernelshap", "Deletion": "deletion", "get_activations": "activations",
                     "SemiNMF": "semi_nmf"}
        for row in rows:
            for prefix, step in by_prefix.items():
                if row.name.startswith(prefix):
                    row.reference_s = reference_seconds(ref, step)
        semi = ref.get("rows", {}).get("semi_nmf", {})
        if "mse" in semi:
            semi_row = next(row for row in rows if row.name.startswith("SemiNMF"))
            semi_row.notes.append(f"interpreto {ref.get('version', '')} MSE per element {semi['mse']:.4f}")
    # Issue 15 rows that start their own processes: two model-server replicas, long inputs (fresh
    # model-servers, peak RSS) and the 300-word shared-prefix rows on a sample of their rows (in-process;
    # all of them: make bench-large).
    rows += bench_replicas.run(model_path)
    if os.environ.get("XAIMESH_BENCH_LONG", "1") != "0":
        rows += bench_long.run(model_path)
        rows += bench_prefix_sample.run()
    # One row per model family (tiny models), in a model-server of their own.
    if os.environ.get("XAIMESH_BENCH_FAMILIES", "1") != "0":
        rows += bench_families.run()
    header = (f"Measured {datetime.date.today()} on {platform.machine()} with {os.cpu_count()} CPU cores, "
              f"torch {torch.__version__} ({torch.get_num_threads()} threads), model {model.model_id} "
              f"({model.info.device}, {model.info.dtype}). Times are medians of 3 runs after a warm-up run.")
    text = table(rows)
    print(header)
    print(text)
    out = ROOT / "docs" / "benchmarks.md"
    # Before / after comparisons of earlier changes are kept under their heading.
    kept = out.read_text() if out.exists() else ""
    kept = kept[kept.index(KEPT_HEADING):] if KEPT_HEADING in kept else ""
    out.write_text(BENCH_DOC.format(header=header, table=text) + ("\n" + kept if kept else ""))
    print(f"wrote {out.relative_to(ROOT)}")


KEPT_HEADING = "## Changes measured"

BENCH_DOC = """# Benchmarks

`make bench` runs every benchmark side by side in one run and rewrites this
page. The floor is the same forward passes run by bare torch in one process;
"xaimesh" is the same work through the services (local mesh on loopback,
real gRPC); the ratio is what the mesh costs over the floor. "interpreto" is
the reference toolkit (0.5.2) in-process on the same model and inputs, in its
own venv (`benchmarks/reference_env.py`), run after the services stopped; its
ratio over xaimesh above 1 means xaimesh is faster. Run it with
`OMP_NUM_THREADS=1 make bench` on a quiet machine: timings on a busy 2-core
machine swing a lot, ratios within one run much less. The section "Changes
measured" below (kept by `make bench`) compares runs before and after a change.
The "Family" rows score the same 100 perturbations on the tiny random model
of each family that the family matrix tests (`benchmarks/bench_families.py`):
on models this small the forwards take milliseconds, so their ratio is mostly
the cost of a gRPC call; they are there so that a slowdown or a change of
numbers on one family shows. The "clients at once" rows run several SDK
clients concurrently, each explaining its own prompt
(`benchmarks/bench_concurrency.py`): the floor is all their forwards back to
back, and "finish / mean" is each client's finish time over the mean of the
clients with equal work (the model-server's batcher gives each caller one
turn; goal ≤ 1.5). The "Replicas" rows run one KernelShap through an
attribution-service that reaches one model-server process, then two behind
one address (`benchmarks/bench_replicas.py`; each process one thread under
`OMP_NUM_THREADS=1`, so two replicas have two cores), and once more with one
of the two killed mid-explanation. The "Long input" rows give the model-server's peak memory
for a 4,000-token input (`benchmarks/bench_long.py`, fresh processes per
measurement); the "Shared prefixes, sampled" rows time one batch of the rows
the attribution-service sends for a 300-word prompt
(`benchmarks/bench_prefix_sample.py`; every row of them: `make bench-large`,
hours on this CPU). Skip both with `XAIMESH_BENCH_LONG=0`.

{header}

{table}
"""


if __name__ == "__main__":
    main()
