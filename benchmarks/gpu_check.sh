#!/usr/bin/env bash
# The GPU check in one command, for the day a GPU machine is lent (a quarter of an hour, rarely):
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from the repository root (or: make gpu-check)
#   bash benchmarks/gpu_check.sh --rehearse # anywhere: the same steps on the CPU, small (proves nothing about CUDA)
# 1. the CUDA-marked tests (tests/test_cuda.py: gradients on the GPU against the CPU's float64, the shard
#    writer's pinned rows, the gradients held in memory (bitwise the shard path's reduction) and sketched (bitwise
#    the CPU's sketch, within the bound) on the GPU, both layouts on the GPU, a gpu=1 workflow job on CUDA in each
#    outputs.gradients mode, the images in pinned host memory or mapped training bitwise as on the device;
#    tests/test_sketch.py: the sparse projection on CUDA, bitwise against the CPU);
# 2. benchmarks/gpu_check.py: per-epoch job / plain epoch for ResNet18 and DPN92 with the shard written, and for
#    ResNet18 with the gradients held in memory and sketched (benchmarks/held.py), and a few ResNet18 epochs in
#    each layout compared with each other, and the data path per data.placement (device, pinned host, mapped)
#    against torchvision's DataLoader at 32, 64 and 128 px (benchmarks/placement.py); the card's name and the
#    figures go into benchmarks/results.md (the "GPU check" section).
# Everything runs within 9 minutes on one GPU: each step has its own time limit. Without CUDA (and without
# --rehearse) it stops at once, saying so, with exit code 2.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH=src
rehearse=""
if [ "${1:-}" = "--rehearse" ]; then
  rehearse="--rehearse"
  export BESTBATCH_CUDA_REHEARSAL=1
elif [ -n "${1:-}" ]; then
  echo "gpu_check.sh: unknown argument ${1}; usage: bash benchmarks/gpu_check.sh [--rehearse]" >&2
  exit 2
fi
if [ ! -x "$PY" ]; then
  echo "gpu_check.sh: no Python at $PY: run 'make env' first (or set PYTHON)" >&2
  exit 2
fi
if [ -z "$rehearse" ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check.sh: no CUDA device is visible (torch.cuda.is_available() is False): run it on a machine with an" \
    "NVIDIA GPU, or with --rehearse to try the steps on the CPU" >&2
  exit 2
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "| CUDA:", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
echo "== 1/2 CUDA tests (limit 240 s)"
timeout 240 "$PY" -m pytest -m cuda -q -rs tests/test_cuda.py tests/test_optimizer.py tests/test_sketch.py
echo "== 2/2 figures (limit 270 s)"
timeout 270 "$PY" benchmarks/gpu_check.py $rehearse ${GPU_CHECK_OUT:+--out "$GPU_CHECK_OUT"}
echo "== done: see the GPU check section of ${GPU_CHECK_OUT:-benchmarks/results.md}"
