#!/usr/bin/env bash
# The fault suite, one command: bash faults/run.sh [--full]
#   default (CI): every fault test, the SIGKILL loop with 12 kills.
#   --full:       the SIGKILL loop with 100 kills (TICKETSYNC_CRASH_RUNS, override freely),
#                 and the backlog under a Retry-After storm at 100 000 pending
#                 (TICKETSYNC_BACKLOG_N; CI: 5 000),
#                 and 50 kills right after an OAuth refresh per vendor (TICKETSYNC_REFRESH_KILLS;
#                 10 by default),
#                 and 100 kills of three instances sharing one store (TICKETSYNC_KILLS; CI: 30;
#                 with TICKETSYNC_TEST_STORE=postgres://… on a throwaway PostgreSQL database).
# Each area lists the tests that prove it (they live next to the code they exercise, in
# tests/it/); the summary prints the counts the tests report (lost/duplicates, attempts...).
# Needs the Redmine env for the sink conformance suite (see .ci/test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
RUNS=12
[[ ${1:-} == --full ]] && RUNS=${TICKETSYNC_CRASH_RUNS:-100}
export TICKETSYNC_CRASH_RUNS=$RUNS
BACKLOG=5000
[[ ${1:-} == --full ]] && BACKLOG=100000
export TICKETSYNC_BACKLOG_N=${TICKETSYNC_BACKLOG_N:-$BACKLOG}
REFRESH_KILLS=10
[[ ${1:-} == --full ]] && REFRESH_KILLS=${TICKETSYNC_REFRESH_KILLS:-50}
export TICKETSYNC_REFRESH_KILLS=$REFRESH_KILLS
KILLS=30
[[ ${1:-} == --full ]] && KILLS=100
export TICKETSYNC_KILLS=${TICKETSYNC_KILLS:-$KILLS}

NAMES=(
  "1 kill -9 loop"
  "2 sink outage"
  "3 rate limits (Retry-After seconds / HTTP date / none)"
  "4 auth: expiry mid-paging, rotation across a crash, kills right after a refresh, state/PKCE, rotated secrets"
  "5 bad data quarantined"
  "6 disk and database"
  "7 canary secrets"
  "8 hostile HTTP: redirects, endless bodies, plain http, listener floods, webhook replay"
  "9 audit evidence"
  "10 backlog under a Retry-After storm (holds per system)"
  "11 forged markers and markup"
  "12 several instances: lease failover, kill loop over three instances"
)
FILTERS=(
  "crash::sigkill_mid_page_and_mid_delivery zoom::sigkill_between_refresh_commit"
  "faults::long_sink_outage"
  "throttled_429 throttled_403 throttling_429 zendesk_per_ticket_limit teamviewer::throttled_429_holds_every_call"
  "oauth_expired_token rotating_refresh_token sigkill_between_refresh oauth_code_exchange expired_page_token concurrent_refreshes server_to_server_token glpi_reuses oauth:: token_journal token_commit refresh_kills unparsable_page first_poll_says lookback"
  "malformed bad_data"
  "faults::an_auditors disk_full"
  "canary_secrets"
  "hostile_http::"
  "audit_evidence"
  "backlog::redmine_retry_after_holds backlog::backlog_under_retry_after_storm"
  "markers::"
  "instances::"
)
LOG=target/faults.log
mkdir -p target
: >"$LOG"
fail=0
for i in "${!NAMES[@]}"; do
  printf '\n#### %s\n' "${NAMES[$i]}" | tee -a "$LOG"
  out=$(mktemp)
  # shellcheck disable=SC2086
  cargo test -q --locked --test it -- --nocapture ${FILTERS[$i]} >"$out" 2>&1 || fail=1
  cat "$out" >>"$LOG"
  grep -E '^test result|lost [0-9]+|page transactions|^sink outage|^auditor|^disk full|^bad data|^canary|redirects: [0-9]|endless body: 10|^kill loop|^failover|listener: (1000|header_read)|webhook: 3 schemes|http refused: |ca_file: with|page transaction open|^oauth' "$out" || true
  grep -q 'test result: ok' "$out" || fail=1
  rm -f "$out"
done
printf '\n#### summary (SIGKILL runs: %s, refresh kills per OAuth vendor: %s)\n' "$RUNS" "$REFRESH_KILLS"
grep -E 'lost [0-9]+|duplicates [0-9]+' "$LOG" || true
if ((fail)); then echo "fault suite: FAILED (see $LOG)"; exit 1; fi
echo "fault suite: passed"
