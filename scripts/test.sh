#!/usr/bin/env bash
# Runs every test on a fresh Linux machine: sets up .venv and the interface package, checks
# that the node's runtime code stays Python 3.6 compatible, then runs pytest with real rclpy
# and DDS on loopback only. Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
bash scripts/setup_env.sh
# shellcheck source=env.sh
source scripts/env.sh
echo "test: ROS_DOMAIN_ID=$ROS_DOMAIN_ID, DDS on loopback ($FASTDDS_DEFAULT_PROFILES_FILE)"

# The node runs on the Jetson Nano's Python 3.6 (see docs/jetson.md).
vermin --no-tips --violations -t=3.6- --eval-annotations \
  style_transfer_ros/style_transfer_ros style_transfer_ros/launch

# Lint as ROS packages do (ament_flake8's line length); settings in .flake8.
flake8

export PYTEST_LOG_DIR="$repo/build/test_logs"
mkdir -p "$PYTEST_LOG_DIR"
python -m pytest "$@"
