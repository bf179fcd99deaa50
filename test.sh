#!/usr/bin/env bash
# The README's test command: every test of autolabel, on a machine with only the Rust
# toolchain. The tests need redis-server (the Redis state tests) and Chromium (the
# dashboard's browser test) and fail, never skip, without them; this installs them when it
# can (root, or sudo without a password) and otherwise stops before building anything,
# with the install command for the usual systems. Then it runs every test binary, even
# after one fails, and ends with one line: `tests: N passed, N failed`.
#
#   ./test.sh                   everything
#   ./test.sh --test labeling   arguments go to `cargo test`
set -uo pipefail
cd "${BASH_SOURCE[0]%/*}" || exit 1

# What is missing, as Debian, Fedora and Homebrew name the packages.
missing=() deb=() rpm=() brew=()
if ! command -v redis-server >/dev/null 2>&1; then
    missing+=(redis-server) deb+=(redis-server) rpm+=(redis) brew+=("brew install redis")
fi
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    missing+=(chromium) deb+=(chromium) rpm+=(chromium) brew+=("brew install --cask chromium")
fi

cannot_install() {
    local IFS=' ' need
    need=$(printf '%s and ' "${missing[@]}")
    {
        echo "test.sh: the tests need ${need% and }, which ${1}."
        echo "Install, then run ./test.sh again:"
        echo "  Debian/Ubuntu:    sudo apt-get install -y ${deb[*]}"
        echo "                    (Ubuntu without the chromium package: chromium-browser)"
        echo "  Fedora:           sudo dnf install -y ${rpm[*]}"
        local joined
        joined=$(printf ' && %s' "${brew[@]}")
        echo "  macOS (Homebrew): ${joined# && }"
    } >&2
    exit 1
}

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        cannot_install "are not installed, and this user cannot install them (not root, no sudo without a password)"
    fi
    if command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing ${deb[*]} for the tests (apt-get)" >&2
        ${as_root[@]+"${as_root[@]}"} apt-get update -qq
        # Ubuntu has no package named chromium: its chromium-browser installs the snap.
        if [[ " ${deb[*]} " == *" chromium "* ]] && ! apt-cache show chromium >/dev/null 2>&1; then
            deb=("${deb[@]/#chromium/chromium-browser}")
        fi
        ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${deb[@]}"
    elif command -v dnf >/dev/null 2>&1; then
        echo "test.sh: installing ${rpm[*]} for the tests (dnf)" >&2
        ${as_root[@]+"${as_root[@]}"} dnf install -y "${rpm[@]}"
    else
        cannot_install "are not installed, and this system has neither apt-get nor dnf"
    fi
    command -v redis-server >/dev/null 2>&1 &&
        { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } ||
        cannot_install "could not be installed (see above)"
    # Debian's package also starts a server on 6379; the tests start their own on free ports.
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo is not on PATH: install Rust from https://rustup.rs" >&2
    exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --no-fail-fast: a failing test binary does not hide the results of the ones after it.
cargo test --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ] && ! grep -q '^test result: FAILED' "$log"; then
    echo "test.sh: cargo test exited $status without a failed test: a build error, or a test binary that crashed (above)"
fi
# One result line per test binary; the total over all of them closes the output.
awk '/^test result:/ { passed += $4; failed += $6 }
     END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
