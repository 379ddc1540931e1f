#!/usr/bin/env bash
# Unpack Debian's prometheus package into the cache (no service is installed or started).
source "$(dirname "$0")/common.sh"
PROM_DIR="$CACHE_DIR/prometheus-deb"
if [[ -x "$PROM_DIR/usr/bin/prometheus" ]]; then exit 0; fi
if command -v prometheus >/dev/null 2>&1; then
  mkdir -p "$PROM_DIR/usr/bin" && ln -sf "$(command -v prometheus)" "$PROM_DIR/usr/bin/prometheus"
  exit 0
fi
log "fetching Debian's prometheus package into $PROM_DIR"
work="$(mktemp -d)"
cd "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
  apt-get update -qq
  apt-get download prometheus
fi
mkdir -p "$PROM_DIR"
dpkg -x prometheus_*.deb "$PROM_DIR"
rm -rf "$work"
