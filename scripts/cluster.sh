#!/usr/bin/env bash
# A local satlab cluster for tests and demos (issue 14): a throwaway
# PostgreSQL (scripts/pg_throwaway.sh), N satlab-server replicas sharing it
# (--store=postgresql://...) and nginx as their gRPC load balancer
# (deploy/nginx/satlab-grpc.conf.template), everything on 127.0.0.1 on ports
# chosen at run time, everything under DIR (data, logs, nginx's conf, pid and
# temp files), nothing under /etc, /var or systemd. Every process is stopped
# by the PID this script recorded.
#
#   scripts/cluster.sh start DIR [--replicas N] [--binary PATH] [--owner PID]
#                                [-- extra satlab-server flags...]
#       Starts PostgreSQL, N replicas (default 3; `--replica_id=replica-<i>`
#       when the binary has that flag) and nginx; waits until every replica
#       answers gRPC health SERVING for satlab.v1.TrainingService and /healthz,
#       and until a health check through nginx is SERVING; writes
#       DIR/cluster.env and prints a summary. Replicas are numbered 1..N.
#       --binary: satlab-server (default $SATLAB_SERVER_BIN, else
#       build/server/satlab-server). --owner (or $SATLAB_CLUSTER_OWNER_PID):
#       a watcher stops the whole cluster when that process ends, so a test
#       that dies leaves nothing running. Extra flags come last on every
#       replica's command line (they win over the script's, except --port
#       and --http_port, which the script needs).
#   scripts/cluster.sh stop DIR
#       nginx (fast shutdown), the replicas (SIGTERM: their graceful drain;
#       SIGKILL after 30 s), PostgreSQL, the watcher; exits 0 once none of
#       them runs. Safe to repeat.
#   scripts/cluster.sh kill-replica DIR I      SIGKILL replica I, wait until gone
#   scripts/cluster.sh restart-replica DIR I   start replica I again with the
#       same ports and flags (SIGTERM first if it still runs), wait until it
#       is healthy, update REPLICA_<I>_PID in DIR/cluster.env
#   scripts/cluster.sh status DIR              one line per process; exit 0 when
#       all run and are healthy, 1 otherwise
#
# DIR/cluster.env (shell-sourceable, KEY=value, no quoting needed):
#   CLUSTER_DIR PG_URL PG_PORT PG_PID NGINX_PORT NGINX_TCP_PORT NGINX_PID
#   REPLICAS REPLICA_<i>_GRPC_PORT REPLICA_<i>_HTTP_PORT REPLICA_<i>_PID
#   REPLICA_<i>_ID WATCHER_PID (0 without --owner)
# Clients use 127.0.0.1:$NGINX_PORT (plaintext h2c): nginx's gRPC proxy,
# which balances every call. When the replica serving a stream dies, nginx
# can only reset that stream (RST_STREAM INTERNAL_ERROR, hard-coded in
# nginx), so the client sees INTERNAL "Received RST_STREAM with error code
# 2". $NGINX_TCP_PORT is the same nginx as a TCP (layer 4) proxy over the
# same replicas: it balances connections, not calls, and when the replica
# behind a connection dies it closes the client's connection, which a gRPC
# client reports as UNAVAILABLE ("Socket closed") and TrainSession resumes
# after; 0 when nginx's stream module (libnginx-mod-stream) is missing.
# Each replica also serves directly on 127.0.0.1:$REPLICA_<i>_GRPC_PORT, its
# /metrics on $REPLICA_<i>_HTTP_PORT. Logs: DIR/replica-<i>.log,
# DIR/nginx/error.log, DIR/pg/server.log.
# Needs: nginx (Debian's nginx or nginx-light; libnginx-mod-stream for the
# TCP port), postgresql-15, curl, python3.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
self=$here/$(basename "$0")
template=$repo/deploy/nginx/satlab-grpc.conf.template

