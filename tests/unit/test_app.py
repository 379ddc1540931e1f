"""The Faust app of each role as create_app builds it, and what its web server answers.

Nothing here needs a service: building an app connects to nothing (Kafka and the database are
reached when a worker starts), the client role gets the in-memory repository, and the HTTP tests
serve the app's aiohttp application in-process on a loopback port, with Faust's topic sends
replaced by fakes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers import eventually

from jobstream.app import create_app, faust_process_variables, faust_setting_variables
from jobstream.errors import StorageError
from jobstream.jobevents import JobChange, JobEventHub, JobEventPublisher
from jobstream.memory import MemoryRepository
from jobstream.models import OperationResult, new_job_id
from jobstream.names import PROGRESS_TABLE
from jobstream.settings import Settings
from jobstream.storage import Progress
from jobstream.telemetry import Metrics
from jobstream.views import health
from jobstream.views.health import register_health
from jobstream.views.watch import WATCH

ROLES = ["client", "server"]

#: Faust's generic variables, each set to something that would lower durability, point the worker
#: elsewhere or open Faust's own pages, were it read.
HOSTILE = {
    "PRODUCER_ACKS": "1",
    "BROKER_URL": "kafka://10.9.9.9:9092",
    "BROKER_PRODUCER_URL": "kafka://10.9.9.9:9092",
    "BROKER_CONSUMER_URL": "kafka://10.9.9.9:9092",
    "WEB_PORT": "9999",
    "WEB_HOST": "elsewhere.example",
    "WEB_BIND": "10.9.9.9",
    "APP_DATADIR": "/tmp/elsewhere",
    "TOPIC_PARTITIONS": "7",
    "TOPIC_REPLICATION_FACTOR": "1",
    "CONSUMER_AUTO_OFFSET_RESET": "latest",
    "BROKER_SESSION_TIMEOUT": "600",
    "BROKER_HEARTBEAT_INTERVAL": "60",
    "STREAM_WAIT_EMPTY": "false",
    "APP_DEBUG": "true",
    "APP_WEB_ROUTER_ENABLED": "true",
    "APP_WEB_TABLES_ENABLED": "true",
    "APP_WEB_STATS_ENABLED": "true",
    "APP_WEB_GRAPH_ENABLED": "true",
    "APP_WEB_METRICS_ENABLED": "true",
}

#: The routes of Faust's own pages (faust/web/apps/*), none of which a jobstream worker serves.
FAUST_PAGES = ("/router", "/table", "/graph", "/performance", "/stats", "/assignment")

API_ROUTES = {
    "/api/jobs",
    "/api/jobs/{job_id}",
    "/api/jobs/{job_id}/operations",
    "/api/jobs/{job_id}/operations/{operation_id}",
    "/api/openapi.json",
}
PROBES = {"/health", "/ready", "/metrics"}

TOKEN = "s3cret-token-0123456789"
OTHER_TOKEN = "an0ther-token-9876543210"
JOB_ID = "0123456789abcdef0123456789abcdef"


def build(role: str, **settings: Any) -> tuple[faust.App, MemoryRepository]:
    """The app of `role`, on an in-memory repository."""
    repository = MemoryRepository()
    app = create_app(Settings(role=role, **settings), repository=repository)  # type: ignore[arg-type]
    return app, repository


def route_paths(app: faust.App) -> set[str]:
    """Every path the app's web server routes, once Faust's blueprints are applied too."""
    app.web.blueprints.apply(app.web)  # what the worker does when its web server starts
    return {route.resource.canonical for route in app.web.web_app.router.routes()}


# --- only jobstream's variables configure jobstream ----------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_faust_generic_variables_do_not_change_the_app(
    role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Faust's generic variables set to hostile values in the worker's environment
    for name, value in HOSTILE.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env({"JOBSTREAM_ROLE": role, "JOBSTREAM_WEB_PORT": "8123"})

    # When the app is built
    app, _ = build(role, web_port=8123)
    conf = app.conf

    # Then every setting is jobstream's: acks=all, its brokers, its port, its group ...
    assert conf.producer_acks == -1
    assert [str(url) for url in conf.broker] == [
        f"kafka://{server}" for server in settings.bootstrap_servers
    ]
    assert conf.broker_producer == conf.broker_consumer == conf.broker
    assert (conf.web_port, conf.web_host, conf.web_bind) == (8123, "127.0.0.1", "127.0.0.1")
    assert (
        conf.id
        == settings.app_id
        == f"operation-{'response' if role == 'client' else 'request'}-group"
    )
    assert str(conf.datadir).startswith(settings.data_dir)
    assert (conf.topic_partitions, conf.topic_replication_factor) == (60, 3)
    assert conf.consumer_auto_offset_reset == "earliest"
    assert (conf.broker_session_timeout, conf.broker_heartbeat_interval) == (10.0, 2.0)
    assert conf.stream_wait_empty is True
    # ... and none of Faust's own pages is switched on
    assert not conf.debug
    assert not any(
        (
            conf.web_router_enabled,
            conf.web_tables_enabled,
            conf.web_stats_enabled,
            conf.web_graph_enabled,
            conf.web_metrics_enabled,
        )
    )
    assert not {path for path in route_paths(app) if path.startswith(FAUST_PAGES)}


def test_faust_variables_behind_an_env_prefix_are_ignored_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given Faust's APP_ENV_PREFIX, which makes it read X_PRODUCER_ACKS instead of PRODUCER_ACKS
    monkeypatch.setenv("APP_ENV_PREFIX", "X_")
    monkeypatch.setenv("X_PRODUCER_ACKS", "0")
    monkeypatch.setenv("X_WEB_PORT", "9999")

    # Then neither counts
    app, _ = build("server")
    assert (app.conf.producer_acks, app.conf.web_port) == (-1, 8080)


def test_ignored_faust_variables_are_named_in_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PRODUCER_ACKS", "1")
    monkeypatch.setenv("WEB_PORT", "9999")
    with caplog.at_level(logging.WARNING, logger="jobstream.app"):
        build("server")
    assert "ignoring Faust variables PRODUCER_ACKS, WEB_PORT" in caplog.text


def test_faust_setting_variables_lists_exactly_those_present() -> None:
    env = {"PATH": "/bin", "BROKER_URL": "x", "JOBSTREAM_WEB_PORT": "1", "APP_ENV_PREFIX": "P"}
    assert faust_setting_variables(env) == ["APP_ENV_PREFIX", "BROKER_URL"]
    assert faust_setting_variables({**env, "P_PRODUCER_ACKS": "0"}) == [
        "APP_ENV_PREFIX",
        "BROKER_URL",
        "P_PRODUCER_ACKS",
    ]
    assert faust_setting_variables({}) == []


@pytest.mark.parametrize(
    "variable",
    ["F_DEBUG", "FAUST_DEBUG", "F_WORKDIR", "F_CONSOLE_PORT", "F_WEB_TRANSPORT", "F_WEB_PORT"],
)
def test_faust_process_variables_are_refused_naming_them(variable: str) -> None:
    # Given a process-level Faust variable, which Faust read when it was imported
    env = {variable: "1", "F_LOOP": "uvloop"}

    # Then the worker refuses to start, naming it
    assert faust_process_variables(env) == [variable]
    with pytest.raises(ValueError, match=f"Faust variables {variable} would change this worker"):
        create_app(Settings(role="server"), env=env)


def test_faust_loop_and_datadir_variables_are_accepted() -> None:
    # F_LOOP is jobstream's documented choice of event loop; Faust's CLI sets F_DATADIR itself
    env = {"F_LOOP": "aio", "FAUST_LOOP": "aio", "F_DATADIR": "/tmp/x", "FAUST_DATADIR": "/x"}
    assert faust_process_variables(env) == []
    app = create_app(Settings(role="server"), env=env)
    assert str(app.conf.datadir).startswith(Settings().data_dir)


# --- what each role's app holds -------------------------------------------------------------------


def test_server_app_computes_and_serves_only_its_probes() -> None:
    # Given a server worker with 15 compute actors
    app, _ = build("server", compute_concurrency=15)
    settings = Settings(role="server")

    # Then its two agents compute, one per lane, each with the configured concurrency
    assert {name: agent.concurrency for name, agent in app.agents.items()} == {
        "compute": 15,
        "compute-bulk": 15,
    }
    assert app.agents["compute"].channel.topics == (settings.request_topic,)
    assert app.agents["compute-bulk"].channel.topics == (settings.bulk_request_topic,)
    # ... it has no table, and serves only the probes and its metrics
    assert dict(app.tables) == {}
    assert route_paths(app) == PROBES
    assert app.conf.id == settings.server_group


def test_client_app_persists_and_serves_the_api() -> None:
    # Given a client worker
    app, _ = build("client")
    settings = Settings()

    # Then one agent per lane persists the responses, and none computes
    consumed = {topic for agent in app.agents.values() for topic in agent.channel.topics}
    assert app.agents["persist"].channel.topics == (settings.response_topic,)
    assert app.agents["persist-bulk"].channel.topics == (settings.bulk_response_topic,)
    assert app.agents["persist"].concurrency == app.agents["persist-bulk"].concurrency == 1
    assert not {settings.request_topic, settings.bulk_request_topic} & consumed
    # ... progress lives in its table, partitioned like the topics
    assert set(app.tables) == {PROGRESS_TABLE}
    assert app.tables[PROGRESS_TABLE].partitions == settings.partitions
    # ... and it serves the API, the probes and its metrics, but none of Faust's pages
    paths = route_paths(app)
    assert paths >= API_ROUTES | PROBES
    assert not {path for path in paths if path.startswith(FAUST_PAGES)}
    assert app.conf.id == settings.client_group


# --- the web server, in-process -------------------------------------------------------------------


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[faust.App], Awaitable[TestClient]]]:
    """Serve apps' aiohttp applications on loopback ports; closes them afterwards."""
    clients: list[TestClient] = []

    async def start(app: faust.App) -> TestClient:
        client = TestClient(TestServer(app.web.web_app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


class Broker:
    """Stands in for Faust's Topic.send: acknowledges at once, or never (Kafka unreachable)."""

    def __init__(self, reachable: bool) -> None:
        self.reachable = reachable
        self.sent: list[bytes] = []
        #: the topic of each message in `sent`
        self.topics: list[str] = []

    async def send(self, topic: faust.TopicT, **kwargs: Any) -> asyncio.Future:
        ack: asyncio.Future = asyncio.get_running_loop().create_future()
        if self.reachable:
            self.sent.append(kwargs["value"])
            self.topics.append(topic.get_topic_name())
            ack.set_result(None)
        return ack


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    """Kafka as the app's topics see it: reachable unless the test says otherwise."""
    fake = Broker(reachable=True)

    async def send(topic: faust.TopicT, **kwargs: Any) -> asyncio.Future:
        return await fake.send(topic, **kwargs)

    monkeypatch.setattr(faust.topics.Topic, "send", send)
    return fake


TEXT = {"Content-Type": "text/plain"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


#: One request per API route and method, with well-formed ids.
API_REQUESTS = [
    ("GET", "/api/jobs"),
    ("POST", "/api/jobs"),
    ("GET", f"/api/jobs/{JOB_ID}"),
    ("DELETE", f"/api/jobs/{JOB_ID}"),
    ("GET", f"/api/jobs/{JOB_ID}/operations"),
    ("GET", f"/api/jobs/{JOB_ID}/operations/1"),
    ("GET", "/api/openapi.json"),
    ("PUT", "/api/jobs"),
    ("GET", "/api/no-such-route"),
    ("GET", "/api"),
]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-token-0123456789"),
        bearer(TOKEN[:-1]),
        bearer(TOKEN + "x"),
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer"},
        {"Authorization": ""},
    ],
    ids=["none", "wrong", "prefix", "longer", "basic", "no-scheme", "no-token", "empty"],
)
async def test_with_tokens_every_api_request_without_one_gets_a_json_401(
    serve: Callable[[faust.App], Awaitable[TestClient]], broker: Broker, headers: dict[str, str]
) -> None:
    # Given a client worker with two tokens and a stored job
    app, repository = build("client", api_tokens=(TOKEN, OTHER_TOKEN))
    await repository.create_job(JOB_ID, ["1 + 1"])
    calls = dict(repository.calls)
    client = await serve(app)

    for method, path in API_REQUESTS:
        # When an API route is asked without an accepted token
        response = await client.request(method, path, headers={**headers, **TEXT}, data=b"1")

        # Then it is refused with a JSON 401 that says how to authenticate
        assert response.status == 401, (method, path)
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="jobstream"'
        body = await response.json()
        assert body["error"] == "unauthorized" and "Bearer" in body["message"]

    # ... and nothing was read, stored, deleted or published
    assert dict(repository.calls) == calls
    assert (await repository.get_job(JOB_ID)).id == JOB_ID
    assert broker.sent == []


@pytest.mark.parametrize("token", [TOKEN, OTHER_TOKEN])
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_any_listed_token_opens_the_api(
    serve: Callable[[faust.App], Awaitable[TestClient]], broker: Broker, token: str, scheme: str
) -> None:
    client = await serve(build("client", api_tokens=(TOKEN, OTHER_TOKEN))[0])
    headers = {"Authorization": f"{scheme} {token}", **TEXT}

    created = await client.post("/api/jobs", data=b"1 + 1\n", headers=headers)
    assert created.status == 201
    job_id = (await created.json())["id"]
    assert (await client.get(f"/api/jobs/{job_id}", headers=headers)).status == 200
    assert (await client.delete(f"/api/jobs/{job_id}", headers=headers)).status == 204


async def test_probes_and_metrics_stay_open_with_tokens(
    serve: Callable[[faust.App], Awaitable[TestClient]],
) -> None:
    client = await serve(build("client", api_tokens=(TOKEN,))[0])
    assert (await client.get("/health")).status == 200
    assert (await client.get("/ready")).status == 503  # not started: not ready, but not refused
    assert (await client.get("/metrics")).status == 200


async def test_refusals_are_counted_in_the_http_metrics(
    serve: Callable[[faust.App], Awaitable[TestClient]],
) -> None:
    client = await serve(build("client", api_tokens=(TOKEN,))[0])
    await client.get(f"/api/jobs/{JOB_ID}")
    await client.get("/api/nothing")
    metrics = await (await client.get("/metrics")).text()
    assert (
        'http_requests_total{method="GET",route="/api/jobs/{job_id}",status="401"} 1.0' in metrics
    )
    assert 'http_requests_total{method="GET",route="unmatched",status="401"} 1.0' in metrics


async def test_without_tokens_the_api_is_open(
    serve: Callable[[faust.App], Awaitable[TestClient]],
) -> None:
    client = await serve(build("client")[0])
    response = await client.get("/api/jobs")
    assert response.status == 200
    assert (await response.json())["items"] == []


async def test_jobs_listing_filters_by_status_and_refuses_an_unknown_one(
    serve: Callable[[faust.App], Awaitable[TestClient]],
) -> None:
    # Given a client worker with one job in progress and one completed
    app, repository = build("client")
    running, done = new_job_id(), new_job_id()
    for job_id in (running, done):
        await repository.create_job(job_id, ["1"])
    result = OperationResult(done, 1, 1, "succeeded", result="1")
    await repository.store_results([result], [Progress(done, 1, 0, True)])
    client = await serve(app)
    # When each status is listed, Then only its jobs come, and total counts them
    for status, expected in (("in_progress", running), ("completed", done)):
        body = await (await client.get(f"/api/jobs?status={status}")).json()
        assert ([job["id"] for job in body["items"]], body["total"]) == ([expected], 1)
    # And an unknown or empty status is a JSON 400 naming the statuses there are
    for raw in ("deleted", "", "IN_PROGRESS"):
        response = await client.get(f"/api/jobs?status={raw}")
        assert response.status == 400
        body = await response.json()
        assert "status must be one of in_progress, completed" in body["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/jobs", {"GET", "HEAD", "POST"}),
        ("PATCH", f"/api/jobs/{JOB_ID}", {"GET", "HEAD", "DELETE"}),
        ("POST", "/health", {"GET", "HEAD"}),
    ],
)
async def test_method_not_allowed_names_the_allowed_ones(
    serve: Callable[[faust.App], Awaitable[TestClient]], method: str, path: str, allowed: set[str]
) -> None:
    client = await serve(build("client")[0])
    response = await client.request(method, path)
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == allowed
    assert (await response.json())["error"] == "method_not_allowed"


