#!/usr/bin/env bash
# The system packages the course needs: the one list, used by `make test`, `make book` and so by CI.
# Each line: a Debian package, then a file that is there once it is installed.
#   bubblewrap             the grading sandbox (bwrap)
#   chromium               the browser of the browser tests
#   dataset-fashion-mnist  the real data of the LeNet chapter and exercise
# Missing ones are installed with apt-get as root, or with `sudo -n` where sudo needs no password.
# Otherwise this stops at once with one line that says what to run.
# SYSTEM_ROOT (default /) is where the files are looked for; the tests point it elsewhere.
set -euo pipefail

PACKAGES="
bubblewrap            /usr/bin/bwrap
chromium              /usr/bin/chromium
dataset-fashion-mnist /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
"
root=${SYSTEM_ROOT:-/}

missing() {
    local name path out=""
    while read -r name path; do
        [ -n "$name" ] || continue
        [ -e "$root/$path" ] || out="$out $name"
    done <<< "$PACKAGES"
    echo "${out# }"
}

todo=$(missing)
[ -z "$todo" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    apt=(apt-get)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    apt=(sudo -n apt-get)
else
    apt=()
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "Missing system packages: $todo. Install them with your package manager (Debian, Ubuntu:" \
         "sudo apt-get install -y $todo), then make again" >&2
    exit 1
fi
if [ ${#apt[@]} -eq 0 ]; then
    echo "Missing system packages: $todo. Run: sudo apt-get install -y $todo (then make again)" >&2
    exit 1
fi

echo "Installing the system packages the course needs: $todo"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086  # one word per package
"${apt[@]}" update -q && "${apt[@]}" install -y -q $todo || {
    echo "Could not install system packages: $todo. Run: sudo apt-get update && sudo apt-get install -y $todo" >&2
    exit 1
}
still=$(missing)
if [ -n "$still" ]; then
    echo "apt-get ran, yet these are still missing: $still. Run: sudo apt-get install -y $still" >&2
    exit 1
fi
