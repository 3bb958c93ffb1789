#!/usr/bin/env bash
# A throwaway PostgreSQL for tests, benchmarks and the local cluster
# (issue 14): Debian's postgresql-15 server binaries, its own data directory
# under DIR, listening on 127.0.0.1 on a free port chosen now, its unix
# socket in DIR/sock, no password (trust, local only). Nothing systemd,
# nothing under /var/lib.
#
#   scripts/pg_throwaway.sh start DIR [OWNER_PID [remove]]
#                                      initdb (first time) and start; prints
#                                      one line "port=N pid=P url=postgresql://..."
#                                      and creates database `satlab`. With
#                                      OWNER_PID, a watcher stops the server
#                                      when that process ends (a test killed
#                                      by its timeout leaves no server behind);
#                                      with `remove` too, it then deletes DIR
#                                      (a test that never ran its cleanup
#                                      leaves no data behind either)
#   scripts/pg_throwaway.sh stop DIR   fast shutdown by PID, waits (<= 30 s,
#                                      then SIGKILL)
#   scripts/pg_throwaway.sh kill DIR   immediate shutdown by PID (SIGQUIT: no
#                                      checkpoint, like a crash; the next
#                                      start replays the WAL), waits
#
# A second `start` on the same DIR reuses its data and its port (a restart);
# on a running server it only prints the line again.
# PostgreSQL refuses to run as root: as root the server runs as the user
# $SATLAB_PG_USER (default `postgres`, which Debian's package creates, else
# `nobody`), which then owns DIR. Environment: SATLAB_PG_BINDIR (default
# /usr/lib/postgresql/15/bin), SATLAB_PG_FSYNC (on|off, default on).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z $cmd || -z $dir ]]; then
  echo "usage: $0 start|stop|kill DIR" >&2
  exit 2
fi
bindir=${SATLAB_PG_BINDIR:-/usr/lib/postgresql/15/bin}
fsync=${SATLAB_PG_FSYNC:-on}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data=$dir/data

as_user=()
if [[ $(id -u) -eq 0 ]]; then
  user=${SATLAB_PG_USER:-}
  if [[ -z $user ]]; then
    if getent passwd postgres >/dev/null; then user=postgres; else user=nobody; fi
  fi
  as_user=(runuser -u "$user" --)
fi
run() { (cd "$dir" && "${as_user[@]}" "$@"); }

server_pid() {
  if [[ -f $data/postmaster.pid ]]; then head -n 1 "$data/postmaster.pid"; fi
}

case $cmd in
  start)
    if [[ ! -x $bindir/postgres ]]; then
      echo "pg_throwaway: $bindir/postgres not found: install Debian's postgresql-15 (scripts/install-deps.sh)" >&2
      exit 1
    fi
    pid=$(server_pid)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      port=$(cat "$dir/port")
      echo "port=$port pid=$pid url=postgresql://satlab@127.0.0.1:$port/satlab"
      exit 0
    fi
    if ((${#as_user[@]})); then chown "$user" "$dir"; fi
    mkdir -p "$dir/sock"
    if ((${#as_user[@]})); then chown "$user" "$dir/sock"; fi
    if [[ ! -f $data/PG_VERSION ]]; then
      run "$bindir/initdb" -D "$data" -U satlab --auth=trust --encoding=UTF8 --no-sync \
        --locale=C >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        echo "pg_throwaway: initdb failed (log above)" >&2
        exit 1
      }
    fi
    port=""
    [[ -f $dir/port ]] && port=$(cat "$dir/port")
    for attempt in 1 2 3 4 5; do
      if [[ -z $port || $attempt -gt 1 ]]; then
        # Below the ephemeral range: a restart reuses it (listen_port.py).
        port=$(python3 "$(dirname "$0")/listen_port.py")
      fi
      if run "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/sock -c fsync=$fsync -c max_connections=200" \
        >/dev/null 2>&1; then
        echo "$port" >"$dir/port"
        break
      fi
      port=""
      # Another program took the port between the probe and the bind: retry.
      grep -q "Address already in use" "$dir/server.log" 2>/dev/null || break
    done
    if [[ -z $port ]]; then
      tail -n 30 "$dir/server.log" >&2 || true
      echo "pg_throwaway: postgres did not start (log above, $dir/server.log)" >&2
      exit 1
    fi
    run "$bindir/psql" -h "$dir/sock" -p "$port" -U satlab -d postgres -qAt \
      -c "SELECT 1 FROM pg_database WHERE datname = 'satlab'" | grep -q 1 ||
      run "$bindir/createdb" -h "$dir/sock" -p "$port" -U satlab satlab
    owner=${3:-}
    remove=${4:-}
    if [[ -n $remove && $remove != remove ]]; then
      echo "pg_throwaway: expected \"remove\" or nothing after OWNER_PID, got \"$remove\"" >&2
      exit 2
    fi
    if [[ -n $owner ]]; then
      self=$(readlink -f "$0")
      # The watcher also ends when the server is stopped (a Stop before a
      # Restart, which starts a new watcher); DIR is removed only once its
      # owner has ended, never under a live owner.
      # shellcheck disable=SC2016  # expanded by the watcher's bash
      setsid bash -c 'while kill -0 "$1" 2>/dev/null && [[ -f $2/data/postmaster.pid ]]; do sleep 1; done
        kill -0 "$1" 2>/dev/null && exit 0
        "$3" stop "$2"
        if [[ $4 == remove ]]; then rm -rf -- "$2"; fi' \
        _ "$owner" "$dir" "$self" "$remove" </dev/null >/dev/null 2>&1 &
    fi
    echo "port=$port pid=$(server_pid) url=postgresql://satlab@127.0.0.1:$port/satlab"
    ;;
  stop | kill)
    pid=$(server_pid)
    if [[ -z $pid ]]; then exit 0; fi
    # SIGINT is PostgreSQL's fast shutdown (sessions end, a checkpoint
    # flushes the data); SIGQUIT its immediate one (no checkpoint).
    signal=INT
    [[ $cmd == kill ]] && signal=QUIT
    kill -"$signal" "$pid" 2>/dev/null || exit 0
    for _ in $(seq 300); do
      kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    echo "pg_throwaway: postgres $pid did not stop in 30 s; killed" >&2
    ;;
  *)
    echo "usage: $0 start|stop|kill DIR" >&2
    exit 2
    ;;
esac
