#!/usr/bin/env bash
# The end-to-end benchmark, as a user runs it: bash bench/e2e.sh [--quick]
#   The release binary `ticketsync sync-once` on a fresh database (poll every page, store,
#   match, queue and deliver every note) against a TeamViewer simulator and a Redmine
#   simulator over loopback, beside, in the same run and alternated back to back:
#     - peer:  bench/peer/peer.py, the script an admin would write (urllib, sqlite3, one
#              transaction per page, one PUT per note on a new connection);
#     - limit: curl walking the same pages + the sqlite3 CLI inserting (id, a few columns,
#              raw JSON) in one transaction, WAL, synchronous=FULL (ingest only: no notes).
#   Each contender runs RUNS times (order rotated every round); the table gives the median
#   wall time with min–max, peak RSS, bytes written (getrusage's output blocks × 512), the
#   notes the Redmine simulator received, and the ratios of the medians.
#   default: 10k and 100k records, 3 runs; --quick: 10k, 2 runs; BENCH_SIZES / BENCH_RUNS
#   override (BENCH_SIZES="10000 100000 1000000" for the full issue-15 table).
#   BENCH_SINK_LATENCY_MS (default 1) is the Redmine simulator's latency per answer.
# Needs curl, sqlite3 (>= 3.38, readfile()), python3 and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SIZES=(10000 100000); RUNS=3
[[ ${1:-} == --quick ]] && { SIZES=(10000); RUNS=2; }
[[ -n ${BENCH_SIZES:-} ]] && read -r -a SIZES <<<"$BENCH_SIZES"
RUNS=${BENCH_RUNS:-$RUNS}
LATENCY_MS=${BENCH_SINK_LATENCY_MS:-1}

# BENCH_PROFILE=debug runs the debug build (to try the script; its figures mean nothing).
if [[ ${BENCH_PROFILE:-release} == debug ]]; then
  cargo build -q --locked --bin ticketsync --example bench; P=debug
else
  cargo build -q --release --locked --bin ticketsync --example bench; P=release
