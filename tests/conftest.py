"""Shared fixtures.

Everything here is lazy: importing this file or running tests/unit needs no service. A test that
needs a service asks for it (`await require_service("kafka")`, or a fixture built on it such as
`kafka_admin` or `mongo_db`); when the service does not answer, the test FAILS, never skips, with a
message naming the service, where it was looked for and how to start it. The probe runs once per
session per service and its outcome (success or failure) is remembered.

Endpoints come from the environment, with the local stack's defaults:

    JOBSTREAM_KAFKA_BROKERS       127.0.0.1:11092,127.0.0.1:12092,127.0.0.1:13092
    JOBSTREAM_MONGO_URL           mongodb://127.0.0.1:27017/
    JOBSTREAM_JAEGER_URL          http://127.0.0.1:16686   (query API)
    JOBSTREAM_PROMETHEUS_URL      http://127.0.0.1:9090
    OTEL_EXPORTER_OTLP_ENDPOINT   http://127.0.0.1:4317    (OTLP gRPC)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from helpers import delete_topics, eventually, topic_ready, unique_name
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from jobstream.settings import DEFAULT_BROKERS

START_HINT = "run `make infra-up` (or `scripts/infra/infra.sh up && python -m jobstream.bootstrap`)"

#: Seconds a probe keeps retrying before declaring a service missing.
PROBE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Endpoints:
    """Where the local services are, as the tests see them."""

    kafka_brokers: tuple[str, ...]
    mongo_url: str
    jaeger_url: str
    prometheus_url: str
    otlp_endpoint: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Endpoints:
        env = os.environ if env is None else env
        brokers = env.get("JOBSTREAM_KAFKA_BROKERS") or DEFAULT_BROKERS
        return cls(
            kafka_brokers=tuple(b.strip() for b in brokers.split(",") if b.strip()),
            mongo_url=env.get("JOBSTREAM_MONGO_URL") or "mongodb://127.0.0.1:27017/",
            jaeger_url=(env.get("JOBSTREAM_JAEGER_URL") or "http://127.0.0.1:16686").rstrip("/"),
            prometheus_url=(env.get("JOBSTREAM_PROMETHEUS_URL") or "http://127.0.0.1:9090").rstrip(
                "/"
            ),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://127.0.0.1:4317",
        )


# --- session-scoped constants (no I/O) ------------------------------------------------------------


@pytest.fixture(scope="session")
def endpoints() -> Endpoints:
    """All service endpoints, read once from the environment."""
    return Endpoints.from_env()


@pytest.fixture(scope="session")
def kafka_brokers(endpoints: Endpoints) -> list[str]:
    """Kafka bootstrap servers as the list aiokafka expects."""
    return list(endpoints.kafka_brokers)


@pytest.fixture(scope="session")
def mongo_url(endpoints: Endpoints) -> str:
    return endpoints.mongo_url


@pytest.fixture(scope="session")
def jaeger_url(endpoints: Endpoints) -> str:
    """Base URL of Jaeger's query API (no trailing slash)."""
    return endpoints.jaeger_url


@pytest.fixture(scope="session")
def prometheus_url(endpoints: Endpoints) -> str:
    """Base URL of Prometheus (no trailing slash)."""
    return endpoints.prometheus_url


@pytest.fixture(scope="session")
def otlp_endpoint(endpoints: Endpoints) -> str:
    """OTLP gRPC endpoint of Jaeger's collector."""
    return endpoints.otlp_endpoint


# --- service probes -------------------------------------------------------------------------------


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"//{address}")
    return parts.hostname or "127.0.0.1", parts.port or default_port


async def _tcp_connect(host: str, port: int) -> None:
    async with asyncio.timeout(2.0):
        _reader, writer = await asyncio.open_connection(host, port)
    writer.close()
    await writer.wait_closed()


async def _http_ok(url: str) -> None:
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered HTTP {response.status}")


