"""One trace per job across both services, metrics in Prometheus, JSON logs with trace ids."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from conftest import CLIENT_PORTS, ROOT, SERVER_PORTS, Stack
from helpers import eventually, get_json
from test_events import samples

from jobstream.models import MAX_PER_MESSAGE
from jobstream.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REQUEST_TOPIC = "application.operation.request"
RESPONSE_TOPIC = "application.operation.response"
BULK_REQUEST_TOPIC = Settings().bulk_request_topic
BULK_RESPONSE_TOPIC = Settings().bulk_response_topic


async def submit_traced(stack: Stack, text: str) -> tuple[str, str]:
    """Submit a job inside a sampled W3C trace of our own; returns (job id, trace id)."""
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    status, body, _ = await stack.request(
        "POST",
        "/api/jobs",
        data=text.encode(),
        headers={"Content-Type": "text/plain", "traceparent": traceparent},
    )
    assert status == 201, body
    return body["id"], trace_id


async def fetch_trace(stack: Stack, jaeger_url: str, trace_id: str) -> dict[str, Any] | None:
    """The trace as Jaeger's HTTP API returns it, or None while it is not there."""
    async with stack.session.get(f"{jaeger_url}/api/traces/{trace_id}") as response:
        if response.status != 200:
            return None
        data = (await response.json()).get("data") or []
        return data[0] if data else None


