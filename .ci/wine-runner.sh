#!/usr/bin/env bash
# Cargo runner for x86_64-pc-windows-gnu (see .cargo/config.toml): runs the
# Windows executable "$1" with arguments "$2..." under Wine and exits with its
# exit code (low 8 bits, as Unix exit codes go).  Prepare the machine first
# with .ci/windows-setup.sh, which creates the prefix used here.
export WINEPREFIX="${WINEPREFIX:-$HOME/.wine-shmio}"
export WINEDEBUG="${WINEDEBUG:--all}"
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=;winemenubuilder.exe=d}"
unset DISPLAY WAYLAND_DISPLAY

if [ ! -f "$WINEPREFIX/.windows-setup-done" ]; then
    echo "wine-runner: Wine prefix $WINEPREFIX is not set up;" \
         "run: bash $(dirname "$0")/windows-setup.sh" >&2
    exit 127
fi
for c in wine64 /usr/lib/wine/wine64 wine; do
    if command -v "$c" >/dev/null 2>&1; then exec "$c" "$@"; fi
done
echo "wine-runner: no wine64/wine found; run $(dirname "$0")/windows-setup.sh" >&2
exit 127
