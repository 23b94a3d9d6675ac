#!/usr/bin/env bash
# Download (and, for antlr4's sdist, build) the cp312 manylinux wheels bench/gpu_check.sh installs on a lent GPU
# machine, which has Python 3.12 and CUDA torch but none of these packages and no network (see docs or the device
# tool's README). Run here, from the repository root:
#
#     bash bench/gpu_wheels.sh [folder]        # default .gpu_wheels/ (ignored by git); prints the total size
#
# Versions are this virtualenv's, so the GPU machine runs what the tests here ran with. W&B is not carried (a 20 MB
# wheel with many dependencies): gpu_check.sh runs with logger.wandb.mode=disabled, which imports no wandb.
set -euo pipefail

DEST="${1:-.gpu_wheels}"
PYTHON="${PYTHON:-python3}"
# name==version of each package the GPU image lacks (its own torch, numpy, pandas, scipy, matplotlib, opencv,
# imageio, cloudpickle, pyyaml, typing-extensions, narwhals, packaging are used there)
PACKAGES=(
  "stable-baselines3==2.9.2"
  "sb3-contrib==2.9.2"
  "gymnasium==1.4.0"
  "farama-notifications==0.0.6"
  "ale-py==0.12.1"
  "hydra-core==1.3.8"
  "omegaconf==2.3.1"
  "captum==0.9.0"
  "plotly==7.1.0"
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

mkdir -p "$DEST"
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
echo "[gpu_wheels] downloading ${#PACKAGES[@]} wheels into $DEST"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platform_args[@]}" -d "$DEST" "${PACKAGES[@]}"
if ! ls "$DEST"/antlr4_python3_runtime-4.9.3-*.whl >/dev/null 2>&1; then
  echo "[gpu_wheels] building antlr4-python3-runtime 4.9.3 (sdist only, pure Python)"
  "$PYTHON" -m pip wheel -q --no-deps -w "$DEST" "antlr4-python3-runtime==4.9.3"
fi
ls -l "$DEST"
echo "[gpu_wheels] total: $(du -sh "$DEST" | cut -f1) in $(ls "$DEST"/*.whl | wc -l) wheels"
