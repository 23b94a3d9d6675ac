#!/usr/bin/env bash
# One unattended check of fls on a lent GPU machine (one H200/H100-class GPU, 16 cores; under 8 minutes):
# the `gpu` tests, then training throughput (nature_cnn and sparse_fls at 8 and 64 envs, eager and compiled at 8),
# evaluation throughput (16 and 64 envs) and the saliency cost table, on the GPU. Writes bench/results/gpu/*.json, the
# logs and summary.md (copied to $OUT when set). Every step has a timeout, and the whole run a deadline.
#
#     bash bench/gpu_check.sh [--quick]                 # on the GPU machine, from the repository root
#     FLS_GPU_CHECK_DEVICE=cpu bash bench/gpu_check.sh --quick   # the plumbing, on a CPU
#
# Packages the GPU image lacks are installed from the wheels of bench/gpu_wheels.sh (FLS_GPU_WHEELS, default
# .gpu_wheels/) into /tmp/site when missing. W&B stays disabled (nothing imports wandb).
set -euo pipefail

cd "$(dirname "$0")/.."
DEVICE="${FLS_GPU_CHECK_DEVICE:-cuda}"
WHEELS="${FLS_GPU_WHEELS:-.gpu_wheels}"
RESULTS="${FLS_GPU_CHECK_RESULTS:-bench/results/gpu}"
PY="${PYTHON:-python3}"
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
BUDGET="${FLS_GPU_CHECK_BUDGET:-450}"  # seconds for everything
START=$(date +%s)
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled WANDB_SILENT=true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$RESULTS"
FAILED=()

log() { echo "[gpu_check $(($(date +%s) - START))s] $*"; }

# step NAME SECONDS COMMAND...: run with a timeout (never past the deadline), log to $RESULTS/NAME.log
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - START)))
  if ((left < 15)); then
    log "SKIP $name: the ${BUDGET}s budget is spent"
    FAILED+=("$name(skipped)")
    return 0
  fi
  ((limit > left)) && limit=$left
  log "START $name (timeout ${limit}s): $*"
  local rc=0
  timeout --kill-after=10 "$limit" "$@" > >(tee "$RESULTS/$name.log") 2>&1 || rc=$?
  if ((rc == 0)); then
    log "OK $name"
  else
    log "FAIL $name (exit $rc$( ((rc == 124)) && echo ', timed out'))"
    FAILED+=("$name")
  fi
}

if ! "$PY" -c "import stable_baselines3, sb3_contrib, gymnasium, ale_py, hydra, omegaconf, captum, plotly" 2>/dev/null; then
  log "installing the carried wheels from $WHEELS into /tmp/site"
  ls "$WHEELS"/*.whl >/dev/null  # no wheels: stop here (run bench/gpu_wheels.sh where pip works)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
"$PY" - <<'PY'
import sys

import torch

print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
if [[ "$DEVICE" == cuda* ]] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  log "no CUDA here: set FLS_GPU_CHECK_DEVICE=cpu to check the plumbing"
  exit 2
fi

if ((QUICK)); then
  TESTS=("tests/test_gpu.py::test_cpu_and_cuda_outputs_agree[sparse_fls]") UPDATES=1 EPISODES=4 ENVS_TRAIN=(2 4) ENVS_EVAL=(2 4) SAL=(--batch 2 --repeats 1 --budget 5
    --methods attention,gradcam,gradient)
else
  TESTS=(tests/test_gpu.py) UPDATES=3 EPISODES=64 ENVS_TRAIN=(8 64) ENVS_EVAL=(16 64) SAL=(--batch 32 --repeats 3 --budget 20)
fi

step gpu_tests 200 env FLS_GPU_TEST_DEVICE="$DEVICE" "$PY" -m pytest -m gpu -q -p no:randomly -p no:cacheprovider \
  -n 4 "${TESTS[@]}"
for n in "${ENVS_TRAIN[@]}"; do
  extra=()
  ((n == ENVS_TRAIN[0])) && extra=(--compile)
  step "train_${n}envs" 150 "$PY" bench/train_throughput.py --device "$DEVICE" --stacks fls --num-envs "$n" \
    --updates "$UPDATES" --rounds 1 "${extra[@]}" --out "$RESULTS/train_${n}envs.json"
done
for n in "${ENVS_EVAL[@]}"; do
  step "eval_${n}envs" 60 "$PY" bench/eval_throughput.py --device "$DEVICE" --num-envs "$n" --episodes "$EPISODES" \
    --max-episode-steps 2000 --out "$RESULTS/eval_${n}envs.json"
done
step saliency_cost 90 "$PY" bench/saliency_cost.py --device "$DEVICE" "${SAL[@]}" --out "$RESULTS/saliency_cost.json"

"$PY" - "$RESULTS" <<'PY'
import json
import sys
from pathlib import Path

results = Path(sys.argv[1])
parts = ["# fls on the GPU: bench/gpu_check.sh\n"]
for path in sorted(results.glob("*.json")):
    payload = json.loads(path.read_text())
    if not parts[1:]:
        m = payload.get("machine", {})
        parts.append(f"Machine: {m.get('gpu') or 'no GPU'}; {m.get('cpu')} ({m.get('cores')} cores); torch {m.get('torch')}; commit {m.get('commit')}\n")
    parts.append(f"## {path.stem}\n\n{payload.get('markdown', '')}\n")
(results / "summary.md").write_text("\n".join(parts))
print("\n".join(parts))
PY
if [[ -n "${OUT:-}" ]]; then
  tar -czf "$OUT/gpu_results.tgz" -C "$RESULTS" . && cp "$RESULTS/summary.md" "$OUT/summary.md"
fi
log "done in $(($(date +%s) - START))s; failed: ${FAILED[*]:-none}"
((${#FAILED[@]} == 0))
