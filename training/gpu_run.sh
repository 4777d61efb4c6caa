#!/usr/bin/env bash
# Trains the recipe of a folder that `python -m style_training.gpu_carry pack` built, on a
# machine with JAX but without TensorFlow, Keras or a package registry (the lent GPU), and
# stops itself in time: writes model.keras, training.json, the last checkpoint
# (ckpt-N.weights.h5 + ckpt-N.optimizer.npz, to resume anywhere), train.log and gpu.txt
# into OUT, 6 files. The checkpoint files of an earlier run in CARRY/resume/ resume it. Run from the repository root (docs/training.md):
#
#   bash training/gpu_run.sh CARRY OUT [SECONDS [TRAIN_ARGS...]]
#
# SECONDS: the training time budget (default 450: with start-up and the last checkpoint
# within a 9-minute command). TRAIN_ARGS are added to the recipe's (e.g. --steps 20000).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
carry="$(cd "$1" && pwd)"
mkdir -p "$2"
out="$(cd "$2" && pwd)"
budget="${3:-450}"
extra=("${@:4}")
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT

# The wheels, unpacked: no pip or registry needed (optree is compiled, so not imported from
# the zip).
python3 - "$site" "$carry"/wheels/*.whl <<'PY'
import sys, zipfile
for wheel in sys.argv[2:]:
    zipfile.ZipFile(wheel).extractall(sys.argv[1])
PY
export PYTHONPATH="$site:$repo/training:$repo/style_transfer_ros${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND="${KERAS_BACKEND:-jax}"
{ python3 -c 'import jax; print("jax", jax.__version__, jax.devices())'
  nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv 2>/dev/null || true
} > "$out/gpu.txt" 2>&1

# A run that came back, copied into CARRY/resume/, goes on from its checkpoint.
if compgen -G "$carry/resume/ckpt-*" > /dev/null; then
  cp "$carry"/resume/ckpt-* "$out"/
fi
mapfile -t recipe < "$carry/train_args.txt"
cd "$carry"
python3 -m style_training.train "${recipe[@]}" "${extra[@]}" --output-dir "$out" \
  --checkpoint-dir "$out" --keep-checkpoints 1 --time-budget "$budget" 2>&1 \
  | tee "$out/train.log"
ls -l "$out"
