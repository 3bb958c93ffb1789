#!/usr/bin/env bash
# Installs satlab's build and test dependencies from Debian 12's archive.
# Idempotent: packages already present are skipped, so a second run is quick.
# Usage: scripts/install-deps.sh [core|test|all]   (default: all)
#   core  compiler, CMake, gRPC, protobuf, Abseil, Eigen, spdlog, ... (build + run)
#   test  core + what the test suite drives for real (Python gRPC, Node, Prometheus,
#         Chromium, gnuplot, podman, PostgreSQL's server, nginx) and the checking tools scripts/test.sh
#         uses: clang 14 (-Wthread-safety; libFuzzer is in libclang-rt-14-dev)
#         and llvm-symbolizer for sanitizer stack traces
set -euo pipefail

profile=${1:-all}

core=(build-essential cmake ninja-build ccache pkg-config git ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libfmt-dev libeigen3-dev libgtest-dev libgmock-dev
  libbenchmark-dev libsqlite3-dev libcpp-httplib-dev nlohmann-json3-dev
  libopenblas-dev zlib1g-dev gnuplot-nox clang-format libjs-chart.js libcli11-dev
  libssl-dev  # issue 13: TLS on the HTTP side port (OpenSSL)
  libpq-dev)  # issue 14: the PostgreSQL store
test_extra=(python3 python3-grpcio python3-protobuf python3-numpy python3-sklearn
  prometheus chromium fonts-dejavu-core
  podman buildah debootstrap runc uidmap slirp4netns fuse-overlayfs curl
  clang-14 libclang-rt-14-dev llvm-14
  openssl  # issue 13: tests/security make throwaway certificates
  postgresql-15)  # the PostgreSQL store's tests start a throwaway server (scripts/pg_throwaway.sh)
# issue 14: scripts/cluster.sh's load balancer, run from its own directory (never
# as a system service); the stream module for its TCP (layer 4) port.
test_extra+=(nginx libnginx-mod-stream)
test_extra+=(python3-torch)  # issue 15: the PyTorch anchor's curve test (e2e.pytorch_anchor); ~70 s to install
clients=(golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc python3-setuptools python3-wheel python3-venv python3-pip python3-matplotlib) && test_extra+=("${clients[@]}")  # issue 16: Go client, Python package, walkthrough

case "$profile" in
  core) want=("${core[@]}") ;;
  test | all) want=("${core[@]}" "${test_extra[@]}") ;;
  *) echo "usage: $0 [core|test|all]" >&2; exit 2 ;;
esac

# The machine image ships Node.js 20 with its own npm (which conflicts with
# Debian's npm package); take Debian's only where no node is installed.
if [[ $profile != core ]] && ! command -v npm >/dev/null; then
  want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
