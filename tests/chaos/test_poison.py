"""Poison messages on both topics: logged, counted, parked on the dead-letter topic with their
origin, and every partition keeps flowing (jobs submitted afterwards complete)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from chaoslib import (
    BROKERS,
    CLIENTS,
    DEAD_LETTER_TOPIC,
    LOG_DIR,
    REQUEST_TOPIC,
    RESPONSE_TOPIC,
    SERVERS,
    WORKERS,
    Load,
    System,
    assert_passed,
    delta,
    generate_load,
    log,
    now,
    run_scenario,
)
from helpers import EventuallyTimeout, eventually

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

#: Partitions that also get a null value (tombstone) and a JSON value that is not an object.
EXTRA_KIND_PARTITIONS = (0, 1, 2)


@dataclass(frozen=True)
class Poison:
    topic: str
    partition: int
    offset: int
    kind: str
    value: bytes | None


def poisons(token: str, partition: int) -> list[tuple[str, bytes | None]]:
    """The poison values sent to one partition of a topic."""
    kinds: list[tuple[str, bytes | None]] = [
        ("undecodable", b"\xff\xfe\x00 chaos " + token.encode() + b" \xc3\x28 not json"),
        ("wrong-schema", json.dumps({"chaos": token, "job_id": 42, "index": "one"}).encode()),
    ]
    if partition in EXTRA_KIND_PARTITIONS:
        kinds += [("null-value", None), ("not-an-object", json.dumps(["chaos", token]).encode())]
    return kinds


async def send_poison(producer: AIOKafkaProducer, token: str) -> list[Poison]:
    """Poison on every partition of the request and response topics."""
    pending = []
    for topic in (REQUEST_TOPIC, RESPONSE_TOPIC):
        for partition in sorted(await producer.partitions_for(topic)):
            for kind, value in poisons(token, partition):
                future = await producer.send(
                    topic, value=value, key=f"chaos-{token}".encode(), partition=partition
                )
                pending.append((topic, partition, kind, value, future))
    sent = []
    for topic, partition, kind, value, future in pending:
        metadata = await future
        sent.append(Poison(topic, partition, metadata.offset, kind, value))
    return sent


def log_sizes() -> dict[str, int]:
    sizes = {}
    for worker in WORKERS:
        path = LOG_DIR / f"{worker}.log"
        sizes[worker] = path.stat().st_size if path.exists() else 0
    return sizes


def log_lines_since(sizes: dict[str, int]) -> list[str]:
    """The workers' log messages written since `sizes` was taken."""
    messages = []
    for worker, size in sizes.items():
        path = LOG_DIR / f"{worker}.log"
        if not path.exists():
            continue
        with path.open("rb") as handle:
            handle.seek(size)
            for raw in handle.read().decode(errors="replace").splitlines():
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(entry, dict) and str(entry.get("level", "")).lower() == "error":
                    messages.append(str(entry.get("message", "")))
    return messages


