#!/usr/bin/env bash
# Build the Jaeger v2 all-in-one binary once, cached by version.
source "$(dirname "$0")/common.sh"
mkdir -p "$(dirname "$JAEGER_BIN")"
go_build_tool github.com/jaegertracing/jaeger github.com/jaegertracing/jaeger/cmd/jaeger "$JAEGER_VERSION" "$JAEGER_BIN"
