"""Metrics, logging and tracing, set up once at start; elsewhere code uses what this returns."""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from faust.sensors import Sensor
from faust.types import TP, Message
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from jobstream.settings import Settings

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
EVALUATION_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1)
JOB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


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
    results_ignored: Counter
    results_duplicated: Counter
    republished: Counter

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
    """One JSON object per line: time, level, service, worker, logger, message."""

    def __init__(self, service: str, worker: str) -> None:
        super().__init__()
        self._service = service
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "worker": self._worker,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for attribute in ("trace_id", "span_id"):
            value = getattr(record, attribute, None)
            if value:
                entry[attribute] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def worker_name(settings: Settings) -> str:
    """A name that tells workers apart in logs: host and web port."""
    return f"{socket.gethostname()}:{settings.web_port}"


def setup_logging(settings: Settings) -> None:
    """JSON lines on stderr at the configured level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(settings.service_name, worker_name(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


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
