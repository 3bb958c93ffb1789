#!/usr/bin/env bash
# lang.go: the Go client's tests (client/go) against a real satlab-server.
# Generates the stubs and the vendor tree (client/go/setup.sh), then runs
# `go test` with the module proxy off: everything comes from Debian's Go
# sources under /usr/share/gocode.
# Usage: go_test.sh SATLAB_SERVER_BIN [GOCACHE_DIR [GO_TEST_RUN_REGEX]]
#   with a regex, runs only the matching tests of package satlab, including
#   those that need SATLAB_GO_CUT_TESTS=1 (ctest lang.go_resume).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
[[ $# -ge 1 && -x $1 ]] || { echo "go_test.sh: first argument must be the satlab-server binary" >&2; exit 1; }
command -v go >/dev/null || { echo "go_test.sh: go not found (scripts/install-deps.sh test)" >&2; exit 1; }
export SATLAB_SERVER_BIN=$1
export GOCACHE=${2:-${GOCACHE:-$repo/build/go-cache}}
export GOFLAGS=-mod=vendor GOPROXY=off GO111MODULE=on
"$repo/client/go/setup.sh"
# docs/api.md's Go snippets must compile against this client.
python3 "$repo/tests/lang/go_doc_snippets.py" "$repo"
cd "$repo/client/go"
go vet ./...
# Committed Go sources are gofmt-clean.
unformatted=$(gofmt -l ./*.go internal/livetest examples)
[[ -z $unformatted ]] || { echo "go_test.sh: not gofmt-formatted: $unformatted" >&2; exit 1; }
# -count=1: a cached pass says nothing about the server under test.
if [[ -n ${3:-} ]]; then
  SATLAB_GO_CUT_TESTS=1 go test -count=1 -v -run "$3" .
else
  go test -count=1 -v ./...
fi