async def test_poison_messages_are_dead_lettered_and_partitions_keep_flowing(
    system: System,
) -> None:
    token = uuid.uuid4().hex[:12]
    producer = AIOKafkaProducer(bootstrap_servers=BROKERS, acks="all", request_timeout_ms=30_000)
    consumer = AIOKafkaConsumer(bootstrap_servers=BROKERS, group_id=None, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        dead_letter_partitions = [
            TopicPartition(DEAD_LETTER_TOPIC, p)
            for p in sorted(await producer.partitions_for(DEAD_LETTER_TOPIC))
        ]
        consumer.assign(dead_letter_partitions)
        start = await consumer.end_offsets(dead_letter_partitions)
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        sizes = log_sizes()
        await system.sampler.sample()
        before = system.sampler.snapshot()
        injected = now()
        sent = await send_poison(producer, token)
        by_topic = {
            t: sum(1 for p in sent if p.topic == t) for t in (REQUEST_TOPIC, RESPONSE_TOPIC)
        }
        log(f"sent {len(sent)} poison messages: {by_topic}")

        async def fault(load: Load) -> dict[str, Any]:
            # the poison is already in every partition: the whole load comes after it
            return {
                "injected_at": injected,
                "restored_at": injected,
                "poison_sent": by_topic,
                "poison_kinds": sorted({p.kind for p in sent}),
            }

        async def extra(record: dict[str, Any]) -> list[str]:
            problems: list[str] = []
            # counted: dead_letters_total{topic} on the workers that consume each topic
            expected = {
                REQUEST_TOPIC: (SERVERS, by_topic[REQUEST_TOPIC]),
                RESPONSE_TOPIC: (CLIENTS, by_topic[RESPONSE_TOPIC]),
            }

            async def counted() -> dict[str, int]:
                await system.sampler.sample()
                after = system.sampler.snapshot()
                return {
                    topic: int(delta(before, after, "dead_letters_total", workers, topic=topic))
                    for topic, (workers, _) in expected.items()
                }

            def all_counted(seen: dict[str, int]) -> bool:
                return all(seen[t] >= n for t, (_, n) in expected.items())

            try:
                seen = await eventually(lambda: _when(counted, all_counted), timeout=60, interval=1)
            except EventuallyTimeout:
                seen = await counted()
            record["dead_letters_counted"] = seen
            record["dead_letters"] = sum(seen.values())
            for topic, (_, n) in expected.items():
                if seen[topic] != n:
                    problems.append(
                        f"dead_letters_total{{topic={topic}}} grew by {seen[topic]}, not {n}"
                    )

            # parked on the dead-letter topic with their origin in headers
            wanted = {(p.topic, p.partition, p.offset): p for p in sent}
            found: dict[tuple[str, int, int], dict[str, Any]] = {}
            deadline = now() + 60
            while len(found) < len(wanted) and now() < deadline:
                batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
                for messages in batches.values():
                    for m in messages:
                        headers = {k: v.decode(errors="replace") for k, v in m.headers or ()}
                        try:
                            origin = (
                                headers["source-topic"],
                                int(headers["source-partition"]),
                                int(headers["source-offset"]),
                            )
                        except (KeyError, ValueError):
                            continue
                        if origin in wanted:
                            found[origin] = {"headers": headers, "value": m.value}
            record["dead_letters_found"] = len(found)
            missing = [k for k in wanted if k not in found]
            if missing:
                problems.append(
                    f"{len(missing)} of {len(wanted)} poison messages not on {DEAD_LETTER_TOPIC}, "
                    f"e.g. {[(k, wanted[k].kind) for k in missing[:5]]}"
                )
            for origin, got in found.items():
                poison = wanted[origin]
                if not got["headers"].get("reason"):
                    problems.append(f"{origin} ({poison.kind}) has no reason header")
                if (got["value"] or b"") != (poison.value or b""):  # a null value is parked empty
                    problems.append(f"{origin} ({poison.kind}) parked with another value")
            reasons = {}
            for origin, got in found.items():
                reasons.setdefault(wanted[origin].kind, got["headers"].get("reason", ""))
            record["dead_letter_reasons"] = reasons

            # logged: one ERROR line per poison message, naming topic, partition and offset
            messages = "\n".join(log_lines_since(sizes))
            unlogged = [
                k for k in wanted if f"dead letter from {k[0]}[{k[1]}]@{k[2]}:" not in messages
            ]
            record["dead_letters_logged"] = len(wanted) - len(unlogged)
            if unlogged:
                problems.append(f"{len(unlogged)} poison messages not logged, e.g. {unlogged[:5]}")
            return problems

        record = await run_scenario(
            system,
            "poison-messages",
            "undecodable, wrong-schema, non-object and null events on every partition of both "
            "topics, then a load",
            fault,
            specs=generate_load(20, seed=501, max_ops=300),
            spacing=0.3,
            extra=extra,
        )
    finally:
        await consumer.stop()
        await producer.stop()
    assert_passed(record)


async def _when(fetch: Any, accept: Any) -> Any:
    value = await fetch()
    return value if accept(value) else None
