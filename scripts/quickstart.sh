#!/usr/bin/env bash
# Installs the dependencies (Debian 12, apt), builds satlab, starts
# satlab-server with its embedded defaults on 127.0.0.1:50051, runs the
# single-neuron demo against it, and keeps serving until Ctrl-C.
# With --demo-only the server stops after the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh core
scripts/build.sh
./build/server/satlab-server &
server_pid=$!
trap 'kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null' EXIT
# Wait for the server to answer its health check.
for _ in $(seq 100); do
  ./build/client/cli/satlab --timeout 1 health >/dev/null 2>&1 && break
  sleep 0.1
done
scripts/demo.sh build/client/cli/satlab 127.0.0.1:50051
if [[ ${1:-} == --demo-only ]]; then exit 0; fi
echo
echo "satlab-server is serving on 127.0.0.1:50051 (pid $server_pid); Ctrl-C stops it."
echo "Networks are kept in ${SATLAB_DATA_DIR-$HOME/.local/state/satlab} and survive a restart"
echo "(SATLAB_DATA_DIR= scripts/quickstart.sh runs in memory only)."
echo "Try: ./build/client/cli/satlab --help"
wait $server_pid