async def test_operation_id_of_another_job_is_not_found(
    serve: Callable[[faust.App], Awaitable[TestClient]],
) -> None:
    app, repository = build("client")
    other = "f" * 32
    await repository.create_job(JOB_ID, ["1 + 1"])
    await repository.create_job(other, ["2 + 2"])
    client = await serve(app)

    response = await client.get(f"/api/jobs/{JOB_ID}/operations/{other}-1")
    assert response.status == 404
    assert (await client.get(f"/api/jobs/{JOB_ID}/operations/{JOB_ID}-1")).status == 200


# --- deletions tell the job's watchers ----------------------------------------------------------


class EventsTopic:
    """Stands in for the job events topic: what the app publishes, handed back to its own hub
    at once (as every client worker's follower would hand it)."""

    def __init__(self) -> None:
        self.published: list[JobChange] = []
        self.hub: JobEventHub | None = None

    def publish(self, changes: list[JobChange]) -> None:
        self.published.extend(changes)
        for change in changes:
            if self.hub is not None:
                self.hub.dispatch(change)


@pytest.fixture
def events_topic(monkeypatch: pytest.MonkeyPatch) -> EventsTopic:
    topic = EventsTopic()
    monkeypatch.setattr(
        JobEventPublisher, "publish_nowait", lambda _self, changes: topic.publish(list(changes))
    )
    return topic


