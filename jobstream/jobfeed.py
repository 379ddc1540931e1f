"""The job events topic on a client worker: a publisher for the persisting agent, and a follower.

Every client worker reads the whole topic (every partition, from its end, with no consumer group:
every worker needs every event, not a share of them) and hands each change to its `JobEventHub`,
so any worker can tell any job's progress, whichever worker persisted it. Both Kafka clients have
their own connections and acks=1: a lost event only delays a live view, and nothing here may slow
the durable producer the agents and the API share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import faust
import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, Gauge

from jobstream.jobevents import JobChange, JobEventHub, JobEventPublisher
from jobstream.models import InvalidEvent
from jobstream.settings import Settings
from jobstream.telemetry import Metrics, worker_name

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
#: Longest pause between attempts to follow the events topic (doubling from RETRY_SECONDS).
MAX_RETRY_SECONDS = 30.0
FETCH_RECORDS = 1000


@dataclass(frozen=True)
class EventMetrics:
    """The job events' metrics, on the worker's registry beside the others."""

    published: Counter
    errors: Counter
    dropped: Counter
    received: Counter
    watchers: Gauge
    reads: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> EventMetrics:
        """Register the metrics on `registry`."""
        return cls(
            published=Counter(
                "job_events_published", "Job events the broker acknowledged", registry=registry
            ),
            errors=Counter(
                "job_events_publish_errors",
                "Job events not published (broker unreachable or refusing)",
                registry=registry,
            ),
            dropped=Counter(
                "job_events_dropped",
                "Job changes dropped by a full buffer (publisher) or a slow watcher",
                ["stage"],
                registry=registry,
            ),
            received=Counter(
                "job_events_received", "Job events read from the events topic", registry=registry
            ),
            watchers=Gauge(
                "job_watchers",
                "Open event streams and waiting requests on this worker",
                ["kind"],
                registry=registry,
            ),
            reads=Counter(
                "job_watcher_reads",
                "Jobs read from the database by event streams and waiting requests",
                ["kind"],
                registry=registry,
            ),
        )


class _PublisherCounters:
    def __init__(self, metrics: EventMetrics) -> None:
        self._metrics = metrics

    def failed(self, count: int) -> None:
        self._metrics.errors.inc(count)

    def dropped(self, count: int) -> None:
        self._metrics.dropped.labels("publisher").inc(count)


class KafkaSender:
    """Hands events to an acks=1 producer of its own and counts the broker's answers."""

    def __init__(self, settings: Settings, metrics: EventMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect, retrying until the brokers answer (sends fail fast until then)."""
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._settings.bootstrap_servers,
                client_id=f"{worker_name(self._settings)}-job-events",
                acks=1,
                linger_ms=20,
                request_timeout_ms=10_000,
            )
            try:
                await producer.start()
            except Exception as exc:
                log.warning("job events producer cannot connect yet (%r); retrying", exc)
                await producer.stop()
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self._producer = producer
            return

    async def stop(self) -> None:
        """Flush and close the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def __call__(self, key: bytes, value: bytes) -> None:
        """Hand one event over; the broker's answer is counted when it comes."""
        if self._producer is None:
            raise ConnectionError("job events producer not connected")
        delivery = await self._producer.send(self._settings.job_events_topic, value, key=key)
        delivery.add_done_callback(self._acknowledged)

    def _acknowledged(self, delivery: asyncio.Future) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            self._metrics.errors.inc()
        else:
            self._metrics.published.inc()


class JobFeed:
    """A worker's job events: the hub its views watch, the publisher, and the topic follower."""

    def __init__(self, settings: Settings, metrics: EventMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.hub = JobEventHub()
        self._sender = KafkaSender(settings, metrics)
        #: What the persisting agent calls: `await feed.publisher.publish(changes)`.
        self.publisher = JobEventPublisher(self._sender, counters=_PublisherCounters(metrics))
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start publishing and following in the background (neither blocks the worker's start)."""
        loop = asyncio.get_running_loop()
        self.publisher.start()
        self._tasks = [
            loop.create_task(self._sender.start(), name="job-events-producer"),
            loop.create_task(self._follow(), name="job-events-follower"),
        ]

    async def stop(self) -> None:
        """Close every watcher's subscription, send what is pending, and disconnect."""
        self.hub.close()
        await self.publisher.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._sender.stop()

    async def _follow(self) -> None:
        """Read every partition of the events topic from its end, forever, reconnecting.

        Subscribed without a consumer group, the consumer is given every partition (and any the
        topic gains, noticed with the metadata) and starts at the end, with no offsets stored.
        """
        topic = self.settings.job_events_topic
        backoff = RETRY_SECONDS
        while True:
            consumer = AIOKafkaConsumer(
                topic,
                bootstrap_servers=self.settings.bootstrap_servers,
                client_id=f"{worker_name(self.settings)}-job-events",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="latest",
                metadata_max_age_ms=30_000,  # a topic created later is followed within 30 s
            )
            try:
                await consumer.start()
                log.info("following %s", topic)
                while True:
                    fetched = await consumer.getmany(timeout_ms=1000, max_records=FETCH_RECORDS)
                    for records in fetched.values():
                        self.metrics.received.inc(len(records))
                        for record in records:
                            self._dispatch(record.value)
                    backoff = RETRY_SECONDS
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("following %s failed (%r); retrying in %.0f s", topic, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_RETRY_SECONDS)
            finally:
                await consumer.stop()

    def _dispatch(self, raw: bytes | None) -> None:
        try:
            change = JobChange.decode(raw)
        except InvalidEvent as exc:
            log.warning("ignoring a malformed job event: %s", exc)
            return
        self.hub.dispatch(change)


def register_job_feed(app: faust.App, settings: Settings, metrics: Metrics) -> JobFeed:
    """Create the worker's job feed and start/stop it with the app."""
    feed = JobFeed(settings, EventMetrics.create(metrics.registry))

    class JobFeedService(mode.Service):
        """Runs the job feed for as long as the app runs."""

        async def on_start(self) -> None:
            await feed.start()

        async def on_stop(self) -> None:
            await feed.stop()

    app.service(JobFeedService)
    return feed
