"""Builds the Faust app from Settings; `JOBSTREAM_ROLE` decides which agents and views it gets.

faust -A jobstream.app worker        (or: python -m jobstream worker)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import faust

from jobstream.agents.compute import register_compute
from jobstream.agents.persist import register_persist
from jobstream.agents.reconcile import register_reconcile
from jobstream.agents.watchdog import register_watchdog
from jobstream.consumer import SafeConsumer
from jobstream.dbmetrics import command_listener
from jobstream.jobfeed import register_job_feed
from jobstream.settings import Settings
from jobstream.storage import MongoRepository, Repository
from jobstream.tables import create_progress_table
from jobstream.telemetry import logging_config, setup_metrics, setup_tracing
from jobstream.topics import declare_topics
from jobstream.views.base import bearer_auth, json_errors
from jobstream.views.dashboard import register_dashboard
from jobstream.views.events import register_event_views
from jobstream.views.health import assignment_check, broker_check, register_health
from jobstream.views.jobs import register_job_views
from jobstream.views.openapi import register_openapi

log = logging.getLogger(__name__)

#: Faust's process-level variables, read with the prefix F_ or FAUST_ once, when faust is first
#: imported (faust/types/_env.py:19-53 in faust-streaming 0.15.3), so no argument of faust.App
#: can override the ones the worker command uses (debug console and blocking detector, working
#: directory, web transport). A worker refuses to start with one set. F_LOOP stays accepted
#: (jobstream's documented event-loop choice, see __main__.py); F_DATADIR too, because Faust's
#: own CLI sets it before importing the app, and the app's datadir is pinned below anyway.
FAUST_PROCESS_VARIABLES = (
    "BLOCKING_TIMEOUT",
    "CONSOLE_PORT",
    "DEBUG",
    "F_WEB_BIND",
    "FORCE_BLOCKING_TIMEOUT",
    "STRICT",
    "WEB_PORT",
    "WEB_TRANSPORT",
    "WORKDIR",
)

#: Faust's built-in blueprints that no setting switches off: the `{"status": "OK"}` index at `/`
#: (faust/web/base.py:49-51 and 223-226 add it whenever the statistics pages are off).
UNWANTED_BLUEPRINTS = ("faust.web.apps.production_index:blueprint",)


def faust_process_variables(env: Mapping[str, str]) -> list[str]:
    """The Faust process-level variables set in `env` that jobstream refuses."""
    return sorted(
        prefix + name
        for name in FAUST_PROCESS_VARIABLES
        for prefix in ("F_", "FAUST_")
        if prefix + name in env
    )


def faust_setting_variables(env: Mapping[str, str]) -> list[str]:
    """The variables in `env` that Faust's settings would read, and that create_app ignores.

    Faust reads every setting's `env_name` (optionally behind APP_ENV_PREFIX) from os.environ and
    lets it win over the argument given to faust.App (faust/types/settings/base.py:160-163,
    faust/types/settings/settings.py:212-235).
    """
    names = {p.env_name for p in faust.Settings.SETTINGS.values() if p.env_name is not None}
    prefix = env.get("APP_ENV_PREFIX", "").rstrip("_")
    if prefix:
        names |= {f"{prefix}_{name}" for name in names}
    return sorted(names & env.keys())


def create_app(
    settings: Settings,
    repository: Repository | None = None,
    env: Mapping[str, str] | None = None,
) -> faust.App:
    """A Faust app for the settings' role, with everything registered.

    Only `settings` configure it: Faust's generic environment variables are ignored, and its
    process-level ones (F_DEBUG, ...) refused. `env` is the environment checked for them
    (os.environ by default); `repository` replaces the client role's MongoDB repository in tests.
    """
    env = os.environ if env is None else env
    refused = faust_process_variables(env)
    if refused:
        raise ValueError(
            f"Faust variables {', '.join(refused)} would change this worker behind its settings; "
            "unset them (jobstream is configured by JOBSTREAM_* and OTEL_* variables only)"
        )
    ignored = faust_setting_variables(env)
    if ignored:
        log.warning(
            "ignoring Faust variables %s: jobstream is configured by JOBSTREAM_* and OTEL_* "
            "variables only",
            ", ".join(ignored),
        )
    setup_tracing(settings)
    app = faust.App(
        settings.app_id,
        # An empty environment for Faust's settings: they then take only the arguments below
        # (faust/types/settings/settings.py:212-235 reads os.environ unless given `env`).
        env={},
        broker=settings.faust_broker_url,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_transport="tcp://",
        # Faust's own pages are off: /router and /table expose the cluster and the table's data,
        # and none of them is in the OpenAPI document or the HTTP metrics.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        debug=False,
        datadir=settings.data_dir,
        # Durability: a publish is done when all in-sync replicas (>= min.insync.replicas) have it.
        producer_acks=-1,
        producer_linger=settings.producer_linger_ms / 1000,
        # Never created by accident: jobstream.bootstrap creates every topic up front.
        topic_replication_factor=settings.replication_factor,
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        # A worker that dies without leaving the group loses its partitions after this long.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        # A handler that raised must not be acknowledged (handlers retry themselves instead).
        stream_ack_exceptions=False,
        stream_wait_empty=True,
        web_application_options={"client_max_size": settings.max_body_bytes + 1},
        web_cors_options=None,
        logging_config=logging_config(settings),
    )
    # Faust's own consumer skips messages after a rebalance on partitions without a commit, and
    # commits past messages never acknowledged: see jobstream/consumer.py.
    # It also fetches with the settings' fetch wait, which Faust does not let an app set.
    app.transport.Consumer = SafeConsumer.tuned(
        settings.fetch_min_bytes, settings.fetch_max_wait_ms
    )
    app.web.blueprints._enabled = [
        (prefix, blueprint)
        for prefix, blueprint in app.web.blueprints._enabled
        if blueprint not in UNWANTED_BLUEPRINTS
    ]
    topics = declare_topics(app, settings)
    metrics = setup_metrics(app)
    middlewares = app.web.web_app.middlewares
    if settings.api_tokens:  # outermost: no API route answers, not even 404, without a token
        middlewares.append(bearer_auth(settings.api_tokens, metrics))
    middlewares.append(json_errors)
    # both lanes' topics (jobstream.topics): what each role reads, and what the brokers must hold
    request_topics = (settings.request_topic, settings.bulk_request_topic)
    response_topics = (settings.response_topic, settings.bulk_response_topic)
    brokers = broker_check(app, request_topics + response_topics)

    if settings.role == "server":
        checks = {"brokers": brokers, "assignment": assignment_check(app, settings.request_topic)}
        register_health(app, settings, metrics, checks)
        register_compute(app, topics, settings, metrics)
        register_watchdog(app, request_topics, metrics)
        return app

    if repository is None:
        repository = MongoRepository.connect(
            settings.mongo_url,
            settings.mongo_database,
            [command_listener(metrics.registry)],
            dialect=None if settings.mongo_dialect == "auto" else settings.mongo_dialect,  # type: ignore[arg-type]
        )
    checks = {
        "database": repository.ping,
        "brokers": brokers,
        "assignment": assignment_check(app, settings.response_topic),
    }
    register_health(app, settings, metrics, checks)
    table = create_progress_table(app, settings)
    feed = register_job_feed(app, settings, metrics)
    # Job events: persisting (progress, completion), reconciliation (completion) and the API
    # (deletion) hand their changes to the one publisher, which never waits.
    publish = feed.publisher.publish_nowait
    register_persist(app, topics, settings, repository, table, metrics, publish)
    register_watchdog(app, response_topics, metrics)
    register_reconcile(app, topics, settings, repository, metrics, publish)
    register_job_views(app, settings, repository, topics, metrics, publish)
    register_openapi(app, settings, metrics)
    register_event_views(app, settings, repository, feed, metrics)
    register_dashboard(app, metrics)

    return app


app = create_app(Settings.from_env())
