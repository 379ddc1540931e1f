"""The physical limit beside jobstream: a raw two-hop Kafka pipeline with aiokafka alone.

Same run, same cluster, same durability and message sizes as jobstream:
  producer --(acks=all)--> bench-<id>-requests (60 partitions, RF 3, min.insync 2)
  relay group: consume a batch, produce one response per request --(acks=all)--> commit the
               batch's offsets once every ack is in (up to 4 batches in flight, commits in order)
  sink: reads bench-<id>-responses (60 partitions, RF 3, min.insync 2) and counts
Each role is its own process (spawned, one asyncio loop each), like jobstream's workers. The relays
mirror the three server workers. The figure is end-to-end messages/second: delivered to the sink
over first produce -> last delivery. The topics are created for the run and deleted after it.

Each request carries one operation and each response one result, in jobstream's wire form and with
its keys (jobstream.models): the bytes of a single-operation job. jobstream packs up to 100
operations of a job into one message, so for bigger jobs it sends fewer, larger messages than this.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import time
import uuid
from collections import deque
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from jobstream.models import OperationRequest, OperationResult, request_messages, result_messages
from jobstream.settings import DEFAULT_BROKERS

log = logging.getLogger("bench.raw_limit")

PARTITIONS = 60
REPLICATION = 3
MIN_INSYNC = 2
LINGER_MS = 5  # as jobstream's producers (faust producer_linger_ms=5)
WINDOW = 5000  # messages in flight per producer, as jobstream's send_many_durably
PIPELINE = 4  # relay batches awaiting acks at once
MAX_BACKLOG = 50_000  # produced but not yet delivered: keeps the run steady and its drain short
JOBS = 500  # distinct job ids: responses are keyed by job id, like jobstream's


def sample_messages(count: int = 2000) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(request key, request value, response key, response value) of jobstream-shaped events."""
    out = []
    for i in range(count):
        job_id = uuid.UUID(int=i % JOBS + 1).hex
        index = i // JOBS + 1
        total = 100
        text = f"{i % 997} + {i % 13} * 2 - {i % 7}"
        [request] = request_messages([OperationRequest(job_id, index, total, text)])
        [result] = result_messages(
            [OperationResult(job_id, index, total, "succeeded", result=str(i % 997))]
        )
        out.append((*request, *result))
    return out


def message_sizes() -> dict[str, float]:
    """Average key and value sizes (bytes) of the events the raw pipeline sends."""
    messages = sample_messages()
    n = len(messages)
    return {
        "request_key": sum(len(m[0]) for m in messages) / n,
        "request_value": sum(len(m[1]) for m in messages) / n,
        "response_key": sum(len(m[2]) for m in messages) / n,
        "response_value": sum(len(m[3]) for m in messages) / n,
    }


# --- the three roles, each in its own process ------------------------------------------------


def _producer_main(
    brokers: list[str], topic: str, seconds: float, limit: int, received: Any, out: Any
) -> None:
    asyncio.run(_produce(brokers, topic, seconds, limit, received, out))


async def _produce(
    brokers: list[str], topic: str, seconds: float, limit: int, received: Any, out: Any
) -> None:
    messages = sample_messages()
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=LINGER_MS)
    await producer.start()
    sent = 0
    in_flight: deque[asyncio.Future[Any]] = deque()
    started = time.time()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end and sent < limit:
            key, value, _, _ = messages[sent % len(messages)]
            in_flight.append(await producer.send(topic, value=value, key=key))
            sent += 1
            if len(in_flight) >= WINDOW:
                await in_flight.popleft()
            # The pipeline's pace, not a growing backlog (the counter lives in another process).
            while sent - received.value > MAX_BACKLOG and time.monotonic() < end:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        await asyncio.gather(*in_flight)
        finished = time.time()
    finally:
        await producer.stop()
    out.send({"sent": sent, "started": started, "finished": finished})


def _relay_main(
    brokers: list[str], source: str, target: str, group: str, assigned: Any, stop: Any
) -> None:
    asyncio.run(_relay(brokers, source, target, group, assigned, stop))


async def _relay(
    brokers: list[str], source: str, target: str, group: str, assigned: Any, stop: Any
) -> None:
    """Consume a batch, publish a response per request, and commit the batch's offsets once
    every response is acknowledged (at least once, like jobstream). Up to PIPELINE batches are
    in flight: the next batch is fetched while the previous one's acks are awaited, and commits
    happen in order."""
    responses = {m[0]: (m[2], m[3]) for m in sample_messages()}
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=brokers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=1 << 20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=LINGER_MS)
    await consumer.start()
    await producer.start()
    in_flight: asyncio.Queue[tuple[list[Any], dict[TopicPartition, int]]] = asyncio.Queue(
        maxsize=PIPELINE
    )

    async def commit_in_order() -> None:
        while True:
            futures, offsets = await in_flight.get()
            await asyncio.gather(*futures)
            await consumer.commit(offsets)

    committer = asyncio.create_task(commit_in_order())
    try:
        while not stop.is_set():
            assigned.value = len(consumer.assignment())
            batches = await consumer.getmany(timeout_ms=200, max_records=WINDOW)
            futures, offsets = [], {}
            for tp, records in batches.items():
                for record in records:
                    key, value = responses[record.key]
                    futures.append(await producer.send(target, value=value, key=key))
                offsets[tp] = records[-1].offset + 1
            if futures:
                await in_flight.put((futures, offsets))
    finally:
        committer.cancel()
        await producer.stop()
        await consumer.stop()


