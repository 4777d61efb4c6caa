# Source this file to use the repository's environment: the venv, the interfaces built by
# scripts/setup_env.sh, and ROS 2 settings that keep all DDS traffic on loopback.
# It picks a fresh ROS_DOMAIN_ID unless one is set, so concurrent runs do not talk to each other.
_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="$_repo/.venv"
_install="$_repo/build/install"
_pyver="$("$_venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

export VIRTUAL_ENV="$_venv"
export PATH="$_venv/bin:$PATH"
export AMENT_PREFIX_PATH="$_install:$_venv"
export PYTHONPATH="$_repo/style_transfer_ros:$_repo/training:$_install/lib/python$_pyver/site-packages${PYTHONPATH:+:$PYTHONPATH}"
export LD_LIBRARY_PATH="$_install/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE="$_repo/scripts/fastdds_loopback.xml"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
export PYTHONUNBUFFERED=1
unset _repo _venv _install _pyver
