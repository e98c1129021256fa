#!/usr/bin/env bash
# Runs the library's unit tests that make no system call under Miri, which
# checks every memory access for undefined behaviour:
#   name::tests        the naming rules and OS-name mapping (sha2 included)
#   record::tests      record framing over a heap Window
#   channel::tests     (a fork test, which Miri ignores: it calls the OS)
#   channel::ring::tests  the ring's index and sequence arithmetic, claims
#                      and repairs over heap memory (liveness is a closure)
#   participants::tests  participant tokens and generations
#   bus::wire::tests   the bus's message encoding, and scribbles refused
#   view::tests        Window bounds: read/write/values/sub/atomics, zero
#                      lengths, offsets near u64::MAX
#   owner::tests       which owners an opener trusts
#   topic::ring::tests  the topic's ring over heap memory: claims, laps,
#                      burials, the block gate
#   the layouts' doc-table tests (bus::registry, object, sync::event,
#   sync::mutex, doc_tables), kind::tests, error::tests, deadline::tests,
#   backoff::tests:
#                      no unsafe code of their own, cheap, and listed so
#                      that none is left out silently
# Everything else in the crate maps memory or calls the OS, and lives in
# tests/ (integration tests), which this does not run.
#
#   scripts/miri.sh
#
# Needs: rustup's nightly toolchain with the miri component.
set -euo pipefail
cd "$(dirname "$0")/.."

filters=(name::tests:: record::tests:: channel::tests:: channel::ring::tests:: participants::tests:: bus::wire::tests:: view::tests:: owner::tests::
    topic::ring::tests:: bus::registry::tests:: object::tests:: sync::event::tests:: sync::mutex::tests::
    doc_tables::tests:: kind::tests:: error::tests:: deadline::tests:: backoff::tests::)
# Every unit test of the library must be under one of the filters, so that
# none is left out silently: list them (natively, quickly) and compare.
all="$(cargo test --lib -q -- --list 2>/dev/null | sed -n 's/: test$//p')"
outside="$(grep -v -F "${filters[@]/#/-e}" <<<"$all" || true)"
if [[ -n "$outside" ]]; then
    echo "miri.sh: unit tests outside the Miri filters (add a filter, or cfg_attr(miri, ignore) with a reason):"
    echo "$outside"
    exit 1
fi

start=$SECONDS
MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-strict-provenance" \
    cargo +nightly miri test --lib -- "${filters[@]}"
echo "miri: $(wc -l <<<"$all") tests in $((SECONDS - start)) s"
