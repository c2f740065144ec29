#!/usr/bin/env bash
# Installs the benchmarks' load generator, wrk (Debian package), when it is not on PATH.
# Benchmarks are never part of the test run, so this is not called by `make test`.
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
    echo "wrk: already installed ($(command -v wrk))"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# The package lists may be missing or stale on a fresh machine: refresh them only when the
# plain install fails, so a warm machine does not pay for `apt-get update`.
if ! $SUDO apt-get install -y wrk; then
    $SUDO apt-get update
    $SUDO apt-get install -y wrk
fi
echo "wrk: installed ($(command -v wrk))"
