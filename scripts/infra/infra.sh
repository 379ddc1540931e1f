#!/usr/bin/env bash
# The local infrastructure on 127.0.0.1: a 3-node KRaft Kafka cluster, FerretDB (on PostgreSQL),
# Jaeger and Prometheus.
#
#   infra.sh up                  install what is missing, start everything, wait until it answers
#   infra.sh down                stop what `up` started (by pid) and drop its state
#   infra.sh status              one line per service
#   infra.sh start SERVICE       start one service (kafka-1..3, postgres, ferretdb, jaeger, prometheus)
#   infra.sh stop SERVICE [--kill]   stop one service (SIGTERM, or SIGKILL), keeping its data
#   infra.sh sql < FILE          run SQL on the PostgreSQL database behind FerretDB
source "$(dirname "$0")/common.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${JOBSTREAM_PYTHON:-$REPO_ROOT/.venv/bin/python}"

KAFKA_NODES=(1 2 3)
# Every port stays below Linux's ephemeral range (32768-60999): while a service is down, a client
# retrying 127.0.0.1:P can be given P itself as its source port and connect to itself (TCP
# simultaneous open); the restarted service then fails "Address already in use". Broker 3 on 39092
# died so in the fault suite's all-brokers-down scenario (kafka-3.log: "Socket server failed to
# bind to 127.0.0.1:39092"). Hence 1N092 / 1N093 for Kafka node N and 15432 for PostgreSQL.
kafka_port() { echo "1${1}092"; }
kafka_controller_port() { echo "1${1}093"; }
SERVICES=(kafka-1 kafka-2 kafka-3 postgres ferretdb jaeger prometheus)
PG_PORT=15432

pid_of() { cat "$PID_DIR/$1.pid" 2>/dev/null || true; }
is_running() {
  local pid
  pid="$(pid_of "$1")"
  pid_alive "$pid"
}

launch() { # name, command...: start in its own session so a Ctrl-C of make does not reach it
  local name="$1"
  shift
  if is_running "$name"; then return 0; fi
  spawn_daemon "$LOG_DIR/$name.log" "$@" >"$PID_DIR/$name.pid"
  log "started $name (pid $(pid_of "$name"), log $LOG_DIR/$name.log)"
}

kafka_properties() {
  local n="$1" dir="$STATE_DIR/kafka-$n"
  local voters="1@127.0.0.1:$(kafka_controller_port 1),2@127.0.0.1:$(kafka_controller_port 2),3@127.0.0.1:$(kafka_controller_port 3)"
  mkdir -p "$dir"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(kafka_port "$n"),CONTROLLER://127.0.0.1:$(kafka_controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(kafka_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
auto.create.topics.enable=false
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.replica.fetchers=2
log.retention.hours=24
log.segment.bytes=67108864
PROPS
  echo "$dir/server.properties"
}

KAFKA_JAVA=(java -Xms384m -Xmx640m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$HERE/kafka/log4j2.yaml" -cp "$KAFKA_HOME/libs/*")

start_kafka() {
  local n="$1" props cluster_id
  if is_running "kafka-$n"; then return 0; fi
  props="$(kafka_properties "$n")"
  if [[ ! -f "$STATE_DIR/kafka-$n/data/meta.properties" ]]; then
    [[ -f "$STATE_DIR/kafka-cluster-id" ]] || "${KAFKA_JAVA[@]}" kafka.tools.StorageTool random-uuid >"$STATE_DIR/kafka-cluster-id"
    cluster_id="$(tail -n 1 "$STATE_DIR/kafka-cluster-id")"
    "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >>"$LOG_DIR/kafka-$n.log" 2>&1
  fi
  launch "kafka-$n" "${KAFKA_JAVA[@]}" kafka.Kafka "$props"
}

# PostgreSQL refuses to run as root: use the postgres account when we are root.
PG_USER=()
[[ "$(id -u)" == 0 ]] && PG_USER=(runuser -u postgres --)

pg_bin() { # the newest installed PostgreSQL's bin directory
  dirname "$(compgen -G "/usr/lib/postgresql/*/bin/initdb" | sort -V | tail -n 1)"
}

start_postgres() {
  local bin dir="$STATE_DIR/postgres"
  bin="$(pg_bin)"
  if ! is_running postgres; then
    if [[ ! -f "$dir/PG_VERSION" ]]; then
      mkdir -p "$dir"
      [[ "$(id -u)" == 0 ]] && chown postgres: "$dir"
      "${PG_USER[@]}" "$bin/initdb" -D "$dir" -U ferretdb --auth=trust -E UTF8 >>"$LOG_DIR/postgres.log" 2>&1
    fi
    # synchronous_commit=off: a test stand-in may lose its last milliseconds if *it* crashes, but
    # never corrupts; the jobstream guarantees under test sit above it.
    launch postgres "${PG_USER[@]}" "$bin/postgres" -D "$dir" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
      -c unix_socket_directories= -c synchronous_commit=off -c max_connections=300 \
      -c lock_timeout=5s -c idle_in_transaction_session_timeout=5s -c deadlock_timeout=200ms \
      -c shared_buffers=128MB
    for _ in $(seq 1 100); do
      "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
      sleep 0.1
    done
  fi
  "${PG_USER[@]}" "$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U ferretdb -d postgres -tc \
    "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'" | grep -q 1 ||
    "${PG_USER[@]}" "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U ferretdb ferretdb
  # Indexes FerretDB's own tables can use (see the file); psql reads it from stdin, as root too.
  "${PG_USER[@]}" "$bin/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U ferretdb -d ferretdb \
    <"$HERE/postgres/ferretdb-indexes.sql" >>"$LOG_DIR/postgres.log" 2>&1
}

