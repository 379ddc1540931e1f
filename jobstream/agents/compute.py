"""Server role: compute each requested operation and publish its result."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import faust
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

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

BATCH = 10  # request messages an actor takes at once (each carries up to 100 operations)
BATCH_SECONDS = 0.02  # how long it waits for a batch to fill


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
    """Register the compute agent (concurrency from settings, 10-20 actors per worker).

    Each actor takes a batch of request messages (up to BATCH, or what arrived within
    BATCH_SECONDS), evaluates every operation they carry, publishes the results (one message per
    request message) and waits for the broker's acknowledgements (acks=all) before the batch is
    acknowledged: a request's offset is committed only after its results are durable, and one
    wait covers the whole batch (`held`: neither an error nor a shutdown acknowledges a batch
    whose results were not published). With concurrency > 1 batches end out of order; the
    consumer (jobstream/consumer.py) commits only up to the first request not yet done, so a crash
    re-delivers it (Faust alone could commit past it: faust-streaming #606).

    Expressions are evaluated with the line length the API accepts (JOBSTREAM_MAX_LINE_LENGTH,
    which both roles must share): a line the API took is never refused here for its length.
    """
    limits = dataclasses.replace(expressions.DEFAULT_LIMITS, max_length=settings.max_line_length)
    request_topic = topics.requests.get_topic_name()
    response_topic = topics.responses.get_topic_name()

    @app.agent(topics.requests, name="compute", concurrency=settings.compute_concurrency)
    async def compute(stream: faust.StreamT) -> None:
        async for events in stream.take_events(BATCH, BATCH_SECONDS):
            with held(events):  # acknowledged only once the results are durable
                outgoing: list[Message] = []
                spans: list[Span] = []
                for event in events:
                    span = tracer.start_span(
                        f"process {request_topic}",
                        context_from(event.headers),
                        kind=SpanKind.CONSUMER,
                    )
                    spans.append(span)
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
                        publish = tracer.start_span(
                            f"publish {response_topic}", kind=SpanKind.PRODUCER
                        )
                        spans.append(publish)
                        with trace.use_span(publish, end_on_exit=False):
                            headers = trace_headers()
                        outgoing += [(k, v, headers) for k, v in result_messages(results)]
                    # evaluating a message is synchronous (up to 100 operations, a few ms each at
                    # worst): let heartbeats and the other actors run between messages
                    await asyncio.sleep(0)
                await publish_durably(topics.responses, outgoing, metrics)
                for span in reversed(spans):
                    span.end()


def _timed(
    request: OperationRequest, limits: expressions.Limits, metrics: Metrics
) -> OperationResult:
    """evaluate(), measured and counted."""
    with metrics.evaluation_seconds.time():
        result = evaluate(request, limits)
    metrics.operations.labels(outcome=result.status).inc()
    return result