def watched_client_app(events_topic: EventsTopic) -> tuple[faust.App, MemoryRepository]:
    app, repository = build("client")
    events_topic.hub = app.web.web_app[WATCH].hub
    return app, repository


async def test_deleting_a_job_publishes_its_deletion(
    serve: Callable[[faust.App], Awaitable[TestClient]], events_topic: EventsTopic
) -> None:
    app, repository = watched_client_app(events_topic)
    await repository.create_job(JOB_ID, ["1 + 1"])
    client = await serve(app)

    response = await client.delete(f"/api/jobs/{JOB_ID}")

    assert response.status == 204
    assert [(c.job_id, c.status) for c in events_topic.published] == [(JOB_ID, "deleted")]
    assert events_topic.published[0].at.tzinfo is not None


async def test_a_deletion_that_did_not_happen_publishes_nothing(
    serve: Callable[[faust.App], Awaitable[TestClient]], events_topic: EventsTopic
) -> None:
    # Given a job the database fails to delete, and an id of no job
    app, repository = watched_client_app(events_topic)
    await repository.create_job(JOB_ID, ["1 + 1"])
    repository.fail("delete_job:purge", StorageError("delete: connection reset"))
    client = await serve(app)

    # When both are deleted
    cut_short = await client.delete(f"/api/jobs/{JOB_ID}")
    unknown = await client.delete(f"/api/jobs/{'e' * 32}")

    # Then neither deletion is announced (a retried DELETE that succeeds will be)
    assert (cut_short.status, unknown.status) == (503, 404)
    assert events_topic.published == []


