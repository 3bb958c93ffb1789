#!/usr/bin/env bash
# Issue 15's last target: the image's (portable) binary against a
# -march=native build of the same source on the same CPU. Prints one
# markdown table of CPU microseconds per TrainStep (medians of REPS
# interleaved repetitions, one thread) for docs/benchmarks.md.
#
#   bench/native_gap.sh                   # builds build-portable/, build-native/
#   SKIP_BUILD=1 bench/native_gap.sh      # reuse them
#   P=old/portable N=old/native bench/native_gap.sh   # other binaries
#
# "native best" is the native build with --kernels=baseline: Eigen compiled
# for this CPU, FMA included (different bits); "native default" is the
# native build as it runs by default (the dispatched kernels, the portable
# binary's bits); "portable, native engine" is the portable binary running
# its native engine for this CPU (satlab-server --engine=native; the
# objects from the portable build's server/ directory, or ENGINE_DIR).
# Pinned to one CPU and, when allowed, at real-time priority so that other
# work on the machine does not preempt the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
MIN_TIME=${MIN_TIME:-1}
CASES=${CASES:-'engine_train/(1-1_b1_mse|2-16-16-1_b32_mse|784-256-256-10_b128_cce)/'}
if [ -z "${SKIP_BUILD:-}" ] && [ -z "${P:-}" ]; then
  for variant in portable:OFF native:ON; do
    dir=build-${variant%%:*}
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSATLAB_BUILD_BENCH=ON \
      -DSATLAB_BUILD_TESTS=OFF -DSATLAB_NATIVE="${variant##*:}" >/dev/null
    targets=satlab_bench_engine
    [ "$dir" = build-portable ] && targets="$targets satlab_engine_x86-64-v3 satlab_engine_x86-64-v4"
    # shellcheck disable=SC2086  # the target list
    cmake --build "$dir" -j2 --target $targets >/dev/null
  done
fi
P=${P:-build-portable/bench/satlab_bench_engine}
N=${N:-build-native/bench/satlab_bench_engine}
ENGINE_DIR=${ENGINE_DIR:-$(dirname "$P")/../server}
OUT=$(mktemp -d /tmp/satlab-gap.XXXXXX)
pin=(taskset -c "$(($(nproc) - 1))")
if chrt -f 10 true 2>/dev/null; then pin+=(chrt -f 10); fi

for r in $(seq 1 "$REPS"); do
  echo "repetition $r/$REPS" >&2
  for run in "portable:$P" "portable_native_engine:$P --engine_dir=$ENGINE_DIR" \
    "native_default:$N" "native_best:$N --kernels=baseline"; do
    name=${run%%:*}
    # shellcheck disable=SC2086  # the binary and its flag
    "${pin[@]}" ${run#*:} --threads=1 --benchmark_filter="$CASES" \
      --benchmark_min_time="${MIN_TIME}s" --benchmark_out="$OUT/$name.$r.json" \
      --benchmark_out_format=json >/dev/null 2>&1 || echo "  $name failed" >&2
  done
done

python3 - "$OUT" "$REPS" <<'EOF'
import sys
sys.path.insert(0, "bench")
import medians
out, reps = sys.argv[1], int(sys.argv[2])

def load(name):
    """benchmark name -> median CPU time (us) over the repetitions."""
    return medians.load(out, name, "cpu_time")

print(f"{medians.machine()}; CPU us per TrainStep, 1 thread, medians of {reps} "
      f"interleaved repetitions.\n")
p, pn = load("portable"), load("portable_native_engine")
nd, nb = load("native_default"), load("native_best")
print("| case | portable | portable, --engine=native | native default | native best "
      "| portable / native best | portable / native default | portable --engine=native / native best |")
print("|---|---|---|---|---|---|---|---|")
for name in sorted(p):
    print(f"| {medians.short(name)} | {p[name]:.2f} | {pn[name]:.2f} | {nd[name]:.2f} | {nb[name]:.2f} | "
          f"{p[name] / nb[name]:.2f}× | {p[name] / nd[name]:.2f}× | {pn[name] / nb[name]:.2f}× |")
EOF
