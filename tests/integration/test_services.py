"""Smoke tests proving each local service is real and configured as jobstream needs it.

Needs the local stack (`make infra-up`); a missing service fails the test, naming the service.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from helpers import delete_topics, eventually, get_json, topic_ready, unique_name
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from jobstream.bootstrap import create_topics, topic_specs
from jobstream.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

EXPECTED_BROKERS = 3
JOBSTREAM_PARTITIONS = 60
JOBSTREAM_REPLICAS = 3
JOBSTREAM_MIN_ISR = "2"


#: describe_configs' error for a topic the broker asked has not heard of yet.
UNKNOWN_TOPIC = 3


async def topic_config(admin: AIOKafkaAdminClient, topic: str, key: str) -> str | None:
    """The value of one topic configuration entry, as the broker reports it (None while the
    broker asked, which need not be the one that answered the metadata, does not know the topic
    yet: a clean-clone run met that right after the topic was created)."""
    (response,) = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {key: None})]
    )
    (resource,) = response.resources
    error_code, error_message, _type, _name, entries = resource[:5]
    if error_code == UNKNOWN_TOPIC:
        return None
    assert error_code == 0, f"describe_configs({topic}) failed: {error_code} {error_message}"
    values = {entry[0]: entry[1] for entry in entries}
    return values.get(key)


async def config_becomes(admin: AIOKafkaAdminClient, topic: str, key: str, expected: str) -> None:
    """Poll until the broker asked reports the topic's configuration entry as `expected`."""

    async def reported() -> bool:
        return await topic_config(admin, topic, key) == expected

    await eventually(reported, timeout=20, description=f"{topic} {key}={expected}")


def unique_settings(brokers: list[str]) -> Settings:
    """jobstream settings whose topics no one else uses (3 partitions keep the test fast)."""
    tag = unique_name("bootstrap").replace("_", "-")
    return dataclasses.replace(
        Settings(),
        kafka_brokers=",".join(brokers),
        request_topic=f"{tag}.request",
        response_topic=f"{tag}.response",
        bulk_request_topic=f"{tag}.request.bulk",
        bulk_response_topic=f"{tag}.response.bulk",
        dead_letter_topic=f"{tag}.dead-letter",
        job_events_topic=f"{tag}.job-events",
        client_group=f"{tag}-group",
        partitions=3,
        job_events_partitions=2,
    )


# --- Kafka ----------------------------------------------------------------------------------------


async def test_kafka_cluster_metadata_lists_three_brokers(
    kafka_admin: AIOKafkaAdminClient, kafka_brokers: list[str]
) -> None:
    # Given the local KRaft cluster
    # When its metadata is described
    cluster = await kafka_admin.describe_cluster()
    # Then it lists three brokers, each at one of the configured addresses
    advertised = sorted(f"{b['host']}:{b['port']}" for b in cluster["brokers"])
    assert len(advertised) == EXPECTED_BROKERS, cluster
    assert advertised == sorted(kafka_brokers)
    assert cluster["controller_id"] in {b["node_id"] for b in cluster["brokers"]}


@pytest.mark.parametrize(
    "topic",
    [
        Settings().request_topic,
        Settings().response_topic,
        Settings().bulk_request_topic,
        Settings().bulk_response_topic,
    ],
    ids=["request", "response", "bulk-request", "bulk-response"],
)
async def test_jobstream_topic_has_60_partitions_3_replicas_and_min_isr_2(
    kafka_admin: AIOKafkaAdminClient, topic: str
) -> None:
    # Given the topics created by `python -m jobstream.bootstrap`
    # When the topic is described
    (described,) = await kafka_admin.describe_topics([topic])
    # Then it exists with 60 partitions, each replicated on all three brokers and fully in sync
    assert described["error_code"] == 0, f"{topic} is missing; run `python -m jobstream.bootstrap`"
    partitions = described["partitions"]
    assert sorted(p["partition"] for p in partitions) == list(range(JOBSTREAM_PARTITIONS))
    for p in partitions:
        assert len(p["replicas"]) == JOBSTREAM_REPLICAS, p
        assert sorted(p["isr"]) == sorted(p["replicas"]), p
        assert p["leader"] in p["replicas"], p
    # And acks=all writes need two in-sync replicas
    assert await topic_config(kafka_admin, topic, "min.insync.replicas") == JOBSTREAM_MIN_ISR


