"""Server role: compute each requested operation and publish its result."""

from __future__ import annotations

import logging

import faust
from opentelemetry.trace import SpanKind

from jobstream import expressions
from jobstream.agents.delivery import dead_letter, send_durably
from jobstream.errors import ExpressionError
from jobstream.models import InvalidEvent, OperationRequest, OperationResult
from jobstream.settings import Settings
from jobstream.telemetry import Metrics, context_from, tracer
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
    """Register the compute agent (concurrency from settings, 10-20 actors per worker).

    Each actor awaits the broker's acknowledgement (acks=all) of the result before taking its next
    request, so the request's offset is committed only after the result is durable. Concurrency > 1
    can still commit past an in-flight request on a crash (faust-streaming #606): the client's
    reconciliation loop re-publishes whatever stays pending.
    """
    limits = expressions.DEFAULT_LIMITS

    @app.agent(topics.requests, name="compute", concurrency=settings.compute_concurrency)
    async def compute(stream: faust.StreamT) -> None:
        async for event in stream.events():
            with tracer.start_as_current_span(
                f"process {event.message.topic}",
                context=context_from(event.headers),
                kind=SpanKind.CONSUMER,
            ) as span:
                try:
                    request = OperationRequest.from_bytes(event.value)
                except InvalidEvent as exc:
                    await dead_letter(topics, event, str(exc), metrics)
                    continue
                span.set_attribute("jobstream.job_id", request.job_id)
                span.set_attribute("jobstream.operation_index", request.index)
                with tracer.start_as_current_span("evaluate"), metrics.evaluation_seconds.time():
                    result = evaluate(request, limits)
                metrics.operations.labels(outcome=result.status).inc()
                await send_durably(
                    topics.responses, request.job_id.encode(), result.to_bytes(), metrics
                )
