#!/usr/bin/env bash
# System packages for the browser test (tests/test_safe_reports.py): Debian's headless Chromium.
#
# Idempotent and quick when Chromium is already there. Runs as root without a TTY (CI,
# containers) or as a user with password-less sudo; otherwise it only explains what to do.
# When Chromium cannot be installed the browser test skips with a message, except under CI
# (CI variable set) where this script fails (and the test would fail too).
set -euo pipefail

say() { echo "browser-packages: $*" >&2; }
give_up() {
    say "$1"
    say "the headless-browser test will be skipped. To enable it, install Chromium (e.g. 'sudo apt-get install chromium')"
    say "or point FORECASTKIT_CHROMIUM at a Chromium/Chrome binary."
    if [ -n "${CI:-}" ]; then
        say "CI is set: failing instead of skipping"
        exit 1
    fi
    exit 0
}

# Fast path: a browser is already installed.
for candidate in "${FORECASTKIT_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
        exit 0
    fi
done

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    give_up "Chromium is not installed and this script cannot become root (no password-less sudo)."
fi
command -v apt-get >/dev/null 2>&1 || give_up "Chromium is not installed and apt-get is not available."

say "installing chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >/dev/null || give_up "apt-get update failed"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium </dev/null >/dev/null ||
    give_up "apt-get install chromium failed"
[ -x /usr/bin/chromium ] || give_up "apt-get installed chromium but /usr/bin/chromium is missing"
say "chromium ready: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
