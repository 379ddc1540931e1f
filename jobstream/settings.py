"""One settings object, built from the environment once and passed explicitly."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["client", "server"]

#: Longest line JOBSTREAM_MAX_LINE_LENGTH allows: the 200 expressions of a bucket document (4 bytes
#: a character at worst, 8 MiB) and their results fit one MongoDB document (16 MiB).
MAX_LINE_LENGTH = 10_000
DIALECTS = ("auto", "mongodb", "ferretdb")

DEFAULT_BROKERS = "127.0.0.1:11092,127.0.0.1:12092,127.0.0.1:13092"

#: An API token: the characters of an RFC 6750 bearer token, and long enough not to be guessed.
TOKEN = re.compile(r"[A-Za-z0-9._~+/-]{16,512}=*")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name) or default
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def _tokens(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated bearer tokens; a bad one is named by position, never echoed."""
    raw = env.get(name, "")
    if not raw.strip():
        return ()
    tokens = tuple(token.strip() for token in raw.split(","))
    for position, token in enumerate(tokens, start=1):
        if not TOKEN.fullmatch(token):
            raise ValueError(
                f"{name}: token {position} of {len(tokens)} must be 16 to 512 characters of "
                "A-Z a-z 0-9 . _ ~ + / - (optionally ending in =), without spaces or empty entries"
            )
    return tokens


