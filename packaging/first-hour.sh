#!/usr/bin/env bash
# The operator's first hour (issue 18, "Done when"), walked on a fresh Debian 12 by following
# docs/operations.md alone, with the time of every step:
#
#     bash packaging/first-hour.sh            # as root, from the repository root
#
# Not run by CI (a release build and a Debian bootstrap: 5 to 20 minutes). It
#   1. builds the .deb with `cargo deb` (DEB=path skips that) and the TeamViewer simulator
#      (examples/teamviewer_sim.rs; never in the package);
#   2. bootstraps Debian bookworm into $OUT/root with debootstrap (the pristine tree is kept as
#      $OUT/bookworm.tar for the next run; FRESH=1 bootstraps again);
#   3. boots it with systemd-nspawn (a real systemd 252 as PID 1, sharing the host's network)
#      and, as root inside, runs the documented commands: apt install ./deb, ticketsync init
#      (flags, secrets from a file and the environment), check, doctor, systemctl daemon-reload,
#      enable --now, curl /readyz and /metrics, journalctl, reload, backup + reinstall (the
#      upgrade section), stop;
#      MODE=chroot instead runs the unit's ExecStart by hand in a chroot, as its dynamic user
#      with its environment and credentials (packaging/first-hour/as-unit.sh), for machines
#      where nspawn cannot boot;
#   4. checks the note reached the Redmine issue made for the walk.
# Vendor: the simulator on 127.0.0.1:$TV_PORT. Ticket system: the real Redmine of
# REDMINE_URL / REDMINE_API_KEY / REDMINE_PROJECT (default: the one .ci/redmine-ci.sh runs).
# Writes $OUT/walk.md (the steps with their times, as in docs/development.md) and $OUT/walk.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

OUT=${OUT:-target/first-hour}
MODE=${MODE:-nspawn}
TV_PORT=${TV_PORT:-18443}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ROOT=$OUT/root
LOG=$OUT/walk.log
: >"$LOG"

die() { printf 'first-hour: FAIL: %s\n' "$*" | tee -a "$LOG" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, systemd-nspawn)"

# Every step: its name, the command as an operator types it, how long it took.
printf '| # | step | command | seconds |\n|---|---|---|---|\n' >"$OUT/walk.md"
N=0
step() {
  local name=$1 shown=$2 t0 rc
  shift 2
  N=$((N + 1))
  printf '\n### %s. %s\n$ %s\n' "$N" "$name" "$shown" | tee -a "$LOG"
  t0=$EPOCHREALTIME
  set +e
  "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  set -e
  local secs
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  printf '| %s | %s | `%s` | %s |\n' "$N" "$name" "${shown//|/\\|}" "$secs" >>"$OUT/walk.md"
  printf '(%s s, exit %s)\n' "$secs" "$rc" | tee -a "$LOG"
  [ "$rc" = 0 ] || printf 'first-hour: step %s (%s) failed\n' "$N" "$name" | tee -a "$LOG" >&2
  return "$rc"
}

# The machine shares the host's network: the service's port and the simulator's must be free.
for port in 9187 "$TV_PORT"; do
  ! ss -Hltn "sport = :$port" | grep -q . || die "port $port is in use on this host (the Debian machine shares its network)"
done

# ---- The ticket system: a real Redmine and one issue for this walk -------------------------
if [ -z "${REDMINE_URL:-}" ] || [ -z "${REDMINE_API_KEY:-}" ]; then
  env_line=$(REDMINE_PORT=${REDMINE_PORT:-3300} REDMINE_CI_STATE=${REDMINE_CI_STATE:-/tmp/redmine-ci-${REDMINE_PORT:-3300}} \
    bash .ci/redmine-ci.sh env 2>/dev/null) ||
    die "no Redmine: set REDMINE_URL and REDMINE_API_KEY, or start one with REDMINE_PORT=3300 REDMINE_CI_STATE=/tmp/redmine-ci-3300 bash .ci/redmine-ci.sh start"
  for word in $env_line; do
    [[ $word =~ ^(REDMINE_[A-Z_]+)=(.*)$ ]] && export "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
  done
