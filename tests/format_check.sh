#!/usr/bin/env bash
# Fails when a tracked C++ file differs from clang-format's output (Google
# base style, .clang-format at the root).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cc' '*.h')
if ((${#files[@]} == 0)); then
  echo "format_check: no C++ files found (not a git checkout?)" >&2
  exit 1
fi
clang-format --dry-run --Werror "${files[@]}"
echo "format_check: ${#files[@]} files formatted"
