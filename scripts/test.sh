#!/usr/bin/env bash
# Installs every dependency (Debian 12, apt), builds satlab with warnings as
# errors, runs the numerics, service and CLI-parser tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the whole suite with
# ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh all

# Only the targets the sanitizers check are built in build-asan.
SATLAB_BUILD_DIR=build-asan SATLAB_TARGETS="engine_test service_test cli_data_test" \
  scripts/build.sh -DSATLAB_SANITIZE=address,undefined -DSATLAB_WERROR=ON
for t in engine/engine_test service/service_test client/cli_data_test; do
  echo "== sanitizers: $t"
  ./build-asan/tests/$t --gtest_brief=1
done

scripts/build.sh -DSATLAB_WERROR=ON
cd build
ctest --output-on-failure --timeout 900 -j "$(nproc)"