# FerretDB runs an update as a transaction that takes a second pooled connection for its query: with
# pgx's default pool (4 connections on 2 cores) a few concurrent updates exhaust it and every request
# hangs. A pool far larger than jobstream's client-side pools (maxPoolSize) rules that out.
start_ferretdb() {
  mkdir -p "$STATE_DIR/ferretdb/state"
  launch ferretdb "$FERRETDB_BIN" --handler=postgresql \
    --postgresql-url="postgres://ferretdb@127.0.0.1:$PG_PORT/ferretdb?pool_max_conns=150" \
    --listen-addr=127.0.0.1:27017 --state-dir="$STATE_DIR/ferretdb/state" --telemetry=disable \
    --debug-addr=127.0.0.1:28088 --log-level=error
}

start_jaeger() {
  launch jaeger "$JAEGER_BIN" --config "$HERE/jaeger/config.yaml"
}

start_prometheus() {
  mkdir -p "$STATE_DIR/prometheus"
  launch prometheus "$CACHE_DIR/prometheus-deb/usr/bin/prometheus" \
    --config.file="$HERE/prometheus/prometheus.yml" --storage.tsdb.path="$STATE_DIR/prometheus" \
    --web.listen-address=127.0.0.1:9090 --web.enable-lifecycle
}

start_service() {
  case "$1" in
    kafka-[123]) start_kafka "${1#kafka-}" ;;
    postgres) start_postgres ;;
    ferretdb) start_ferretdb ;;
    jaeger) start_jaeger ;;
    prometheus) start_prometheus ;;
    *) log "unknown service $1" && exit 2 ;;
  esac
}

stop_service() { # name [signal]; waits for the process to exit (SIGKILL after 30 s)
  local name="$1" signal="${2:-TERM}" pid bin
  pid="$(pid_of "$name")"
  if ! pid_alive "$pid"; then rm -f "$PID_DIR/$name.pid"; return 0; fi
  if [[ "$name" == postgres && "$signal" == TERM ]]; then
    # PostgreSQL's fast shutdown (sessions ended, then a shutdown checkpoint). A SIGTERM to the
    # recorded pid reached runuser (as root), which SIGKILLs its child: a crash, which with
    # synchronous_commit=off loses the last acknowledged commits (seen: a job answered 201 and
    # gone after the restart). As another user it was a smart shutdown, waiting for FerretDB's
    # pooled sessions until the SIGKILL below.
    bin="$(pg_bin)"
    "${PG_USER[@]}" "$bin/pg_ctl" -D "$STATE_DIR/postgres" stop -m fast -w -t 30 \
      >>"$LOG_DIR/postgres.log" 2>&1 || true
  else
    kill "-$signal" "$pid" 2>/dev/null || true
  fi
  for _ in $(seq 1 300); do
    pid_alive "$pid" || break
    sleep 0.1
  done
  if pid_alive "$pid"; then
    log "$name did not stop within 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_DIR/$name.pid"
}

install_all() {
  "$HERE/install-kafka.sh" &
  local kafka_job=$!
  "$HERE/install-prometheus.sh"
  "$HERE/install-postgres.sh"
  "$HERE/install-ferretdb.sh"
  "$HERE/install-jaeger.sh"
  wait "$kafka_job"
}

cmd="${1:-status}"
case "$cmd" in
  install) install_all ;;
  up)
    install_all
    for s in "${SERVICES[@]}"; do start_service "$s"; done
    "$PYTHON" "$HERE/wait_ready.py" --timeout "${JOBSTREAM_INFRA_TIMEOUT:-120}" || {
      log "services did not become ready; logs are in $LOG_DIR"
      tail -n 20 "$LOG_DIR"/*.log >&2 || true
      exit 1
    }
    ;;
  down)
    # Stop in parallel: brokers shutting down one by one would each wait for the others' quorum.
    for s in "${SERVICES[@]}"; do stop_service "$s" & done
    wait
    for _ in 1 2 3; do # a process killed late may still be flushing into its directory
      rm -rf "$STATE_DIR"/kafka-* "$STATE_DIR/postgres" "$STATE_DIR/ferretdb" \
        "$STATE_DIR/prometheus" 2>/dev/null && break
      sleep 1
    done
    log "stopped; logs kept in $LOG_DIR"
    ;;
  status)
    for s in "${SERVICES[@]}"; do
      if is_running "$s"; then printf '%-12s running (pid %s)\n' "$s" "$(pid_of "$s")"; else printf '%-12s stopped\n' "$s"; fi
    done
    ;;
  start) start_service "$2" ;;
  stop) stop_service "$2" "$([[ "${3:-}" == "--kill" ]] && echo KILL || echo TERM)" ;;
  sql) # SQL from stdin on the database FerretDB keeps its collections in (the fault suite's faults)
    bin="$(pg_bin)"
    "$bin/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U ferretdb -d ferretdb -f -
    ;;
  *) sed -n '2,10p' "$0" >&2 && exit 2 ;;
esac
