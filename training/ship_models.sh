#!/usr/bin/env bash
# Turns a conditional training run into the models the node ships: the multi-style model
# (styles blendable live) and one single-style model per style, each with its sidecar, in
# style_transfer_ros/models/. The parity check against Keras runs on the held-out test photos.
#
#   bash training/ship_models.sh RUN_DIR NAME [QUANTIZATION [STYLE ...]]
#
# RUN_DIR holds model.keras + training.json (train.py's --output-dir); NAME is the catalog
# name of the multi-style model (e.g. classics); QUANTIZATION defaults to float16 (as fast as
# float32 on current and Jetson Nano runtimes alike and a quarter smaller, docs/benchmarks.md).
# STYLEs: the single-style models to write (default: every style of the run), so that a
# single style shipped from another run (the default starry_night) is not replaced.
set -euo pipefail
run_dir="$(cd "$1" && pwd)"
name="$2"
quantization="${3:-float16}"
singles=("${@:4}")
repo="$(cd "$(dirname "$0")/.." && pwd)"
models="${SHIP_TO:-$repo/style_transfer_ros/models}"
samples="$repo/../shared/data/content_test/kodak24"

cd "$repo/training"
convert() {
  python -m style_training.convert "$run_dir" --quantization "$quantization" \
    --output-dir "$models" --sample-dir "$samples" "$@"
}
convert --name "$name" --description "Blend of $(python -c "
import json, sys
styles = json.load(open(sys.argv[1]))['styles']
print(len(styles))" "$run_dir/training.json") styles, efficient network (style_weights input)"
if [ ${#singles[@]} -eq 0 ]; then
  read -r -a singles <<< "$(python -c "
import json, sys
print(' '.join(s['name'] for s in json.load(open(sys.argv[1]))['styles']))" "$run_dir/training.json")"
fi
for style in "${singles[@]}"; do
  convert --select-style "$style"
done
ls -l "$models"
