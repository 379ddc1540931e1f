"""Server role: compute each requested operation and publish its result."""

from __future__ import annotations

import dataclasses
import logging

import faust
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from jobstream import expressions
from jobstream.agents.acks import held
from jobstream.agents.delivery import Message, dead_letter, publish_durably
from jobstream.errors import ExpressionError
from jobstream.models import (
    InvalidEvent,
    OperationRequest,
    OperationResult,
    decode_requests,
    result_messages,
)
from jobstream.settings import Settings
from jobstream.telemetry import Metrics, context_from, trace_headers, tracer
from jobstream.topics import Topics

log = logging.getLogger(__name__)


def evaluate(request: OperationRequest, limits: expressions.Limits) -> OperationResult:
    """The result event for a request: the value, or what went wrong and where."""
    try:
        value = expressions.compute(request.expression, limits)
    except ExpressionError as exc:
        return _failed(request, str(exc))
    except Exception as exc:  # a bug must fail one operation, never the worker
        log.exception("unexpected error evaluating %r", request.expression[:100])
        return _failed(request, f"internal error: {type(exc).__name__}")
    return OperationResult(
        job_id=request.job_id,
        index=request.index,
        total=request.total,
        status="succeeded",
        result=value,
    )


def _failed(request: OperationRequest, error: str) -> OperationResult:
    return OperationResult(
        job_id=request.job_id,
        index=request.index,
        total=request.total,
        status="failed",
        error=error,
    )


def register_compute(app: faust.App, topics: Topics, settings: Settings, metrics: Metrics) -> None:
    """Register the compute agents, one per lane (concurrency from settings, 10-20 actors per
    worker each).

    Each actor takes one request message at a time (up to 100 operations of one job), evaluates
    its operations, publishes their results and waits for the broker's acknowledgement (acks=all)
    before the message is acknowledged: a request's offset is committed only after its results are
    durable (`held`: neither an error nor a shutdown acknowledges a message whose results were not
    published). The actors' results share the producer's batches (linger), so there is no batching
    timer here: a message is evaluated as soon as an actor is free (a batch of Faust's
    `take_events` waited for its timer whether or not more messages came, up to 20 ms per
    request, and woke every actor at every tick while idle). With concurrency > 1 messages end
    out of order; the consumer (jobstream/consumer.py) commits only up to the first request not
    yet done, so a crash re-delivers it (Faust alone could commit past it: faust-streaming #606).

    Expressions are evaluated with the line length the API accepts (JOBSTREAM_MAX_LINE_LENGTH,
    which both roles must share): a line the API took is never refused here for its length.
    """
    limits = dataclasses.replace(expressions.DEFAULT_LIMITS, max_length=settings.max_line_length)
    # One agent per lane (jobstream.topics), each answering on its own lane's response topic.
    lanes = (
        ("compute", topics.requests, topics.responses),
        ("compute-bulk", topics.bulk_requests, topics.bulk_responses),
    )
    for name, source, sink in lanes:
        _register_lane(app, name, source, sink, topics, settings, limits, metrics)


def _register_lane(
    app: faust.App,
    name: str,
    source: faust.TopicT,
    sink: faust.TopicT,
    topics: Topics,
    settings: Settings,
    limits: expressions.Limits,
    metrics: Metrics,
) -> None:
    request_topic = source.get_topic_name()
    response_topic = sink.get_topic_name()

    async def compute(stream: faust.StreamT) -> None:
        async for event in stream.events():
            with held([event]):  # acknowledged only once the results are durable
                span = tracer.start_span(
                    f"process {request_topic}", context_from(event.headers), kind=SpanKind.CONSUMER
                )
                try:
                    with trace.use_span(span, end_on_exit=False):
                        try:
                            requests = decode_requests(event.value)
                        except InvalidEvent as exc:
                            await dead_letter(topics, event, str(exc), metrics)
                            continue
                        span.set_attribute("jobstream.job_id", requests[0].job_id)
                        span.set_attribute("jobstream.operations", len(requests))
                        with tracer.start_as_current_span("evaluate"):
                            results = [_timed(request, limits, metrics) for request in requests]
                        with tracer.start_as_current_span(
                            f"publish {response_topic}", kind=SpanKind.PRODUCER
                        ):
                            headers = trace_headers()
                            outgoing: list[Message] = [
                                (k, v, headers) for k, v in result_messages(results)
                            ]
                            await publish_durably(sink, outgoing, metrics)
                finally:
                    span.end()

    compute.__name__ = compute.__qualname__ = name.replace("-", "_")
    app.agent(source, name=name, concurrency=settings.compute_concurrency)(compute)


def _timed(
    request: OperationRequest, limits: expressions.Limits, metrics: Metrics
) -> OperationResult:
    """evaluate(), measured and counted."""
    with metrics.evaluation_seconds.time():
        result = evaluate(request, limits)
    metrics.operations.labels(outcome=result.status).inc()
    return result
