#!/usr/bin/env bash
# Fetch the Kafka broker jars (and a log4j2 binding) from Maven Central once, cached by version.
source "$(dirname "$0")/common.sh"
if [[ -f "$KAFKA_HOME/.complete" ]]; then exit 0; fi
log "fetching Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME"
rm -rf "$KAFKA_HOME"
mkdir -p "$KAFKA_HOME/libs"
mvn -B -q -f "$(dirname "$0")/kafka/pom.xml" \
  -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs"
touch "$KAFKA_HOME/.complete"