def _sink_main(brokers: list[str], topic: str, received: Any, last: Any, stop: Any) -> None:
    asyncio.run(_sink(brokers, topic, received, last, stop))


async def _sink(brokers: list[str], topic: str, received: Any, last: Any, stop: Any) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=brokers, enable_auto_commit=False, max_partition_fetch_bytes=1 << 20
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        count = 0
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            got = sum(len(records) for records in batches.values())
            if got:
                count += got
                received.value = count
                last.value = time.time()
    finally:
        await consumer.stop()


# --- orchestration ---------------------------------------------------------------------------


async def _create_topics(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    topics = [
        NewTopic(
            name=name,
            num_partitions=PARTITIONS,
            replication_factor=REPLICATION,
            topic_configs={"min.insync.replicas": str(MIN_INSYNC)},
        )
        for name in names
    ]
    response = await admin.create_topics(topics, timeout_ms=60_000)
    for name, code, *rest in response.topic_errors:
        if code != 0:
            raise RuntimeError(f"creating topic {name} failed: error {code} {rest}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        described = await admin.describe_topics(names)
        if all(
            t["error_code"] == 0
            and len(t["partitions"]) == PARTITIONS
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"topics {names} did not get leaders within 60 s")


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(0.2)


async def measure(
    brokers: list[str] | None = None,
    seconds: float = 20.0,
    limit: int = 2_000_000,
    relays: int = 3,
    delivery_timeout: float = 120.0,
) -> dict[str, Any]:
    """Run the raw pipeline once; returns throughput figures and what was measured."""
    brokers = brokers or DEFAULT_BROKERS.split(",")
    run = uuid.uuid4().hex[:8]
    source, target = f"bench-{run}-requests", f"bench-{run}-responses"
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers, request_timeout_ms=60_000)
    await admin.start()
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    processes: list[Any] = []
    try:
        await _create_topics(admin, [source, target])
        assigned = [ctx.Value("i", 0) for _ in range(relays)]
        received, last = ctx.Value("q", 0), ctx.Value("d", 0.0)
        for n in range(relays):
            args = (brokers, source, target, f"bench-{run}-relay", assigned[n], stop)
            processes.append(ctx.Process(target=_relay_main, args=args, daemon=True))
        processes.append(
            ctx.Process(
                target=_sink_main, args=(brokers, target, received, last, stop), daemon=True
            )
        )
        for process in processes:
            process.start()
        # Every relay holds partitions, and together all 60: the group is stable before load.
        await _wait(
            lambda: all(a.value > 0 for a in assigned) and sum(a.value for a in assigned) == 60,
            90,
            "relay group assignment",
        )
        await asyncio.sleep(1.0)
        parent, child = ctx.Pipe(duplex=False)
        producer = ctx.Process(
            target=_producer_main,
            args=(brokers, source, seconds, limit, received, child),
            daemon=True,
        )
        progress: list[tuple[float, int]] = []
        sampler = asyncio.create_task(_sample(received, progress))
        producer.start()
        processes.append(producer)
        produced = await asyncio.to_thread(_recv, parent, seconds + 120)
        await _wait(
            lambda: received.value >= produced["sent"], delivery_timeout, "delivery to the sink"
        )
        sampler.cancel()
        delivered, finished = received.value, last.value
    finally:
        stop.set()
        for process in processes:
            await asyncio.to_thread(process.join, 15)
            if process.is_alive():
                process.kill()
        try:
            await admin.delete_topics([source, target], timeout_ms=30_000)
        finally:
            await admin.close()
    elapsed = finished - produced["started"]
    return {
        "topics": [source, target],
        "partitions": PARTITIONS,
        "replication_factor": REPLICATION,
        "min_insync_replicas": MIN_INSYNC,
        "acks": "all",
        "linger_ms": LINGER_MS,
        "relays": relays,
        "messages": delivered,
        "produce_seconds": round(produced["finished"] - produced["started"], 3),
        "produce_msgs_per_s": produced["sent"] / (produced["finished"] - produced["started"]),
        "end_to_end_seconds": round(elapsed, 3),
        "msgs_per_s": delivered / elapsed if elapsed > 0 else None,
        "steady_msgs_per_s": steady_slope(progress),
        "message_bytes": message_sizes(),
    }


async def _sample(received: Any, into: list[tuple[float, int]]) -> None:
    while True:
        into.append((time.monotonic(), received.value))
        await asyncio.sleep(0.5)


def steady_slope(progress: list[tuple[float, int]]) -> float | None:
    """Delivery rate over the middle of the run: from 20 % to 80 % of the messages delivered."""
    if len(progress) < 3 or progress[-1][1] <= 0:
        return None
    final = progress[-1][1]
    low = next((p for p in progress if p[1] >= 0.2 * final), None)
    high = next((p for p in progress if p[1] >= 0.8 * final), None)
    if low is None or high is None or high[0] <= low[0]:
        return None
    return (high[1] - low[1]) / (high[0] - low[0])


def _recv(connection: Any, timeout: float) -> dict[str, Any]:
    if not connection.poll(timeout):
        raise TimeoutError(f"the raw producer did not report within {timeout:g} s")
    return connection.recv()
