#!/usr/bin/env bash
# Usage: bash bench/bytes-deliver.sh N   (debug build; WRAP="strace -f -y -e trace=pwrite64 -o F" to split writes by file)
# Bytes written by delivery only: seed N pending (N/2 delivered), sync-once under GNU time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
T=target/debug; BIN=$PWD/$T/ticketsync; DRV=$PWD/$T/examples/delivery_bench
N=$1; TICKETS=$((N/10)); KEY=bench-redmine-key
W=$(mktemp -d "$PWD/target/bytes-deliv.XXXXXX")
"$DRV" redmine-sim --key "$KEY" --tickets "$TICKETS" --latency-ms 1 --progress "$W/progress" >"$W/sim.out" &
SIM=$!; trap 'kill $SIM 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^url=' "$W/sim.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^url=//p' "$W/sim.out")
DB=$W/d.db
"$DRV" seed --db "$DB" --n "$N" --tickets "$TICKETS" --delivered $((N / 2)) >/dev/null
sqlite3 "$DB" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
before=$(stat -c %s "$DB")
printf '[store]\npath = "%s"\n[outbox]\nbase_backoff_secs = 1\n[sinks.redmine]\nurl = "%s"\napi_key = "%s"\n' "$DB" "$URL" "$KEY" > "$W/c.toml"
TICKETSYNC_LOG=${TICKETSYNC_LOG:-info} /usr/bin/time -f "%e %O" -o "$W/time" ${WRAP:-} "$BIN" --config "$W/c.toml" sync-once >"$W/out" 2>"$W/log"
read -r wall ob <"$W/time"
wal=$(stat -c %s "$DB-wal" 2>/dev/null || echo 0); main=$(stat -c %s "$DB")
left=$(sqlite3 "$DB" "SELECT count(*) FROM deliveries WHERE state != 'delivered'")
sqlite3 "$DB" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
after=$(stat -c %s "$DB")
tx=$(grep -o "transactions=[0-9]*" "$W/log" "$W/out" | tail -1 || true); echo "$tx deliver N=$N wall_s=$wall written_mb=$(awk "BEGIN{printf \"%.1f\", $ob*512/1e6}") db_before_mb=$(awk "BEGIN{printf \"%.1f\", $before/1e6}") db_after_ckpt_mb=$(awk "BEGIN{printf \"%.1f\", $after/1e6}") main+wal_at_exit_mb=$(awk "BEGIN{printf \"%.1f\", ($main+$wal)/1e6}") written_per_final_db=$(awk "BEGIN{printf \"%.2f\", $ob*512/$after}") written_per_delivery_kb=$(awk "BEGIN{printf \"%.1f\", $ob*512/$N/1e3}") left=$left (work $W)"
