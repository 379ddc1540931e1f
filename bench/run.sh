#!/usr/bin/env bash
# The benchmark on the local stack, holding the shared stack lock for the whole run:
# infra up (idempotent), a fresh database of the benchmark's own, the six workers on it,
# `python -m bench "$@"`, then the workers stopped again (the infrastructure keeps running).
#   bench/run.sh [--quick] [other `python -m bench` flags]
# JOBSTREAM_BENCH_DATABASE (default jobstream_bench) names the database; BENCH_TIMEOUT (s) bounds
# the run (default 2700: the prefilled run alone stores a million documents, and the watchers section waits for four 100,000-operation jobs).
set -euo pipefail
cd "$(dirname "$0")/.."
export JOBSTREAM_MONGO_DATABASE="${JOBSTREAM_BENCH_DATABASE:-jobstream_bench}"
exec flock "${JOBSTREAM_STACK_LOCK:-/tmp/jobstream-stack.lock}" bash -c '
  set -euo pipefail
  make infra-up
  .venv/bin/python -m bench.fresh_db
  scripts/dev.sh start
  status=0
  timeout "${BENCH_TIMEOUT:-2700}" .venv/bin/python -m bench "$@" || status=$?
  scripts/dev.sh stop
  exit $status
' bench "$@"
