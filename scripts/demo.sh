#!/usr/bin/env bash
# The README's demo: the real node on a synthetic camera, cycling through every style.
# It exits non-zero, with the reason, if any style's output falls below half the camera rate.
# Arguments go to scripts/demo.py (see `python scripts/demo.py --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# shellcheck source=env.sh
source scripts/env.sh
python scripts/demo.py "$@"
