#!/usr/bin/env bash
# Runs the multi-process and multi-thread tests under a sanitizer (nightly).
#
#   scripts/sanitize.sh [address|thread]     (default: address)
#
# AddressSanitizer checks every access of the test processes and of the
# children they start (each child is the same instrumented binary). The
# ThreadSanitizer run rebuilds std with instrumentation (-Zbuild-std, needs
# the rust-src component), and sees races between threads of one process:
# races between processes through shared memory are outside what it can see.
# Either run fails on the first report. RELIABILITY.md says what they found.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
sanitizer=${1:-address}
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/sanitize-$sanitizer}
export RUSTFLAGS="-Zsanitizer=$sanitizer"
export RUSTDOCFLAGS="$RUSTFLAGS"
# Leaks of processes killed on purpose are not leaks of the code under test.
# handle_sigbus=0 (both): a test expects the real SIGBUS of a truncated file mapping.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:handle_sigbus=0}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:handle_sigbus=0:suppressions=$PWD/scripts/tsan.supp}

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal >/dev/null
fi
build_std=()
if [ "$sanitizer" = thread ]; then
    rustup component add --toolchain nightly rust-src >/dev/null 2>&1 || true
    build_std=(-Zbuild-std)
fi

tests=(--lib --test mapping --test processes --test sync --test channel --test hostile --test crash --test stress)
echo "== $sanitizer sanitizer: ${tests[*]}"
# Under ThreadSanitizer the tests of one binary run one at a time: two tests
# in two harness threads can map different objects at the same address one
# after the other, which it reports as a race on that address.
threads=2
[ "$sanitizer" = thread ] && threads=1
SHMIO_STRESS_SECS=${SHMIO_STRESS_SECS:-5} \
    cargo +nightly test "${build_std[@]}" --target "$target" "${tests[@]}" -- --test-threads=$threads
echo "== $sanitizer sanitizer: no reports"
