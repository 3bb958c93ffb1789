#!/usr/bin/env bash
# Renders docs/architecture/layers.dot to layers.svg with Graphviz's dot
# (apt-get install graphviz) and stamps the source's SHA-256 into the SVG as
# a comment, so that a test can tell a figure older than its source without
# needing Graphviz itself.
#   scripts/render_architecture_figure.sh          render and stamp
#   scripts/render_architecture_figure.sh --check  only compare (the test
#                                                  docs.architecture_figure)
set -euo pipefail
dir=$(cd "$(dirname "$0")/.." && pwd)/docs/architecture
src=$dir/layers.dot
svg=$dir/layers.svg
hash=$(sha256sum "$src" | cut -d' ' -f1)
stamp="<!-- source: layers.dot sha256 $hash -->"

if [[ ${1:-} == --check ]]; then
  [[ -f $svg ]] || { echo "FAIL  $svg is missing: run $0"; exit 1; }
  if ! grep -qF -- "$stamp" "$svg"; then
    found=$(grep -oE 'layers\.dot sha256 [0-9a-f]+' "$svg" || echo "no stamp")
    echo "FAIL  layers.svg was rendered from another layers.dot ($found; the source's is $hash): run $0 and commit both"
    exit 1
  fi
  echo "ok    layers.svg matches layers.dot (sha256 $hash)"
  exit 0
fi

command -v dot >/dev/null || { echo "$0: Graphviz's dot not found (apt-get install graphviz)" >&2; exit 1; }
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
dot -Tsvg "$src" -o "$tmp"
# The stamp goes right after the XML declaration (the first line).
{ head -n 1 "$tmp"; echo "$stamp"; tail -n +2 "$tmp"; } >"$svg"
echo "rendered $svg (sha256 of the source $hash)"
