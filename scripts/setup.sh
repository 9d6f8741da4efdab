#!/usr/bin/env bash
# Make .venv and install tmem into it with the given extras (default: all).
#
#   scripts/setup.sh [EXTRAS]      e.g. scripts/setup.sh test
#
# As root on Debian it first installs the system packages tmem uses; as any
# other user it says which are missing and carries on.  Re-running is cheap:
# pip runs again only when pyproject.toml or the extras change.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${1:-all}"
DEBIAN_PACKAGES=(
    python3-venv
    redis-server     # the peer in `tmem bench server`
    memcached        # the other peer in `tmem bench server`
    fuse3            # the swap device: mount.fuse3, fusermount3
    libfuse3-3       # ... and the library mfusepy loads
)

say() { printf 'setup: %s\n' "$*" >&2; }

install_debian_packages() {
    command -v dpkg-query >/dev/null || return 0
    local missing=() pkg
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null \
            | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "not root: cannot install Debian packages ${missing[*]}"
        return 0
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_python() {
    local candidate
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c \
            'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
        then
            echo "$candidate"
            return 0
        fi
    done
    say "error: tmem needs Python 3.11 or newer (apt-get install python3)"
    exit 1
}

install_debian_packages
PYTHON="$(find_python)"
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.tmem-installed"
want="$(sha256sum pyproject.toml | cut -c1-16) $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing tmem[$EXTRAS] into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    # one line per package as it comes, so a minute of downloads shows
    # progress; pip's errors go to stderr untouched (pipefail keeps its
    # status)
    .venv/bin/python -m pip install --progress-bar off -e ".[$EXTRAS]" \
        | awk '/^(Collecting|Successfully installed)/ { print "setup:", $0 > "/dev/stderr" }'
    echo "$want" > "$stamp"
fi
