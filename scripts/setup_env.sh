#!/usr/bin/env bash
# Creates .venv from pinned registry packages (ROS 2 Kilted Python wheels, TensorFlow, LiteRT)
# and builds style_transfer_interfaces into build/install. Idempotent; safe to rerun.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

python_bin="${PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null || { echo "setup_env: $python_bin not found (the ROS 2 wheels are built for CPython 3.11)" >&2; exit 1; }

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ] \
   || [ training/requirements.txt -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || "$python_bin" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade "pip<27"
  .venv/bin/python -m pip install --quiet -r requirements.txt -c constraints.txt
  touch "$stamp"
fi

# The ROS wheels' CMake exports name the include folders of the machine that built them;
# point them at this venv's Python and numpy headers (again after every pip install).
py_include="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
{ grep -rlE '/opt/python/cp[0-9]+-cp[0-9]+/' .venv/share --include='*.cmake' 2>/dev/null || true; } \
  | xargs -r sed -i -E \
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python[0-9.]+#$py_include#g" \
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python[0-9.]+/site-packages#$site#g"

# Build the interface package (about 15 s) unless its sources are unchanged.
mkdir -p build
marker=build/install/.interfaces_built
if [ ! -f "$marker" ] || [ -n "$(find style_transfer_interfaces -newer "$marker" -type f | head -1)" ]; then
  export AMENT_PREFIX_PATH="$repo/.venv" CMAKE_PREFIX_PATH="$repo/.venv"
  cmake -S style_transfer_interfaces -B build/style_transfer_interfaces \
    -DCMAKE_INSTALL_PREFIX="$repo/build/install" -DPython3_EXECUTABLE="$repo/.venv/bin/python" \
    -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > build/interfaces_cmake.log 2>&1 \
    || { cat build/interfaces_cmake.log; exit 1; }
  cmake --build build/style_transfer_interfaces --target install -j "$(nproc)" >> build/interfaces_cmake.log 2>&1 \
    || { tail -50 build/interfaces_cmake.log; exit 1; }
  touch "$marker"
fi
# The Jetson Nano's Python 3.6 + TensorFlow 2.6 stack for the compatibility job
# (style_transfer_ros/test/test_python36_compat.py).
python36=""
for candidate in "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.6*/bin/python3.6 \
                 "$(command -v python3.6 || true)"; do
  if [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 6)' 2>/dev/null; then
    python36="$candidate"
    break
  fi
done
if [ -n "$python36" ]; then
  stamp36=.venv36/.installed
  if [ ! -f "$stamp36" ] || [ scripts/requirements-py36.txt -nt "$stamp36" ]; then
    [ -x .venv36/bin/python ] || "$python36" -m venv .venv36
    .venv36/bin/python -m pip install --quiet "pip>=21.3,<22"
    .venv36/bin/python -m pip install --quiet -r scripts/requirements-py36.txt
    touch "$stamp36"
  fi
else
  echo "setup_env: no Python 3.6 found; the Nano compatibility job will not run" >&2
fi
echo "setup_env: ready (.venv, .venv36, build/install)"
