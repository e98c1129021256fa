#!/usr/bin/env bash
# Builds and runs every fuzz target in fuzz/ for SECONDS each (default 30)
# with cargo-fuzz (libFuzzer + AddressSanitizer, nightly toolchain), and
# fails if any target crashes, hangs (over 10 s for one input) or leaks.
#
#   scripts/fuzz.sh [SECONDS]
#
# Needs: rustup's nightly toolchain and `cargo install cargo-fuzz`.
# Inputs grow in fuzz/corpus/<target>/ (only the committed seed-* files are
# tracked); a crashing input is saved in fuzz/artifacts/<target>/ and
# becomes a test in tests/fuzz_regressions.rs once fixed.
set -euo pipefail

seconds="${1:-30}"
cd "$(dirname "$0")/../fuzz"
targets=(name record channel cursor)
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

cargo +nightly fuzz build

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== fuzz $target for ${seconds}s"
    if cargo +nightly fuzz run "$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$logs/$target.log" 2>&1; then
        runs="$(grep -o '^Done [0-9]* runs in [0-9]* second' "$logs/$target.log" | tail -n 1 || true)"
        echo "   ok: ${runs:-see log}"
    else
        echo "   FAILED; the end of its log:"
        tail -n 40 "$logs/$target.log"
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
