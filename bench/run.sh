#!/usr/bin/env bash
# The benchmark, one command: bash bench/run.sh [--quick]
#   full:    ingest 10k, 100k and 1M TeamViewer records, the physical limit for each, delivery
#            of ~10k notes, 60 s idle, start-up to READY=1 on the 1M-record database.
#   --quick: 10k only, 10 s idle (CI); same table.
# Needs curl, sqlite3 (>= 3.38, its CLI's readfile()), python3 and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

QUICK=0
[[ ${1:-} == --quick ]] && QUICK=1
if ((QUICK)); then SIZES=(10000); IDLE=10; DELIVER_RECORDS=10000; else SIZES=(10000 100000 1000000); IDLE=60; DELIVER_RECORDS=33600; fi
# BENCH_SIZES="10000 100000" picks the ingest sizes (the largest also gets the start-up probe).
if [[ -n ${BENCH_SIZES:-} ]]; then read -r -a SIZES <<<"$BENCH_SIZES"; fi
LATENCY_MS=${BENCH_SINK_LATENCY_MS:-20}

cargo build -q --release --locked --bin ticketsync --example bench
BIN=$PWD/target/release/ticketsync
DRV=$PWD/target/release/examples/bench
W=$(mktemp -d "$PWD/target/bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

TOKEN="bench-$(date +%s%N)"
printf '%s' "$TOKEN" >"$W/tv_token"
printf 'bench-webhook-secret' >"$W/webhook_secret"
chmod 600 "$W/tv_token" "$W/webhook_secret"

# start_bg <outfile> <cmd...>: a simulator in the background; waits for its address line.
start_bg() {
  local out=$1; shift
  "$@" >"$out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 600); do [[ -s $out ]] && return 0; sleep 0.1; done
  echo "simulator did not start: $*" >&2; cat "$out" >&2; return 1
}
calc() { local e; e=$(cat); awk "BEGIN { printf \"%.6f\", $e }"; }
field() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"; }

start_bg "$W/sink.addr" "$DRV" sink-sim --latency-ms "$LATENCY_MS"
SINK_URL=$(field "$W/sink.addr" url)
SINK_ADMIN=$(field "$W/sink.addr" admin)

write_config() { # <file> <db> <tv api url>
  cat >"$1" <<TOML
[store]
path = "$2"
[outbox]
base_backoff_secs = 1
[sources.teamviewer]
base_url = "${3%/api/v1}"
schedule = "* * * * *"
auth = "script"
token_file = "$W/tv_token"
initial_lookback_days = 3650
[sinks.webhook]
url = "$SINK_URL"
secret_file = "$W/webhook_secret"
TOML
}

# The physical limit: curl walks the same pages (same query, same token), then the sqlite3
# CLI inserts the same records into a WAL database in one transaction.
limit() { # <n> <api url>
  local dir=$W/pages.$1 from off="" i=0 next
  mkdir -p "$dir"
  from=$(date -u -d "-3650 days" +%Y-%m-%dT%H:%M:%SZ)
  local t0; t0=$(date +%s.%N)
  while :; do
    i=$((i + 1))
    curl -sf -H "Authorization: Bearer $TOKEN" -o "$dir/$i.json" \
      "$2/reports/connections?from_date=$from${off:+&offset_id=$off}"
    next=$(tail -c 200 "$dir/$i.json" | grep -o '"next_offset":"[^"]*"' | cut -d'"' -f4 || true)
    [[ -z $next ]] && break
    off=$next
  done
  local t1; t1=$(date +%s.%N)
  {
    echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
    echo "CREATE TABLE c(id TEXT PRIMARY KEY, userid TEXT, devicename TEXT, start_date TEXT, end_date TEXT, raw TEXT NOT NULL);"
    echo "BEGIN;"
    for f in "$dir"/*.json; do
      echo "INSERT INTO c SELECT json_extract(value,'\$.id'), json_extract(value,'\$.userid'), json_extract(value,'\$.devicename'), json_extract(value,'\$.start_date'), json_extract(value,'\$.end_date'), value FROM json_each(readfile('$f'), '\$.records');"
    done
    echo "COMMIT;"
  } >"$W/limit.$1.sql"
  rm -f "$W/limit.$1.db"
  local t2; t2=$(date +%s.%N)
  sqlite3 "$W/limit.$1.db" <"$W/limit.$1.sql" >/dev/null
  local t3; t3=$(date +%s.%N)
  local rows; rows=$(sqlite3 "$W/limit.$1.db" 'SELECT count(*) FROM c')
  echo "curl_s=$(echo "$t1 - $t0" | calc) sqlite_s=$(echo "$t3 - $t2" | calc) pages=$i rows=$rows"
}

# The schema floor: the same records into ticketsync's own schema (crates/store/migrations/*.sql), by the
# sqlite3 CLI in one transaction, with what ticketsync writes for them: every column of the
# session, one sessions_seen audit row per 100 sessions (migration 0007), and for the sessions with a ticket in custom_api the
# match, an outbox row with a note as long as the ones ticketsync rendered, and two more
# audit rows. Hashes are sha3 (the CLI has no sha256), same length. Whole-table passes after
# the sessions, no chaining, one commit: a lower bound of what the schema costs SQLite, not a
# copy of ticketsync's work.
schema_floor() { # <n>
  local dir=$W/pages.$1 db=$W/floor.$1.db note_len now
  rm -f "$db"
  cat crates/store/migrations/*.sql | sqlite3 "$db" >/dev/null
  note_len=$(sqlite3 "$W/ingest.$1.db" 'SELECT CAST(coalesce(avg(length(note_json)), 700) AS INTEGER) FROM deliveries')
  now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
  {
    echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
    echo "BEGIN;"
    for f in "$dir"/*.json; do
      echo "INSERT INTO sessions (vendor, external_id, session_code, session_code_norm, technician, technician_id, device, device_id, group_name, started_at, ended_at, duration_s, notes, description, custom_api, customer_name, customer_email, raw_json, content_hash, first_seen_at, last_seen_at, last_walk_id, match_checked_rev, seen_event_id)
        SELECT 'teamviewer', lower(json_extract(value,'\$.id')), json_extract(value,'\$.session_code'), replace(lower(json_extract(value,'\$.session_code')),'-',''),
          json_extract(value,'\$.username'), json_extract(value,'\$.userid'), json_extract(value,'\$.devicename'), json_extract(value,'\$.deviceid'), json_extract(value,'\$.groupname'),
          strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(value,'\$.start_date')), strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(value,'\$.end_date')),
          CAST((julianday(json_extract(value,'\$.end_date')) - julianday(json_extract(value,'\$.start_date'))) * 86400 AS INTEGER),
          json_extract(value,'\$.notes'), json_extract(value,'\$.session_note'), json_extract(value,'\$.custom_api'),
          json_extract(value,'\$.end_customer.name'), json_extract(value,'\$.end_customer.email'), value, lower(hex(sha3(value, 256))),
          '$now', '$now', '00000000-0000-4000-8000-000000000000', 1, (SELECT COALESCE(MAX(id), 0) FROM sessions) / 100 + 1
        FROM json_each(readfile('$f'), '\$.records');"
    done
    # One sessions_seen row per 100 first sightings (migration 0007).
    echo "INSERT INTO audit_events (at, kind, vendor, detail_json, prev_hash, hash)
      SELECT '$now', 'sessions_seen', 'teamviewer',
        json_object('sessions', json_group_array(json_array(id, external_id, session_code, json('true'), lower(hex(sha3(raw_json, 256)))))),
        lower(hex(sha3(min(external_id), 256))), lower(hex(sha3(max(external_id), 256)))
      FROM (SELECT * FROM sessions ORDER BY id) GROUP BY (id - 1) / 100 ORDER BY min(id);"
    echo "INSERT INTO matches (session_id, ticket_id, rule, rule_detail, matched_at)
      SELECT id, json_extract(custom_api, '\$.ticket_id'), 'custom_api', 'ticket_id', '$now' FROM sessions
      WHERE json_valid(custom_api) AND json_extract(custom_api, '\$.ticket_id') IS NOT NULL ORDER BY id;"
    echo "INSERT INTO deliveries (sink, ticket_id, session_id, kind, marker, note_json, next_attempt_at, created_at, updated_at)
      SELECT 'webhook', m.ticket_id, m.session_id, 'session_report', 'tsd:v1:teamviewer:' || s.external_id || ':report',
        printf('%.*c', $note_len, 'x'), '$now', '$now', '$now' FROM matches m JOIN sessions s ON s.id = m.session_id ORDER BY m.session_id;"
    echo "INSERT INTO audit_events (at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash)
      SELECT '$now', k.kind, 'teamviewer', d.session_id, d.ticket_id, CASE k.kind WHEN 'delivery_enqueued' THEN d.id END,
        json_object('rule', 'custom_api', 'sink', d.sink, 'marker', d.marker), lower(hex(sha3(d.marker || k.kind, 256))), lower(hex(sha3(k.kind || d.marker, 256)))
      FROM deliveries d, (SELECT 'session_matched' AS kind UNION ALL SELECT 'delivery_enqueued') k ORDER BY d.id, k.kind DESC;"
    echo "COMMIT;"
  } >"$W/floor.$1.sql"
  local t0; t0=$(date +%s.%N)
  sqlite3 "$db" <"$W/floor.$1.sql" >/dev/null
  local t1; t1=$(date +%s.%N)
  echo "floor_s=$(echo "$t1 - $t0" | calc) floor_sessions=$(sqlite3 "$db" 'SELECT count(*) FROM sessions') floor_outbox=$(sqlite3 "$db" 'SELECT count(*) FROM deliveries')"
}

# The write cost alone: the same two writes (limit and schema) with every value extracted,
# hashed and rendered beforehand into a temporary table, untimed; only the INSERTs and the
# COMMIT are timed (the CLI's .timer). This is what SQLite's write path costs for each
# schema, without the JSON work both sqlite3 runs above do in SQL.
write_cost() { # <n>
  local dir=$W/pages.$1 now
  now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
  local stage="CREATE TEMP TABLE sp(f TEXT);"
  for f in "$dir"/*.json; do stage+="INSERT INTO sp VALUES ('$f');"; done
  stage+="CREATE TEMP TABLE st AS SELECT value AS raw, json_extract(value,'\$.id') AS id, lower(json_extract(value,'\$.id')) AS external_id,
      json_extract(value,'\$.session_code') AS session_code, replace(lower(json_extract(value,'\$.session_code')),'-','') AS session_code_norm,
      json_extract(value,'\$.username') AS technician, json_extract(value,'\$.userid') AS userid, json_extract(value,'\$.devicename') AS devicename,
      json_extract(value,'\$.deviceid') AS device_id, json_extract(value,'\$.groupname') AS group_name,
      json_extract(value,'\$.start_date') AS start_date, json_extract(value,'\$.end_date') AS end_date,
      strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(value,'\$.start_date')) AS started_at, strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(value,'\$.end_date')) AS ended_at,
      CAST((julianday(json_extract(value,'\$.end_date')) - julianday(json_extract(value,'\$.start_date'))) * 86400 AS INTEGER) AS duration_s,
      json_extract(value,'\$.notes') AS notes, json_extract(value,'\$.session_note') AS description, json_extract(value,'\$.custom_api') AS custom_api,
      json_extract(value,'\$.end_customer.name') AS customer_name, json_extract(value,'\$.end_customer.email') AS customer_email,
      lower(hex(sha3(value, 256))) AS content_hash, lower(hex(sha3(value || 'prev', 256))) AS prev_hash,
      json_object('external_id', lower(json_extract(value,'\$.id')), 'session_code', json_extract(value,'\$.session_code'), 'ended', json('true')) AS detail
    FROM sp, json_each(readfile(sp.f), '\$.records');"
  {
    echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
    echo "CREATE TABLE c(id TEXT PRIMARY KEY, userid TEXT, devicename TEXT, start_date TEXT, end_date TEXT, raw TEXT NOT NULL);"
    echo "$stage"
    echo ".timer on"
    echo "BEGIN; INSERT INTO c SELECT id, userid, devicename, start_date, end_date, raw FROM st; COMMIT;"
  } >"$W/limitw.$1.sql"
  local note_len
  note_len=$(sqlite3 "$W/ingest.$1.db" 'SELECT CAST(coalesce(avg(length(note_json)), 700) AS INTEGER) FROM deliveries')
  {
    echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
    echo "$stage"
    # Sessions go into an empty table in st's order, so sessions.id = st.rowid (and likewise
    # deliveries.id = sm.rowid): the audit rows are staged with their ids.
    # The entries of the sessions_seen rows (one per 100 sessions), staged like the rest.
    echo "CREATE TEMP TABLE sg AS SELECT (rowid - 1) / 100 AS page, prev_hash, content_hash,
        json_array(rowid, external_id, session_code, json('true'), content_hash) AS entry FROM st ORDER BY rowid;"
    echo "CREATE TEMP TABLE sm AS SELECT rowid AS session_id, json_extract(custom_api, '\$.ticket_id') AS ticket_id,
        'tsd:v1:teamviewer:' || external_id || ':report' AS marker, printf('%.*c', $note_len, 'x') AS note
      FROM st WHERE json_valid(custom_api) AND json_extract(custom_api, '\$.ticket_id') IS NOT NULL ORDER BY rowid;"
    echo "CREATE TEMP TABLE sa AS SELECT m.session_id, m.ticket_id, CASE k.kind WHEN 'delivery_enqueued' THEN m.rowid END AS delivery_id, k.kind,
        json_object('rule', 'custom_api', 'sink', 'webhook', 'marker', m.marker) AS detail,
        lower(hex(sha3(m.marker || k.kind, 256))) AS prev_hash, lower(hex(sha3(k.kind || m.marker, 256))) AS hash
      FROM sm m, (SELECT 'session_matched' AS kind UNION ALL SELECT 'delivery_enqueued') k ORDER BY m.rowid, k.kind DESC;"
    echo ".timer on"
    echo "BEGIN;"
    echo "INSERT INTO sessions (vendor, external_id, session_code, session_code_norm, technician, technician_id, device, device_id, group_name, started_at, ended_at, duration_s, notes, description, custom_api, customer_name, customer_email, raw_json, content_hash, first_seen_at, last_seen_at, last_walk_id, match_checked_rev, seen_event_id)
      SELECT 'teamviewer', external_id, session_code, session_code_norm, technician, userid, devicename, device_id, group_name, started_at, ended_at, duration_s, notes, description, custom_api, customer_name, customer_email, raw, content_hash, '$now', '$now', '00000000-0000-4000-8000-000000000000', 1, (rowid - 1) / 100 + 1 FROM st ORDER BY rowid;"
    echo "INSERT INTO audit_events (at, kind, vendor, detail_json, prev_hash, hash) SELECT '$now', 'sessions_seen', 'teamviewer', json_object('sessions', json_group_array(json(entry))), min(prev_hash), max(content_hash) FROM sg GROUP BY page ORDER BY page;"
    echo "INSERT INTO matches (session_id, ticket_id, rule, rule_detail, matched_at) SELECT session_id, ticket_id, 'custom_api', 'ticket_id', '$now' FROM sm ORDER BY rowid;"
    echo "INSERT INTO deliveries (sink, ticket_id, session_id, kind, marker, note_json, next_attempt_at, created_at, updated_at) SELECT 'webhook', ticket_id, session_id, 'session_report', marker, note, '$now', '$now', '$now' FROM sm ORDER BY rowid;"
    echo "INSERT INTO audit_events (at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash) SELECT '$now', kind, 'teamviewer', session_id, ticket_id, delivery_id, detail, prev_hash, hash FROM sa ORDER BY rowid;"
    echo "COMMIT;"
  } >"$W/floorw.$1.sql"
  local timed='/^Run Time:/ { s += $4 } END { printf "%.3f", s }'
  rm -f "$W/limitw.$1.db" "$W/floorw.$1.db"
  local lw fw
  lw=$(sqlite3 "$W/limitw.$1.db" <"$W/limitw.$1.sql" 2>&1 | awk "$timed")
  cat crates/store/migrations/*.sql | sqlite3 "$W/floorw.$1.db" >/dev/null
  fw=$(sqlite3 "$W/floorw.$1.db" <"$W/floorw.$1.sql" 2>&1 | awk "$timed")
  echo "limit_w_s=$lw floor_w_s=$fw floorw_sessions=$(sqlite3 "$W/floorw.$1.db" 'SELECT count(*) FROM sessions') floorw_outbox=$(sqlite3 "$W/floorw.$1.db" 'SELECT count(*) FROM deliveries') floorw_audit=$(sqlite3 "$W/floorw.$1.db" 'SELECT count(*) FROM audit_events')"
}

declare -A R
for N in "${SIZES[@]}"; do
  start_bg "$W/tv.$N.addr" "$DRV" tv-sim --n "$N" --token "$TOKEN"
  SIM_PID=${PIDS[-1]}
  API=$(field "$W/tv.$N.addr" api)
  write_config "$W/ingest.$N.toml" "$W/ingest.$N.db" "$API"
  /usr/bin/time -f '%e %U %S %M' -o "$W/time.$N" "$DRV" ingest --config "$W/ingest.$N.toml" >"$W/ingest.$N.out"
  limit "$N" "$API" >"$W/limit.$N.out"
  schema_floor "$N" >"$W/floor.$N.out"
  write_cost "$N" >"$W/wcost.$N.out"
  read -r wall user sys rss_kb <"$W/time.$N"
  R[$N]="$wall $user $sys $rss_kb $(field "$W/ingest.$N.out" records) $(field "$W/ingest.$N.out" enqueued) $(field "$W/limit.$N.out" curl_s) $(field "$W/limit.$N.out" sqlite_s) $(field "$W/floor.$N.out" floor_s) $(field "$W/wcost.$N.out" limit_w_s) $(field "$W/wcost.$N.out" floor_w_s)"
  LAST_N=$N LAST_API=$API
  if [[ $N != "${SIZES[-1]}" ]]; then kill "$SIM_PID"; fi
done

# Start-up: exec → READY=1 on the largest database (its simulator is still up).
python3 bench/probe.py --log "$W/startup.log" -- "$BIN" --config "$W/ingest.$LAST_N.toml" run >"$W/startup.out"
kill "$SIM_PID"

# Delivery: a fresh database whose outbox holds the notes of DELIVER_RECORDS records.
start_bg "$W/tv.d.addr" "$DRV" tv-sim --n "$DELIVER_RECORDS" --token "$TOKEN"
DAPI=$(field "$W/tv.d.addr" api)
DADMIN=$(field "$W/tv.d.addr" admin)
write_config "$W/deliver.toml" "$W/deliver.db" "$DAPI"
"$DRV" ingest --config "$W/deliver.toml" >"$W/deliver-ingest.out"
# The start-up probe's daemon posted to the same receiver: count from here.
read -r sink_base _ < <(curl -sf "$SINK_ADMIN/count"; echo)
/usr/bin/time -f '%e %U %S %M' -o "$W/time.deliver" "$DRV" deliver --config "$W/deliver.toml" >"$W/deliver.out"
read -r d_wall d_user d_sys d_rss <"$W/time.deliver"
read -r sink_requests _ < <(curl -sf "$SINK_ADMIN/count"; echo)
sink_requests=$((sink_requests - sink_base))

# Idle: the daemon on that database, nothing new upstream and nothing due.
req0=$(curl -sf "$DADMIN/requests")
python3 bench/probe.py --idle "$IDLE" --log "$W/idle.log" -- "$BIN" --config "$W/deliver.toml" run >"$W/idle.out"
req1=$(curl -sf "$DADMIN/requests")
polls=$(grep -c 'poll finished' "$W/idle.log" || true)

# ---- the table ----
{
echo "ticketsync benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, sqlite3 $(sqlite3 --version | cut -d' ' -f1), $(if ((QUICK)); then echo quick; else echo full; fi)"
echo
echo "Ingest (TeamViewer simulator on loopback → poll → store → match → outbox), release build:"
printf '| %9s | %9s | %10s | %8s | %8s | %13s | %9s | %9s | %10s | %12s | %12s | %9s | %12s |\n' \
  records "wall s" "records/s" "CPU s" "peak RSS" "outbox rows" "curl s" "sqlite3 s" "limit rec/s" "ratio" "time/N vs 10k" "schema s" "vs schema"
printf '|%s|\n' "-----------|-----------|------------|----------|----------|---------------|-----------|-----------|------------|--------------|--------------|-----------|--------------"
base=""
for N in "${SIZES[@]}"; do
  read -r wall user sys rss_kb recs enq curl_s sqlite_s floor_s _ _ <<<"${R[$N]}"
  lim=$(echo "$curl_s + $sqlite_s" | calc)
  per=$(echo "$wall / $N" | calc)
  [[ -z $base ]] && base=$per
  printf '| %9s | %9.2f | %10.0f | %8.2f | %5.1f MB | %13s | %9.2f | %9.2f | %10.0f | %11.2f× | %11.2f× | %9.2f | %11.2f× |\n' \
    "$recs" "$wall" "$(echo "$recs / $wall" | calc)" "$(echo "$user + $sys" | calc)" "$(echo "$rss_kb / 1024" | calc)" \
    "$enq" "$curl_s" "$sqlite_s" "$(echo "$recs / $lim" | calc)" "$(echo "$wall / $lim" | calc)" "$(echo "$per / $base" | calc)" \
    "$floor_s" "$(echo "$wall / ($curl_s + $floor_s)" | calc)"
done
echo
echo "ratio = ticketsync wall time / (curl walking the same pages + sqlite3 inserting the same rows in one transaction)."
echo "schema s = sqlite3 writing the same records into ticketsync's own schema in one transaction (session, audit rows, match and outbox row with a note of the same length); vs schema = wall / (curl + schema s)."
echo
echo "Write cost alone (every value extracted, hashed and rendered beforehand, untimed; only the INSERTs and the COMMIT timed):"
printf '| %9s | %14s | %15s | %14s | %24s |\n' records "limit writes s" "schema writes s" "schema ÷ limit" "ratio bound (writes only)"
printf '|%s|\n' "-----------|----------------|-----------------|----------------|---------------------------"
for N in "${SIZES[@]}"; do
  read -r _ _ _ _ recs _ curl_s sqlite_s _ limw_s floorw_s <<<"${R[$N]}"
  printf '| %9s | %14.2f | %15.2f | %13.2f× | %23.2f× |\n' "$recs" "$limw_s" "$floorw_s" \
    "$(echo "$floorw_s / $limw_s" | calc)" "$(echo "($curl_s + $floorw_s) / ($curl_s + $sqlite_s)" | calc)"
done
echo
echo "ratio bound = (curl + schema writes) / (curl + sqlite3 s): the ratio of a program that fetched as fast as curl, parsed nothing and wrote ticketsync's rows at the CLI's bulk speed."
echo
ndel=$(field "$W/deliver.out" delivered)
printf 'Delivery: %s notes to a webhook receiver with %s ms latency, concurrency %s: %.2f s, %.0f notes/s, %.3f requests per note (%s requests), CPU %.2f s, peak RSS %.1f MB, not delivered: %s\n' \
  "$ndel" "$LATENCY_MS" "$(field "$W/deliver.out" concurrency)" "$d_wall" "$(echo "$ndel / $d_wall" | calc)" \
  "$(echo "$sink_requests / $ndel" | calc)" "$sink_requests" "$(echo "$d_user + $d_sys" | calc)" \
  "$(echo "$d_rss / 1024" | calc)" "$(field "$W/deliver.out" not_delivered)"
printf 'Idle: ticketsync run for %s s, nothing new: RSS %s MB (peak %s MB), CPU %s s, %s polls, %s TeamViewer requests (%s per poll)\n' \
  "$(field "$W/idle.out" idle_wall_s)" "$(field "$W/idle.out" idle_rss_mb)" "$(field "$W/idle.out" peak_rss_mb)" \
  "$(field "$W/idle.out" idle_cpu_s)" "$polls" "$((req1 - req0))" "$(if ((polls > 0)); then echo "($req1 - $req0) / $polls" | calc; else echo n/a; fi)"
printf 'Start-up: exec → READY=1 with the %s-record database: %s s\n' "$LAST_N" "$(field "$W/startup.out" ready_s)"
} | tee "$W/table.md"
echo "(work files in $W)"
