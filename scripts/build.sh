#!/usr/bin/env bash
# Configures and builds satlab into build/ (or $SATLAB_BUILD_DIR) with Ninja
# and ccache. Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SATLAB_BUILD_DIR:-build}
export CCACHE_BASEDIR=$PWD
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