fi
BIN=$PWD/target/$P/ticketsync
DRV=$PWD/target/$P/examples/bench
W=$(mktemp -d "$PWD/target/e2e.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

TOKEN="bench-$(date +%s%N)"
RKEY="bench-redmine-$(date +%s%N)"
printf '%s' "$TOKEN" >"$W/tv_token"
printf '%s' "$RKEY" >"$W/redmine_key"
chmod 600 "$W/tv_token" "$W/redmine_key"

start_bg() { # <outfile> <cmd...>: a simulator in the background; waits for its address line
  local out=$1; shift
  "$@" >"$out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 600); do [[ -s $out ]] && return 0; sleep 0.1; done
  echo "simulator did not start: $*" >&2; cat "$out" >&2; return 1
}
calc() { local e; e=$(cat); awk "BEGIN { printf \"%.6f\", $e }"; }
field() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"; }
# median / min / max of the numbers on stdin
stats() { sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f %.3f %.3f", m, v[1], v[NR] }'; }

run_ticketsync() { # <n> <api> <run>
  local d=$W/ticketsync.$1.$3 rurl radmin
  mkdir -p "$d"
  start_bg "$d/redmine.addr" "$DRV" redmine-sim --api-key "$RKEY" --count "$(($1 > 1000 ? $1 : 1000))" --latency-ms "$LATENCY_MS"
  local sim=${PIDS[-1]}
  rurl=$(field "$d/redmine.addr" url); radmin=$(field "$d/redmine.addr" admin)
  cat >"$d/ticketsync.toml" <<TOML
[store]
path = "$d/ticketsync.db"
[sources.teamviewer]
base_url = "${2%/api/v1}"
schedule = "* * * * *"
auth = "script"
token_file = "$W/tv_token"
initial_lookback_days = 3650
[sinks.redmine]
url = "$rurl"
api_key_file = "$W/redmine_key"
TOML
  /usr/bin/time -f '%e %U %S %M %O' -o "$d/time" "$BIN" --config "$d/ticketsync.toml" sync-once >"$d/out" 2>"$d/err"
  echo "$(cat "$d/time") $(curl -sf "$radmin/count")" >"$d/result"
  kill "$sim"
}

run_peer() { # <n> <api> <run>
  local d=$W/peer.$1.$3 rurl radmin
  mkdir -p "$d"
  start_bg "$d/redmine.addr" "$DRV" redmine-sim --api-key "$RKEY" --count "$(($1 > 1000 ? $1 : 1000))" --latency-ms "$LATENCY_MS"
  local sim=${PIDS[-1]}
  rurl=$(field "$d/redmine.addr" url); radmin=$(field "$d/redmine.addr" admin)
  /usr/bin/time -f '%e %U %S %M %O' -o "$d/time" python3 bench/peer/peer.py --tv-api "$2" --token "$TOKEN" \
    --redmine "$rurl" --redmine-key "$RKEY" --db "$d/peer.db" >"$d/out" 2>"$d/err"
  echo "$(cat "$d/time") $(curl -sf "$radmin/count")" >"$d/result"
  kill "$sim"
}

run_limit() { # <n> <api> <run>: curl over the pages, then one sqlite3 transaction
  local d=$W/limit.$1.$3 off="" i=0 next from
  mkdir -p "$d/pages"
  from=$(date -u -d "-3650 days" +%Y-%m-%dT%H:%M:%SZ)
  local t0; t0=$(date +%s.%N)
  while :; do
    i=$((i + 1))
    curl -sf -H "Authorization: Bearer $TOKEN" -o "$d/pages/$i.json" "$2/reports/connections?from_date=$from${off:+&offset_id=$off}"
    next=$(tail -c 200 "$d/pages/$i.json" | grep -o '"next_offset":"[^"]*"' | cut -d'"' -f4 || true)
    [[ -z $next ]] && break
    off=$next
  done
  {
    echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
    echo "CREATE TABLE c(id TEXT PRIMARY KEY, userid TEXT, devicename TEXT, start_date TEXT, end_date TEXT, raw TEXT NOT NULL);"
    echo "BEGIN;"
    for f in "$d"/pages/*.json; do
      echo "INSERT INTO c SELECT json_extract(value,'\$.id'), json_extract(value,'\$.userid'), json_extract(value,'\$.devicename'), json_extract(value,'\$.start_date'), json_extract(value,'\$.end_date'), value FROM json_each(readfile('$f'), '\$.records');"
    done
    echo "COMMIT;"
  } >"$d/limit.sql"
  local t1; t1=$(date +%s.%N)
  /usr/bin/time -f '%e %U %S %M %O' -o "$d/time" sqlite3 "$d/limit.db" <"$d/limit.sql" >/dev/null
  local t2; t2=$(date +%s.%N)
  read -r _ _ _ rss out <"$d/time"
  # wall = curl's walk + sqlite3's insert (the .sql text is built untimed)
  echo "$(echo "($t1 - $t0) + ($t2 - $t1)" | calc) 0 0 $rss $out 0" >"$d/result"
}

declare -A TAB
for N in "${SIZES[@]}"; do
  start_bg "$W/tv.$N.addr" "$DRV" tv-sim --n "$N" --token "$TOKEN"
  SIM=${PIDS[-1]}
  API=$(field "$W/tv.$N.addr" api)
  order=(ticketsync peer limit)
  for r in $(seq "$RUNS"); do
    for c in "${order[@]}"; do
      echo "N=$N run $r: $c" >&2
      "run_$c" "$N" "$API" "$r"
    done
    order=("${order[@]:1}" "${order[0]}")
  done
  kill "$SIM"
  for c in ticketsync peer limit; do
    TAB[$N.$c.wall]=$(for r in $(seq "$RUNS"); do cut -d' ' -f1 "$W/$c.$N.$r/result"; done | stats)
    TAB[$N.$c.rss]=$(for r in $(seq "$RUNS"); do cut -d' ' -f4 "$W/$c.$N.$r/result"; done | stats)
    TAB[$N.$c.out]=$(for r in $(seq "$RUNS"); do cut -d' ' -f5 "$W/$c.$N.$r/result"; done | stats)
    TAB[$N.$c.notes]=$(for r in $(seq "$RUNS"); do cut -d' ' -f6 "$W/$c.$N.$r/result"; done | stats)
  done
  TAB[$N.dbsize]=$(stat -c %s "$W/ticketsync.$N.1/ticketsync.db")
done

{
echo "ticketsync end to end — $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?), $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), sqlite3 $(sqlite3 --version | cut -d' ' -f1), sink latency ${LATENCY_MS} ms, $RUNS runs each, alternated"
echo
printf '| %9s | %-10s | %24s | %16s | %14s | %8s |\n' records contender "wall s median (min–max)" "peak RSS MB" "written MB" notes
printf '|%s|\n' "-----------|------------|--------------------------|------------------|----------------|----------"
for N in "${SIZES[@]}"; do
  for c in ticketsync peer limit; do
    read -r wm wl wh <<<"${TAB[$N.$c.wall]}"
    read -r rm _ _ <<<"${TAB[$N.$c.rss]}"
    read -r om _ _ <<<"${TAB[$N.$c.out]}"
    read -r nm _ _ <<<"${TAB[$N.$c.notes]}"
    printf '| %9s | %-10s | %8.2f (%6.2f–%6.2f) | %16.1f | %14.1f | %8.0f |\n' "$N" "$c" "$wm" "$wl" "$wh" \
      "$(echo "$rm / 1024" | calc)" "$(echo "$om * 512 / 1048576" | calc)" "$nm"
  done
done
echo
printf '| %9s | %22s | %22s | %24s |\n' records "ticketsync ÷ limit" "peer ÷ ticketsync" "written ÷ final db size"
printf '|%s|\n' "-----------|------------------------|------------------------|--------------------------"
for N in "${SIZES[@]}"; do
  read -r tw _ _ <<<"${TAB[$N.ticketsync.wall]}"
  read -r pw _ _ <<<"${TAB[$N.peer.wall]}"
  read -r lw _ _ <<<"${TAB[$N.limit.wall]}"
  read -r to _ _ <<<"${TAB[$N.ticketsync.out]}"
  printf '| %9s | %21.2f× | %21.2f× | %23.2f× |\n' "$N" "$(echo "$tw / $lw" | calc)" "$(echo "$pw / $tw" | calc)" \
    "$(echo "$to * 512 / ${TAB[$N.dbsize]}" | calc)"
done
echo
echo "ticketsync and peer: ingest + delivery of every note (the limit has no delivery: the ratio to it is an upper bound on the ingest ratio)."
} | tee "$W/table.md"
echo "(work files in $W)"