async def test_a_wait_on_a_job_deleted_meanwhile_answers_404_at_once(
    serve: Callable[[faust.App], Awaitable[TestClient]], events_topic: EventsTopic
) -> None:
    # Given a client waiting up to 30 s for a job in progress
    app, repository = watched_client_app(events_topic)
    await repository.create_job(JOB_ID, ["1 + 1"])
    client = await serve(app)
    waiting = asyncio.ensure_future(client.get(f"/api/jobs/{JOB_ID}?wait=30"))
    await eventually(lambda: events_topic.hub and events_topic.hub.subscriptions == 1, timeout=5)

    # When the job is deleted
    started = time.monotonic()
    assert (await client.delete(f"/api/jobs/{JOB_ID}")).status == 204

    # Then the wait answers now that the job is gone, not when its 30 s are over
    response = await asyncio.wait_for(waiting, 5)
    assert response.status == 404
    assert "deleted" in (await response.json())["message"]
    assert time.monotonic() - started < 5


async def test_the_event_stream_of_a_job_deleted_meanwhile_ends_with_deleted(
    serve: Callable[[faust.App], Awaitable[TestClient]], events_topic: EventsTopic
) -> None:
    # Given the event stream of a job in progress, its first state read
    app, repository = watched_client_app(events_topic)
    await repository.create_job(JOB_ID, ["1 + 1", "2 + 2"])
    client = await serve(app)
    response = await client.get(f"/api/jobs/{JOB_ID}/events")
    assert response.status == 200
    first = b""
    while b'"in_progress"' not in first:
        first += await asyncio.wait_for(response.content.readline(), 5)

    # When the job is deleted
    assert (await client.delete(f"/api/jobs/{JOB_ID}")).status == 204

    # Then the stream sends its deletion and ends (no more than the deletion after the state)
    rest = await asyncio.wait_for(response.content.read(), 5)
    assert rest.count(b"event: job") == 1
    assert b'"status":"deleted"' in rest


