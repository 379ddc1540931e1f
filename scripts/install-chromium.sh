#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver for the browser tests (needs root; apt-get).
# Does nothing when both are already installed, so `make test` pays for it once per machine.
set -euo pipefail

CHROMIUM="${JOBSTREAM_CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${JOBSTREAM_CHROMEDRIVER:-/usr/bin/chromedriver}"

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
  echo "[chromium] already installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  echo "[chromium] $CHROMIUM or $CHROMEDRIVER is missing and installing them needs root:" >&2
  echo "[chromium]   sudo apt-get install -y chromium chromium-driver" >&2
  exit 1
fi

echo "[chromium] installing chromium and chromium-driver with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "[chromium] installed: $("$CHROMIUM" --version 2>/dev/null)"
