#!/usr/bin/env bash
# Replica scaling and the PostgreSQL store's cost, in one run (issue 14;
# docs/benchmarks.md "Replicas (issue 14)").
#
#   bench/cluster_bench.sh [--binary PATH] [--load PATH] [--store-bench PATH]
#                          [--clients K] [--seconds S] [--rounds R]
#                          [--replicas "1 2 3"]
#
# Every configuration runs at once (a cluster per replica count, each with
# its own PostgreSQL, and the SQLite server; idle ones cost nothing) and the
# measurements alternate between them for R rounds; each cell is the median
# over rounds, so a machine shared with other work shifts all columns alike.
#
# 1. Replicas: for each N, scripts/cluster.sh starts PostgreSQL, N
#    satlab-server replicas (default flags) and nginx; K clients
#    (satlab_bench_cluster_load) each train their own 32-64-64-1 float32
#    network, batch 64, through nginx for S seconds:
#      stream  Train streams (TrainSession): a stream stays on one replica;
#      step    unary TrainStep calls, each durable on return, spread by
#              nginx over every replica call by call.
#    Reported: steps/s, the ratio to N = 1, and steps per CPU-second of
#    every server-side process (the replicas, PostgreSQL's postmaster and
#    backends, nginx's master and worker) in the same window, from /proc.
# 2. Stores: the same load against one replica directly (no nginx), once on
#    SQLite (--data_dir, synchronous=FULL, the default) and once on the
#    PostgreSQL of the N = 1 cluster; and bench/store_bench.cc's Commit of
#    one network record on SQLite FULL vs PostgreSQL (SATLAB_BENCH_PG_URL).
# Prints a Markdown table; the raw lines go to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
binary=$repo/build/server/satlab-server
load=$repo/build/bench/satlab_bench_cluster_load
store_bench=$repo/build/bench/satlab_bench_store
clients=6
seconds=10
rounds=3
replica_counts="1 2 3"
while (($#)); do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --load) load=$2; shift 2 ;;
    --store-bench) store_bench=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --replicas) replica_counts=$2; shift 2 ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d' >&2; exit 2 ;;
  esac
