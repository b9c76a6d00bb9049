#!/usr/bin/env bash
# Build every cargo-fuzz target and run each for a while.
#   bash fuzz/run.sh            # CI: 20 s per target
#   bash fuzz/run.sh 600        # a long run: 10 min per target
#   bash fuzz/run.sh 60 zoom    # one target
# Fails (exit 1) if any target crashed, panicked, timed out or ran out of memory, naming
# the target and the input libFuzzer saved (fuzz/artifacts/<target>/…). Reproduce one
# with: RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --dev --target-dir ~/.cache/ticketsync/fuzz-target <target> <artifact>
# New inputs go to fuzz/corpus/<target>/ (not in git); fuzz/seeds/<target>/ is read only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
secs="${1:-20}"
shift || true

if ! command -v cargo-fuzz >/dev/null; then
  echo "cargo-fuzz missing: installing it (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes -Z flags to rustc (sanitizer coverage). The machine's only toolchain is
# stable and no other can be fetched: RUSTC_BOOTSTRAP lets it accept them.
export RUSTC_BOOTSTRAP=1
# No sanitizer: the code under test is safe Rust, and ASan would double the build and halve
# the exec rate (FUZZ_SANITIZER=address to use it anyway). cargo-fuzz keeps overflow checks
# and debug assertions on by default, so arithmetic overflow is a crash.
# --dev: see [profile.dev] in fuzz/Cargo.toml (build time against exec rate).
# The instrumented build is the slow part (10-12 min from nothing on 2 cores, every
# dependency rebuilt with coverage): it is kept outside the clone, so a fresh clone on a
# machine that fuzzed before only rebuilds what changed (FUZZ_TARGET_DIR to move it).
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/ticketsync/fuzz-target}"
mkdir -p "$FUZZ_TARGET_DIR"
flags=(-s "${FUZZ_SANITIZER:-none}" --dev --target-dir "$FUZZ_TARGET_DIR")

t0=$SECONDS
cargo fuzz build "${flags[@]}"
echo "fuzz build: $((SECONDS - t0))s"

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
mkdir -p fuzz/logs
summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/logs/$t.log"
  echo "== $t: ${secs}s"
  extra=()
  [ -f "fuzz/dicts/$t.dict" ] && extra+=(-dict="fuzz/dicts/$t.dict")
  rc=0
  cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    failed=1
    artifact=$(grep -o "Test unit written to [^ ]*" "$log" | tail -1 | sed 's/Test unit written to //')
    result="FAILED (exit $rc) artifact: ${artifact:-none, see $log}"
    echo "!! $t failed; the last lines of $log:"
    tail -40 "$log"
  fi
  summary+=("$(printf '%-16s %12s %8s  %s' "$t" "${runs:-?}" "${cov:-?}" "$result")")
done

echo
printf '%-16s %12s %8s  %s\n' target runs cov result
printf '%s\n' "${summary[@]}"
echo "fuzz total: $((SECONDS - t0))s (${secs}s per target)"
exit "$failed"
