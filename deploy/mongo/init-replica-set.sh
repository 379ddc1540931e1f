#!/usr/bin/env bash
# One-shot initialisation of the MongoDB replica set of docker-compose.yml (service `mongo-init`,
# run with the mongo:8.0 image, which ships mongosh). Idempotent: safe to run on every `up`.
#
#   1. wait until every member answers `ping` on the network (not only on its localhost);
#   2. `rs.initiate` the set with all members, unless it is already initiated;
#   3. wait until there is a primary and every member is PRIMARY or SECONDARY;
#   4. create the application user (readWrite on the application database), or reset its
#      password and roles to the configured ones if it exists.
#
# The root user exists only on the first member (created by the image's entrypoint from
# MONGO_INITDB_ROOT_*): the other members start empty and receive it by initial sync, so
# rs.initiate never meets a member that "has data already".
#
# Environment (all set by docker-compose.yml):
#   MONGO_REPLICA_SET          replica set name (rs0)
#   MONGO_MEMBERS              comma-separated host:port list; the first one gets rs.initiate
#   MONGO_ROOT_USERNAME        root user created by the first member's entrypoint
#   MONGO_ROOT_PASSWORD
#   JOBSTREAM_MONGO_DATABASE   application database (jobstream); the user is created in it
#   JOBSTREAM_MONGO_USERNAME   application user (jobstream)
#   JOBSTREAM_MONGO_PASSWORD
#   MONGO_INIT_TIMEOUT         seconds to wait for each step (default 180)
set -euo pipefail

: "${MONGO_REPLICA_SET:?}" "${MONGO_MEMBERS:?}" "${MONGO_ROOT_USERNAME:?}" "${MONGO_ROOT_PASSWORD:?}"
: "${JOBSTREAM_MONGO_DATABASE:?}" "${JOBSTREAM_MONGO_USERNAME:?}" "${JOBSTREAM_MONGO_PASSWORD:?}"
export MONGO_INIT_TIMEOUT="${MONGO_INIT_TIMEOUT:-180}"

IFS=, read -r -a members <<<"$MONGO_MEMBERS"
first="${members[0]}"

log() { printf '[mongo-init] %s\n' "$*" >&2; }

root_shell() { # URI, then mongosh arguments; authenticates as root against admin
  local uri="$1"
  shift
  mongosh "$uri" --quiet --username "$MONGO_ROOT_USERNAME" --password "$MONGO_ROOT_PASSWORD" \
    --authenticationDatabase admin "$@"
}

# 1. Every member answers ping from the network. (`ping` needs no authentication.)
for member in "${members[@]}"; do
  deadline=$((SECONDS + MONGO_INIT_TIMEOUT))
  until mongosh "mongodb://$member/?directConnection=true&serverSelectionTimeoutMS=2000" --quiet \
    --eval "quit(db.adminCommand({ ping: 1 }).ok === 1 ? 0 : 1)" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      log "$member did not answer ping within ${MONGO_INIT_TIMEOUT}s"
      exit 1
    fi
    sleep 2
  done
  log "$member answers"
done

# 2 and 3. Initiate (unless done) through the first member, then wait for a healthy set.
root_shell "mongodb://$first/admin?directConnection=true&serverSelectionTimeoutMS=10000" --eval '
  const name = process.env.MONGO_REPLICA_SET;
  const hosts = process.env.MONGO_MEMBERS.split(",");
  const timeoutMs = Number(process.env.MONGO_INIT_TIMEOUT) * 1000;

  let initiated = true;
  try {
    rs.status();
  } catch (error) {
    if (error.codeName !== "NotYetInitialized") throw error;
    initiated = false;
  }
  if (initiated) {
    print("[mongo-init] replica set already initiated");
  } else {
    try {
      rs.initiate({ _id: name, members: hosts.map((host, i) => ({ _id: i, host: host })) });
      print("[mongo-init] replica set " + name + " initiated with " + hosts.join(", "));
    } catch (error) {
      if (error.codeName !== "AlreadyInitialized") throw error;
      print("[mongo-init] replica set already initiated");
    }
  }

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let states = [];
    try {
      states = rs.status().members.map((m) => m.name + "=" + m.stateStr);
    } catch (error) {
      states = ["(" + error.message + ")"];
    }
    const ready = states.length === hosts.length
      && states.some((s) => s.endsWith("=PRIMARY"))
      && states.every((s) => s.endsWith("=PRIMARY") || s.endsWith("=SECONDARY"));
    if (ready) {
      print("[mongo-init] replica set healthy: " + states.join(", "));
      break;
    }
    if (Date.now() > deadline) {
      print("[mongo-init] replica set not healthy in time: " + states.join(", "));
      quit(1);
    }
    sleep(1000);
  }
'

# 4. The application user, through the replica set (whichever member is primary).
root_shell "mongodb://$MONGO_MEMBERS/admin?replicaSet=$MONGO_REPLICA_SET&serverSelectionTimeoutMS=30000" --eval '
  const app = db.getSiblingDB(process.env.JOBSTREAM_MONGO_DATABASE);
  const user = process.env.JOBSTREAM_MONGO_USERNAME;
  const pwd = process.env.JOBSTREAM_MONGO_PASSWORD;
  const roles = [{ role: "readWrite", db: app.getName() }];
  const writeConcern = { w: "majority", wtimeout: 60000 };
  if (app.getUser(user) === null) {
    app.createUser({ user: user, pwd: pwd, roles: roles }, writeConcern);
    print("[mongo-init] created user " + user + " (readWrite on " + app.getName() + ")");
  } else {
    app.updateUser(user, { pwd: pwd, roles: roles }, writeConcern);
    print("[mongo-init] user " + user + " exists; password and roles reset");
  }
'
log "done"
