#!/usr/bin/env bash
# Installs every dependency (Debian 12, apt), builds satlab with warnings as
# errors, runs the engine tests under AddressSanitizer +
# UndefinedBehaviorSanitizer, then the whole suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh all

# The numerics under AddressSanitizer + UndefinedBehaviorSanitizer: only the
# engine and its tests are built in build-asan (no gRPC or protobuf code), so
# this costs a few minutes.
SATLAB_BUILD_DIR=build-asan SATLAB_TARGETS=engine_test \
  scripts/build.sh -DSATLAB_SANITIZE=address,undefined -DSATLAB_WERROR=ON
echo "== sanitizers: engine_test"
./build-asan/tests/engine/engine_test --gtest_brief=1

scripts/build.sh -DSATLAB_WERROR=ON
cd build
ctest --output-on-failure --timeout 900 -j "$(nproc)"
