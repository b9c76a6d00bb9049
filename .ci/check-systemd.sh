#!/usr/bin/env bash
# check-systemd.sh BIN: check systemd/ticketsync.service with its ExecStart pointed at BIN.
#   1. systemd-analyze verify --man=no: must exit 0 and print no "Unknown key", "Unknown section"
#      or any other "... ignoring" line (systemd skips a bad directive with rc=0).
#   2. systemd-analyze security --offline=yes --threshold=15: overall exposure must be <= 1.5
#      (the threshold is on a 0-100 scale; 1.5 displayed = 15).
# systemd-analyze is installed with apt-get (package "systemd") when missing (CI: root, bookworm).
# Usage: bash .ci/check-systemd.sh target/debug/ticketsync      (from the repository root)
set -euo pipefail

THRESHOLD=15
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UNIT="$ROOT/systemd/ticketsync.service"

die() { printf 'check-systemd: ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 BIN (path to the built ticketsync binary)"
[ -f "$UNIT" ] || die "missing $UNIT"
[ -x "$1" ] && [ -f "$1" ] || die "$1 is not an executable file (build it first: cargo build --locked)"
BIN=$(realpath "$1")

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "check-systemd: systemd-analyze not found; installing the systemd package"
  SUDO=
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "systemd-analyze missing; run as root or install the systemd package"
    SUDO="sudo -n"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq </dev/null
  $SUDO apt-get install -y -qq --no-install-recommends systemd </dev/null >/dev/null
  command -v systemd-analyze >/dev/null 2>&1 || die "systemd-analyze still missing after installing systemd"
fi
systemd-analyze --version | head -n 1

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
COPY="$TMP/ticketsync.service"   # same unit name, so the output reads the same

# Rewrite only the program of ExecStart=, keep its arguments.
n=0
while IFS= read -r line || [ -n "$line" ]; do
  if [[ $line == ExecStart=* ]]; then
    rest=${line#ExecStart=}
    args=
    [[ $rest == *" "* ]] && args=" ${rest#* }"
    line="ExecStart=$BIN$args"
    n=$((n + 1))
  fi
  printf '%s\n' "$line"
done <"$UNIT" >"$COPY"
[ "$n" -eq 1 ] || die "expected exactly one ExecStart= line in $UNIT, found $n"
echo "check-systemd: ExecStart -> $(grep '^ExecStart=' "$COPY")"

fail=0

echo "== systemd-analyze verify --man=no"
rc=0
systemd-analyze verify --man=no "$COPY" >"$TMP/verify.out" 2>"$TMP/verify.err" || rc=$?
cat "$TMP/verify.out" "$TMP/verify.err"
if [ "$rc" -ne 0 ]; then
  echo "check-systemd: FAIL: verify exited $rc"; fail=1
# Only lines about our unit count: verify also loads the units it depends on, and other
# packages' units (request-tracker5.service, installed for the RT tests) warn about their own
# dependencies.
elif grep -v -E '^/(lib|usr/lib|etc)/systemd/system/' "$TMP/verify.err" "$TMP/verify.out" | grep -Eqi 'Unknown key|Unknown section|ignoring'; then
  echo "check-systemd: FAIL: verify ignored a line of the unit (see above)"; fail=1
else
  echo "check-systemd: verify OK"
fi

echo "== systemd-analyze security --offline=yes --threshold=$THRESHOLD"
rc=0
systemd-analyze security --offline=yes --threshold="$THRESHOLD" "$COPY" >"$TMP/sec.out" 2>&1 || rc=$?
grep '✗' "$TMP/sec.out" || true     # the remaining exposures, for the log
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$TMP/sec.out" | tail -n 1)
if [ -z "$score" ]; then
  cat "$TMP/sec.out"
  echo "check-systemd: FAIL: no overall exposure level in the output (rc $rc)"; fail=1
else
  echo "check-systemd: overall exposure level $score (limit $((THRESHOLD / 10)).$((THRESHOLD % 10)))"
  if [ "$rc" -ne 0 ]; then
    echo "check-systemd: FAIL: exposure above the limit (rc $rc)"; fail=1
  fi
fi

[ "$fail" -eq 0 ] || exit 1
echo "check-systemd: OK"
