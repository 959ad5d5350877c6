#!/usr/bin/env bash
# The GPU check: on a machine with CUDA, in a few minutes,
#   1. the tests that need CUDA (pytest -m cuda: AMP fp16 and bf16, channels_last, resume, 1-process DDP over NCCL);
#   2. one epoch of the course recipe (conf/recipes/course.yaml, 96 px) on CIFAR-10 for each model,
#      printing images/s, seconds per epoch, validation accuracy and peak GPU memory.
# Without CUDA it prints one line and exits 0. Needs torch (any recent CUDA build), pytest, scikit-learn,
# Pillow, PyYAML and tqdm; not DVC or MLflow.
#   bench/gpu_check.sh [path/to/cifar10.zip] [out-dir]     (default: $CONVBENCH_CIFAR10_ZIP, else data/cifar10.zip)
# Extra settings for the epoch run go in GPU_CHECK_SET, e.g. GPU_CHECK_SET="-S data.image_size=32".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is false): nothing to check"
  exit 0
fi
archive=${1:-${CONVBENCH_CIFAR10_ZIP:-data/cifar10.zip}}
out=${2:-reports/gpu}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")'

echo "== 1. CUDA tests"
status=0
timeout 200 "$PY" -m pytest -q -m cuda -p no:cacheprovider -s tests/test_cuda.py 2>&1 | tee "$out/cuda_tests.log" || status=1

echo "== 2. one epoch of the course recipe per model on $archive"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck disable=SC2086
timeout 300 "$PY" -m bench.gpu --archive "$archive" --work "$work" --out "$out/gpu_epoch.json" \
  ${GPU_CHECK_SET:-} 2>&1 | tee "$out/gpu_epoch.log" || status=1
exit $status
