#!/usr/bin/env bash
# The README's first example against a running server: one sigmoid neuron,
# x = 1, y = 0, w = b = 2. ComputeGradients under mse, with bce as a
# counterfactual on the same minibatch and parameters.
# Usage: scripts/demo.sh [SATLAB_CLI] [HOST:PORT]
set -euo pipefail
cli=${1:-build/client/cli/satlab}
server=${2:-127.0.0.1:50051}
# Prints each command as a user would type it, then runs it.
satlab() {
  printf '\n$ satlab'
  for arg in "$@"; do
    if [[ $arg =~ [^A-Za-z0-9_./:=,-] ]]; then printf " '%s'" "$arg"; else printf ' %s' "$arg"; fi
  done
  printf '\n'
  "$cli" --server "$server" "$@"
}

"$cli" --server "$server" delete neuron >/dev/null 2>&1 || true
satlab health
satlab create neuron --input-size 1 --layers 1:sigmoid --loss mse \
  --params '{"layers":[{"weights":[[2]],"biases":[2]}]}'
satlab grad neuron --inputs 1 --targets 0 --counterfactual bce
