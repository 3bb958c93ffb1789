#!/usr/bin/env bash
# Installs every dependency (Debian 12, apt), builds satlab with warnings as
# errors, and runs the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh all
scripts/build.sh -DSATLAB_WERROR=ON
cd build
ctest --output-on-failure --timeout 900 -j "$(nproc)"
