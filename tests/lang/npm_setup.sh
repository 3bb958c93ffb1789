#!/usr/bin/env bash
# Installs the npm packages the language tests use, from the committed
# package-lock.json files (`npm ci`), unless node_modules is already current.
#   client/node       @grpc/grpc-js, proto-loader, protobufjs, @bufbuild/buf, the
#                     health and reflection protos (also used by the Python stubs)
#   tests/container   compose/Kubernetes schema validators
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
command -v npm >/dev/null || { echo "npm_setup: npm not found (scripts/install-deps.sh test)" >&2; exit 1; }
for dir in client/node tests/container; do
  lock=$repo/$dir/package-lock.json
  stamp=$repo/$dir/node_modules/.package-lock.json
  if [[ -f $stamp && ! $lock -nt $stamp ]]; then
    echo "npm_setup: $dir/node_modules current"
    continue
  fi
  echo "npm_setup: npm ci in $dir"
  (cd "$repo/$dir" && npm ci --no-audit --no-fund --loglevel=error)
done