def spans_by_name(trace: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Spans grouped by operation name, each annotated with its service and parent's name."""
    services = {key: p["serviceName"] for key, p in trace["processes"].items()}
    by_id = {span["spanID"]: span for span in trace["spans"]}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for span in trace["spans"]:
        parents = [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        parent = by_id.get(parents[0]) if parents else None
        span["service"] = services[span["processID"]]
        span["parent"] = parent["operationName"] if parent else None
        grouped.setdefault(span["operationName"], []).append(span)
    return grouped


def tag_of(span: dict[str, Any], key: str) -> Any:
    """The value of one of a Jaeger span's tags, or None."""
    return next((tag["value"] for tag in span.get("tags", []) if tag["key"] == key), None)


async def test_sampled_job_is_one_trace_across_both_kafka_hops(
    stack: Stack, jaeger_url: str
) -> None:
    # Given a job submitted inside a sampled trace
    job_id, trace_id = await submit_traced(stack, "1 + 1\n2 * 3\n")
    await stack.wait_completed(job_id)
    wanted = {
        "POST /api/jobs",
        "mongodb create_job",
        f"publish {REQUEST_TOPIC}",
        f"process {REQUEST_TOPIC}",
        "evaluate",
        f"publish {RESPONSE_TOPIC}",
        f"persist {RESPONSE_TOPIC}",
    }

    async def complete_trace() -> dict[str, list[dict[str, Any]]] | None:
        trace = await fetch_trace(stack, jaeger_url, trace_id)
        if trace is None:
            return None
        spans = spans_by_name(trace)
        if not wanted <= spans.keys():
            return None
        # the job's two operations travel in one message: until both were processed, wait
        processed = sum(
            tag_of(s, "jobstream.operations") or 0 for s in spans[f"process {REQUEST_TOPIC}"]
        )
        return spans if processed >= 2 else None

    # Then Jaeger holds one trace with every hop, each span under the right parent and service
    spans = await eventually(complete_trace, timeout=30, interval=0.5)
    [http] = spans["POST /api/jobs"]
    assert http["service"] == "client-application"
    assert spans["mongodb create_job"][0]["parent"] == "POST /api/jobs"
    assert spans[f"publish {REQUEST_TOPIC}"][0]["parent"] == "POST /api/jobs"
    for span in spans[f"process {REQUEST_TOPIC}"]:
        assert span["service"] == "server-application"
        assert span["parent"] == f"publish {REQUEST_TOPIC}"
        assert tag_of(span, "jobstream.job_id") == job_id
    for span in spans["evaluate"]:
        assert span["parent"] == f"process {REQUEST_TOPIC}"
    for span in spans[f"publish {RESPONSE_TOPIC}"]:
        assert span["service"] == "server-application"
        assert span["parent"] == f"process {REQUEST_TOPIC}"
    for span in spans[f"persist {RESPONSE_TOPIC}"]:
        assert span["service"] == "client-application"
        assert span["parent"] == f"publish {RESPONSE_TOPIC}"


async def test_unsampled_job_sends_no_spans(stack: Stack, jaeger_url: str) -> None:
    # Given a job without a trace (sampling is off by default), then a sampled one after it
    quiet_id = await stack.submit("5 + 5\n")
    await stack.wait_completed(quiet_id)
    job_id, trace_id = await submit_traced(stack, "6 + 6\n")
    await stack.wait_completed(job_id)
    # When the sampled job's spans have reached Jaeger (so the exporters have flushed)
    await eventually(lambda: fetch_trace(stack, jaeger_url, trace_id), timeout=30, interval=0.5)
    # Then Jaeger has no span of the unsampled job on either service
    for service in ("client-application", "server-application"):
        tags = json.dumps({"jobstream.job_id": quiet_id})
        found = await get_json(
            f"{jaeger_url}/api/traces",
            params={"service": service, "tags": tags, "lookback": "1h", "limit": "5"},
        )
        assert found["data"] == [], service


async def prometheus_sum(prometheus_url: str, topic: str) -> float | None:
    """sum(consumer_messages_received_total{topic=...}) as Prometheus sees it now."""
    query = f'sum(consumer_messages_received_total{{topic="{topic}"}})'
    body = await get_json(f"{prometheus_url}/api/v1/query", params={"query": query})
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def workers_sum(stack: Stack, ports: tuple[int, ...], topic: str) -> float:
    """The same counter summed straight from the workers' /metrics pages."""
    total = 0.0
    for port in ports:
        async with stack.session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
        for line in text.splitlines():
            if line.startswith(f'consumer_messages_received_total{{topic="{topic}"}}'):
                total += float(line.rsplit(" ", 1)[1])
    return total


async def test_prometheus_counts_messages_received_on_both_topics(
    stack: Stack, prometheus_url: str
) -> None:
    # Given the counters before a 200-operation job
    before_requests = await workers_sum(stack, SERVER_PORTS, REQUEST_TOPIC)
    before_responses = await workers_sum(stack, CLIENT_PORTS, RESPONSE_TOPIC)
    job_id = await stack.submit("".join(f"{n} + 1\n" for n in range(200)))
    await stack.wait_completed(job_id)
    # Then the workers counted the messages that carried them (MAX_PER_MESSAGE operations each)
    messages = 200 // MAX_PER_MESSAGE
    assert await workers_sum(stack, SERVER_PORTS, REQUEST_TOPIC) >= before_requests + messages
    assert await workers_sum(stack, CLIENT_PORTS, RESPONSE_TOPIC) >= before_responses + messages

    # And Prometheus, scraping all six workers, shows the same totals (the seed's queries)
    async def prometheus_caught_up() -> bool:
        requests = await prometheus_sum(prometheus_url, REQUEST_TOPIC)
        responses = await prometheus_sum(prometheus_url, RESPONSE_TOPIC)
        return requests == await workers_sum(
            stack, SERVER_PORTS, REQUEST_TOPIC
        ) and responses == await workers_sum(stack, CLIENT_PORTS, RESPONSE_TOPIC)

    await eventually(prometheus_caught_up, timeout=30, interval=0.5)
    targets = await get_json(f"{prometheus_url}/api/v1/targets")
    up = {
        t["labels"]["instance"]
        for t in targets["data"]["activeTargets"]
        if t["health"] == "up" and t["labels"].get("service")
    }
    assert up == {f"127.0.0.1:{port}" for port in CLIENT_PORTS + SERVER_PORTS}


async def test_a_job_above_the_bulk_size_travels_in_the_bulk_lane_and_a_small_one_does_not(
    stack: Stack,
) -> None:
    # Given the counters of both lanes before a job just above the bulk size, and a small one
    lanes = {
        "requests": (SERVER_PORTS, REQUEST_TOPIC),
        "responses": (CLIENT_PORTS, RESPONSE_TOPIC),
        "bulk requests": (SERVER_PORTS, BULK_REQUEST_TOPIC),
        "bulk responses": (CLIENT_PORTS, BULK_RESPONSE_TOPIC),
    }

    async def counts() -> dict[str, float]:
        return {lane: await workers_sum(stack, *where) for lane, where in lanes.items()}

    before = await counts()
    size = Settings().bulk_operations + 1
    big = await stack.submit("".join(f"{n} * 2\n" for n in range(size)))
    small = await stack.submit("6 * 7\n")
    # When both complete, with correct results
    await stack.wait_completed(small)
    await stack.wait_completed(big)
    for job_id, index, result in ((small, 1, "42"), (big, size, str(2 * (size - 1)))):
        status, operation, _ = await stack.request("GET", f"/api/jobs/{job_id}/operations/{index}")
        assert status == 200 and operation["result"] == result, operation
    # Then the big job's messages went through the bulk topics, the small job's through the others
    grown = {lane: count - before[lane] for lane, count in (await counts()).items()}
    messages = -(-size // MAX_PER_MESSAGE)
    assert grown["bulk requests"] >= messages and grown["bulk responses"] >= messages
    assert grown["requests"] >= 1 and grown["responses"] >= 1


async def test_worker_metrics_page_has_the_operational_metrics(stack: Stack) -> None:
    async with stack.session.get(f"http://127.0.0.1:{CLIENT_PORTS[0]}/metrics") as response:
        client = await response.text()
    async with stack.session.get(f"http://127.0.0.1:{SERVER_PORTS[0]}/metrics") as response:
        server = await response.text()
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "job_duration_seconds_bucket",
        "reconciliation_republished_total",
        "producer_messages_sent_total",
    ):
        assert name in client, name
    for name in ("operations_evaluated_total", "operation_evaluation_seconds_bucket"):
        assert name in server, name


async def test_one_client_worker_leads_reconciliation_from_the_first_start(stack: Stack) -> None:
    """On fresh topics Faust at times gave no worker its leader partition until a later
    rebalance, and reconciliation and retention did not run; the worker holding partition 0 of
    the response topic leads them now (`jobstream.agents.reconcile.leads`)."""

    async def reported() -> list[float] | None:
        counts = [
            value
            for port in CLIENT_PORTS
            for value in await samples(f"http://127.0.0.1:{port}", "jobs", status="completed")
        ]
        # the stack's readiness check completed a job on each client before this test
        return counts if counts and max(counts) >= 3 else None

    # The leader's reconciliation pass (every 2 s here) publishes the jobs by status
    await eventually(reported, timeout=30, interval=0.5, description="a leader's jobs by status")


async def test_logs_are_json_lines_with_the_trace_id(stack: Stack) -> None:
    if stack.external:
        pytest.fail("log files are only known when the tests start the workers")
    job_id, trace_id = await submit_traced(stack, "1 + 1\n")
    logs = ROOT / ".infra" / "logs"

    def accepted_line() -> dict[str, Any] | None:
        for path in logs.glob("client-*.log"):
            for line in path.read_text().splitlines():
                if line.startswith("{") and job_id in line:
                    return json.loads(line)
        return None

    entry = await eventually(accepted_line, timeout=10)
    assert entry["trace_id"] == trace_id
    assert {"time", "level", "service", "worker", "message", "span_id"} <= entry.keys()
    assert entry["service"] == "client-application"
