#!/usr/bin/env bash
# Scaling out on PostgreSQL (issue 17), on the real binary: bash bench/scale.sh [--quick]
#   1. Delivery by instance count: NOTES notes (default 10 000) pending for Redmine on one
#      PostgreSQL database, the Redmine simulator answering every request after LATENCY_MS
#      (default 50); K = 1, 2, 3 `ticketsync run` processes with `shared_store = true` drain
#      it; wall time from the first start to the last note delivered (read from the store),
#      notes/s and the share of notes each instance delivered.
#   2. Ingest by backend: `ticketsync sync-once` on INGEST records (default 100 000) from the
#      TeamViewer simulator into a fresh SQLite file and into a fresh PostgreSQL database (no
#      sink: ingest, match and audit only), beside each backend's limit over the same pages:
#      curl's walk + one bulk insert of (id, a few columns, raw JSON) in one transaction —
#      sqlite3 (WAL, synchronous=FULL) for SQLite, COPY + INSERT … SELECT for PostgreSQL.
#      RUNS runs each (default 3), alternated, median (min–max).
#   --quick: 2 000 notes, 10 000 records, 1 run. BENCH_PROFILE=debug to try the script
#   (its figures mean nothing); BENCH_NO_BUILD=1 to use the binaries built before. Needs psql, curl, sqlite3 (>= 3.38), GNU time.
#   PG_URL (default postgres://postgres@127.0.0.1:5432): the server; the script creates and
#   drops its own databases (ticketsync_bench_*).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

