#!/usr/bin/env bash
# The README's demo: the real node on a synthetic camera, cycling through every style.
# Arguments go to scripts/demo.py (see `python scripts/demo.py --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# shellcheck source=env.sh
source scripts/env.sh
python scripts/demo.py "$@"
