#!/usr/bin/env bash
# Issue 15's frameworks line: 784-256-256-10 batch 128, one training step,
# at 1 and 2 threads, against the GEMM floor (the step's eight products
# alone, OpenBLAS's own threads, inputs from the same ring of minibatches as
# every contender's: bench/gemm_floor_bench.cc) and PyTorch in each of its
# thread layouts.
# Prints two markdown tables of wall-clock microseconds per step (medians,
# then each contender's best, of REPS interleaved repetitions) with the
# ratios, for docs/benchmarks.md. OUT=DIR keeps the JSON in DIR; REPORT_ONLY=1
# only prints the tables of an earlier run in OUT.
#
#   bench/two_threads.sh                 # builds build-portable/ (Release)
#   SKIP_BUILD=1 bench/two_threads.sh    # reuse it
#
# satlab at N threads is satlab-server --blas_threads=N (the step team,
# OpenBLAS single-threaded inside it). PyTorch runs bench/pytorch_anchor.py
# with Debian's python3-torch (installed if missing): t1, t2 (torch and
# OpenBLAS at 2, OMP_WAIT_POLICY=PASSIVE) and t1blas2 (torch at 1, OpenBLAS
# at 2), and so does LibTorch (bench/libtorch_anchor.cc, Debian's
# libtorch-dev, built when installed: the script installs it). Every contender runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
# removed from its environment (some machines set them for old OpenBLAS
# builds: /work/.library/env/README.md), so each gets the core OpenBLAS
# detects; the table names it.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
MIN_TIME=${MIN_TIME:-1}
PY=/usr/bin/python3
DIR=${DIR:-build-portable}
if ! $PY -c 'import torch' 2>/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-torch
fi
if [ ! -f /usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libtorch-dev
fi
if [ -z "${SKIP_BUILD:-}" ]; then
  cmake -S . -B "$DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSATLAB_BUILD_BENCH=ON \
    -DSATLAB_BUILD_TESTS=OFF -DSATLAB_NATIVE=OFF >/dev/null
  cmake --build "$DIR" -j2 --target satlab_bench_engine satlab_bench_gemm_floor \
    satlab_bench_libtorch >/dev/null
fi
E=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
OUT=${OUT:-$(mktemp -d /tmp/satlab-2t.XXXXXX)}
mkdir -p "$OUT"
CASE='784-256-256-10'
core=$("${E[@]}" OPENBLAS_VERBOSE=2 "$DIR/bench/satlab_bench_gemm_floor" --threads=1 \
  --benchmark_filter=none 2>&1 | sed -n 's/^Core: *//p' | head -1)
torch_core=$("${E[@]}" OPENBLAS_VERBOSE=2 $PY -c 'import torch' 2>&1 | sed -n 's/^Core: *//p' | head -1)

if [ -z "${REPORT_ONLY:-}" ]; then
for r in $(seq 1 "$REPS"); do
  echo "repetition $r/$REPS" >&2
  for t in 1 2; do
    "${E[@]}" "$DIR/bench/satlab_bench_engine" --threads=$t \
      --benchmark_filter="engine_train/$CASE" --benchmark_min_time="${MIN_TIME}s" \
      --benchmark_out="$OUT/ours_t$t.$r.json" --benchmark_out_format=json >/dev/null 2>&1 \
      || echo "  ours t$t failed" >&2
    "${E[@]}" "$DIR/bench/satlab_bench_gemm_floor" --threads=$t \
      --benchmark_filter="$CASE" --benchmark_min_time="${MIN_TIME}s" \
      --benchmark_out="$OUT/floor_t$t.$r.json" --benchmark_out_format=json >/dev/null 2>&1 \
      || echo "  floor t$t failed" >&2
  done
  for cfg in "t1:--threads=1" "t2:--threads=2 --passive" "t1blas2:--threads=1 --openblas-threads=2"; do
    # shellcheck disable=SC2086  # the flags
    "${E[@]}" $PY bench/pytorch_anchor.py ${cfg#*:} --filter="$CASE" --min-time="$MIN_TIME" \
      --out="$OUT/pytorch_${cfg%%:*}.$r.json" >/dev/null 2>&1 || echo "  pytorch ${cfg%%:*} failed" >&2
    # shellcheck disable=SC2086  # the flags
    "${E[@]}" "$DIR/bench/satlab_bench_libtorch" ${cfg#*:} --benchmark_filter="$CASE" \
      --benchmark_min_time="${MIN_TIME}s" --benchmark_out="$OUT/libtorch_${cfg%%:*}.$r.json" \
      --benchmark_out_format=json >/dev/null 2>&1 || echo "  libtorch ${cfg%%:*} failed" >&2
  done
done
fi

python3 - "$OUT" "$REPS" "$core" "$torch_core" <<'EOF'
import sys
sys.path.insert(0, "bench")
import statistics
import medians
out, reps, core, torch_core = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def table(reduce, what):
    def load(name, prefix):
        """case/dtype -> wall-clock us over the repetitions, reduced."""
        return {k.split("/", 1)[1]: v
                for k, v in medians.load(out, name, "real_time", reduce).items()
                if k.startswith(prefix)}
    print(f"{medians.machine()}; OpenBLAS core {core} (PyTorch's: {torch_core}); wall-clock us "
          f"per training step, {what} of {reps} interleaved repetitions.\n")
    ours = {t: load(f"ours_t{t}", "engine_train/") for t in (1, 2)}
    floor = {t: load(f"floor_t{t}", "gemm_floor/") for t in (1, 2)}
    # The floor with one batch reused (as measured before the ring).
    floor_one = {t: load(f"floor_t{t}", "gemm_floor_one_batch/") for t in (1, 2)}
    pt = {c: load(f"pytorch_{c}", "pytorch/") for c in ("t1", "t2", "t1blas2")}
    lt = {c: load(f"libtorch_{c}", "libtorch/") for c in ("t1", "t2", "t1blas2")}
    print("| case | satlab t1 | floor t1 | satlab / floor | satlab t2 | floor t2 "
          "| satlab / floor | PyTorch t1 / t2 / t1blas2 | LibTorch t1 / t2 / t1blas2 "
          "| PyTorch best / satlab, t1 | t2 | LibTorch best / satlab, t1 | t2 "
          "| floor, one batch reused, t1 / t2 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    def cell(d, name):
        return " / ".join(f"{d[c][name]:.0f}" if name in d[c] else "–"
                          for c in ("t1", "t2", "t1blas2"))
    def ratio(d, name, configs, t):
        times = [d[c][name] for c in configs if name in d[c]]
        return f"{min(times) / ours[t][name]:.2f}×" if times else "–"
    for name in sorted(ours[1]):
        print(f"| {medians.short(name)} | {ours[1][name]:.0f} | {floor[1][name]:.0f} | "
              f"{ours[1][name] / floor[1][name]:.2f}× | {ours[2][name]:.0f} | "
              f"{floor[2][name]:.0f} | {ours[2][name] / floor[2][name]:.2f}× | "
              f"{cell(pt, name)} | {cell(lt, name)} | "
              f"{ratio(pt, name, ['t1'], 1)} | **{ratio(pt, name, ['t2', 't1blas2'], 2)}** | "
              f"{ratio(lt, name, ['t1'], 1)} | **{ratio(lt, name, ['t2', 't1blas2'], 2)}** | "
              f"{floor_one[1].get(name, 0):.0f} / {floor_one[2].get(name, 0):.0f} |")

table(statistics.median, "medians")
# On a shared VM a neighbour's load slows some repetitions of some
# contenders (PyTorch's OpenMP barriers the most): each one's best
# repetition is the closest to the quiet machine, for every contender alike.
print()
table(min, "the best")
EOF