done
for f in "$binary" "$load"; do
  [[ -x $f ]] || { echo "cluster_bench: $f not built (cmake -DSATLAB_BUILD_BENCH=ON; targets satlab-server satlab_bench_cluster_load)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/satlab-cluster-bench-XXXXXX)
chmod o+x "$work"  # PostgreSQL may run as another user (pg_throwaway.sh)
sqlite_pid=""
cleanup() {
  [[ -n $sqlite_pid ]] && kill -TERM "$sqlite_pid" 2>/dev/null && wait "$sqlite_pid" 2>/dev/null
  for d in "$work"/cluster-*; do
    [[ -d $d ]] && "$repo/scripts/cluster.sh" stop "$d" >/dev/null 2>&1
  done
  rm -rf "$work"
}
trap cleanup EXIT

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A steps cpu_s client_cpu target pids_of

# run_load KEY ROUND MODE: one measurement of configuration KEY; appends
# steps/s, steps per server CPU-second and the clients' CPU-seconds.
run_load() {
  local key=$1 round=$2 mode=$3 line
  line=$("$load" --target="${target[$key]}" --clients="$clients" --seconds="$seconds" \
    --mode="$mode" --cpu_pids="${pids_of[$key]}" --prefix="$key-$mode-$round")
  echo "$key-$mode round $round: $line" >&2
  [[ $line == *" errors=0" ]] || echo "cluster_bench: $key-$mode had errors (above)" >&2
  local st cs
  st=$(sed -n 's/.* steps=\([0-9]*\).*/\1/p' <<<"$line")
  cs=$(sed -n 's/.* server_cpu_s=\([0-9.]*\).*/\1/p' <<<"$line")
  steps[$key-$mode]+="$(sed -n 's/.* steps_per_s=\([0-9.]*\).*/\1/p' <<<"$line") "
  cpu_s[$key-$mode]+="$(awk -v s="$st" -v c="$cs" 'BEGIN { printf "%.1f", (c > 0 ? s / c : 0) }') "
  client_cpu[$key-$mode]+="$(sed -n 's/.* client_cpu_s=\([0-9.]*\).*/\1/p' <<<"$line") "
}
# median "VALUES" [FORMAT]
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk -v f="${2:-%.1f}" '{ v[NR] = $1 } END { printf f, NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Start everything: a cluster per replica count, then one SQLite server.
for n in $replica_counts; do
  d=$work/cluster-$n
  "$repo/scripts/cluster.sh" start "$d" --replicas "$n" --binary "$binary" --owner $$ \
    -- --log_level=warn >&2
  # shellcheck disable=SC1091
  source "$d/cluster.env"
  target[r$n]=127.0.0.1:$NGINX_PORT
  pids_of[r$n]=$PG_PID,$NGINX_PID
  for ((i = 1; i <= n; i++)); do
    p=REPLICA_${i}_PID
    pids_of[r$n]+=,${!p}
  done
  if [[ $n == "${replica_counts%% *}" ]]; then
    # The store comparison: this cluster's first replica directly.
    target[pg]=127.0.0.1:$REPLICA_1_GRPC_PORT
    pids_of[pg]=$REPLICA_1_PID,$PG_PID
    # shellcheck disable=SC2153  # PG_URL comes from cluster.env
    pg_url=$PG_URL
  fi
done
# One replica on SQLite (its defaults: WAL, synchronous=FULL).
mkdir -p "$work/sqlite"
"$binary" --host=127.0.0.1 --port=0 --http_port=-1 --data_dir="$work/sqlite/data" \
  --log_level=warn >"$work/sqlite/out" 2>"$work/sqlite/log" &
sqlite_pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$work/sqlite/out" && break
  sleep 0.1
done
target[sqlite]=$(sed -n 's/^listening on //p' "$work/sqlite/out")
[[ -n ${target[sqlite]} ]] || { cat "$work/sqlite/log" >&2; echo "cluster_bench: SQLite server did not start" >&2; exit 1; }
pids_of[sqlite]=$sqlite_pid

keys=()
for n in $replica_counts; do keys+=("r$n"); done
keys+=(sqlite pg)
for ((round = 1; round <= rounds; round++)); do
  for mode in stream step; do
    for key in "${keys[@]}"; do run_load "$key" "$round" "$mode"; done
  done
done

store_bench_out=""
if [[ -x $store_bench ]]; then
  # Its own database: the replicas' one carries their binary's schema
  # version, which a store_bench built from other sources may refuse.
  pg_port=${pg_url##*:}
  pg_port=${pg_port%%/*}
  "${SATLAB_PG_BINDIR:-/usr/lib/postgresql/15/bin}/createdb" -h 127.0.0.1 -p "$pg_port" -U satlab store_bench
  # (Not `tee /dev/stderr`: on a redirected stderr that reopens and
  # truncates the file.)
  SATLAB_BENCH_PG_URL=${pg_url%/*}/store_bench "$store_bench" \
    --benchmark_filter='BM_Commit/net:[01]/store:[23]' --benchmark_min_time=1 \
    --benchmark_repetitions=3 --benchmark_report_aggregates_only=true >"$work/store_bench.txt" 2>&1
  cat "$work/store_bench.txt" >&2
  store_bench_out=$(grep '_median' "$work/store_bench.txt")
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }

echo
echo "CPU: $cpu, $(nproc) cores; load average before $load_before, after $load_after"
echo "$clients clients, ${seconds} s per cell, median of $rounds rounds, 32-64-64-1 float32, batch 64"
echo
for k in "${!steps[@]}"; do
  steps[$k]=$(median "${steps[$k]}")
  cpu_s[$k]=$(median "${cpu_s[$k]}")
  client_cpu[$k]=$(median "${client_cpu[$k]}" %.2f)
done
echo "| replicas | Train stream steps/s | vs 1 | steps per CPU-s | vs 1 | TrainStep steps/s | vs 1 | steps per CPU-s | vs 1 | clients' CPU-s (stream, step) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
first=r${replica_counts%% *}
for n in $replica_counts; do
  k=r$n
  echo "| $n | ${steps[$k-stream]} | $(ratio "${steps[$k-stream]}" "${steps[$first-stream]}") | ${cpu_s[$k-stream]} | $(ratio "${cpu_s[$k-stream]}" "${cpu_s[$first-stream]}") | ${steps[$k-step]} | $(ratio "${steps[$k-step]}" "${steps[$first-step]}") | ${cpu_s[$k-step]} | $(ratio "${cpu_s[$k-step]}" "${cpu_s[$first-step]}") | ${client_cpu[$k-stream]}, ${client_cpu[$k-step]} |"
done
echo
echo "| one replica, no nginx | Train stream steps/s | steps per CPU-s | TrainStep steps/s | steps per CPU-s |"
echo "|---|---|---|---|---|"
for k in sqlite pg; do
  echo "| $k | ${steps[$k-stream]} | ${cpu_s[$k-stream]} | ${steps[$k-step]} | ${cpu_s[$k-step]} |"
done
echo "| PostgreSQL / SQLite | $(ratio "${steps[pg-stream]}" "${steps[sqlite-stream]}") | $(ratio "${cpu_s[pg-stream]}" "${cpu_s[sqlite-stream]}") | $(ratio "${steps[pg-step]}" "${steps[sqlite-step]}") | $(ratio "${cpu_s[pg-step]}" "${cpu_s[sqlite-step]}") |"
if [[ -n $store_bench_out ]]; then
  echo
  echo "store_bench Commit (median of 3, real time):"
  echo "$store_bench_out" | awk '{ print "  " $1, $2, $3 }'
fi
