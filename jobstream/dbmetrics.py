"""Every MongoDB command a worker sends, counted from PyMongo's command monitoring.

`command_listener(registry)` returns a `pymongo.monitoring.CommandListener` to pass to the client
(`AsyncMongoClient(..., event_listeners=[...])`). It feeds, in the registry it is given:

- `mongo_commands_total{command, outcome, origin}`: commands by name (`insert`, `update`, `find`,
  `getMore`, `findAndModify`, ...), `outcome` `succeeded` or `failed` (the server answered ok: 0,
  or the connection failed), and `origin`, the caller's label (see `origin`);
- `mongo_command_duration_seconds{command}`: the driver's round trip per command;
- `mongo_documents_written_total{command}`: documents the server reports having written (see
  `documents_written`);
- `mongo_write_errors_total{command}`: documents a write command refused (a duplicate key is one
  of these: at-least-once delivery makes them normal, a rising rate shows redelivery).

Imports neither Faust nor aiohttp: storage imports this module.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from pymongo import monitoring

from jobstream.dbfailures import failure_reason

DURATION_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: The origin of commands sent outside any `origin(...)` block.
DEFAULT_ORIGIN = "worker"
#: The origin jobstream gives the reads of its HTTP GET handlers, which the benchmark leaves out
#: of a job's cost (a job's cost is what it takes to store and complete it, not how often it is
#: looked at).
API_READ = "api-read"
#: The origin of the reads of event streams and waiting requests (`jobstream.views.watch`): the
#: first state of each watch, and the end of a wait that heard no news. Apart from API_READ, so
#: that what watchers cost the database can be told from polling.
WATCH_READ = "api-watch"

_origin: ContextVar[str] = ContextVar("jobstream_mongo_origin", default=DEFAULT_ORIGIN)


@contextlib.contextmanager
def origin(name: str) -> Iterator[None]:
    """Label the commands sent inside the block (and tasks started from it) with `origin=name`.

    PyMongo's async client publishes command events in the task that awaits the command, so a
    context variable set around the call reaches the listener.
    """
    token = _origin.set(name)
    try:
        yield
    finally:
        _origin.reset(token)


def current_origin() -> str:
    """The origin label commands sent now would get."""
    return _origin.get()


def _count(value: Any) -> int:
    """A reply's count field as an int; 0 when absent or not a number (never trust a reply)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(int(value), 0)


def documents_written(command: str, reply: Mapping[str, Any]) -> int:
    """Documents a successful command created, changed or removed, from the server's reply.

    - `insert`: `n`, the documents inserted (those refused, e.g. duplicate ids, are not);
    - `update`: `nModified` plus the upserted documents; a matched document left unchanged (a
      `$set` to the values it already holds) is not a write;
    - `delete`: `n`, the documents removed;
    - `findAndModify`: `lastErrorObject.n`, the document found and changed, removed or upserted
      (its reply does not say whether an update changed anything: a match counts);
    - `bulkWrite` (MongoDB 8's client-level bulk write): inserted + modified + upserted + deleted;
    - anything else (reads, index and admin commands): 0.
    """
    if command in ("insert", "delete"):
        return _count(reply.get("n"))
    if command == "update":
        upserted = reply.get("upserted")
        return _count(reply.get("nModified")) + (len(upserted) if isinstance(upserted, list) else 0)
    if command == "findAndModify":
        last = reply.get("lastErrorObject")
        return _count(last.get("n")) if isinstance(last, Mapping) else 0
    if command == "bulkWrite":
        return sum(
            _count(reply.get(k)) for k in ("nInserted", "nModified", "nUpserted", "nDeleted")
        )
    return 0


def write_errors(reply: Mapping[str, Any]) -> int:
    """Documents a write command refused (its `writeErrors`)."""
    errors = reply.get("writeErrors")
    return len(errors) if isinstance(errors, list) else 0


class CommandMetrics(monitoring.CommandListener):
    """A command listener that counts and times commands into one Prometheus registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter(
            "mongo_commands",
            "MongoDB commands sent, by name, outcome and origin",
            ["command", "outcome", "origin"],
            registry=registry,
        )
        self.duration = Histogram(
            "mongo_command_duration_seconds",
            "MongoDB command round trip, as the driver measured it",
            ["command"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.documents = Counter(
            "mongo_documents_written",
            "Documents inserted, modified, upserted or deleted, as the server reported",
            ["command"],
            registry=registry,
        )
        self.failures = Counter(
            "mongo_command_failures",
            "Failed MongoDB commands by what the database said (out_of_space, lock_timeout, "
            "unavailable: FerretDB's PostgreSQL unreachable, other)",
            ["command", "reason"],
            registry=registry,
        )
        self.refused = Counter(
            "mongo_write_errors",
            "Documents a write command refused (writeErrors, e.g. duplicate keys)",
            ["command"],
            registry=registry,
        )

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Called when a command is sent (counted when it ends, so one count per command)."""

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Called when the server answered a command with ok: 1."""
        name = event.command_name
        self.commands.labels(name, "succeeded", current_origin()).inc()
        self.duration.labels(name).observe(event.duration_micros / 1e6)
        reply = event.reply if isinstance(event.reply, Mapping) else {}
        written = documents_written(name, reply)
        if written:
            self.documents.labels(name).inc(written)
        refused = write_errors(reply)
        if refused:
            self.refused.labels(name).inc(refused)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Called when a command failed: ok: 0 from the server, or a network error."""
        name = event.command_name
        self.commands.labels(name, "failed", current_origin()).inc()
        self.duration.labels(name).observe(event.duration_micros / 1e6)
        failure = event.failure if isinstance(event.failure, Mapping) else {}
        reason = failure_reason(failure.get("code"), str(failure.get("errmsg", "")))
        self.failures.labels(name, reason).inc()


# One listener per registry: a registry refuses a second metric of the same name, and a worker
# may open more than one client (storage, a health check) on the same registry.
_listeners: weakref.WeakKeyDictionary[CollectorRegistry, CommandMetrics] = (
    weakref.WeakKeyDictionary()
)


def command_listener(registry: CollectorRegistry) -> CommandMetrics:
    """The command listener feeding this registry (created on first use, then reused)."""
    listener = _listeners.get(registry)
    if listener is None:
        listener = _listeners[registry] = CommandMetrics(registry)
    return listener