NOTES=${NOTES:-10000}; INGEST=${INGEST:-100000}; RUNS=${RUNS:-3}; LATENCY_MS=${LATENCY_MS:-50}
INSTANCES=${INSTANCES:-"1 2 3"}
if [[ ${1:-} == --quick ]]; then NOTES=2000; INGEST=10000; RUNS=1; fi
PG=${PG_URL:-postgres://postgres@127.0.0.1:5432}
export PGOPTIONS="-c client_min_messages=warning"
bash .ci/postgres.sh start >/dev/null

if [[ -n ${BENCH_NO_BUILD:-} ]]; then
  # The binaries already built (by an earlier run): the header says when.
  P=${BENCH_PROFILE:-release}
elif [[ ${BENCH_PROFILE:-release} == debug ]]; then
  cargo build -q --locked --bin ticketsync --example bench --example delivery_bench; P=debug
else
  cargo build -q --release --locked --bin ticketsync --example bench --example delivery_bench; P=release
fi
BIN=$PWD/target/$P/ticketsync
DRV=$PWD/target/$P/examples/bench
SEED=$PWD/target/$P/examples/delivery_bench
W=$(mktemp -d "$PWD/target/scale.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
KEY="bench-redmine-$(date +%s%N)"
TOKEN="bench-tv-$(date +%s%N)"
printf '%s' "$TOKEN" >"$W/tv_token"; chmod 600 "$W/tv_token"

calc() { local e; e=$(cat); awk "BEGIN { printf \"%.6f\", $e }"; }
stats() { sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f (%.2f–%.2f)", m, v[1], v[NR] }'; }
field() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"; }
start_bg() { # <outfile> <cmd...>: a simulator in the background; waits for its address line
  local out=$1; shift
  "$@" >"$out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 600); do grep -q '=' "$out" 2>/dev/null && return 0; sleep 0.1; done
  echo "did not start: $*" >&2; cat "$out" >&2; return 1
}
fresh_db() { # <name>: drop and create a database on the server
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
}
now() { date +%s.%N; }

echo "scaling out — $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD) (binary built $(date -u -r "$BIN" +%H:%MZ)), $(nproc) cores, $P build," \
  "PostgreSQL $(psql -Atq "$PG/postgres" -c 'SHOW server_version'), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 1. delivery by instance count -------------------------------------------------------
TICKETS=$((NOTES / 10))
echo
echo "## Delivery: $NOTES notes over $TICKETS tickets, Redmine simulator answering after $LATENCY_MS ms, built-in concurrency per instance"
echo
printf '| %9s | %8s | %8s | %14s | %s |\n' instances "wall s" "notes/s" "per instance" "notes delivered by each instance"
printf '|%s|\n' "-----------|----------|----------|----------------|----------------------------------"
for K in $INSTANCES; do
  d=$W/deliver.$K; mkdir -p "$d"
  rm -f "$W/progress"
  start_bg "$d/sim.out" "$SEED" redmine-sim --key "$KEY" --tickets "$TICKETS" --latency-ms "$LATENCY_MS" --progress "$W/progress"
  sim=${PIDS[-1]}
  url=$(sed -n 's/^url=//p' "$d/sim.out")
  # The backlog, as the outbox's own enqueue writes it (bench/delivery.sh's seed, in
  # PostgreSQL's dialect), into a database the binary itself created (`migrate`).
  db=ticketsync_bench_scale
  fresh_db "$db"
  printf '[store]\nurl = "%s"\n' "$PG/$db" >"$d/migrate.toml"
  "$BIN" --config "$d/migrate.toml" migrate >/dev/null
  psql -q -v ON_ERROR_STOP=1 "$PG/$db" >/dev/null <<SQL
INSERT INTO deliveries (sink, ticket_id, kind, marker, note_json, state, attempts, next_attempt_at, created_at, updated_at)
SELECT 'redmine', (1001 + i % $TICKETS)::text, 'session_report', 'tsd:v1:bench:' || i || ':report',
       json_build_object('title', 'Bench note ' || i, 'fields', '[]'::json, 'links', '[]'::json, 'body', NULL,
                         'attachments', '[]'::json, 'visibility', 'internal', 'marker', 'tsd:v1:bench:' || i || ':report')::text,
       'pending', 0, t, t, t
FROM generate_series(1, $NOTES) i, (SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') t) n;
SQL
  # A separate run per instance, each with its own config: one id, the same store and sink.
  inst=()
  t0=$(now)
  for i in $(seq "$K"); do
    cat >"$d/i$i.toml" <<TOML
[store]
url = "$PG/$db"
[daemon]
shared_store = true
instance_id = "bench-$i"
delivery_interval_secs = 1
[http]
listen = "127.0.0.1:$((19300 + i))"
[sinks.redmine]
url = "$url"
api_key = "$KEY"
TOML
    TICKETSYNC_LOG=warn "$BIN" --config "$d/i$i.toml" run >"$d/i$i.out" 2>"$d/i$i.log" &
    inst+=($!); PIDS+=($!)
  done
  while :; do
    left=$(psql -Atq "$PG/$db" -c "SELECT count(*) FROM deliveries WHERE state <> 'delivered'")
    [[ $left == 0 ]] && break
    sleep 0.2
  done
  t1=$(now)
  # Who delivered what: each instance's own counter, from its /metrics.
  shares=""
  for i in $(seq "$K"); do
    n=$(curl -sf "http://127.0.0.1:$((19300 + i))/metrics" | sed -n 's/^ticketsync_delivery_attempts_total{.*outcome="delivered".*} //p' | head -1)
    shares+="bench-$i: ${n:-?} "
  done
  for p in "${inst[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  kill "$sim"; wait "$sim" 2>/dev/null || true
  puts=$(tail -1 "$W/progress" | cut -d' ' -f2)
  wall=$(echo "$t1 - $t0" | calc)
  printf '| %9s | %8.2f | %8.1f | %14.1f | %s (simulator PUTs: %s) |\n' "$K" "$wall" "$(echo "$NOTES / $wall" | calc)" \
    "$(echo "$NOTES / $wall / $K" | calc)" "${shares:-–}" "$puts"
done

# ---- 2. ingest by backend ----------------------------------------------------------------
echo
echo "## Ingest: $INGEST TeamViewer records, sync-once on a fresh store (no sink), $RUNS runs each alternated, median (min–max)"
start_bg "$W/tv.addr" "$DRV" tv-sim --n "$INGEST" --token "$TOKEN"
tvsim=${PIDS[-1]}
API=$(field "$W/tv.addr" api)

pages() { # <dir>: curl walks the pages (timed by the caller)
  local off="" i=0 next from
  mkdir -p "$1"
  from=$(date -u -d "-3650 days" +%Y-%m-%dT%H:%M:%SZ)
  while :; do
    i=$((i + 1))
    curl -sf -H "Authorization: Bearer $TOKEN" -o "$1/$i.json" "$API/reports/connections?from_date=$from${off:+&offset_id=$off}"
    next=$(tail -c 200 "$1/$i.json" | grep -o '"next_offset":"[^"]*"' | cut -d'"' -f4 || true)
    [[ -z $next ]] && break
    off=$next
  done
}
run_ticketsync() { # <backend> <run>
  local d=$W/ingest.$1.$2 store
  mkdir -p "$d"
  if [[ $1 == sqlite ]]; then store="path = \"$d/t.db\""; else fresh_db ticketsync_bench_ingest; store="url = \"$PG/ticketsync_bench_ingest\""; fi
  cat >"$d/c.toml" <<TOML
[store]
$store
[sources.teamviewer]
base_url = "${API%/api/v1}"
schedule = "* * * * *"
auth = "script"
token_file = "$W/tv_token"
initial_lookback_days = 3650
TOML
  local t0 t1; t0=$(now)
  "$BIN" --config "$d/c.toml" sync-once >"$d/out" 2>"$d/err"
  t1=$(now)
  echo "$t1 - $t0" | calc >"$d/wall"
}
run_limit() { # <backend> <run>: curl, then one bulk insert in one transaction
  local d=$W/limit.$1.$2 t0 t1 t2
  rm -rf "$d"; mkdir -p "$d"
  t0=$(now); pages "$d/pages"; t1=$(now)
  if [[ $1 == sqlite ]]; then
    {
      echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
      echo "CREATE TABLE c(id TEXT PRIMARY KEY, userid TEXT, devicename TEXT, start_date TEXT, end_date TEXT, raw TEXT NOT NULL);"
      echo "BEGIN;"
      for f in "$d"/pages/*.json; do
        echo "INSERT INTO c SELECT json_extract(value,'\$.id'), json_extract(value,'\$.userid'), json_extract(value,'\$.devicename'), json_extract(value,'\$.start_date'), json_extract(value,'\$.end_date'), value FROM json_each(readfile('$f'), '\$.records');"
      done
      echo "COMMIT;"
    } >"$d/limit.sql"
    t1=$(now)
    sqlite3 "$d/limit.db" <"$d/limit.sql" >/dev/null
  else
    fresh_db ticketsync_bench_limit
    psql -q "$PG/ticketsync_bench_limit" -c "CREATE TABLE c(id text PRIMARY KEY, userid text, devicename text, start_date text, end_date text, raw text NOT NULL)" >/dev/null
    # Each page one line of the COPY (csv with quote and delimiter bytes that JSON never
    # holds, so the text arrives untouched), then the records extracted in the server, as
    # sqlite3's json_each does for the SQLite limit.
    cat "$d"/pages/*.json | tr -d '\n' | sed 's/}{"records"/}\n{"records"/g' >"$d/pages.lines"; echo >>"$d/pages.lines"
    t1=$(now)
    psql -q -v ON_ERROR_STOP=1 "$PG/ticketsync_bench_limit" >/dev/null <<SQL
BEGIN;
CREATE TEMP TABLE p(doc jsonb) ON COMMIT DROP;
\copy p(doc) FROM '$d/pages.lines' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')
INSERT INTO c SELECT r->>'id', r->>'userid', r->>'devicename', r->>'start_date', r->>'end_date', r::text FROM p, jsonb_array_elements(p.doc->'records') r;
COMMIT;
SQL
  fi
  t2=$(now)
  echo "($t1 - $t0) + ($t2 - $t1)" | calc >"$d/wall"
}
order=(ticketsync limit)
for r in $(seq "$RUNS"); do
  for c in "${order[@]}"; do
    for b in sqlite postgres; do
      echo "ingest run $r: $c on $b" >&2
      "run_$c" "$b" "$r"
    done
  done
  order=("${order[@]:1}" "${order[0]}")
done
kill "$tvsim"
echo
printf '| %-9s | %22s | %22s | %8s |\n' backend "ticketsync wall s" "limit wall s" ratio
printf '|%s|\n' "-----------|------------------------|------------------------|----------"
for b in sqlite postgres; do
  # One figure a line (calc prints none of its own).
  tw=$(for r in $(seq "$RUNS"); do echo "$(cat "$W/ingest.$b.$r/wall")"; done | stats)
  lw=$(for r in $(seq "$RUNS"); do echo "$(cat "$W/limit.$b.$r/wall")"; done | stats)
  printf '| %-9s | %22s | %22s | %7.2f× |\n' "$b" "$tw" "$lw" "$(echo "${tw%% *} / ${lw%% *}" | calc)"
done
stored=$(psql -Atq "$PG/ticketsync_bench_ingest" -c "SELECT count(*) FROM sessions")
echo
echo "sessions stored on PostgreSQL in the last run: $stored; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
for db in ticketsync_bench_scale ticketsync_bench_ingest ticketsync_bench_limit; do
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done
echo "(work files in $W)"
