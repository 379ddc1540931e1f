# Shared settings for the local infrastructure scripts (sourced, not run).
# Downloads and builds are cached outside the work tree, keyed by version; runtime state lives in
# JOBSTREAM_STATE_DIR (default .infra/ in the checkout) so infra-down can stop exactly what it started.
set -euo pipefail

KAFKA_VERSION="4.1.1"
LOG4J_VERSION="2.25.2"
FERRETDB_VERSION="v1.24.2"
JAEGER_VERSION="v1.76.0"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE_DIR="${JOBSTREAM_CACHE_DIR:-$HOME/.cache/jobstream}"
STATE_DIR="${JOBSTREAM_STATE_DIR:-$REPO_ROOT/.infra}"
LOG_DIR="${JOBSTREAM_LOG_DIR:-$STATE_DIR/logs}"
PID_DIR="$STATE_DIR/pids"
mkdir -p "$CACHE_DIR" "$STATE_DIR" "$LOG_DIR" "$PID_DIR"

KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
FERRETDB_BIN="$CACHE_DIR/ferretdb-$FERRETDB_VERSION/ferretdb"
JAEGER_BIN="$CACHE_DIR/jaeger-$JAEGER_VERSION/jaeger"

log() { printf '[infra] %s\n' "$*" >&2; }

# Start a long-lived process in its own session, detached from the caller: stdin from /dev/null,
# output appended to a log, and every other inherited descriptor closed (a daemon that kept, say,
# the fd of a caller's `flock` would hold that lock for as long as it lives). Prints the pid.
# Whether a pid is a live process: a zombie (killed, not yet reaped by its parent) is not.
pid_alive() {
  local pid="$1" state
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)"
  [[ "$state" != Z ]]
}

spawn_daemon() {
  local logfile="$1"
  shift
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd="${fd##*/}"
      if ((fd > 2)); then eval "exec ${fd}>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@" >>"$logfile" 2>&1 </dev/null
  ) &
  echo $!
}

# Build a Go program through a throwaway wrapper module (plain `go install` of these modules fails:
# FerretDB misses its version file, Jaeger has a replace directive).
go_build_tool() {
  local module="$1" pkg="$2" version="$3" out="$4"
  if [[ -x "$out" ]]; then return 0; fi
  local work
  work="$(mktemp -d)"
  log "building $pkg@$version (first run only; cached in $(dirname "$out"))"
  (
    cd "$work"
    go mod init "jobstream-build/$(basename "$out")" >/dev/null 2>&1
    GOFLAGS=-mod=mod go get -tool "$pkg@$version"
    CGO_ENABLED=0 go build -trimpath -o "$out.tmp" "$pkg"
  )
  mv "$out.tmp" "$out"
  rm -rf "$work"
}
