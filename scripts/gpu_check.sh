#!/usr/bin/env bash
# The GPU check: run it on a machine with a CUDA GPU, from the repository root,
# after `make venv` (with a CUDA build of torch 2.13.0 in .venv).
#
#   scripts/gpu_check.sh
#
# 1. checks that the model-server engine on CUDA (float32 and bfloat16) gives
#    the CPU's numbers within tolerance (Score log-probabilities, integrated
#    gradients, layer activations on SmolLM2-135M-Instruct); exits 1 if not;
# 2. times Score through a model-server process on the GPU against bare torch
#    on the same GPU, per dtype;
# 3. writes the "## GPU" section of docs/benchmarks.md.
# Everything is in benchmarks/gpu_check.py; nothing in the tests depends on it.
# About 2 minutes on one GPU; 8 at most (the timeout below).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run make venv first" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "torch sees no CUDA device (a CPU build of torch?)")'
timeout 480 "$PY" benchmarks/gpu_check.py