@dataclass(frozen=True)
class Settings:
    """Everything a jobstream process needs to know; see the README's configuration table."""

    #: Which half of the system this worker is: the HTTP API + persistence, or the compute workers.
    role: Role = "client"
    #: Kafka bootstrap servers, comma separated host:port.
    kafka_brokers: str = DEFAULT_BROKERS
    #: MongoDB connection string (a replica set URI in compose, FerretDB locally).
    mongo_url: str = "mongodb://127.0.0.1:27017/"
    #: Database holding the `jobs` and `chunks` collections.
    mongo_database: str = "jobstream"
    #: Which form of the commands FerretDB runs badly to use: "auto" (asks the server at the first
    #: command), "mongodb" or "ferretdb" (see `jobstream.storage.Forms`).
    mongo_dialect: str = "auto"
    #: Completed jobs older than this many seconds are deleted by the leader's sweep; 0 keeps them.
    retention: int = 7 * 24 * 3600
    #: Topic carrying one event per operation to compute (server group reads it).
    request_topic: str = "application.operation.request"
    #: Topic carrying one result event per operation back (client group reads it).
    response_topic: str = "application.operation.response"
    #: The bulk lane's request and response topics: jobs of more than `bulk_operations` operations
    #: travel on them, with agents of their own, so a big job's backlog never queues in front of
    #: the messages of smaller jobs (see `jobstream.topics`).
    bulk_request_topic: str = "application.operation.request.bulk"
    bulk_response_topic: str = "application.operation.response.bulk"
    #: Jobs of more operations than this go to the bulk lane. The client role chooses the lane
    #: (API, reconciliation); the server role answers on the lane a request came from.
    bulk_operations: int = 1000
    #: Topic receiving undecodable or invalid events, so one bad message never blocks a partition.
    dead_letter_topic: str = "application.operation.dead-letter"
    #: Topic carrying job changes (progress, completion, deletion) to every client worker's views.
    job_events_topic: str = "application.job.events"
    #: Consumer group (Faust app id) of the server role, as in the original.
    server_group: str = "operation-request-group"
    #: Consumer group (Faust app id) of the client role, as in the original.
    client_group: str = "operation-response-group"
    #: Partitions of the request and response topics of both lanes (and of the progress table's
    #: changelog, which must match the response topics).
    partitions: int = 60
    #: Partitions of the job events topic. Every client worker reads every partition of it, and
    #: each of its fetches names every partition a broker leads, so few partitions keep those
    #: fetches small; one per broker spreads its leadership. Keyed by job id, order holds per job.
    job_events_partitions: int = 3
    #: Replication factor of every topic jobstream creates.
    replication_factor: int = 3
    #: min.insync.replicas of every topic jobstream creates (acks=all then waits for this many).
    min_insync_replicas: int = 2
    #: Actors of the compute agent per server worker (10-20).
    compute_concurrency: int = 10
    #: How long, in milliseconds, the producer lets a batch fill before sending it. aiokafka sends
    #: one request per broker at a time, so batches also fill while one is in flight.
    producer_linger_ms: int = 5
    #: Least data, in bytes, a worker's fetch waits for before the broker answers (Faust fixes 1).
    fetch_min_bytes: int = 1
    #: Longest, in milliseconds, a fetch waits for `fetch_min_bytes` (Faust fixes 1500).
    fetch_max_wait_ms: int = 1500
    #: Largest response batch the persisting agent writes to MongoDB at once (a batch takes the
    #: responses that arrived while the previous one was written, without waiting for more).
    persist_batch_size: int = 1000
    #: Largest accepted request body, in bytes.
    max_body_bytes: int = 4 * 1024 * 1024
    #: Longest accepted line (one expression), in characters. At most MAX_LINE_LENGTH: 200
    #: operations share a document, which MongoDB caps at 16 MiB.
    max_line_length: int = 1000
    #: Most operations in one job.
    max_operations: int = 100_000
    #: How often the reconciliation loop runs, in seconds.
    reconcile_interval: float = 10.0
    #: A pending operation not answered for this long is published again, in seconds.
    reconcile_after: float = 120.0
    #: Delivery attempts before an operation is failed with a "gave up" error.
    max_attempts: int = 10
    #: Event streams and waiting requests (`/events`, `?wait=`) one client worker holds at once.
    max_watchers: int = 200
    #: Longest an event stream stays open, in seconds (clients reconnect and resume from there).
    event_stream_seconds: float = 900.0
    #: Host the worker's web server binds to.
    web_host: str = "127.0.0.1"
    #: Port of the worker's web server (the API on client workers, /metrics on all).
    web_port: int = 8080
    #: Directory for the worker's local state (Faust data dir).
    data_dir: str = ".infra/workers/default"
    #: Log level of the worker.
    log_level: str = "INFO"
    #: Longest `POST /api/jobs` waits for Kafka, in seconds from the request's arrival; a stored
    #: job whose publishing is not acknowledged by then is answered 201 and left to reconciliation.
    publish_deadline: float = 5.0
    #: Bearer tokens of which every API request needs one; empty: the API is open.
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    #: Extra fields for debugging and tests.
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def bootstrap_servers(self) -> list[str]:
        """Kafka brokers as the list aiokafka expects."""
        return [b.strip() for b in self.kafka_brokers.split(",") if b.strip()]

    @property
    def faust_broker_url(self) -> str:
        """Kafka brokers in Faust's URL form."""
        return "kafka://" + ";".join(self.bootstrap_servers)

    @property
    def app_id(self) -> str:
        """The Faust app id, which is also the Kafka consumer group of the role."""
        return self.client_group if self.role == "client" else self.server_group

    @property
    def service_name(self) -> str:
        """The OpenTelemetry service name of the role."""
        return f"{self.role}-application"

    def topic_variables(self) -> dict[str, str]:
        """The topic names jobstream reads or writes by hand, by the variable that sets each."""
        return {
            "JOBSTREAM_REQUEST_TOPIC": self.request_topic,
            "JOBSTREAM_RESPONSE_TOPIC": self.response_topic,
            "JOBSTREAM_BULK_REQUEST_TOPIC": self.bulk_request_topic,
            "JOBSTREAM_BULK_RESPONSE_TOPIC": self.bulk_response_topic,
            "JOBSTREAM_DEAD_LETTER_TOPIC": self.dead_letter_topic,
            "JOBSTREAM_JOB_EVENTS_TOPIC": self.job_events_topic,
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `JOBSTREAM_*` variables; unknown or bad values fail loudly."""
        env = os.environ if env is None else env
        role = env.get("JOBSTREAM_ROLE", "client")
        if role not in ("client", "server"):
            raise ValueError(f"JOBSTREAM_ROLE must be 'client' or 'server', got {role!r}")
        defaults = cls()
        settings = cls(
            role=role,  # type: ignore[arg-type]
            kafka_brokers=env.get("JOBSTREAM_KAFKA_BROKERS", defaults.kafka_brokers),
            mongo_url=env.get("JOBSTREAM_MONGO_URL", defaults.mongo_url),
            mongo_database=env.get("JOBSTREAM_MONGO_DATABASE", defaults.mongo_database),
            mongo_dialect=_choice(env, "JOBSTREAM_MONGO_DIALECT", defaults.mongo_dialect, DIALECTS),
            retention=_int(env, "JOBSTREAM_RETENTION", defaults.retention, 0, 100 * 365 * 86400),
            request_topic=env.get("JOBSTREAM_REQUEST_TOPIC", defaults.request_topic),
            response_topic=env.get("JOBSTREAM_RESPONSE_TOPIC", defaults.response_topic),
            bulk_request_topic=env.get("JOBSTREAM_BULK_REQUEST_TOPIC", defaults.bulk_request_topic),
            bulk_response_topic=env.get(
                "JOBSTREAM_BULK_RESPONSE_TOPIC", defaults.bulk_response_topic
            ),
            bulk_operations=_int(
                env, "JOBSTREAM_BULK_OPERATIONS", defaults.bulk_operations, 1, 10_000_000
            ),
            dead_letter_topic=env.get("JOBSTREAM_DEAD_LETTER_TOPIC", defaults.dead_letter_topic),
            job_events_topic=env.get("JOBSTREAM_JOB_EVENTS_TOPIC", defaults.job_events_topic),
            server_group=env.get("JOBSTREAM_SERVER_GROUP", defaults.server_group),
            client_group=env.get("JOBSTREAM_CLIENT_GROUP", defaults.client_group),
            partitions=_int(env, "JOBSTREAM_PARTITIONS", defaults.partitions, 1, 10_000),
            job_events_partitions=_int(
                env, "JOBSTREAM_JOB_EVENTS_PARTITIONS", defaults.job_events_partitions, 1, 10_000
            ),
            replication_factor=_int(
                env, "JOBSTREAM_REPLICATION_FACTOR", defaults.replication_factor, 1, 10
            ),
            min_insync_replicas=_int(
                env, "JOBSTREAM_MIN_INSYNC_REPLICAS", defaults.min_insync_replicas, 1, 10
            ),
            compute_concurrency=_int(
                env, "JOBSTREAM_COMPUTE_CONCURRENCY", defaults.compute_concurrency, 10, 20
            ),
            producer_linger_ms=_int(
                env, "JOBSTREAM_PRODUCER_LINGER_MS", defaults.producer_linger_ms, 0, 1000
            ),
            fetch_min_bytes=_int(
                env, "JOBSTREAM_FETCH_MIN_BYTES", defaults.fetch_min_bytes, 1, 1 << 20
            ),
            fetch_max_wait_ms=_int(
                env, "JOBSTREAM_FETCH_MAX_WAIT_MS", defaults.fetch_max_wait_ms, 1, 10_000
            ),
            persist_batch_size=_int(
                env, "JOBSTREAM_PERSIST_BATCH_SIZE", defaults.persist_batch_size, 1, 100_000
            ),
            max_body_bytes=_int(
                env, "JOBSTREAM_MAX_BODY_BYTES", defaults.max_body_bytes, 1, 1 << 30
            ),
            max_line_length=_int(
                env, "JOBSTREAM_MAX_LINE_LENGTH", defaults.max_line_length, 1, MAX_LINE_LENGTH
            ),
            max_operations=_int(
                env, "JOBSTREAM_MAX_OPERATIONS", defaults.max_operations, 1, 10_000_000
            ),
            reconcile_interval=_float(
                env, "JOBSTREAM_RECONCILE_INTERVAL", defaults.reconcile_interval
            ),
            reconcile_after=_float(env, "JOBSTREAM_RECONCILE_AFTER", defaults.reconcile_after),
            max_attempts=_int(env, "JOBSTREAM_MAX_ATTEMPTS", defaults.max_attempts, 1, 1000),
            max_watchers=_int(env, "JOBSTREAM_MAX_WATCHERS", defaults.max_watchers, 1, 100_000),
            event_stream_seconds=_float(
                env, "JOBSTREAM_EVENT_STREAM_SECONDS", defaults.event_stream_seconds
            ),
            web_host=env.get("JOBSTREAM_WEB_HOST", defaults.web_host),
            web_port=_int(env, "JOBSTREAM_WEB_PORT", defaults.web_port, 1, 65535),
            data_dir=env.get("JOBSTREAM_DATA_DIR", defaults.data_dir),
            log_level=env.get("JOBSTREAM_LOG_LEVEL", defaults.log_level).upper(),
            publish_deadline=_float(env, "JOBSTREAM_PUBLISH_DEADLINE", defaults.publish_deadline),
            api_tokens=_tokens(env, "JOBSTREAM_API_TOKENS"),
        )
        if settings.min_insync_replicas > settings.replication_factor:
            raise ValueError(
                "JOBSTREAM_MIN_INSYNC_REPLICAS must not exceed JOBSTREAM_REPLICATION_FACTOR "
                f"({settings.min_insync_replicas} > {settings.replication_factor}): "
                "every acks=all write would fail"
            )
        topics = settings.topic_variables()
        for variable, name in topics.items():
            same = [other for other, value in topics.items() if value == name and other != variable]
            if same:  # two agents would read one topic: every message handled twice
                raise ValueError(f"{variable} names the same topic as {same[0]} ({name!r})")
        if not settings.bootstrap_servers:
            raise ValueError("JOBSTREAM_KAFKA_BROKERS must list at least one host:port")
        return settings
