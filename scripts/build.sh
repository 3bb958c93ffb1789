#!/usr/bin/env bash
# Configures and builds satlab into build/ (or $SATLAB_BUILD_DIR) with Ninja
# and ccache. Arguments go to cmake's configure step; $SATLAB_TARGETS, if
# set, limits the build to those targets.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SATLAB_BUILD_DIR:-build}
export CCACHE_BASEDIR=$PWD
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
targets=()
for t in ${SATLAB_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build_dir" -j "$(nproc)" "${targets[@]}"
