"""Builds the Faust app from Settings; `JOBSTREAM_ROLE` decides which agents and views it gets.

faust -A jobstream.app worker        (or: python -m jobstream worker)
"""

from __future__ import annotations

import faust

from jobstream.agents.compute import register_compute
from jobstream.agents.persist import register_persist
from jobstream.agents.reconcile import register_reconcile
from jobstream.settings import Settings
from jobstream.storage import MongoRepository
from jobstream.tables import create_progress_table
from jobstream.telemetry import logging_config, setup_metrics, setup_tracing
from jobstream.topics import declare_topics
from jobstream.views.base import json_errors
from jobstream.views.health import register_health
from jobstream.views.jobs import register_job_views
from jobstream.views.openapi import register_openapi


def create_app(settings: Settings) -> faust.App:
    """A Faust app for the settings' role, with everything registered."""
    setup_tracing(settings)
    app = faust.App(
        settings.app_id,
        broker=settings.faust_broker_url,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        datadir=settings.data_dir,
        # Durability: a publish is done when all in-sync replicas (>= min.insync.replicas) have it.
        producer_acks=-1,
        producer_linger_ms=5,
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
    app.web.web_app.middlewares.append(json_errors)
    topics = declare_topics(app, settings)
    metrics = setup_metrics(app)
    register_health(app, settings, metrics)

    if settings.role == "server":
        register_compute(app, topics, settings, metrics)
        return app

    repository = MongoRepository.connect(settings.mongo_url, settings.mongo_database)
    table = create_progress_table(app, settings)
    register_persist(app, topics, settings, repository, table, metrics)
    register_reconcile(app, topics, settings, repository, metrics)
    register_job_views(app, settings, repository, topics, metrics)
    register_openapi(app, settings, metrics)

    return app


app = create_app(Settings.from_env())
