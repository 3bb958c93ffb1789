#!/usr/bin/env bash
# The test command (README) and CI (.ci/run). On a clean Debian 12 machine it
# installs every dependency, then runs these stages, each in its own build
# directory, timing each one (summary at the end):
#
#   tsa    clang-14 -Wthread-safety -Werror compile of the server targets:
#          the compiler checks every ABSL_GUARDED_BY annotation
#   build  the normal GCC -Werror build and the whole ctest suite
#   asan   AddressSanitizer + UndefinedBehaviorSanitizer build of
#          everything and the whole suite again (servers, e2e, languages,
#          browser), except container.podman, which builds its own image
#          from source and so runs none of these binaries, and the tests
#          labelled memory (RSS figures mean nothing under ASan)
#   tsan   ThreadSanitizer build and the tests labelled `tsan` (executor,
#          core, metrics hub from many threads; docs/testing.md says why
#          the gRPC-based concurrency tests are not among them)
#   fuzz   the libFuzzer harnesses (tests/fuzz), SATLAB_FUZZ_SECONDS each
#
# Every build prints its compile flags and fails if one depends on the
# build machine's CPU (scripts/check_flags.py; ctest build.cpu_independent_flags).
#
# Environment: SATLAB_TEST_STAGES (default "tsa build asan tsan fuzz") runs a
# subset; SATLAB_FUZZ_SECONDS (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
stages=${SATLAB_TEST_STAGES:-tsa build asan tsan fuzz}
fuzz_seconds=${SATLAB_FUZZ_SECONDS:-60}
jobs=$(nproc)

summary=()
current="" current_start=0
print_summary() {
  local rc=$?
  echo "== stage times (s)"
  for line in "${summary[@]}"; do echo "   $line"; done
  if [[ -n $current ]]; then
    printf '   %-8s %5d  FAILED (exit %d)\n' "$current" $((SECONDS - current_start)) "$rc"
  fi
  echo "   total ${SECONDS}"
}
trap print_summary EXIT

stage() {
  current=$1 current_start=$SECONDS
  shift
  echo "== stage ${current} ($(date -u +%H:%M:%S))"
  "$@"
  summary+=("$(printf '%-8s %5d' "$current" $((SECONDS - current_start)))")
  current=""
}

# Sanitizer reports go to files (log_path) as well as failing the process:
# a report from a server that a Python or Node test started would otherwise
# vanish with that test's captured stderr. sanitized_ctest prints every
# report and fails the stage if there is one.
symbolizer=/usr/lib/llvm-14/bin/llvm-symbolizer
export ASAN_SYMBOLIZER_PATH=$symbolizer
asan_options=detect_stack_use_after_return=1:check_initialization_order=1
ubsan_options=print_stacktrace=1:halt_on_error=1
# ignore_noninstrumented_modules: accesses that Debian's uninstrumented
# gRPC/Abseil/protobuf make through TSan's interceptors (memcpy, epoll, free)
# are not ours to judge and have no visible synchronization.
tsan_options="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:external_symbolizer_path=$symbolizer:suppressions=$PWD/tests/tsan/suppressions.txt"

sanitized_ctest() {
  local dir=$1
  shift
  local logs=$PWD/$dir/sanitizer-reports
  rm -rf "$logs" && mkdir -p "$logs"
  local rc=0
  (cd "$dir" &&
    ASAN_OPTIONS="$asan_options:log_path=$logs/asan" \
    UBSAN_OPTIONS="$ubsan_options:log_path=$logs/ubsan" \
    TSAN_OPTIONS="$tsan_options:log_path=$logs/tsan" \
    ctest --output-on-failure --timeout 900 "$@") || rc=$?
  if compgen -G "$logs/*" >/dev/null; then
    for f in "$logs"/*; do echo "---- $f"; cat "$f"; done
    echo "sanitizer reports above ($(ls "$logs" | wc -l) files)"
    return 1
  fi
  return $rc
}

deps() { scripts/install-deps.sh all; }

tsa() {
  SATLAB_BUILD_DIR=build-tsa SATLAB_TARGETS="satlab_core satlab_service satlab_store satlab_http satlab-server" \
    scripts/build.sh -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=Debug \
    -DSATLAB_THREAD_SAFETY=ON -DSATLAB_WERROR=ON -DSATLAB_BUILD_TESTS=OFF
  python3 scripts/check_flags.py build-tsa
}

build() {
  scripts/build.sh -DSATLAB_WERROR=ON
  python3 scripts/check_flags.py build
  (cd build && ctest --output-on-failure --timeout 900 -j "$jobs")
}

asan() {
  SATLAB_BUILD_DIR=build-asan scripts/build.sh -DSATLAB_SANITIZE=address,undefined -DSATLAB_WERROR=ON
  python3 scripts/check_flags.py build-asan
  # The stream chaos test runs its full 10,000 streams in the build stage;
  # under ASan (2-3x slower) a fifth of them. Label memory: tests that
  # assert RSS figures, which ASan's quarantine and redzones inflate (freed
  # memory is held back), so they run in the build stage only; so do those
  # labelled timing, which assert how fast the server answers.
  SATLAB_CHAOS_STREAMS=${SATLAB_CHAOS_STREAMS:-2000} \
    sanitized_ctest build-asan -j "$jobs" -LE "container|memory|timing"
}

tsan() {
  # Only the executables whose tests carry the label: the rest of the tree
  # is checked under ASan, and building it again here cost minutes of CI.
  SATLAB_BUILD_DIR=build-tsan \
    SATLAB_TARGETS="concurrency_test core_concurrency_test core_replicas_test store_memory_test experiment_parallel_test step_team_test" \
    scripts/build.sh -DSATLAB_SANITIZE=thread -DSATLAB_WERROR=ON
  python3 scripts/check_flags.py build-tsan
  # Label tsan: the concurrency tests with no gRPC between their threads.
  # Through gRPC, Debian's uninstrumented core orders the handoffs and TSan
  # reports its own call objects (docs/testing.md); those tests run under
  # ASan instead. One at a time: TSan slows them 5-15x.
  sanitized_ctest build-tsan -L tsan
}

# Debug (then -O1 from SATLAB_SANITIZE): assertions stay on, Eigen's bounds
# checks included, so the fuzzers also catch what the engine asserts.
fuzz() {
  SATLAB_BUILD_DIR=build-fuzz SATLAB_TARGETS="fuzz_request fuzz_engine fuzz_train_stream fuzz_codec fuzz_seeds" \
    scripts/build.sh -DCMAKE_CXX_COMPILER=clang++-14 -DSATLAB_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
    -DSATLAB_SANITIZE=address,undefined -DSATLAB_WERROR=ON \
    -DSATLAB_FUZZ_SECONDS="$fuzz_seconds"
  python3 scripts/check_flags.py build-fuzz
  (cd build-fuzz &&
    ASAN_OPTIONS=$asan_options UBSAN_OPTIONS=$ubsan_options \
    ctest --output-on-failure -L fuzz -j "$jobs")
}

stage deps deps
for s in $stages; do
  case $s in
    tsa | build | asan | tsan | fuzz) stage "$s" "$s" ;;
    *) echo "unknown stage $s (tsa build asan tsan fuzz)" >&2; exit 2 ;;
  esac
done
