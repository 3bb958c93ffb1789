#!/usr/bin/env bash
# Proto hygiene: `buf lint` (STANDARD, buf.yaml at the repository root) and a
# breaking-change check of proto/ against the previous commit.
#
# buf comes from npm's @bufbuild/buf (a devDependency of client/node); this
# script runs `npm ci` there when it is missing.
# Env: BUF_AGAINST_REF  git ref to compare with (default HEAD~1).
# Exit: 0 clean; 1 lint or breaking violations (printed); 2 setup error.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
buf=client/node/node_modules/.bin/buf
if [[ ! -x $buf ]]; then
  echo "buf_check: installing client/node packages (npm ci)"
  (cd client/node && npm ci --no-audit --no-fund --loglevel=error) || { echo "buf_check: npm ci failed" >&2; exit 2; }
fi
"$buf" --version >/dev/null || { echo "buf_check: $buf does not run" >&2; exit 2; }
echo "buf_check: buf $("$buf" --version)"

status=0
echo "buf_check: lint"
if "$buf" lint; then
  echo "buf_check: lint clean ($("$buf" ls-files | wc -l) files)"
else
  echo "buf_check: lint FAILED" >&2
  status=1
fi

ref=${BUF_AGAINST_REF:-HEAD~1}
if ! git rev-parse --verify --quiet "$ref^{commit}" >/dev/null; then
  # A first commit or a shallow clone has nothing to compare with.
  echo "buf_check: breaking SKIPPED: $ref does not exist in this clone"
elif [[ -z $(git ls-tree -d --name-only "$ref" proto) ]]; then
  echo "buf_check: breaking SKIPPED: $ref has no proto/"
else
  echo "buf_check: breaking against $ref ($(git rev-parse --short "$ref"))"
  if "$buf" breaking --against ".git#ref=$ref,subdir=proto"; then
    echo "buf_check: no breaking change"
  else
    echo "buf_check: breaking changes against $ref" >&2
    status=1
  fi
fi
exit $status
