#!/usr/bin/env bash
# The fleet server at scale: bench/fleet_load's simulated devices against outpost-fleet on
# SQLite (one server) and on PostgreSQL (two replicas sharing one database, a throwaway cluster
# from Debian's postgresql package). Prints latency, polls/s, server CPU s per 1,000 polls and
# database size for each.
#   bench/fleet_scale.sh [DEVICES] [POLL_SECS] [SECONDS]
# OUTPOST_BENCH_ENGINES=sqlite runs SQLite alone; OUTPOST_SIZE_EVERY=N prints the SQLite file and
# WAL sizes every N seconds; OUTPOST_FLEET_SERVE_ARGS adds arguments to `outpost-fleet serve`
# (--batch-retention-secs 60, say, to reach the steady size within a short run).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/build/bin"
devices=${1:-10000}
poll=${2:-5}
seconds=${3:-60}
pg_bin=${OUTPOST_PG_BIN:-/usr/lib/postgresql/15/bin}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0; sleep 0.1; done; return 1; }

engines=${OUTPOST_BENCH_ENGINES:-sqlite,postgresql}
read -r -a serve_args <<<"${OUTPOST_FLEET_SERVE_ARGS:-}"
serve() { # db port name -> pid
  "$bin/outpost-fleet" --db "$1" --log-level warn serve --port "$2" --replica "$3" --threads 16 \
    --db-connections 16 "${serve_args[@]}" >>"$work/$3.log" 2>&1 &
  echo $!
}

echo "== SQLite, one server"
db="sqlite:$work/fleet.db"
token=$("$bin/outpost-fleet" --db "$db" token create --name load --scope write 2>/dev/null)
port=$(free_port)
pid=$(serve "$db" "$port" sqlite); pids+=("$pid")
wait_up "$port"
"$bin/fleet_load" --label sqlite --server "http://127.0.0.1:$port" --token "$token" --devices "$devices" \
  --poll-secs "$poll" --seconds "$seconds" --server-pid "$pid" --db "$db" --threads 12 \
  --size-every "${OUTPOST_SIZE_EVERY:-0}"
kill "$pid"; wait "$pid" 2>/dev/null || true
[[ "$engines" == *postgresql* ]] || exit 0

echo "== PostgreSQL, two replicas"
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres "$work"; as_pg=(runuser -u postgres --); fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -A trust -U postgres --no-sync >/dev/null
pg_port=$(free_port)
"${as_pg[@]}" "$pg_bin/postgres" -D "$work/pg" -p "$pg_port" -k "$work" -c listen_addresses=127.0.0.1 \
  -c max_connections=200 -c synchronous_commit=off >"$work/pg.log" 2>&1 &
pids+=($!)
pg_pid=$!
for _ in $(seq 100); do "$pg_bin/pg_isready" -h 127.0.0.1 -p "$pg_port" >/dev/null 2>&1 && break; sleep 0.1; done
"${as_pg[@]}" "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres fleet
db="postgresql://postgres@127.0.0.1:$pg_port/fleet"
# As root, $! is runuser and the postmaster its child.
postmaster=$pg_pid
if [ ${#as_pg[@]} -gt 0 ]; then postmaster=$(pgrep -P "$pg_pid" | head -n1); fi
token=$("$bin/outpost-fleet" --db "$db" token create --name load --scope write 2>/dev/null)
p1=$(free_port); p2=$(free_port)
a=$(serve "$db" "$p1" pg-a); pids+=("$a")
b=$(serve "$db" "$p2" pg-b); pids+=("$b")
wait_up "$p1"; wait_up "$p2"
"$bin/fleet_load" --label postgresql-2-replicas --server "http://127.0.0.1:$p1,http://127.0.0.1:$p2" \
  --token "$token" --devices "$devices" --poll-secs "$poll" --seconds "$seconds" \
  --server-pid "$a" --server-pid "$b" --db "$db" --threads 12 --db-pid "$postmaster"