# --- bounded requests -----------------------------------------------------------------------------


async def test_job_is_published_before_it_is_answered_when_kafka_answers(
    serve: Callable[[faust.App], Awaitable[TestClient]], broker: Broker
) -> None:
    app, repository = build("client")
    client = await serve(app)

    response = await client.post("/api/jobs", data=b"1 + 1\n2 * 3\n", headers=TEXT)

    assert response.status == 201
    job = await repository.get_job((await response.json())["id"])
    assert job.total == 2 and len(broker.sent) == 1  # one message carries both operations


async def test_jobs_above_the_bulk_size_are_published_in_the_bulk_lane(
    serve: Callable[[faust.App], Awaitable[TestClient]], broker: Broker
) -> None:
    # Given a client whose bulk lane takes jobs of more than 2 operations
    app, _ = build("client", bulk_operations=2)
    settings = Settings(bulk_operations=2)
    client = await serve(app)

    # When a job of 2 operations, then one of 3, is submitted
    for body in (b"1 + 1\n2 * 3\n", b"1\n2\n3\n"):
        assert (await client.post("/api/jobs", data=body, headers=TEXT)).status == 201

    # Then the first travels on the request topic, the second on the bulk request topic
    assert broker.topics == [settings.request_topic, settings.bulk_request_topic]


