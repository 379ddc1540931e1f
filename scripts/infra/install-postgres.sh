#!/usr/bin/env bash
# PostgreSQL from Debian's packages: the storage under FerretDB (its SQLite backend deadlocks when
# index creation races with writes; its PostgreSQL backend is the mature one).
source "$(dirname "$0")/common.sh"
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then exit 0; fi
log "installing PostgreSQL from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
