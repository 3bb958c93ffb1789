#!/usr/bin/env bash
# Runs one libFuzzer harness for SECONDS from the committed seeds, keeping
# what it learns in WORKDIR/corpus (reused by the next run in the same
# build dir) and any crash in WORKDIR/crash-*. Prints the final exec count
# and coverage; exits non-zero on a crash, a leak or a timeout.
# Usage: run_fuzzer.sh BINARY SECONDS SEED_DIR WORKDIR [libFuzzer flags...]
set -euo pipefail
bin=$1 seconds=$2 seeds=$3 work=$4
shift 4
mkdir -p "$work/corpus"
# -timeout: one input taking 25 s is a hang (the stream harness's own
# deadline is 5 s); -rss_limit_mb: the small limits keep honest inputs far
# below it.
"$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$work/" "$@" \
  "$work/corpus" "$seeds" 2>"$work/log" || status=$?
grep -E "^(#[0-9]+.*(DONE|INITED)|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY|.*FUZZ_CHECK|.*deadly signal)" "$work/log" | tail -n 12
if [[ ${status:-0} -ne 0 ]]; then
  echo "fuzzer failed (exit ${status}); last lines of $work/log:"
  tail -n 60 "$work/log"
  ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null || true
  exit 1
fi
