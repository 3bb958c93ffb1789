#!/usr/bin/env bash
# Regenerates every figure and table of docs/saturation.md:
#   scripts/figures.sh [BUILD_DIR]      (default: build)
# Builds satlab-server and satlab if needed, starts a server on a free port,
# runs the presets (nielsen, factor, glorot, digits) into docs/figures/, and
# stops the server by its PID. Needs gnuplot and Debian's python3-sklearn
# (for the digits CSV).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
out="$root/docs/figures"

if [[ ! -x "$build/server/satlab-server" || ! -x "$build/client/cli/satlab" ]]; then
  cmake -S "$root" -B "$build" -G Ninja
  cmake --build "$build" --target satlab-server satlab
fi

tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"$build/server/satlab-server" --port=0 --http_port=-1 >"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$tmp/server.out" 2>/dev/null && break
  sleep 0.1
done
address="$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$tmp/server.out" | head -1)"
if [[ -z "$address" ]]; then
  echo "satlab-server did not start:" >&2
  cat "$tmp/server.err" >&2
  exit 1
fi

mkdir -p "$out"
for preset in nielsen factor glorot digits; do
  echo "== satlab experiment $preset" >&2
  "$build/client/cli/satlab" --server "$address" experiment "$preset" \
    --out "$out"
done
# The gnuplot scripts stay next to the figures (rerun one with
# `cd docs/figures && gnuplot NAME.gp`).
echo "figures and tables in $out" >&2