fi
REDMINE_PROJECT=${REDMINE_PROJECT:-ci}
ISSUE=$(curl -fsS -H "X-Redmine-API-Key: $REDMINE_API_KEY" -H 'Content-Type: application/json' -X POST \
  "$REDMINE_URL/issues.json" -d "{\"issue\":{\"project_id\":\"$REDMINE_PROJECT\",\"subject\":\"first-hour walkthrough $(date -u +%FT%TZ)\"}}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["issue"]["id"])') || die "cannot create an issue in $REDMINE_URL"
echo "first-hour: Redmine $REDMINE_URL, issue #$ISSUE" | tee -a "$LOG"

# ---- Preparation (not the operator's hour) --------------------------------------------------
printf '| | *preparation* | | |\n' >>"$OUT/walk.md"
if ! cargo deb --version >/dev/null 2>&1; then
  step "cargo-deb, once" "cargo install --locked cargo-deb --version 3.8.0" \
    nice -n 19 cargo install --locked cargo-deb --version 3.8.0
fi
if [ -z "${DEB:-}" ]; then
  step "build the .deb" "nice -n 19 cargo deb" nice -n 19 cargo deb
  DEB=$(ls -t target/debian/ticketsync_*_amd64.deb | head -n 1)
fi
[ -f "$DEB" ] || die "no .deb at $DEB"
step "TeamViewer simulator (host)" "cargo build --example teamviewer_sim" \
  nice -n 19 cargo build --quiet --example teamviewer_sim
command -v debootstrap >/dev/null || step "debootstrap (host)" "apt-get install -y debootstrap" apt-get install -y debootstrap
rm -rf "$ROOT"
if [ "${FRESH:-0}" = 1 ] || [ ! -s "$OUT/bookworm.tar" ]; then
  step "a fresh Debian 12" "debootstrap bookworm $ROOT http://deb.debian.org/debian" \
    debootstrap bookworm "$ROOT" http://deb.debian.org/debian
  tar -C "$ROOT" -cf "$OUT/bookworm.tar" .
else
  mkdir -p "$ROOT"
  step "a fresh Debian 12 (the saved bootstrap)" "tar -xf bookworm.tar" tar -C "$ROOT" -xf "$OUT/bookworm.tar"
fi
echo first-hour >"$ROOT/etc/hostname"

# The simulator (TeamViewer's web API as far as a script token sees it) with a token the
# operator would have copied from the TeamViewer console into /root/tv-token.
( umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$OUT/tv-token" )
install -m 0600 "$OUT/tv-token" "$ROOT/root/tv-token"
cp "$DEB" "$ROOT/root/"
DEB_NAME=$(basename "$DEB")
PIDS=()
MOUNTS=()
cleanup() {
  set +e
  if [ -n "${CPID:-}" ]; then
    nsenter -t "$CPID" -m -u -i -n -p -r -w systemctl poweroff >/dev/null 2>&1
    for _ in $(seq 60); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.5; done
    # A container that did not power off would keep its service (and port 9187) running.
    kill -0 "$NSPAWN" 2>/dev/null && kill -KILL "$CPID"
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[$i]}"; done
}
trap cleanup EXIT
target/debug/examples/teamviewer_sim --port "$TV_PORT" --token-file "$OUT/tv-token" --ticket "$ISSUE" >"$OUT/sim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do grep -q '^url=' "$OUT/sim.log" && break; sleep 0.1; done
grep -q '^url=' "$OUT/sim.log" || die "the simulator did not start: $(cat "$OUT/sim.log")"

# `box CMD`: a root shell on the Debian machine.
case $MODE in
  nspawn)
    command -v systemd-nspawn >/dev/null || step "systemd-nspawn (host)" "apt-get install -y systemd-container" \
      apt-get install -y systemd-container
    # --keep-unit --register=no: no systemd on the host to register with.
    t0=$EPOCHREALTIME
    systemd-nspawn -q -b -D "$ROOT" --keep-unit --register=no >"$OUT/console.log" 2>&1 &
    NSPAWN=$!
    PIDS+=("$NSPAWN")
    for _ in $(seq 100); do CPID=$(pgrep -P "$NSPAWN" | head -n1) && [ -n "$CPID" ] && break; sleep 0.1; done
    [ -n "${CPID:-}" ] || die "systemd-nspawn did not start: $(cat "$OUT/console.log")"
    box() { nsenter -t "$CPID" -m -u -i -n -p -r -w env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
      LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive REDMINE_KEY="$REDMINE_API_KEY" bash -c "cd /root && $1"; }
    state=
    for _ in $(seq 120); do
      state=$(box 'systemctl is-system-running' 2>/dev/null || true)
      case $state in running | degraded) break ;; esac
      sleep 0.5
    done
    echo "first-hour: booted ($state): $(box 'systemctl --version | head -n1')" | tee -a "$LOG"
    printf '| %s | boot (systemd as PID 1) | `systemd-nspawn -b -D root` | %s |\n' "$((N += 1))" \
      "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" >>"$OUT/walk.md"
    ;;
  chroot)
    for m in proc sys dev dev/pts; do
      case $m in proc) mount -t proc proc "$ROOT/proc" ;; sys) mount -t sysfs sys "$ROOT/sys" ;; *) mount --bind "/$m" "$ROOT/$m" ;; esac
      MOUNTS+=("$ROOT/$m")
    done
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    box() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
      REDMINE_KEY="$REDMINE_API_KEY" bash -c "cd /root && $1"; }
    ;;
  *) die "MODE must be nspawn or chroot" ;;
esac
printf '| | *the first hour, as root on the Debian machine (docs/operations.md)* | | |\n' >>"$OUT/walk.md"
run() { step "$1" "$2" box "$2"; }

