"""Metrics, logging and tracing, set up once at start; elsewhere code uses what this returns."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from faust.sensors import Sensor
from faust.types import TP, Message
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from jobstream.settings import Settings

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
EVALUATION_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1)
JOB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@dataclass(frozen=True)
class Metrics:
    """Every metric a worker exposes on /metrics (its own registry, so tests can make several)."""

    registry: CollectorRegistry
    messages_received: Counter
    messages_produced: Counter
    produce_errors: Counter
    dead_letters: Counter
    operations: Counter
    evaluation_seconds: Histogram
    http_requests: Counter
    http_seconds: Histogram
    jobs_created: Counter
    jobs_completed: Counter
    results_stored: Counter
    results_ignored: Counter
    results_duplicated: Counter
    republished: Counter
    jobs_expired: Counter
    job_duration: Histogram
    jobs_by_status: Gauge
    batches_parked: Counter
    persist_batch_messages: Histogram
    persist_batch_results: Histogram
    consumer_stalls: Counter
    consumer_rewinds: Counter

    @classmethod
    def create(cls) -> Metrics:
        """A fresh set of metrics in a new registry."""
        r = CollectorRegistry(auto_describe=True)
        return cls(
            registry=r,
            messages_received=Counter(
                "consumer_messages_received", "Kafka messages consumed", ["topic"], registry=r
            ),
            messages_produced=Counter(
                "producer_messages_sent", "Kafka messages acknowledged", ["topic"], registry=r
            ),
            produce_errors=Counter(
                "producer_errors", "Failed Kafka publish attempts", ["topic"], registry=r
            ),
            dead_letters=Counter(
                "dead_letters", "Events sent to the dead-letter topic", ["topic"], registry=r
            ),
            operations=Counter(
                "operations_evaluated", "Operations evaluated by outcome", ["outcome"], registry=r
            ),
            evaluation_seconds=Histogram(
                "operation_evaluation_seconds",
                "Time to evaluate one operation",
                buckets=EVALUATION_BUCKETS,
                registry=r,
            ),
            http_requests=Counter(
                "http_requests",
                "HTTP requests by route and status",
                ["route", "method", "status"],
                registry=r,
            ),
            http_seconds=Histogram(
                "http_request_duration_seconds",
                "HTTP request latency by route",
                ["route", "method"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            jobs_created=Counter("jobs_created", "Jobs accepted", registry=r),
            jobs_completed=Counter("jobs_completed", "Jobs whose operations all ended", registry=r),
            results_stored=Counter(
                "results_stored", "Results persisted (each operation's first)", registry=r
            ),
            results_ignored=Counter(
                "results_ignored", "Results of deleted or finished jobs, dropped", registry=r
            ),
            results_duplicated=Counter(
                "results_duplicated", "Duplicate results recognised and not counted", registry=r
            ),
            republished=Counter(
                "reconciliation_republished",
                "Operations re-published by reconciliation",
                registry=r,
            ),
            jobs_expired=Counter(
                "jobs_expired",
                "Completed jobs deleted by the retention sweep (JOBSTREAM_RETENTION)",
                registry=r,
            ),
            job_duration=Histogram(
                "job_duration_seconds",
                "Time from a job's creation to its last result",
                buckets=JOB_BUCKETS,
                registry=r,
            ),
            jobs_by_status=Gauge(
                "jobs",
                "Jobs by status (reported by the reconciliation leader)",
                ["status"],
                registry=r,
            ),
            batches_parked=Counter(
                "batches_parked",
                "Event groups parked on the dead-letter topic after the database refused them",
                ["topic"],
                registry=r,
            ),
            persist_batch_messages=Histogram(
                "persist_batch_messages",
                "Response messages in each batch the persisting agent stored",
                buckets=BATCH_BUCKETS,
                registry=r,
            ),
            persist_batch_results=Histogram(
                "persist_batch_results",
                "Results in each batch the persisting agent stored",
                buckets=tuple(b * 100 for b in BATCH_BUCKETS),
                registry=r,
            ),
            consumer_stalls=Counter(
                "consumer_stalls",
                "Stalled consumers detected (partitions with lag not fetched); the worker restarts",
                registry=r,
            ),
            consumer_rewinds=Counter(
                "consumer_rewinds",
                "Partitions read again from their commit, which messages nobody handled held back",
                registry=r,
            ),
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST


class KafkaSensor(Sensor):
    """Counts consumed messages per topic (`consumer_messages_received_total{topic=...}`)."""

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        """Called when a message is consumed from Kafka."""
        self._metrics.messages_received.labels(topic=tp.topic).inc()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, worker, logger, message, trace ids."""

    converter = time.gmtime  # times in UTC, as the trailing Z says

    def __init__(self, service: str = "jobstream", worker: str = "") -> None:
        super().__init__()
        self._service = service
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line; inside a traced span it carries trace_id and span_id."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "worker": self._worker,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = f"{span.trace_id:032x}"
            entry["span_id"] = f"{span.span_id:016x}"
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def worker_name(settings: Settings) -> str:
    """A name that tells workers apart in logs: host and web port."""
    return f"{socket.gethostname()}:{settings.web_port}"


def logging_config(settings: Settings) -> dict[str, Any]:
    """The dictConfig Faust's worker applies at start: JSON lines on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": JsonFormatter,
                "service": settings.service_name,
                "worker": worker_name(settings),
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
    }


# -- tracing ----------------------------------------------------------------------------------

tracer = trace.get_tracer("jobstream")


def setup_tracing(settings: Settings) -> None:
    """A tracer provider exporting over OTLP; sampling follows OTEL_TRACES_SAMPLER(_ARG).

    Without OTEL_TRACES_SAMPLER sampling is off, as in the original: new traces are not sampled,
    but a caller's sampled W3C `traceparent` is still followed (parent-based).
    """
    sampler = None  # None: the SDK reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
    if not os.environ.get("OTEL_TRACES_SAMPLER"):
        sampler = ParentBased(TraceIdRatioBased(0.0))
    attributes = {"service.instance.id": worker_name(settings)}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = settings.service_name
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=1000))
    trace.set_tracer_provider(provider)


def trace_headers() -> dict[str, bytes] | None:
    """W3C trace context of the current span as Kafka headers, or None when it is not sampled."""
    if not trace.get_current_span().get_span_context().trace_flags.sampled:
        return None  # nothing to continue downstream: save the bytes
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {key: value.encode() for key, value in carrier.items()}


def context_from(headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> Context | None:
    """The trace context carried by Kafka or HTTP headers, or None when there is none."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    carrier = {
        str(key).lower(): value.decode("latin-1") if isinstance(value, bytes) else str(value)
        for key, value in pairs
    }
    if "traceparent" not in carrier:
        return None
    return propagate.extract(carrier)


def is_sampled(context: Context | None) -> bool:
    """Whether a carried context belongs to a sampled trace."""
    if context is None:
        return False
    return trace.get_current_span(context).get_span_context().trace_flags.sampled


def setup_metrics(app: faust.App) -> Metrics:
    """Create the metrics, count consumed messages, and serve them on /metrics."""
    metrics = Metrics.create()
    app.sensors.add(KafkaSensor(metrics))

    @app.page("/metrics")
    async def metrics_page(web: faust.web.View, request: faust.web.Request) -> aioweb.Response:
        return aioweb.Response(
            body=metrics.render(), headers={"Content-Type": metrics.content_type}
        )

    return metrics
