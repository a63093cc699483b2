#!/usr/bin/env bash
# Makes sure libfaketime (Debian's `faketime` package) is installed: the clock-skew fault test
# (tests/faults/test_clock_skew.py) runs one web instance with its clock shifted. Installs the
# Debian package when we are root, else explains.
set -euo pipefail
command -v faketime >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != "0" ]; then
  echo "faketime is not installed; install it (sudo apt-get install faketime) for the clock-skew test." >&2
  exit 1
fi
echo "Installing faketime (Debian package)..." >&2
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null
command -v faketime >/dev/null 2>&1
