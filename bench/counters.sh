#!/usr/bin/env bash
# Counters of the ingest stage that depend little on the machine's load, for comparing
# changes on a loaded machine (wall time there varies by tens of percent):
#   bash bench/counters.sh [N] [writer cache pages…]
# For each cache size: `examples/bench ingest` (poll every page, store, match, queue) of N
# TeamViewer records into a fresh database, measured three times: GNU time (wall, CPU,
# peak RSS, bytes written = output blocks × 512), `strace -c -f` (pwrite64 / pread64 /
# fsync counts) and `perf stat -e instructions:u` (n/a where the machine has no hardware
# counters); then the database size (main file after a checkpoint) and its largest objects
# (dbstat). The fsync count follows the number of commits: page transactions commit by
# size or by age, so on a loaded machine they are smaller and the write counts grow. BIN_DIR picks the binaries (default
# target/release). Needs strace and perf.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-100000}; shift || true
CACHES=("$@"); ((${#CACHES[@]})) || CACHES=("")
BIN_DIR=${BIN_DIR:-target/release}
DRV=$PWD/$BIN_DIR/bench; [[ -x $DRV ]] || DRV=$PWD/$BIN_DIR/examples/bench
W=$(mktemp -d "$PWD/target/counters.XXXXXX")
TOKEN="bench-$(date +%s%N)"; printf '%s' "$TOKEN" >"$W/tv_token"; chmod 600 "$W/tv_token"
"$DRV" tv-sim --n "$N" --token "$TOKEN" >"$W/tv.addr" 2>&1 &
SIM=$!; trap 'kill $SIM 2>/dev/null || true' EXIT
for _ in $(seq 600); do [[ -s $W/tv.addr ]] && break; sleep 0.1; done
API=$(tr ' ' '\n' <"$W/tv.addr" | sed -n 's/^api=//p')
cfg() { # <db>
  printf '[store]\npath = "%s"\n[sources.teamviewer]\nbase_url = "%s"\nschedule = "* * * * *"\nauth = "script"\ntoken_file = "%s"\ninitial_lookback_days = 3650\n[sinks.webhook]\nurl = "http://127.0.0.1:9/"\nsecret_file = "%s"\n' \
    "$1" "${API%/api/v1}" "$W/tv_token" "$W/tv_token" >"$W/c.toml"
}
for C in "${CACHES[@]}"; do
  export TICKETSYNC_WRITER_CACHE_PAGES=$C
  [[ -z $C ]] && unset TICKETSYNC_WRITER_CACHE_PAGES
  db=$W/i.db
  rm -f "$db"*; cfg "$db"
  /usr/bin/time -f '%e %U %S %M %O' -o "$W/time" "$DRV" ingest --config "$W/c.toml" >"$W/out"
  read -r wall user sys rss out_blocks <"$W/time"
  rm -f "$db"*; cfg "$db"
  strace -c -f -o "$W/strace" "$DRV" ingest --config "$W/c.toml" >/dev/null
  sc() { awk -v s="$1" '$NF == s { print $4 }' "$W/strace"; }
  rm -f "$db"*; cfg "$db"
  perf stat -x, -e instructions:u -o "$W/perf" "$DRV" ingest --config "$W/c.toml" >/dev/null
  instr=$(awk -F, '/instructions/ { if ($1 ~ /^[0-9]/) printf "%.3f", $1 / 1e9; else printf "n/a" }' "$W/perf")
  sqlite3 "$db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
  size=$(stat -c %s "$db")
  echo "N=$N cache_pages=${C:-default} wall_s=$wall cpu_s=$(awk "BEGIN{print $user+$sys}") peak_rss_mb=$(awk "BEGIN{printf \"%.1f\", $rss/1024}") written_mb=$(awk "BEGIN{printf \"%.0f\", $out_blocks*512/1e6}") db_mb=$(awk "BEGIN{printf \"%.0f\", $size/1e6}") written_per_db=$(awk "BEGIN{printf \"%.2f\", $out_blocks*512/$size}") pwrite64=$(sc pwrite64) pread64=$(sc pread64) fsync=$(sc fsync) instr_u_G=$instr $(tr '\n' ' ' <"$W/out")"
  sqlite3 "$db" "SELECT name, round(sum(pgsize)/1e6,1) || ' MB' FROM dbstat GROUP BY name ORDER BY sum(pgsize) DESC LIMIT 6" | tr '\n' ' '; echo
done
echo "(load $(cut -d' ' -f1-3 /proc/loadavg); work files in $W)"