async def test_kafka_messages_produced_with_acks_all_are_consumed_back_by_a_new_group(
    kafka_brokers: list[str], make_topic: Callable[..., Awaitable[str]]
) -> None:
    # Given a fresh topic with 3 partitions replicated on 3 brokers
    topic = await make_topic(
        partitions=3, replication_factor=3, config={"min.insync.replicas": "2"}
    )
    sent: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_brokers, acks="all", enable_idempotence=True
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_brokers,
        group_id=unique_name("jobstream-test-group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        # When 30 keyed messages are produced with acks=all
        await producer.start()
        for i in range(30):
            key, value = f"key-{i}".encode(), f"value-{i}".encode()
            meta = await producer.send_and_wait(topic, value=value, key=key)
            sent[(meta.partition, meta.offset)] = (key, value)
        assert len({partition for partition, _ in sent}) > 1, "keys should spread over partitions"

        # Then a consumer in a group of its own reads exactly those messages back
        await consumer.start()
        received: dict[tuple[int, int], tuple[bytes, bytes]] = {}

        async def all_received() -> bool:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    received[(r.partition, r.offset)] = (r.key, r.value)
            return len(received) >= len(sent)

        await eventually(all_received, timeout=40, interval=0.05, description="consume back")
        assert received == sent
    finally:
        await consumer.stop()
        await producer.stop()


# --- jobstream.bootstrap --------------------------------------------------------------------------


async def test_bootstrap_create_topics_creates_missing_topics_once_and_nothing_the_second_time(
    kafka_admin: AIOKafkaAdminClient, kafka_brokers: list[str]
) -> None:
    # Given settings naming topics that do not exist yet
    settings = unique_settings(kafka_brokers)
    specs = topic_specs(settings)
    expected = sorted(spec.name for spec in specs)
    try:
        # When create_topics runs twice
        first = await create_topics(settings, timeout=30)
        second = await create_topics(settings, timeout=30)
        # Then the first run creates every topic and the second creates nothing
        assert sorted(first) == expected
        assert second == []
        # And the topics have the partitions, replicas and min ISR asked for: the job events
        # topic its own count, every other one the operation topics' count
        assert {s.name: s.partitions for s in specs if s.partitions != settings.partitions} == {
            settings.job_events_topic: settings.job_events_partitions
        }
        for spec in specs:  # metadata reaches every broker shortly after creation
            await eventually(
                lambda spec=spec: topic_ready(kafka_admin, spec.name, spec.partitions),
                timeout=20,
                description=f"topic {spec.name} with {spec.partitions} partitions",
            )
        for described in await kafka_admin.describe_topics(expected):
            assert all(len(p["replicas"]) == 3 for p in described["partitions"]), described
        for name in expected:
            await config_becomes(kafka_admin, name, "min.insync.replicas", "2")
    finally:
        await delete_topics(kafka_admin, expected)


async def test_bootstrap_module_run_twice_creates_topics_once_and_reports_zero_the_second_time(
    kafka_admin: AIOKafkaAdminClient,
    kafka_brokers: list[str],
    mongo_client: AsyncMongoClient,
    mongo_url: str,
) -> None:
    # Given an environment naming topics and a database that do not exist yet. The database must
    # be private: the module also creates indexes, and on FerretDB's SQLite backend an index build
    # racing with other connections' writes to the same database (running workers) deadlocks.
    settings = unique_settings(kafka_brokers)
    names = sorted(spec.name for spec in topic_specs(settings))
    database = unique_name("test")
    env = {
        **os.environ,
        "JOBSTREAM_KAFKA_BROKERS": settings.kafka_brokers,
        **settings.topic_variables(),
        "JOBSTREAM_CLIENT_GROUP": settings.client_group,
        "JOBSTREAM_PARTITIONS": str(settings.partitions),
        "JOBSTREAM_JOB_EVENTS_PARTITIONS": str(settings.job_events_partitions),
        "JOBSTREAM_MONGO_URL": mongo_url,
        "JOBSTREAM_MONGO_DATABASE": database,
    }

    async def run_bootstrap() -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jobstream.bootstrap",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout=25)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError("`python -m jobstream.bootstrap` did not finish in 25 s") from None
        text = output.decode(errors="replace")
        assert process.returncode == 0, text
        return text

    try:
        # When `python -m jobstream.bootstrap` runs twice
        first = await run_bootstrap()
        second = await run_bootstrap()
        # Then the first run creates the four topics and the second creates none
        assert f"topics ready ({len(names)} created)" in first, first
        assert "topics ready (0 created)" in second, second
        assert "created topic" not in second, second
        assert set(names) <= set(await kafka_admin.list_topics())
    finally:
        await delete_topics(kafka_admin, names)
        await mongo_client.drop_database(database)


# --- FerretDB -------------------------------------------------------------------------------------


async def test_ferretdb_document_written_is_read_back(mongo_db: AsyncDatabase) -> None:
    # Given a fresh database
    jobs = mongo_db["jobs"]
    # When a document is inserted
    result = await jobs.insert_one({"_id": "job-1", "status": "pending", "operations": 3})
    # Then it is read back unchanged
    assert result.inserted_id == "job-1"
    assert await jobs.find_one({"_id": "job-1"}) == {
        "_id": "job-1",
        "status": "pending",
        "operations": 3,
    }
    assert await jobs.count_documents({}) == 1


async def test_ferretdb_upsert_inserts_then_updates_the_same_document(
    mongo_db: AsyncDatabase,
) -> None:
    # Given an empty collection
    ops = mongo_db["operations"]
    # When the same upsert runs twice with different values
    first = await ops.update_one(
        {"_id": "op-1"}, {"$set": {"status": "pending"}, "$inc": {"attempts": 1}}, upsert=True
    )
    second = await ops.update_one(
        {"_id": "op-1"}, {"$set": {"status": "done"}, "$inc": {"attempts": 1}}, upsert=True
    )
    # Then the first inserts, the second modifies that same document
    assert first.upserted_id == "op-1"
    assert first.matched_count == 0
    assert second.upserted_id is None
    assert (second.matched_count, second.modified_count) == (1, 1)
    assert await ops.find_one({"_id": "op-1"}) == {"_id": "op-1", "status": "done", "attempts": 2}


async def test_ferretdb_unique_index_rejects_a_duplicate_key(mongo_db: AsyncDatabase) -> None:
    # Given a collection with a unique index on `operation_id`
    ops = mongo_db["operations"]
    await ops.create_index("operation_id", unique=True)
    await ops.insert_one({"operation_id": "job-1:0", "value": 1})
    # When a second document with the same key is inserted
    with pytest.raises(DuplicateKeyError):
        await ops.insert_one({"operation_id": "job-1:0", "value": 2})
    # Then only the first document is stored
    stored = await ops.find({}, {"_id": 0}).to_list()
    assert stored == [{"operation_id": "job-1:0", "value": 1}]


# --- Jaeger ---------------------------------------------------------------------------------------


async def test_jaeger_stores_a_span_sent_over_otlp_grpc(jaeger: str, otlp_endpoint: str) -> None:
    # Given a tracer provider of its own exporting over OTLP gRPC under a unique service name
    service = unique_name("jobstream-smoke")
    operation = "smoke-operation"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True, timeout=10),
            schedule_delay_millis=100,
        )
    )
    # When one span is recorded and flushed
    try:
        with provider.get_tracer("tests.integration").start_as_current_span(operation) as span:
            span.set_attribute("jobstream.smoke", "yes")
            trace_id = format(span.get_span_context().trace_id, "032x")
        flushed = await asyncio.to_thread(provider.force_flush, 15_000)
        assert flushed, "the span processor did not flush within 15 s"
    finally:
        await asyncio.to_thread(provider.shutdown)

    # Then Jaeger's query API lists the trace under that service with the operation name
    async def span_listed() -> dict:
        found = await get_json(
            f"{jaeger}/api/traces",
            params={"service": service, "lookback": "1h", "limit": "20"},
        )
        for trace in found.get("data") or []:
            for s in trace["spans"]:
                if s["operationName"] == operation:
                    return trace
        return {}

    trace = await eventually(span_listed, timeout=30, interval=0.5, description="span in Jaeger")
    assert trace["traceID"] == trace_id
    # And the trace fetched by id carries the service name and the attribute
    by_id = await get_json(f"{jaeger}/api/traces/{trace_id}")
    (stored,) = by_id["data"]
    (stored_span,) = stored["spans"]
    assert stored["processes"][stored_span["processID"]]["serviceName"] == service
    tags = {tag["key"]: tag["value"] for tag in stored_span["tags"]}
    assert tags.get("jobstream.smoke") == "yes"


# --- Prometheus -----------------------------------------------------------------------------------


async def test_prometheus_up_query_reports_its_own_scrape_target_as_up(prometheus: str) -> None:
    # Given Prometheus scraping itself every 2 s
    # When `up` is queried (until the self-scrape has happened)
    async def self_target_up() -> bool:
        answer = await get_json(f"{prometheus}/api/v1/query", params={"query": "up"})
        assert answer["status"] == "success", answer
        return any(
            series["metric"].get("job") == "prometheus" and series["value"][1] == "1"
            for series in answer["data"]["result"]
        )

    # Then the prometheus job's target reports value 1
    assert await eventually(self_target_up, timeout=30, interval=0.5, description="up{job=prom}")
