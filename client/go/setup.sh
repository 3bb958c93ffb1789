#!/usr/bin/env bash
# Prepares client/go for `go build` / `go test` without a module proxy:
#   1. generates satlabv1/ (messages + gRPC stubs) from proto/satlab/v1/*.proto
#      with Debian's protoc-gen-go and protoc-gen-go-grpc;
#   2. writes vendor/ as symlinks into Debian's Go sources (/usr/share/gocode,
#      from golang-google-grpc-dev, golang-google-protobuf-dev and their
#      dependencies) plus the vendor/modules.txt that `go` checks against
#      go.mod. With a vendor/ directory and `go 1.19` in go.mod, every go
#      command builds with -mod=vendor by itself.
# Idempotent; regenerates the stubs every run (a second is cheap).
# Usage: client/go/setup.sh        (scripts/install-deps.sh test installs the packages)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto_root=$(cd "$here/../../proto" && pwd)
gocode=${SATLAB_GOCODE:-/usr/share/gocode/src}

for tool in go protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null || {
    echo "setup.sh: $tool not found (scripts/install-deps.sh test installs it)" >&2
    exit 1
  }
done

# Module path -> version go.mod names (must match its require block) and the
# Debian package that ships it. The others are grpc's own imports.
modules=(
  "google.golang.org/grpc v1.33.3 explicit golang-google-grpc-dev"
  "google.golang.org/protobuf v1.28.1 explicit golang-google-protobuf-dev"
  "github.com/golang/protobuf v1.5.2 - golang-github-golang-protobuf-1-5-dev"
  "google.golang.org/genproto v0.0.0 - golang-google-genproto-dev"
  "golang.org/x/net v0.7.0 - golang-golang-x-net-dev"
  "golang.org/x/sys v0.3.0 - golang-golang-x-sys-dev"
  "golang.org/x/text v0.7.0 - golang-golang-x-text-dev"
)

# 1. Stubs: every satlab/v1 proto into one Go package, satlab/satlabv1.
protos=()
mflags=""
for f in "$proto_root"/satlab/v1/*.proto; do
  rel=${f#"$proto_root"/}
  protos+=("$rel")
  mflags+=",M$rel=satlab/satlabv1;satlabv1"
done
staged=$(mktemp -d "$here/.gen.XXXXXX")
trap 'rm -rf "$staged"' EXIT
protoc -I"$proto_root" \
  --go_out="$staged" --go_opt="module=satlab$mflags" \
  --go-grpc_out="$staged" --go-grpc_opt="module=satlab$mflags" \
  "${protos[@]}"
rm -rf "$here/satlabv1"
mv "$staged/satlabv1" "$here/satlabv1"

# 2. vendor/: symlinks, rebuilt from scratch so a stale link cannot survive.
rm -rf "$here/vendor"
mkdir -p "$here/vendor"
{
  for m in "${modules[@]}"; do
    read -r path version explicit pkg <<<"$m"
    [[ -d $gocode/$path ]] || {
      echo "setup.sh: $gocode/$path missing (apt-get install $pkg)" >&2
      exit 1
    }
    mkdir -p "$here/vendor/$(dirname "$path")"
    ln -s "$gocode/$path" "$here/vendor/$path"
    echo "# $path $version"
    [[ $explicit == explicit ]] && echo "## explicit"
  done
} >"$here/vendor/modules.txt"
echo "setup.sh: stubs in $here/satlabv1, vendor/ -> $gocode"
