#!/usr/bin/env bash
# The throughput check on one lent H200 (issue 11), in at most 8 minutes: experiments/gpu_check.py runs
# experiments/benchmark.py for ResNet-101 @ 256 px, source_only, regda and mean_teacher, with --torch.
#
#   experiments/fetch_gpu_wheels.sh      # here, once: the missing wheels into .whl/
#   device run, carry [".whl"]:  experiments/gpu_check.sh
#   experiments/gpu_check.sh --dry-run   # here: the same plan on the CPU with tiny shapes, a few minutes
#
# Writes $OUT/gpu_check.json and $OUT/gpu_check.log (default OUT: /tmp/gpu_check). PYTHON picks the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
# JAX and PyTorch share the GPU in one process: by default JAX takes 75% of its memory at start-up and PyTorch
# would get the rest. Allocating on demand, each takes what it uses (benchmark.py runs PyTorch first and returns
# its cache before JAX runs). No XLA_FLAGS: the ones the JAX GPU guide lists (latency-hiding scheduler, ...)
# overlap collectives, and one GPU has none.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

exec > >(tee -a "$OUT/gpu_check.log") 2>&1
dry=0
[[ "${1:-}" == "--dry-run" ]] && dry=1
imports="import dapose_jax.methods, dapose_jax.data.pipeline, grain, tensorflow_datasets, ml_collections"
if [[ $dry == 0 ]] || ! $PY -c "$imports" 2>/dev/null; then
  # the image lacks the data stack; flax, optax and orbax travel in the versions this project is tested with
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
$PY -m pip list 2>/dev/null | grep -i -E '^(jax|jaxlib|jax-cuda[0-9]+-(plugin|pjrt)|flax|optax|orbax-checkpoint|tensorstore|torch|numpy|etils|protobuf) ' \
  || true
$PY -c "$imports" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>/dev/null || true
exec $PY experiments/gpu_check.py "$@"