async def test_job_stored_while_kafka_is_unreachable_is_answered_201_at_the_deadline(
    serve: Callable[[faust.App], Awaitable[TestClient]],
    broker: Broker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given Kafka that never acknowledges, and a publish deadline of 0.3 s
    broker.reachable = False
    app, repository = build("client", publish_deadline=0.3)
    client = await serve(app)

    # When a job is posted
    started = time.monotonic()
    response = await client.post("/api/jobs", data=b"1 + 1\n", headers=TEXT)
    elapsed = time.monotonic() - started

    # Then it is answered 201 at the deadline, not later: stored, to be published by reconciliation
    assert response.status == 201
    assert 0.3 <= elapsed < 1.5
    job_id = (await response.json())["id"]
    assert (await repository.get_job(job_id)).status == "in_progress"
    assert "not yet published" in caplog.text


async def test_job_not_stored_is_answered_503(
    serve: Callable[[faust.App], Awaitable[TestClient]], broker: Broker
) -> None:
    # Given a database that refuses the job
    app, repository = build("client")
    repository.fail("create_job", StorageError("create_job: connection refused"))
    client = await serve(app)

    response = await client.post("/api/jobs", data=b"1 + 1\n", headers=TEXT)

    # Then the answer says so, and nothing is published
    assert response.status == 503
    assert (await response.json())["error"] == "unavailable"
    assert broker.sent == []


async def test_a_full_database_is_named_in_the_503(
    serve: Callable[[faust.App], Awaitable[TestClient]], broker: Broker
) -> None:
    # Given a database with no space left
    app, repository = build("client")
    repository.fail("create_job", StorageError("create_job: disk full", full=True))
    client = await serve(app)

    response = await client.post("/api/jobs", data=b"1 + 1\n", headers=TEXT)

    # Then the answer says the database is full, and nothing is published
    assert response.status == 503
    body = await response.json()
    assert body["error"] == "unavailable"
    assert "the database is full" in body["message"]
    assert broker.sent == []


# --- readiness ------------------------------------------------------------------------------------


def probe_app(checks: dict[str, health.Check]) -> faust.App:
    """A bare app serving only the probes, with these readiness checks."""
    app = faust.App("probe-test", env={})
    register_health(app, Settings(), Metrics.create(), checks)
    return app


async def passes() -> None:
    return None


async def fails() -> None:
    raise health.NotReady("no partition of t is assigned to this worker")


async def crashes() -> None:
    raise StorageError("ping: connection refused")


async def hangs() -> None:
    await asyncio.Event().wait()


async def test_ready_answers_200_when_every_check_passes(
    serve: Callable[[faust.App], Awaitable[TestClient]],
) -> None:
    client = await serve(probe_app({"database": passes, "brokers": passes}))
    response = await client.get("/ready")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "brokers": "ok"}


