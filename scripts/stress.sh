#!/usr/bin/env bash
# Runs the stress test (tests/stress.rs) for SECONDS (default 60) in release
# mode and prints its summary: operations per kind, messages, duration.
#   bash scripts/stress.sh [SECONDS]
# SHMIO_STRESS_SEED=N repeats a run's seed (each run prints the one it used).
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")/.."
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
started=$(date +%s)
status=0
SHMIO_STRESS_SECS="$seconds" cargo test --release --test stress -- --nocapture 2>&1 | tee "$log" || status=$?
echo
echo "== stress summary (${seconds} s asked, $(( $(date +%s) - started )) s wall clock with the build) =="
grep '^stress:' "$log" || echo "(no summary: the test did not get that far)"
grep -E '^test result:|panicked|failed; its seed' "$log" || true
exit "$status"
