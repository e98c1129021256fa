#!/usr/bin/env bash
# Prepare this Debian/Ubuntu x86_64 machine to build and run the crate's tests
# for Windows under Wine:
#
#     bash .ci/windows-setup.sh && cargo test --target x86_64-pc-windows-gnu
#
# (.cargo/config.toml sets the mingw linker and .ci/wine-runner.sh as runner.)
#
# What it does, each step only when needed (idempotent; a run with nothing to
# do takes a fraction of a second and prints nothing):
#   1. apt-get installs gcc-mingw-w64-x86-64, wine64 and wine
#      (apt-get update only if something is missing);
#   2. rustup target add x86_64-pc-windows-gnu;
#   3. creates a 64-bit Wine prefix, without GUI dialogs, at $WINEPREFIX,
#      default ~/.wine-shmio (the runner uses the same default);
#   4. if Wine has no bcryptprimitives.dll with ProcessPrng (Wine < 9, e.g.
#      Debian 12's Wine 8.0), builds the stub .ci/bcryptprimitives.c with
#      mingw and copies it into the prefix's system32 (Rust's std needs it).
#
# Output: nothing when nothing had to be done; one summary line when
# something was done; the failing command's log on failure (exit 1).
set -euo pipefail

TARGET=x86_64-pc-windows-gnu
CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$CI_DIR")"

export WINEPREFIX="${WINEPREFIX:-$HOME/.wine-shmio}"
export WINEARCH=win64
export WINEDEBUG=-all
# No Mono/Gecko install dialogs, no desktop menu entries.
export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
unset DISPLAY WAYLAND_DISPLAY

LOG="$(mktemp "${TMPDIR:-/tmp}/windows-setup.XXXXXX")"
trap 'rm -f "$LOG"' EXIT
done_list=()

fail() {
    echo "windows-setup: FAILED: $*" >&2
    if [ -s "$LOG" ]; then
        echo "---- log ----" >&2
        tail -n 60 "$LOG" >&2
    fi
    exit 1
}
run() { "$@" >>"$LOG" 2>&1 || fail "$*"; }

# ---- 1. Debian packages -----------------------------------------------------
pkgs=(gcc-mingw-w64-x86-64 wine64 wine)
missing=()
for p in "${pkgs[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    run $SUDO apt-get update -qq
    run $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
    done_list+=("apt: ${missing[*]}")
fi

# Wine's 64-bit loader: Debian has /usr/bin/wine64 -> /usr/lib/wine/wine64.
WINE=
for c in wine64 /usr/lib/wine/wine64 wine; do
    if command -v "$c" >/dev/null 2>&1; then WINE="$(command -v "$c")"; break; fi
done
[ -n "$WINE" ] || fail "no wine64/wine binary found after installing packages"
WINESERVER=
for c in wineserver /usr/lib/wine/wineserver64 /usr/lib/wine/wineserver; do
    if command -v "$c" >/dev/null 2>&1; then WINESERVER="$(command -v "$c")"; break; fi
done
[ -n "$WINESERVER" ] || fail "no wineserver binary found"
CC=x86_64-w64-mingw32-gcc
command -v "$CC" >/dev/null 2>&1 || fail "$CC not found"

# ---- 2. Rust target ---------------------------------------------------------
# Run from the repo root so a rust-toolchain file there picks the toolchain.
cd "$ROOT"
command -v rustup >/dev/null 2>&1 || fail "rustup not found (needed to add $TARGET)"
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    run rustup target add "$TARGET"
    done_list+=("rustup target $TARGET")
fi

# ---- 3. Wine prefix ---------------------------------------------------------
WINE_VERSION="$("$WINE" --version 2>/dev/null)" || fail "$WINE --version"
STAMP="$WINEPREFIX/.windows-setup-done"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WINE_VERSION" ]; then
    if [ -f "$WINEPREFIX/system.reg" ]; then
        run "$WINE" wineboot --update    # existing prefix, maybe new Wine
    else
        mkdir -p "$(dirname "$WINEPREFIX")"
        run "$WINE" wineboot --init
    fi
    # Wait for the wineserver to exit: it writes the registry on exit.
    run "$WINESERVER" -w
    [ -f "$WINEPREFIX/system.reg" ] || fail "wineboot did not create $WINEPREFIX"
    echo "$WINE_VERSION" >"$STAMP"
    done_list+=("prefix $WINEPREFIX")
fi

# ---- 4. bcryptprimitives.dll (ProcessPrng) ----------------------------------
SYS32="$WINEPREFIX/drive_c/windows/system32"
DLL="$SYS32/bcryptprimitives.dll"
has_builtin_prng() {
    # Wine's own PE builtins carry this marker; wineboot copies them to
    # system32.  Also look in Wine's DLL directories in case it did not.
    local f
    for f in "$DLL" \
             /usr/lib/x86_64-linux-gnu/wine/x86_64-windows/bcryptprimitives.dll \
             /usr/lib/wine/x86_64-windows/bcryptprimitives.dll \
             /usr/lib64/wine/x86_64-windows/bcryptprimitives.dll \
             /opt/wine*/lib*/wine/x86_64-windows/bcryptprimitives.dll; do
        [ -f "$f" ] || continue
        grep -qa 'Wine builtin DLL' "$f" && grep -qa 'ProcessPrng' "$f" && return 0
    done
    return 1
}
# Built once per prefix and source version (the build is reproducible: no
# timestamp, fixed image base), cached beside the prefix's files.
BUILD="$WINEPREFIX/.bcryptprimitives-stub"
STUB="$BUILD/bcryptprimitives.dll"
CFLAGS_STUB=(-shared -O2 -s -Wl,--no-insert-timestamp,--disable-auto-image-base)
stub_current() {
    [ -f "$STUB" ] &&
    cmp -s "$CI_DIR/bcryptprimitives.c" "$BUILD/bcryptprimitives.c" &&
    cmp -s "$CI_DIR/bcryptprimitives.def" "$BUILD/bcryptprimitives.def" &&
    [ "$(cat "$BUILD/flags" 2>/dev/null)" = "${CFLAGS_STUB[*]}" ]
}
if ! stub_current || ! cmp -s "$STUB" "$DLL"; then
    if has_builtin_prng; then
        :   # this Wine provides ProcessPrng itself: nothing to install
    else
        if ! stub_current; then
            mkdir -p "$BUILD"
            rm -f "$STUB"
            run "$CC" "${CFLAGS_STUB[@]}" -o "$BUILD/bcryptprimitives.dll.tmp" \
                "$CI_DIR/bcryptprimitives.c" "$CI_DIR/bcryptprimitives.def" -ladvapi32
            cp "$CI_DIR/bcryptprimitives.c" "$CI_DIR/bcryptprimitives.def" "$BUILD/"
            echo "${CFLAGS_STUB[*]}" >"$BUILD/flags"
            mv "$BUILD/bcryptprimitives.dll.tmp" "$STUB"
        fi
        if ! cmp -s "$STUB" "$DLL"; then
            cp "$STUB" "$DLL.tmp" && mv "$DLL.tmp" "$DLL" || fail "copy $STUB to $DLL"
            done_list+=("bcryptprimitives.dll stub")
        fi
    fi
fi

if [ "${#done_list[@]}" -gt 0 ]; then
    old_ifs="$IFS"; IFS=';'
    echo "windows-setup: ready ($WINE_VERSION, WINEPREFIX=$WINEPREFIX; did:${done_list[*]/#/ })"
    IFS="$old_ifs"
fi