async def test_ready_answers_503_naming_each_failed_check(
    serve: Callable[[faust.App], Awaitable[TestClient]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given checks that pass, fail, raise and hang (past a short check timeout)
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.05)
    checks = {"a": passes, "assignment": fails, "database": crashes, "brokers": hangs}
    client = await serve(probe_app(checks))

    # When readiness is asked
    response = await client.get("/ready")

    # Then it is a JSON 503 saying what is missing, check by check
    assert response.status == 503
    body = await response.json()
    assert body["status"] == body["error"] == "not_ready"
    assert body["checks"] == {
        "a": "ok",
        "assignment": "no partition of t is assigned to this worker",
        "database": "StorageError: ping: connection refused",
        "brokers": "no answer within 0.05 s",
    }
    assert "assignment: no partition" in body["message"]
    # ... while liveness still answers
    assert (await client.get("/health")).status == 200


async def test_a_worker_that_has_not_started_is_not_ready(
    serve: Callable[[faust.App], Awaitable[TestClient]],
) -> None:
    # Given a server app whose producer and consumer have not started
    client = await serve(build("server")[0])

    response = await client.get("/ready")

    assert response.status == 503
    checks = (await response.json())["checks"]
    assert set(checks) == {"brokers", "assignment"}
    assert "ok" not in checks.values()


@pytest.mark.parametrize("role", ROLES)
def test_the_producer_lingers_as_the_settings_say(role: str) -> None:
    app, _ = build(role, producer_linger_ms=0)
    assert app.conf.producer_linger == 0
    app, _ = build(role, producer_linger_ms=7)
    assert app.conf.producer_linger == 0.007
