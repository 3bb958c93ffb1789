#!/usr/bin/env bash
# Builds the benchmarks and anchors, runs them interleaved and repeated, and
# writes docs/benchmarks.md with the medians and ratios of this one run, and
# the training-step figure docs/figures/benchmarks_step.{csv,gp,png,svg}.
#
#   bench/run_all.sh               # REPS=4 repetitions (~4-5 min once built)
#   REPS=3 bench/run_all.sh        # quicker, noisier
#   SKIP_BUILD=1 bench/run_all.sh  # reuse build-bench/
#   OUT=/tmp/b.md bench/run_all.sh # write elsewhere
#
# Each repetition runs every program once per thread count (1, 2), in an
# order that rotates between repetitions, so slow drifts of the shared
# machine hit every contender alike. Benchmarks never pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REPS=${REPS:-4}
BUILD=${BUILD_DIR:-$ROOT/build-bench}
OUT=${OUT:-$ROOT/docs/benchmarks.md}
MIN_TIME=${MIN_TIME:-0.05}
PY=/usr/bin/python3   # Debian's python3, which has python3-torch
RESULTS=$(mktemp -d /tmp/satlab-bench.XXXXXX)
echo "results in $RESULTS"

# --- bench-only dependencies (big: not in scripts/install-deps.sh) ---------
need=()
$PY -c 'import torch' 2>/dev/null || need+=(python3-torch)
[ -f /usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake ] || need+=(libtorch-dev)
[ -f /usr/lib/x86_64-linux-gnu/cmake/openblas/OpenBLASConfig.cmake ] || need+=(libopenblas-dev)
[ -f /usr/include/benchmark/benchmark.h ] || need+=(libbenchmark-dev)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# --- build -----------------------------------------------------------------
TARGETS=(satlab_bench_gemm_floor satlab_bench_engine satlab_bench_libtorch satlab_bench_grpc)
if [ -z "${SKIP_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -DSATLAB_BUILD_BENCH=ON -DSATLAB_BUILD_TESTS=OFF -DSATLAB_NATIVE=ON \
    -DCMAKE_BUILD_TYPE=Release >"$RESULTS/cmake.log" 2>&1 || { tail -30 "$RESULTS/cmake.log"; exit 1; }
  for t in "${TARGETS[@]}"; do
    cmake --build "$BUILD" -j2 --target "$t" >>"$RESULTS/build.log" 2>&1 \
      || echo "warning: could not build $t (see $RESULTS/build.log); its columns stay empty"
  done
fi
B=$BUILD/bench
GB=(--benchmark_min_time="$MIN_TIME" --benchmark_out_format=json)

# --- the machine -------------------------------------------------------------
{
  echo "cpu:      $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores online, $(lscpu | sed -n 's/^Thread(s) per core: *//p') thread/core), $(lscpu | sed -n 's/^Hypervisor vendor: *//p') guest"
  echo "simd:     $(grep -o -w -E 'avx2|fma|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  echo "caches:   L1d $(lscpu | sed -n 's/^L1d cache: *//p'), L2 $(lscpu | sed -n 's/^L2 cache: *//p'), L3 $(lscpu | sed -n 's/^L3 cache: *//p')"
  echo "memory:   $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "os:       $(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r)"
  echo "compiler: $(c++ --version | head -1), -O3 -march=native (CMAKE_BUILD_TYPE=Release)"
  echo "libs:     Eigen $(dpkg-query -W -f='${Version}' libeigen3-dev 2>/dev/null), OpenBLAS $(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null) (pthread), torch $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null) (Debian python3-torch/libtorch-dev $(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null)), gRPC $(dpkg-query -W -f='${Version}' libgrpc++-dev 2>/dev/null), Google Benchmark $(dpkg-query -W -f='${Version}' libbenchmark-dev 2>/dev/null)"
  echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start; other work shares these 2 cores)"
} >"$RESULTS/machine.txt"

