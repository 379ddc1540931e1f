#!/usr/bin/env bash
# Build FerretDB (MongoDB wire protocol over SQLite) once, cached by version.
# The module lacks the generated build/version/version.txt, and the binary panics without it
# (FerretDB issue #2982), so the source is copied out of the module cache and the file added.
source "$(dirname "$0")/common.sh"
if [[ -x "$FERRETDB_BIN" ]]; then exit 0; fi
mkdir -p "$(dirname "$FERRETDB_BIN")"
work="$(mktemp -d)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
log "building FerretDB $FERRETDB_VERSION (first run only; cached in $(dirname "$FERRETDB_BIN"))"
cd "$work"
GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" >module.json
src="$(python3 -c 'import json,sys; print(json.load(open("module.json"))["Dir"])')"
cp -r "$src" ferretdb-src
chmod -R u+w ferretdb-src
echo "$FERRETDB_VERSION" >ferretdb-src/build/version/version.txt
cd ferretdb-src
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$FERRETDB_BIN.tmp" ./cmd/ferretdb
mv "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