async def _probe_kafka(ep: Endpoints) -> None:
    for broker in ep.kafka_brokers:  # name the broker that is down, not just "Kafka"
        host, port = _host_port(broker, 9092)
        try:
            await _tcp_connect(host, port)
        except (OSError, TimeoutError) as exc:
            raise RuntimeError(f"broker {broker} refuses connections ({exc!r})") from exc
    admin = AIOKafkaAdminClient(bootstrap_servers=list(ep.kafka_brokers), request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.describe_cluster()
    finally:
        await admin.close()


async def _probe_ferretdb(ep: Endpoints) -> None:
    client: AsyncMongoClient = AsyncMongoClient(
        ep.mongo_url, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000, socketTimeoutMS=3000
    )
    try:
        reply = await client.admin.command("ping")
        if reply.get("ok") != 1:
            raise RuntimeError(f"ping answered {reply}")
    finally:
        await client.close()


async def _probe_jaeger(ep: Endpoints) -> None:
    await _http_ok(f"{ep.jaeger_url}/api/services")
    host, port = _host_port(ep.otlp_endpoint, 4317)
    try:
        await _tcp_connect(host, port)
    except (OSError, TimeoutError) as exc:
        raise RuntimeError(f"OTLP endpoint {ep.otlp_endpoint} refuses connections") from exc


async def _probe_prometheus(ep: Endpoints) -> None:
    await _http_ok(f"{ep.prometheus_url}/-/ready")


@dataclass(frozen=True)
class _Service:
    display: str
    where: Callable[[Endpoints], str]
    probe: Callable[[Endpoints], Awaitable[None]]


SERVICES: dict[str, _Service] = {
    "kafka": _Service("Kafka", lambda ep: ",".join(ep.kafka_brokers), _probe_kafka),
    "ferretdb": _Service("FerretDB", lambda ep: ep.mongo_url, _probe_ferretdb),
    "jaeger": _Service(
        "Jaeger", lambda ep: f"{ep.jaeger_url} (OTLP {ep.otlp_endpoint})", _probe_jaeger
    ),
    "prometheus": _Service("Prometheus", lambda ep: ep.prometheus_url, _probe_prometheus),
}


class ServiceChecker:
    """Probes services on first use and remembers the outcome for the rest of the session."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._outcome: dict[str, str | None] = {}  # service -> failure message, None when up

    async def _probe(self, name: str) -> str | None:
        service = SERVICES[name]

        async def answers() -> bool:
            await service.probe(self.endpoints)
            return True

        try:
            await eventually(
                answers,
                timeout=PROBE_TIMEOUT,
                interval=0.5,
                description=f"{service.display} probe",
                retry_on=(Exception,),
            )
        except AssertionError as exc:
            cause = exc.__cause__ or exc
            return (
                f"{service.display} is not reachable on {service.where(self.endpoints)}: "
                f"{type(cause).__name__}: {cause} -- {START_HINT}"
            )
        return None

    async def require(self, *names: str) -> None:
        """Fail the calling test unless every named service answers."""
        for name in names:
            if name not in SERVICES:
                raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
            if name not in self._outcome:
                self._outcome[name] = await self._probe(name)
            message = self._outcome[name]
            if message is not None:
                pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def service_checker(endpoints: Endpoints) -> ServiceChecker:
    return ServiceChecker(endpoints)


@pytest.fixture
def require_service(service_checker: ServiceChecker) -> Callable[..., Awaitable[None]]:
    """`await require_service("kafka", "ferretdb")`: fail (never skip) unless they all answer.

    Known names: kafka, ferretdb, jaeger, prometheus.
    """
    return service_checker.require


# --- service-backed fixtures (each one requires its service first) -------------------------------


@pytest_asyncio.fixture
async def kafka(service_checker: ServiceChecker, kafka_brokers: list[str]) -> list[str]:
    """Kafka's broker list, after checking that Kafka answers."""
    await service_checker.require("kafka")
    return kafka_brokers


@pytest_asyncio.fixture
async def ferretdb(service_checker: ServiceChecker, mongo_url: str) -> str:
    """The MongoDB URL, after checking that FerretDB answers."""
    await service_checker.require("ferretdb")
    return mongo_url


@pytest_asyncio.fixture
async def jaeger(service_checker: ServiceChecker, jaeger_url: str) -> str:
    """Jaeger's query URL, after checking that its query API and OTLP port answer."""
    await service_checker.require("jaeger")
    return jaeger_url


@pytest_asyncio.fixture
async def prometheus(service_checker: ServiceChecker, prometheus_url: str) -> str:
    """Prometheus' URL, after checking that it is ready."""
    await service_checker.require("prometheus")
    return prometheus_url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_admin(
    service_checker: ServiceChecker, kafka_brokers: list[str]
) -> AsyncIterator[AIOKafkaAdminClient]:
    """One started AIOKafkaAdminClient for the session."""
    await service_checker.require("kafka")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_brokers, request_timeout_ms=30_000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@pytest_asyncio.fixture
async def make_topic(
    kafka_admin: AIOKafkaAdminClient,
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Factory `await make_topic(partitions=3, replication_factor=3, config=None) -> name`.

    Creates a uniquely named topic, waits until every partition has a leader, and deletes all the
    topics it created when the test ends.
    """
    created: list[str] = []

    async def make(
        partitions: int = 3, replication_factor: int = 3, config: dict[str, str] | None = None
    ) -> str:
        name = unique_name("jobstream-test").replace("_", "-")
        topic = NewTopic(
            name=name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            topic_configs=config or {},
        )
        response = await kafka_admin.create_topics([topic], timeout_ms=30_000)
        for topic_name, code, *rest in response.topic_errors:
            assert code == 0, f"creating topic {topic_name} failed: error {code} {rest}"
        created.append(name)
        await eventually(
            lambda: topic_ready(kafka_admin, name, partitions),
            timeout=30,
            description=f"topic {name} to have {partitions} partitions with leaders",
        )
        return name

    try:
        yield make
    finally:
        await delete_topics(kafka_admin, created)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def mongo_client(
    service_checker: ServiceChecker, mongo_url: str
) -> AsyncIterator[AsyncMongoClient]:
    """One AsyncMongoClient for the session (closed at the end)."""
    await service_checker.require("ferretdb")
    # Bounded timeouts: a stalled server fails the test instead of hanging it.
    client: AsyncMongoClient = AsyncMongoClient(
        mongo_url, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, socketTimeoutMS=20_000
    )
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def mongo_db(mongo_client: AsyncMongoClient) -> AsyncIterator[AsyncDatabase]:
    """A fresh database `test_<8 hex>` for this test alone, dropped afterwards."""
    name = unique_name("test")
    try:
        yield mongo_client[name]
    finally:
        await mongo_client.drop_database(name)


_ORDER = {"unit": 0, "integration": 1, "e2e": 2, "chaos": 3}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run unit, then integration, then end-to-end tests, whatever the file names' order.

    Integration tests create and drop databases and indexes; FerretDB can deadlock when such
    catalog changes race with the workers' writes, so they run before the workers start.
    """
    items.sort(key=lambda item: _ORDER.get(item.path.parent.name, len(_ORDER)))
