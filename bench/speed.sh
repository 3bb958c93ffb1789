#!/usr/bin/env bash
# Issue 15, items 1-2: what the runtime kernel dispatch, the OpenBLAS core
# guard and the thread defaults are worth on this machine. Prints markdown
# tables (medians of REPS interleaved repetitions) for docs/benchmarks.md.
#
#   bench/speed.sh                 # builds build-portable/ and build-native/
#   SKIP_BUILD=1 bench/speed.sh    # reuse them
#   REPS=5 bench/speed.sh
#
# build-portable: Release, SATLAB_NATIVE=OFF (as the image and CI build).
# build-native:   Release, -march=native (benchmarks only; never CI).
# "without dispatch" is the portable binary with --kernels=baseline: the
# same SSE2 code the engine ran before dispatch existed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
MIN_TIME=${MIN_TIME:-0.3}
OUT=$(mktemp -d /tmp/satlab-speed.XXXXXX)
if [ -z "${SKIP_BUILD:-}" ]; then
  for variant in portable:OFF native:ON; do
    dir=build-${variant%%:*}
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSATLAB_BUILD_BENCH=ON \
      -DSATLAB_BUILD_TESTS=OFF -DSATLAB_NATIVE="${variant##*:}" >/dev/null
    cmake --build "$dir" -j2 --target satlab_bench_engine >/dev/null
  done
fi
P=build-portable/bench/satlab_bench_engine
N=build-native/bench/satlab_bench_engine
CASES='engine_train/(1-1_b1_mse|2-16-16-1_b32_mse|784-256-256-10_b128_mse|784-256-256-10_b128_cce)/'
BIG='engine_train/784-256-256-10_b128_(mse|cce)/'
TINY='engine_train/2-16-16-1_b32_mse/'

bench() {  # bench NAME THREADS FILTER [ENV=VALUE ...] -- ARGS...
  local name=$1 threads=$2 filter=$3 r=$4; shift 4
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" "$@" --threads="$threads" --benchmark_filter="$filter" \
    --benchmark_min_time="$MIN_TIME" --benchmark_out="$OUT/$name.$r.json" \
    --benchmark_out_format=json >/dev/null 2>&1 || echo "  $name failed" >&2
}

for r in $(seq 1 "$REPS"); do
  echo "repetition $r/$REPS" >&2
  # Dispatch: portable with and without it, -march=native with and without.
  bench portable_auto 1 "$CASES" "$r" X=1 -- $P
  bench portable_baseline 1 "$CASES" "$r" X=1 -- $P --kernels=baseline
  bench native_auto 1 "$CASES" "$r" X=1 -- $N
  bench native_baseline 1 "$CASES" "$r" X=1 -- $N --kernels=baseline
  # OpenBLAS core: its own choice, what the guard picks, a bad detection.
  for core in default SkylakeX Haswell Prescott; do
    e=X=1; [ "$core" = default ] || e=OPENBLAS_CORETYPE=$core
    for t in 1 2; do bench "blas_${core}_t$t" "$t" "$BIG" "$r" "$e" -- $P; done
  done
  # Threads: one big step at 1 and 2 BLAS threads; two concurrent callers
  # (two processes, one core each or two each) against one caller with 2.
  for f in "$BIG" "$TINY"; do
    tag=$([ "$f" = "$BIG" ] && echo big || echo tiny)
    bench "one_${tag}_t1" 1 "$f" "$r" X=1 -- $P
    bench "one_${tag}_t2" 2 "$f" "$r" X=1 -- $P
    for t in 1 2; do
      bench "pair_${tag}_t${t}_a" "$t" "$f" "$r" X=1 -- $P &
      bench "pair_${tag}_t${t}_b" "$t" "$f" "$r" X=1 -- $P
      wait
    done
  done
done

python3 - "$OUT" "$REPS" <<'EOF'
import sys
sys.path.insert(0, "bench")
import medians
from medians import short
out, reps = sys.argv[1], int(sys.argv[2])

def load(name):
    """benchmark name -> median real time (us) over the repetitions."""
    return medians.load(out, name, "real_time")

print(f"{medians.machine()}; medians of {reps} interleaved repetitions; "
      f"engine_train = one TrainStep, 1 thread, OpenBLAS's own core unless named.\n")

pa, pb, na, nb = (load(n) for n in ["portable_auto", "portable_baseline", "native_auto", "native_baseline"])
print("| case | portable, no dispatch (µs) | portable + dispatch (µs) | native (µs) | native + dispatch (µs) | dispatch gain | portable+dispatch / native |")
print("|---|---|---|---|---|---|---|")
for k in sorted(pa):
    print(f"| {short(k)} | {pb[k]:.2f} | {pa[k]:.2f} | {nb[k]:.2f} | {na[k]:.2f} | {pb[k]/pa[k]:.2f}× | {pa[k]/min(nb[k], na[k]):.2f}× |")

print("\n| case | threads | OpenBLAS's own (µs) | SkylakeX (µs) | Haswell (µs) | Prescott (µs) | Prescott / best |")
print("|---|---|---|---|---|---|---|")
for t in (1, 2):
    cores = {c: load(f"blas_{c}_t{t}") for c in ["default", "SkylakeX", "Haswell", "Prescott"]}
    for k in sorted(cores["default"]):
        v = {c: cores[c].get(k, float("nan")) for c in cores}
        best = min(v["default"], v["SkylakeX"], v["Haswell"])
        print(f"| {short(k)} | {t} | {v['default']:.0f} | {v['SkylakeX']:.0f} | {v['Haswell']:.0f} | {v['Prescott']:.0f} | {v['Prescott']/best:.2f}× |")

print("\n| case | 1 caller, 1 BLAS thread (steps/s) | 1 caller, 2 BLAS threads | 2 callers × 1 BLAS thread (total steps/s) | 2 callers × 2 BLAS threads (oversubscribed) |")
print("|---|---|---|---|---|")
for tag in ("big", "tiny"):
    one1, one2 = load(f"one_{tag}_t1"), load(f"one_{tag}_t2")
    p1a, p1b = load(f"pair_{tag}_t1_a"), load(f"pair_{tag}_t1_b")
    p2a, p2b = load(f"pair_{tag}_t2_a"), load(f"pair_{tag}_t2_b")
    for k in sorted(one1):
        rate = lambda us: 1e6 / us
        print(f"| {short(k)} | {rate(one1[k]):.0f} | {rate(one2[k]):.0f} | "
              f"{rate(p1a[k]) + rate(p1b[k]):.0f} | {rate(p2a[k]) + rate(p2b[k]):.0f} |")
EOF
