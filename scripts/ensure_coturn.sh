#!/usr/bin/env bash
# Makes sure coturn's `turnserver` binary is installed: the TURN test (tests/integration/test_turn.py)
# starts its own on loopback to check the credentials the service mints. Installs the Debian package
# when we are root, else explains. Only the binary is needed: the system service the package may
# enable is disabled again.
set -euo pipefail
command -v turnserver >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != "0" ]; then
  echo "turnserver is not installed; install it (sudo apt-get install coturn) for the TURN test." >&2
  exit 1
fi
echo "Installing coturn (Debian package)..." >&2
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn >/dev/null
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now coturn >/dev/null 2>&1 || true; fi
command -v turnserver >/dev/null 2>&1
