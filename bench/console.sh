#!/usr/bin/env bash
# The web console's cost (issue 21), measured, not asserted: bash bench/console.sh [N]
#   1. page times on an N-session SQLite database (default 1,000,000; examples/console_bench.rs
#      builds it once in target/console-bench-N.db, then reuses it);
#   2. idle RSS of `ticketsync run` with the console off and on (no source, no sink: the
#      console's own share), and on after a login and one look at every page.
# BIN=target/debug/ticketsync BENCH=target/debug/examples/console_bench bash bench/console.sh
# measures a debug build instead of building the release one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
N=${1:-1000000}
if [[ -z ${BIN:-} ]]; then
  cargo build -q --release --locked --bin ticketsync --example console_bench
  BIN=$PWD/target/release/ticketsync BENCH=$PWD/target/release/examples/console_bench
fi
W=$(mktemp -d "$PWD/target/console-bench.XXXXXX")
PID=
trap '[[ -n $PID ]] && kill $PID 2>/dev/null; rm -rf "$W"' EXIT

echo "## page server time, $N sessions"
"$BENCH" "$N" "target/console-bench-$N.db"

hash=$(printf 'bench password\n' | "$BIN" console hash-password)
printf '%s' "$hash" >"$W/ann.hash"
run() { # <console on?> → the listener address in $ADDR, the daemon in $PID
  cat >"$W/t.toml" <<TOML
[store]
path = "$W/t.db"
[http]
listen = "127.0.0.1:0"
[console]
enabled = $1
secure_cookie = false
[[console.users]]
name = "ann"
role = "operator"
password_hash_file = "$W/ann.hash"
TOML
  TICKETSYNC_LOG_FORMAT=json "$BIN" --config "$W/t.toml" run >/dev/null 2>"$W/log" &
  PID=$!
  for _ in $(seq 100); do grep -q '"address"' "$W/log" 2>/dev/null && break; sleep 0.1; done
  ADDR=$(sed -n 's/.*"address":"\([^"]*\)".*/\1/p' "$W/log" | head -1)
}
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; rm -f "$W"/t.db*; }

echo
echo "## idle RSS (KiB), after 5 s"
run false; sleep 5; off=$(rss "$PID"); stop
run true; addr=$ADDR; sleep 5; on=$(rss "$PID")
jar="$W/jar"
page=$(curl -s -c "$jar" "http://$addr/ui/login")
csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)
curl -s -b "$jar" -c "$jar" -o /dev/null --data-urlencode "user=ann" --data-urlencode "password=bench password" \
  --data-urlencode "csrf=$csrf" "http://$addr/ui/login"
for p in / /sessions /unmatched /deliveries /audit; do curl -s -b "$jar" -o /dev/null "http://$addr/ui$p"; done
sleep 5; used=$(rss "$PID"); stop
echo "| console | RSS KiB |"
echo "|---|---|"
echo "| off | $off |"
echo "| on, idle | $on (+$((on - off))) |"
echo "| on, after a login and every page | $used (+$((used - off))) |"
