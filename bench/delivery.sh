#!/usr/bin/env bash
# Delivery at a backlog, on the real binary: bash bench/delivery.sh [N ...]
#   For each N (default 1000 10000 100000): a fresh database with N notes pending for Redmine
#   (and N/2 already delivered, so history is there to be walked if anything walked it), the
#   Redmine simulator in its own process answering each request after SINK_LATENCY_MS (1),
#   then `ticketsync sync-once` drains the outbox. Prints notes/s overall and per tenth of the
#   backlog (first note to last), so a slowdown as the queue drains shows as falling tenths.
#   BUILD=debug uses the debug build (no --release; figures are then not the release's).
#   CONCURRENCY=n sets [sinks.redmine] concurrency (default: the built-in default).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SIZES=("$@")
((${#SIZES[@]})) || SIZES=(1000 10000 100000)
LATENCY_MS=${SINK_LATENCY_MS:-1}
PROFILE=${BUILD:-release}
if [[ $PROFILE == release ]]; then
  cargo build -q --release --locked --bin ticketsync --example delivery_bench
  T=target/release
else
  cargo build -q --locked --bin ticketsync --example delivery_bench
  T=target/debug
fi
BIN=$PWD/$T/ticketsync
DRV=$PWD/$T/examples/delivery_bench
W=$(mktemp -d "$PWD/target/delivery-bench.XXXXXX")
SIM=""
cleanup() { [[ -n $SIM ]] && kill "$SIM" 2>/dev/null || true; }
trap cleanup EXIT
KEY=bench-redmine-key

echo "delivery at a backlog — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $PROFILE build, sink latency ${LATENCY_MS} ms, commit $(git rev-parse --short HEAD)"
printf '| %8s | %8s | %8s | %9s | %s |\n' pending tickets "wall s" "notes/s" "notes/s by tenth of the backlog (first → last)"
printf '|%s|\n' "----------|----------|----------|-----------|------------------------------------------------"
for N in "${SIZES[@]}"; do
  TICKETS=$((N / 10 > 0 ? N / 10 : 1))
  # A fresh address file: the previous size's simulator wrote one, and its url= line would
  # be read before the new simulator has written its own.
  rm -f "$W/progress" "$W/sim.out"
  "$DRV" redmine-sim --key "$KEY" --tickets "$TICKETS" --latency-ms "$LATENCY_MS" --progress "$W/progress" >"$W/sim.out" &
  SIM=$!
  for _ in $(seq 100); do grep -q '^url=' "$W/sim.out" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^url=//p' "$W/sim.out")
  DB=$W/d.$N.db
  rm -f "$DB"*
  "$DRV" seed --db "$DB" --n "$N" --tickets "$TICKETS" --delivered $((N / 2)) >/dev/null
  cat >"$W/c.toml" <<TOML
[store]
path = "$DB"
[outbox]
base_backoff_secs = 1
[sinks.redmine]
url = "$URL"
api_key = "$KEY"
${CONCURRENCY:+concurrency = $CONCURRENCY}
TOML
  sleep 0.3
  t0=$(date +%s.%N)
  "$BIN" --config "$W/c.toml" sync-once >"$W/sync.$N.out" 2>"$W/sync.$N.log"
  t1=$(date +%s.%N)
  sleep 0.3  # a last progress sample after the last note
  kill "$SIM"; wait "$SIM" 2>/dev/null || true; SIM=""
  left=$(sqlite3 "$DB" "SELECT count(*) FROM deliveries WHERE state != 'delivered'")
  # Tenths from the simulator's progress log: time at which each tenth of the notes had landed.
  # The time each tenth of the notes had landed, interpolated between 50 ms samples of the
  # simulator's count; t0 is the last sample before the first note.
  tenths=$(awk -v n="$N" -v b=0 '
    { t[NR] = $1; c[NR] = $2 - b }
    END {
      s = 1; while (s < NR && c[s + 1] <= 0) s++
      prev = t[s]; k = 1; out = ""
      for (i = s + 1; i <= NR && k <= 10; i++) {
        while (k <= 10 && c[i] >= k * n / 10) {
          at = t[i - 1] + (k * n / 10 - c[i - 1]) / (c[i] - c[i - 1]) * (t[i] - t[i - 1])
          out = out sprintf("%s%.0f", (k > 1 ? ", " : ""), (n / 10) / ((at - prev) / 1000))
          prev = at; k++
        }
      }
      print out
    }' "$W/progress")
  wall=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")
  printf '| %8s | %8s | %8s | %9.0f | %s |\n' "$N" "$TICKETS" "$wall" "$(awk "BEGIN { print $N / $wall }")" "$tenths"
  [[ $left == 0 ]] || echo "  !! $left notes not delivered (see $W/sync.$N.out)"
done
echo "(tenths are measured at the simulator, in 50 ms samples; work files in $W)"
