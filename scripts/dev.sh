#!/usr/bin/env bash
# The local jobstream workers: 3 client-role (API on 8080-8082) and 3 server-role (8090-8092) processes.
#
#   dev.sh start              start the six workers (infrastructure must be up), wait for /ready
#   dev.sh stop [--kill]      stop them (SIGTERM, graceful; or SIGKILL)
#   dev.sh status             one line per worker
#   dev.sh start-one NAME     start one worker (client-1..3, server-1..3)
#   dev.sh stop-one NAME [--kill]
#   dev.sh logs               follow every worker's log
source "$(dirname "$0")/infra/common.sh"
PYTHON="${JOBSTREAM_PYTHON:-$REPO_ROOT/.venv/bin/python}"
WORKERS=(client-1 client-2 client-3 server-1 server-2 server-3)

port_of() {
  local role="${1%-*}" n="${1##*-}"
  if [[ "$role" == client ]]; then echo $((8079 + n)); else echo $((8089 + n)); fi
}
pid_of() { cat "$PID_DIR/$1.pid" 2>/dev/null || true; }
is_running() {
  local pid
  pid="$(pid_of "$1")"
  pid_alive "$pid"
}

start_one() {
  local name="$1" role="${1%-*}" port
  port="$(port_of "$name")"
  if is_running "$name"; then return 0; fi
  mkdir -p "$STATE_DIR/workers/$name"
  (cd "$REPO_ROOT" && spawn_daemon "$LOG_DIR/$name.log" env JOBSTREAM_ROLE="$role" \
    JOBSTREAM_WEB_PORT="$port" JOBSTREAM_WEB_HOST=127.0.0.1 \
    JOBSTREAM_DATA_DIR="$STATE_DIR/workers/$name" OTEL_SERVICE_NAME="$role-application" \
    "$PYTHON" -m jobstream worker --loglevel "${JOBSTREAM_LOG_LEVEL:-info}") >"$PID_DIR/$name.pid"
  log "started $name (pid $(pid_of "$name"), port $port, log $LOG_DIR/$name.log)"
}

stop_one() {
  local name="$1" signal="${2:-TERM}" pid
  pid="$(pid_of "$name")"
  if pid_alive "$pid"; then
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      pid_alive "$pid" || break
      sleep 0.1
    done
    pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$PID_DIR/$name.pid"
}

# Waits until each worker is ready (/ready: database, brokers and partition assignment usable),
# not merely alive (/health).
wait_healthy() {
  local deadline=$((SECONDS + ${JOBSTREAM_WORKER_TIMEOUT:-120})) name port
  for name in "$@"; do
    port="$(port_of "$name")"
    until curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
      if ((SECONDS > deadline)); then
        log "$name was not ready on port $port; see $LOG_DIR/$name.log"
        curl -sS "http://127.0.0.1:$port/ready" >&2 || true
        tail -n 30 "$LOG_DIR/$name.log" >&2
        return 1
      fi
      if ! is_running "$name"; then
        log "$name exited; see $LOG_DIR/$name.log"
        tail -n 30 "$LOG_DIR/$name.log" >&2
        return 1
      fi
      sleep 0.5
    done
  done
  log "workers ready: $*"
}

case "${1:-status}" in
  start)
    for w in "${WORKERS[@]}"; do start_one "$w"; done
    wait_healthy "${WORKERS[@]}"
    ;;
  stop)
    signal="$([[ "${2:-}" == "--kill" ]] && echo KILL || echo TERM)"
    for w in "${WORKERS[@]}"; do stop_one "$w" "$signal" & done
    wait
    ;;
  start-one) start_one "$2" && wait_healthy "$2" ;;
  stop-one) stop_one "$2" "$([[ "${3:-}" == "--kill" ]] && echo KILL || echo TERM)" ;;
  status)
    for w in "${WORKERS[@]}"; do
      if is_running "$w"; then printf '%-10s running (pid %s, port %s)\n' "$w" "$(pid_of "$w")" "$(port_of "$w")"
      else printf '%-10s stopped\n' "$w"; fi
    done
    ;;
  logs) tail -n 20 -F "${WORKERS[@]/#/$LOG_DIR/}" 2>/dev/null || tail -F "$LOG_DIR"/client-*.log "$LOG_DIR"/server-*.log ;;
  *) sed -n '2,9p' "$0" >&2 && exit 2 ;;
esac