usage() {
  sed -n '2,/^# Needs:/p' "$self" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || usage
shift 2

# ------------------------------------------------------------- processes --
# Alive = exists and is not a zombie (a killed replica whose parent has not
# reaped it yet must count as gone).
alive() {
  local pid=$1 state
  [[ -n $pid && $pid != 0 && -r /proc/$pid/stat ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# The PID is still the process this script started (not a reused PID): its
# command line holds the marker (a port or the cluster directory).
ours() {
  local pid=$1 marker=$2
  alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

# wait_gone PID SECONDS: 0 once PID is gone, 1 if it still runs then.
wait_gone() {
  local pid=$1 tenths=$(($2 * 10))
  for ((t = 0; t < tenths; t++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  ! alive "$pid"
}

# stop_pid PID MARKER SIGNAL SECONDS: signal, wait, SIGKILL after SECONDS.
stop_pid() {
  local pid=$1 marker=$2 signal=$3 seconds=$4
  ours "$pid" "$marker" || return 0
  kill -"$signal" "$pid" 2>/dev/null || return 0
  wait_gone "$pid" "$seconds" && return 0
  echo "cluster.sh: pid $pid did not stop in ${seconds} s after SIG$signal; SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 5 || echo "cluster.sh: pid $pid still runs after SIGKILL" >&2
}

free_port() {
  python3 "$here/listen_port.py"
}

# ---------------------------------------------------------------- health --
# grpc_health HOST:PORT SERVICE: 0 when grpc.health.v1.Health/Check answers
# SERVING. Spoken with curl over HTTP/2 (prior knowledge, as gRPC's h2c):
# the request is one gRPC frame holding HealthCheckRequest{service}.
grpc_health() {
  local addr=$1 service=$2 tmp frame
  tmp=$(mktemp -d "$dir/.health.XXXXXX")
  if [[ -z $service ]]; then
    printf '\x00\x00\x00\x00\x00' >"$tmp/req"
  else
    printf -v frame '\\x00\\x00\\x00\\x00\\x%02x\\x0a\\x%02x' $((${#service} + 2)) ${#service}
    # shellcheck disable=SC2059  # frame holds the escapes on purpose
    printf "$frame%s" "$service" >"$tmp/req"
  fi
  local ok=1
  if curl -s --max-time 3 --http2-prior-knowledge -H 'content-type: application/grpc' \
    -H 'te: trailers' --data-binary @"$tmp/req" -D "$tmp/headers" -o "$tmp/body" \
    "http://$addr/grpc.health.v1.Health/Check" 2>/dev/null &&
    grep -q '^grpc-status: 0' "$tmp/headers" &&
    # HealthCheckResponse{status: SERVING (1)} in one frame.
    [[ $(od -An -tx1 "$tmp/body" | tr -d ' \n') == 00000000020801 ]]; then
    ok=0
  fi
  rm -rf "$tmp"
  return $ok
}

http_healthz() {
  curl -s --max-time 3 "http://127.0.0.1:$1/healthz" 2>/dev/null | grep -q '^ok'
}

# ------------------------------------------------------------ cluster.env --
load_env() {
  [[ -f $dir/cluster.env ]] || die "$dir/cluster.env not found: no cluster started in $dir"
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
}

# set_env KEY VALUE: replace one line of cluster.env atomically.
set_env() {
  local key=$1 value=$2
  awk -v k="$key" -v v="$value" 'BEGIN { done = 0 }
    index($0, k "=") == 1 { print k "=" v; done = 1; next } { print }
    END { if (!done) print k "=" v }' "$dir/cluster.env" >"$dir/cluster.env.tmp"
  mv "$dir/cluster.env.tmp" "$dir/cluster.env"
}

# --------------------------------------------------------------- replicas --
# launch_replica I: starts replica I from DIR/replica-I.args (NUL-separated
# argv), in its own session, output in DIR/replica-I.log; sets $replica_pid.
launch_replica() {
  local i=$1 args=()
  mapfile -d '' args <"$dir/replica-$i.args"
  : >"$dir/replica-$i.log"
  # bash without job control: the background child is no process group
  # leader, so setsid execs in place and $! is the server's own PID.
  setsid "${args[@]}" </dev/null >>"$dir/replica-$i.log" 2>&1 &
  replica_pid=$!
}

# wait_replica I PID SECONDS: waits for the listening lines, then for gRPC
# health SERVING and /healthz; sets $grpc_port and $http_port.
wait_replica() {
  local i=$1 pid=$2 seconds=$3
  local log=$dir/replica-$i.log
  grpc_port=""
  http_port=""
  for ((t = 0; t < seconds * 10; t++)); do
    if ! alive "$pid"; then
      tail -n 20 "$log" >&2
      die "replica $i (pid $pid) exited during start (log above, $log)"
    fi
    [[ -n $grpc_port ]] || grpc_port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log" | head -n 1)
    [[ -n $http_port ]] || http_port=$(sed -n 's/^http listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log" | head -n 1)
    if [[ -n $grpc_port && -n $http_port ]] &&
      grpc_health "127.0.0.1:$grpc_port" satlab.v1.TrainingService && http_healthz "$http_port"; then
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$log" >&2
  die "replica $i (pid $pid) not healthy after ${seconds} s (log above; it needs its HTTP port: no --http_port=-1)"
}

# -------------------------------------------------------------------- nginx --
stream_module=/usr/lib/nginx/modules/ngx_stream_module.so

render_nginx() {
  local port=$1 tcp_port=$2 servers="" i
  for ((i = 1; i <= REPLICAS; i++)); do
    local var=REPLICA_${i}_GRPC_PORT
    servers+="server 127.0.0.1:${!var} max_fails=1 fail_timeout=2s; "
  done
  local load_stream="" stream=""
  if ((tcp_port)); then
    load_stream="load_module $stream_module;"
    # Layer 4: a client connection is spliced to one replica (chosen round
    # robin, the next one if it refuses); when that replica dies the client
    # connection closes, which gRPC reports as UNAVAILABLE.
    stream="stream {
    upstream satlab_replicas_tcp {
        $servers
    }
    server {
        listen 127.0.0.1:$tcp_port;
        proxy_pass satlab_replicas_tcp;
        proxy_connect_timeout 2s;
        proxy_timeout 1h;
        proxy_next_upstream on;
    }
}"
  fi
  mkdir -p "$dir/nginx/tmp"
  # shellcheck disable=SC2016  # the names envsubst may replace, verbatim
  env SATLAB_NGINX_LISTEN="127.0.0.1:$port http2" SATLAB_NGINX_SERVERS="$servers" \
    SATLAB_NGINX_SCHEME=grpc SATLAB_NGINX_TLS="" SATLAB_NGINX_UPSTREAM_TLS="" \
    envsubst '${SATLAB_NGINX_LISTEN} ${SATLAB_NGINX_SERVERS} ${SATLAB_NGINX_SCHEME} ${SATLAB_NGINX_TLS} ${SATLAB_NGINX_UPSTREAM_TLS}' \
    <"$template" >"$dir/nginx/satlab-grpc.conf"
  local n=$dir/nginx
  # Its own main context: no daemon (the master is this script's child,
  # recorded by PID), every file under DIR/nginx, the temp paths too (nginx
  # creates all five at start, by default under /var/lib/nginx).
  cat >"$n/nginx.conf" <<EOF
# Written by scripts/cluster.sh for the cluster in $dir.
$load_stream
daemon off;
master_process on;
worker_processes 1;
pid $n/nginx.pid;
error_log $n/error.log notice;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path $n/tmp/body;
    proxy_temp_path $n/tmp/proxy;
    fastcgi_temp_path $n/tmp/fastcgi;
    uwsgi_temp_path $n/tmp/uwsgi;
    scgi_temp_path $n/tmp/scgi;
    include $n/satlab-grpc.conf;
}
$stream
EOF
}

nginx_bin() {
  local b
  b=$(command -v nginx || true)
  [[ -n $b ]] || { [[ -x /usr/sbin/nginx ]] && b=/usr/sbin/nginx; }
  [[ -n $b ]] || die "nginx not found: install Debian's nginx (scripts/install-deps.sh test)"
  echo "$b"
}

# ------------------------------------------------------------------ start --
start() {
  local replicas=3 binary=${SATLAB_SERVER_BIN:-$repo/build/server/satlab-server}
  local owner=${SATLAB_CLUSTER_OWNER_PID:-} extra=()
  while (($#)); do
    case $1 in
      --replicas) replicas=${2:?--replicas needs a number}; shift 2 ;;
      --replicas=*) replicas=${1#*=}; shift ;;
      --binary) binary=${2:?--binary needs a path}; shift 2 ;;
      --binary=*) binary=${1#*=}; shift ;;
      --owner) owner=${2:?--owner needs a PID}; shift 2 ;;
      --owner=*) owner=${1#*=}; shift ;;
      --) shift; extra=("$@"); break ;;
      *) die "start: unknown option $1 (server flags go after --)" ;;
    esac
  done
  [[ $replicas =~ ^[1-9][0-9]*$ ]] || die "--replicas: expected a positive number, got \"$replicas\""
  [[ -x $binary ]] || die "--binary: $binary is not an executable (build satlab-server first)"
  binary=$(readlink -f "$binary")
  [[ -z $owner ]] || alive "$owner" || die "--owner: process $owner does not run"
  local nginx
  nginx=$(nginx_bin)
  command -v curl >/dev/null || die "curl not found (apt-get install curl)"
  command -v envsubst >/dev/null || die "envsubst not found (apt-get install gettext-base)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ -f $dir/cluster.env ]]; then
    (
      # shellcheck disable=SC1091
      source "$dir/cluster.env"
      ! ours "${NGINX_PID:-}" "$dir" && ! alive "${PG_PID:-}"
    ) || die "a cluster already runs in $dir: scripts/cluster.sh stop $dir first"
  fi
  rm -f "$dir/cluster.env"
  # As root, PostgreSQL runs as another user (pg_throwaway.sh), which must
  # reach DIR/pg: DIR may be a 0700 mkdtemp. Search permission only.
  if [[ $(id -u) -eq 0 ]]; then
    chmod o+x "$dir"
    local pg_user=${SATLAB_PG_USER:-postgres}
    getent passwd "$pg_user" >/dev/null || pg_user=nobody
    runuser -u "$pg_user" -- test -x "$dir" ||
      die "$dir is not reachable by the user $pg_user PostgreSQL runs as (a parent directory without o+x?): use a directory under /tmp"
  fi
  # From here on, a failure stops whatever was started.
  trap 'if (($? != 0)); then
    echo "cluster.sh: start failed; stopping what was started" >&2
    "$self" stop "$dir" >/dev/null 2>&1 || true
  fi' EXIT
  local started=$SECONDS

  # PostgreSQL.
  local pg_line
  pg_line=$("$here/pg_throwaway.sh" start "$dir/pg") || die "PostgreSQL did not start"
  PG_PORT=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$pg_line")
  PG_PID=$(sed -n 's/.* pid=\([0-9]*\).*/\1/p' <<<"$pg_line")
  PG_URL=$(sed -n 's/.* url=\(\S*\).*/\1/p' <<<"$pg_line")
  [[ -n $PG_PORT && -n $PG_PID && -n $PG_URL ]] || die "pg_throwaway.sh printed \"$pg_line\""
  REPLICAS=$replicas
  # A state file first, so that `stop` finds PostgreSQL if a replica fails.
  write_env

  # Replicas, started together (the store's migrations are safe for that).
  # (The whole help first: `--help | grep -q` would end the binary with
  # SIGPIPE, which pipefail turns into "not found".)
  local with_id=0 help
  help=$("$binary" --help 2>/dev/null || true)
  grep -q -- '^ *--replica_id ' <<<"$help" && with_id=1
  local i pids=()
  # Ports below the kernel's ephemeral range (listen_port.py): a replica
  # restarted after a SIGKILL must find its ports free again, and any
  # outgoing connection made meanwhile could be given an ephemeral one.
  local ports=()
  mapfile -t ports < <(python3 "$here/listen_port.py" $((2 * replicas)))
  ((${#ports[@]} == 2 * replicas)) || die "no free ports for the replicas"
  for ((i = 1; i <= replicas; i++)); do
    local args=("$binary" --host=127.0.0.1 "--port=${ports[2 * i - 2]}"
      "--http_port=${ports[2 * i - 1]}" "--store=$PG_URL")
    ((with_id)) && args+=("--replica_id=replica-$i")
    args+=("${extra[@]}")
    printf '%s\0' "${args[@]}" >"$dir/replica-$i.args"
    launch_replica "$i"
    pids[i]=$replica_pid
    printf -v "REPLICA_${i}_PID" %s "$replica_pid"
    printf -v "REPLICA_${i}_ID" %s "replica-$i"
    printf -v "REPLICA_${i}_GRPC_PORT" %s 0
    printf -v "REPLICA_${i}_HTTP_PORT" %s 0
  done
  write_env
  for ((i = 1; i <= replicas; i++)); do
    wait_replica "$i" "${pids[i]}" 90
    printf -v "REPLICA_${i}_GRPC_PORT" %s "$grpc_port"
    printf -v "REPLICA_${i}_HTTP_PORT" %s "$http_port"
  done
  write_env

  # nginx, on a free port (again on another one if that was taken meanwhile).
  NGINX_PORT=""
  NGINX_TCP_PORT=0
  NGINX_PID=""
  local with_tcp=0
  if [[ -f $stream_module ]]; then
    with_tcp=1
  else
    echo "cluster.sh: $stream_module not found (apt-get install libnginx-mod-stream): no TCP port (NGINX_TCP_PORT=0)" >&2
  fi
  local attempt
  for attempt in 1 2 3 4 5; do
    local port tcp_port=0
    port=$(free_port)
    ((with_tcp)) && tcp_port=$(free_port)
    [[ $tcp_port != "$port" ]] || continue
    render_nginx "$port" "$tcp_port"
    : >"$dir/nginx/error.log"
    setsid "$nginx" -e "$dir/nginx/error.log" -p "$dir/nginx/" -c "$dir/nginx/nginx.conf" \
      </dev/null >"$dir/nginx/stderr.log" 2>&1 &
    local npid=$!
    local t
    for ((t = 0; t < 100; t++)); do
      alive "$npid" || break
      if grpc_health "127.0.0.1:$port" satlab.v1.TrainingService &&
        { ((tcp_port == 0)) || grpc_health "127.0.0.1:$tcp_port" satlab.v1.TrainingService; }; then
        NGINX_PORT=$port
        NGINX_TCP_PORT=$tcp_port
        NGINX_PID=$npid
        break 2
      fi
      sleep 0.1
    done
    stop_pid "$npid" "$dir" TERM 5
    cat "$dir/nginx/stderr.log" >>"$dir/nginx/error.log"
    grep -q "Address already in use" "$dir/nginx/error.log" || {
      tail -n 20 "$dir/nginx/error.log" >&2
      die "nginx did not start or does not reach the replicas (log above, $dir/nginx/error.log)"
    }
    echo "cluster.sh: nginx port $port taken, trying another (attempt $attempt)" >&2
  done
  [[ -n $NGINX_PID ]] || die "nginx found no free port in 5 attempts"

  # The owner watcher: stops the cluster when the owner ends (and ends
  # itself once the cluster is stopped: `stop` removes DIR/.running).
  WATCHER_PID=0
  : >"$dir/.running"
  if [[ -n $owner ]]; then
    # shellcheck disable=SC2016  # expanded by the watcher's bash
    setsid bash -c 'while kill -0 "$1" 2>/dev/null && [[ -f $2/.running ]]; do sleep 1; done
      [[ -f $2/.running ]] && "$3" stop "$2" >>"$2/watcher.log" 2>&1' \
      _ "$owner" "$dir" "$self" </dev/null >/dev/null 2>&1 &
    WATCHER_PID=$!
  fi
  write_env
  trap - EXIT

  echo "cluster in $dir: $replicas replicas behind nginx, PostgreSQL ${PG_URL} ($((SECONDS - started)) s)"
  echo "  gRPC through nginx: 127.0.0.1:$NGINX_PORT (per call), TCP proxy 127.0.0.1:$NGINX_TCP_PORT (per connection) (pid $NGINX_PID)"
  for ((i = 1; i <= replicas; i++)); do
    local g=REPLICA_${i}_GRPC_PORT h=REPLICA_${i}_HTTP_PORT p=REPLICA_${i}_PID
    echo "  replica-$i: gRPC 127.0.0.1:${!g}, metrics http://127.0.0.1:${!h}/metrics (pid ${!p})"
  done
  echo "  environment: source $dir/cluster.env; stop: $self stop $dir"
}

write_env() {
  local i
  {
    echo "# scripts/cluster.sh: the cluster in $dir (shell-sourceable)"
    echo "CLUSTER_DIR=$dir"
    echo "PG_URL=$PG_URL"
    echo "PG_PORT=$PG_PORT"
    echo "PG_PID=$PG_PID"
    echo "NGINX_PORT=${NGINX_PORT:-0}"
    echo "NGINX_TCP_PORT=${NGINX_TCP_PORT:-0}"
    echo "NGINX_PID=${NGINX_PID:-0}"
    echo "REPLICAS=$REPLICAS"
    for ((i = 1; i <= REPLICAS; i++)); do
      local g=REPLICA_${i}_GRPC_PORT h=REPLICA_${i}_HTTP_PORT p=REPLICA_${i}_PID d=REPLICA_${i}_ID
      echo "REPLICA_${i}_ID=${!d:-replica-$i}"
      echo "REPLICA_${i}_GRPC_PORT=${!g:-0}"
      echo "REPLICA_${i}_HTTP_PORT=${!h:-0}"
      echo "REPLICA_${i}_PID=${!p:-0}"
    done
    echo "WATCHER_PID=${WATCHER_PID:-0}"
  } >"$dir/cluster.env.tmp"
  mv "$dir/cluster.env.tmp" "$dir/cluster.env"
}

replica_index() {
  local i=${1:-}
  [[ $i =~ ^[1-9][0-9]*$ && $i -le $REPLICAS ]] || die "replica: expected 1..$REPLICAS, got \"$i\""
  echo "$i"
}

# ------------------------------------------------------------------- main --
case $cmd in
  start)
    start "$@"
    ;;
  stop)
    [[ -d $dir ]] || exit 0
    dir=$(cd "$dir" && pwd)
    [[ -f $dir/cluster.env ]] || { "$here/pg_throwaway.sh" stop "$dir/pg" 2>/dev/null || true; exit 0; }
    load_env
    rm -f "$dir/.running"
    # nginx first (clients stop reaching the replicas), SIGTERM = its fast
    # shutdown; then the replicas' graceful drain, all at once, 30 s at most
    # together before SIGKILL.
    stop_pid "${NGINX_PID:-0}" "$dir" TERM 10
    for ((i = 1; i <= REPLICAS; i++)); do
      p=REPLICA_${i}_PID
      if ours "${!p}" "--store=$PG_URL"; then kill -TERM "${!p}" 2>/dev/null || true; fi
    done
    deadline=$((SECONDS + 30))
    for ((i = 1; i <= REPLICAS; i++)); do
      p=REPLICA_${i}_PID
      wait_gone "${!p}" $((deadline > SECONDS ? deadline - SECONDS : 0)) && continue
      echo "cluster.sh: replica $i (pid ${!p}) did not drain in 30 s; SIGKILL" >&2
      kill -KILL "${!p}" 2>/dev/null || true
      wait_gone "${!p}" 5 || true
    done
    "$here/pg_throwaway.sh" stop "$dir/pg"
    # Unless this stop runs in the watcher itself (its child).
    if [[ ${WATCHER_PID:-0} != 0 && $WATCHER_PID != "$PPID" ]] && ours "$WATCHER_PID" "$dir"; then
      kill -TERM "$WATCHER_PID" 2>/dev/null || true
    fi
    left=()
    for pid in "${NGINX_PID:-0}" "$PG_PID"; do alive "$pid" && left+=("$pid"); done
    for ((i = 1; i <= REPLICAS; i++)); do
      p=REPLICA_${i}_PID
      alive "${!p}" && left+=("${!p}")
    done
    ((${#left[@]} == 0)) || die "still running after stop: ${left[*]}"
    echo "cluster in $dir stopped"
    ;;
  kill-replica)
    [[ -d $dir ]] || die "$dir: no such directory (no cluster started there)"
    dir=$(cd "$dir" && pwd)
    load_env
    i=$(replica_index "${1:-}")
    p=REPLICA_${i}_PID g=REPLICA_${i}_GRPC_PORT
    ours "${!p}" "--store=$PG_URL" || die "replica $i (pid ${!p}) does not run"
    kill -KILL "${!p}"
    wait_gone "${!p}" 10 || die "replica $i (pid ${!p}) still runs 10 s after SIGKILL"
    echo "replica $i (pid ${!p}) killed"
    ;;
  restart-replica)
    [[ -d $dir ]] || die "$dir: no such directory (no cluster started there)"
    dir=$(cd "$dir" && pwd)
    load_env
    i=$(replica_index "${1:-}")
    p=REPLICA_${i}_PID g=REPLICA_${i}_GRPC_PORT
    stop_pid "${!p}" "--store=$PG_URL" TERM 30
    # The ports were free a moment ago; should another program have taken
    # one, the replica exits at start and this fails naming the log.
    for attempt in 1 2 3; do
      launch_replica "$i"
      # Binding right after the old process closed can race its sockets'
      # teardown: retry a failed bind a few times.
      if (wait_replica "$i" "$replica_pid" 90); then break; fi
      if ((attempt == 3)) || ! grep -qiE "address already in use|bind" "$dir/replica-$i.log"; then
        die "replica $i did not restart (log: $dir/replica-$i.log)"
      fi
      sleep 1
    done
    set_env "REPLICA_${i}_PID" "$replica_pid"
    echo "replica $i restarted (pid $replica_pid, gRPC 127.0.0.1:${!g})"
    ;;
  status)
    [[ -d $dir ]] || die "$dir: no such directory (no cluster started there)"
    dir=$(cd "$dir" && pwd)
    load_env
    bad=0
    line() { printf '%-10s pid %-8s %s\n' "$1" "$2" "$3"; }
    if alive "$PG_PID"; then line postgres "$PG_PID" "running, $PG_URL"; else line postgres "$PG_PID" "NOT RUNNING"; bad=1; fi
    if ! ours "$NGINX_PID" "$dir"; then
      line nginx "$NGINX_PID" "NOT RUNNING"; bad=1
    elif grpc_health "127.0.0.1:$NGINX_PORT" satlab.v1.TrainingService &&
      { ((${NGINX_TCP_PORT:-0} == 0)) || grpc_health "127.0.0.1:$NGINX_TCP_PORT" satlab.v1.TrainingService; }; then
      line nginx "$NGINX_PID" "running, 127.0.0.1:$NGINX_PORT (TCP ${NGINX_TCP_PORT:-0}), health through it SERVING"
    else
      line nginx "$NGINX_PID" "running, 127.0.0.1:$NGINX_PORT, health through it NOT SERVING"; bad=1
    fi
    for ((i = 1; i <= REPLICAS; i++)); do
      p=REPLICA_${i}_PID g=REPLICA_${i}_GRPC_PORT h=REPLICA_${i}_HTTP_PORT
      if ! ours "${!p}" "--store=$PG_URL"; then
        line "replica-$i" "${!p}" "NOT RUNNING"; bad=1
      elif grpc_health "127.0.0.1:${!g}" satlab.v1.TrainingService; then
        line "replica-$i" "${!p}" "running, gRPC 127.0.0.1:${!g} SERVING, http :${!h}"
      else
        line "replica-$i" "${!p}" "running, gRPC 127.0.0.1:${!g} NOT SERVING"; bad=1
      fi
    done
    exit "$bad"
    ;;
  *)
    usage
    ;;
esac
