#!/usr/bin/env bash
# GPU benchmark on a fresh GPU machine, in under 10 minutes:
#   1. installs the `gpu` extra (TensorFlow's CUDA libraries, onnxruntime-gpu) when a GPU is there,
#   2. runs benchmarks/gpu_bench.py: builds a small member and its fp32/fp16/int8 exports (or takes
#      --models FOLDER…), `zoo bench` with the CUDA and TensorRT providers (IO binding) and CPU, and
#      TF mixed-precision training throughput of ConvNeXt Tiny/Small/Base/Large at 224 px,
#   3. writes benchmarks/results/gpu/ (gpu.{json,md}, bench/bench.{json,md,csv}, bench/pareto.png).
# Without a GPU (or with --skip-gpu) nothing is installed and the GPU steps are skipped, cleanly.
#
#   benchmarks/gpu.sh                       # GPU machine, from the repository root or anywhere
#   benchmarks/gpu.sh --skip-gpu --models runs/pbc/exports/member-custom_cnn
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
skip=0
for a in "$@"; do [[ "$a" == "--skip-gpu" ]] && skip=1; done
if [[ $skip == 0 ]] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi -L
  if [[ -z "${ZOO_SKIP_INSTALL:-}" ]]; then
    "$PY" -m pip install -q -e ".[gpu]"
    # onnxruntime and onnxruntime-gpu share the import name: keep only the GPU build.
    "$PY" -m pip uninstall -q -y onnxruntime || true
    "$PY" -m pip install -q --force-reinstall --no-deps "onnxruntime-gpu>=1.18"
  fi
  "$PY" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
else
  echo "gpu.sh: no GPU (or --skip-gpu): installing nothing, GPU steps will be skipped" >&2
  [[ $skip == 1 ]] || set -- --skip-gpu "$@"
fi
export TF_CPP_MIN_LOG_LEVEL=2 ZOO_PROGRESS=0
exec timeout "${ZOO_GPU_TIMEOUT:-580}" "$PY" benchmarks/gpu_bench.py "$@"