# ---- docs/operations.md, "The first hour" ---------------------------------------------------
run "install the package" "apt install -y ./$DEB_NAME"
run "configure: one vendor, one ticket system" \
  "ticketsync init --source teamviewer --sink redmine --set redmine.url=$REDMINE_URL --set sources.teamviewer.base_url=http://127.0.0.1:$TV_PORT --secret teamviewer_token=@/root/tv-token --secret redmine_api_key=env:REDMINE_KEY"
run "check" "ticketsync check"
run "doctor" "ticketsync doctor"
if [ "$MODE" = nspawn ]; then
  run "load the drop-in" "systemctl daemon-reload"
  run "start" "systemctl enable --now ticketsync"
  run "running?" "systemctl is-active ticketsync && systemctl show -p MainPID -p User -p NRestarts ticketsync"
else
  # No systemd here: the unit's ExecStart as systemd would run it (see as-unit.sh); a
  # listener plays systemd's notify socket and must receive READY=1.
  cp packaging/first-hour/as-unit.sh "$ROOT/root/as-unit.sh"
  python3 packaging/first-hour/notify.py "$ROOT/run/first-hour-notify" >"$OUT/notify.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do [ -S "$ROOT/run/first-hour-notify" ] && break; sleep 0.1; done
  t0=$EPOCHREALTIME
  unshare -m --propagation private chroot "$ROOT" env AS_UNIT_PRIVATE_NS=1 NOTIFY_SOCKET=/run/first-hour-notify \
    /root/as-unit.sh >"$OUT/daemon.log" 2>&1 &
  DAEMON=$!
  PIDS+=("$DAEMON")
  for _ in $(seq 300); do grep -q 'READY=1' "$OUT/notify.log" && break; sleep 0.1; done
  grep -q 'READY=1' "$OUT/notify.log" || die "no READY=1: $(cat "$OUT/daemon.log")"
  printf '| %s | start (ExecStart by hand, as the unit) | `as-unit.sh` | %s |\n' "$((N += 1))" \
    "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" >>"$OUT/walk.md"
fi
run "ready?" "curl -fsS http://127.0.0.1:9187/readyz"
run "scraped" "curl -fsS http://127.0.0.1:9187/metrics | grep ticketsync_last_successful_poll"
if [ "$MODE" = nspawn ]; then
  run "logs" "journalctl -u ticketsync --no-pager -o cat"
else
  cat "$OUT/daemon.log" >>"$LOG"
fi

# The note on the ticket (seen from the Redmine side).
note_on_ticket() {
  for _ in $(seq 60); do
    curl -fsS -H "X-Redmine-API-Key: $REDMINE_API_KEY" "$REDMINE_URL/issues/$ISSUE.json?include=journals" |
      python3 -c 'import json, sys
j = json.load(sys.stdin)["issue"]["journals"]
notes = [x["notes"] for x in j if "ticketsync-marker:" in (x.get("notes") or "")]
print(notes[0] if notes else "")
sys.exit(0 if len(notes) == 1 else 1)' && return 0
    sleep 0.5
  done
  return 1
}
step "the note on Redmine issue #$ISSUE (from the host)" "curl \$REDMINE_URL/issues/$ISSUE.json?include=journals" note_on_ticket ||
  die "no note (exactly one) on issue #$ISSUE"

# ---- Later the same hour: reload, the upgrade section, stop -----------------------------------
if [ "$MODE" = nspawn ]; then
  run "reload the configuration" "systemctl reload ticketsync && journalctl -u ticketsync -o cat | grep 'configuration reloaded'"
  run "upgrade: back up" "ticketsync backup --to /root/ticketsync-\$(date +%F).db"
  run "upgrade: the new package" "apt install -y --reinstall ./$DEB_NAME"
  run "upgrade: still ready" "ticketsync doctor && curl -fsS http://127.0.0.1:9187/readyz"
  run "stop" "systemctl stop ticketsync && systemctl show -p Result -p ExecMainStatus ticketsync"
else
  kill -HUP "$DAEMON"
  for _ in $(seq 50); do grep -q 'configuration reloaded' "$OUT/daemon.log" && break; sleep 0.1; done
  grep -q 'configuration reloaded' "$OUT/daemon.log" || die "SIGHUP did not reload"
  kill -TERM "$DAEMON"
  wait "$DAEMON" || die "the service did not exit 0 on SIGTERM: $(tail "$OUT/daemon.log")"
fi

# Expected outcomes, from the log (each step already failed the walk on a non-zero exit).
grep -q '"ready":true' "$LOG" || die "/readyz never said ready"
grep -q 'ticketsync_last_successful_poll_timestamp_seconds{source="teamviewer"}' "$LOG" || die "no poll timestamp scraped"
grep -q ', 0 failed' "$LOG" || die "doctor failed a check"
if [ "$MODE" = nspawn ]; then
  grep -q 'Result=success' "$LOG" || die "the unit did not stop cleanly"
  ! grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' <(box 'journalctl -u ticketsync -o cat') >/dev/null ||
    die "journal lines carry their own timestamp"
fi
echo "first-hour: OK ($MODE): $OUT/walk.md" | tee -a "$LOG"
cat "$OUT/walk.md"