# --- runs ------------------------------------------------------------------
run() {  # run NAME TIMEOUT CMD... : output JSON to $RESULTS/NAME.json
  local name=$1 secs=$2; shift 2
  if ! timeout "$secs" "$@" >"$RESULTS/$name.log" 2>&1; then
    echo "  $name failed (see $RESULTS/$name.log)"
  fi
}
jobs_for() {  # the runs of one repetition at one thread count
  local t=$1 r=$2
  echo "floor"
  echo "engine"
  [ -x "$B/satlab_bench_libtorch" ] && echo "libtorch-t$t"
  [ "$t" = 2 ] && [ -x "$B/satlab_bench_libtorch" ] && echo "libtorch-t1blas2"
  echo "pytorch-t$t"
  [ "$t" = 2 ] && echo "pytorch-t1blas2"
  [ -x "$B/satlab_bench_grpc" ] && echo "grpc"
  return 0
}
start=$(date +%s)
# Memory (deterministic: once).
run engine_bytes_t1_r1 120 "$B/satlab_bench_engine" --threads=1 --benchmark_filter='engine_bytes' \
  --benchmark_out="$RESULTS/engine_bytes_t1_r1.json" --benchmark_out_format=json
if [ -x "$B/satlab_bench_grpc" ]; then
  run server_rss_t1_r1 180 "$B/satlab_bench_grpc" --rss --server="$BUILD/server/satlab-server" \
    --benchmark_out="$RESULTS/server_rss_t1_r1.json" --benchmark_out_format=json
fi
for r in $(seq 1 "$REPS"); do
  for t in 1 2; do
    mapfile -t js < <(jobs_for "$t" "$r")
    n=${#js[@]}
    for i in $(seq 0 $((n - 1))); do
      j=${js[$(((i + r + t) % n))]}
      echo "rep $r/$REPS threads $t: $j"
      case $j in
        floor)  run "gemm_floor_t${t}_r${r}" 120 "$B/satlab_bench_gemm_floor" --threads="$t" "${GB[@]}" \
                  --benchmark_out="$RESULTS/gemm_floor_t${t}_r${r}.json" ;;
        engine) run "engine_t${t}_r${r}" 120 "$B/satlab_bench_engine" --threads="$t" "${GB[@]}" \
                  --benchmark_filter='engine_(train|forward|gradients|validate)/' \
                  --benchmark_out="$RESULTS/engine_t${t}_r${r}.json" ;;
        libtorch-t1blas2) run "libtorch-t1blas2_t${t}_r${r}" 120 "$B/satlab_bench_libtorch" --threads=1 \
                  --openblas-threads=2 "${GB[@]}" --benchmark_out="$RESULTS/libtorch-t1blas2_t${t}_r${r}.json" ;;
        libtorch-t*) run "libtorch-t${t}_t${t}_r${r}" 120 "$B/satlab_bench_libtorch" --threads="$t" "${GB[@]}" \
                  --benchmark_out="$RESULTS/libtorch-t${t}_t${t}_r${r}.json" ;;
        pytorch-t1blas2) run "pytorch-t1blas2_t${t}_r${r}" 120 $PY bench/pytorch_anchor.py --threads=1 \
                  --openblas-threads=2 --min-time="$MIN_TIME" --out="$RESULTS/pytorch-t1blas2_t${t}_r${r}.json" ;;
        pytorch-t*) run "pytorch-t${t}_t${t}_r${r}" 120 $PY bench/pytorch_anchor.py --threads="$t" \
                  --min-time="$MIN_TIME" --out="$RESULTS/pytorch-t${t}_t${t}_r${r}.json" ;;
        grpc)   run "grpc_t${t}_r${r}" 180 "$B/satlab_bench_grpc" --threads="$t" "${GB[@]}" \
                  --benchmark_out="$RESULTS/grpc_t${t}_r${r}.json" ;;
      esac
    done
  done
done
elapsed=$(( $(date +%s) - start ))
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/machine.txt"
mkdir -p "$(dirname "$OUT")"
$PY bench/report.py "$RESULTS" "$OUT" --machine "$RESULTS/machine.txt" --reps "$REPS" \
  --elapsed "$((elapsed / 60)) min $((elapsed % 60)) s" --notes bench/notes.md >/dev/null
echo "wrote $OUT in $((elapsed / 60)) min $((elapsed % 60)) s of runs; raw results in $RESULTS"
