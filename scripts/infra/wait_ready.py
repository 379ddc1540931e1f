"""Wait until every local service really answers, or fail naming the ones that do not.

Kafka: metadata lists 3 brokers. FerretDB: `ping`. Jaeger: its query API answers. Prometheus: ready.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.request

from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

BROKERS = ["127.0.0.1:11092", "127.0.0.1:12092", "127.0.0.1:13092"]


async def kafka_ready() -> str | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKERS, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        brokers = len(cluster["brokers"])
        return None if brokers == 3 else f"Kafka metadata lists {brokers} brokers, not 3"
    finally:
        await admin.close()


async def ferretdb_ready() -> str | None:
    client: AsyncMongoClient = AsyncMongoClient(
        "mongodb://127.0.0.1:27017/", serverSelectionTimeoutMS=2000
    )
    try:
        reply = await client.admin.command("ping")
        return None if reply.get("ok") == 1 else f"FerretDB ping answered {reply}"
    finally:
        await client.close()


def http_ready(url: str) -> str | None:
    with urllib.request.urlopen(url, timeout=2) as response:
        return None if response.status == 200 else f"{url} answered {response.status}"


async def check(name: str) -> str | None:
    try:
        if name == "kafka":
            return await kafka_ready()
        if name == "ferretdb":
            return await ferretdb_ready()
        if name == "jaeger":
            return await asyncio.to_thread(http_ready, "http://127.0.0.1:16686/api/services")
        return await asyncio.to_thread(http_ready, "http://127.0.0.1:9090/-/ready")
    except Exception as exc:  # any failure means "not ready yet"; the last one is reported
        return f"{name}: {type(exc).__name__}: {exc}"


async def main(timeout: float) -> int:
    pending = {"kafka", "ferretdb", "jaeger", "prometheus"}
    problems: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        results = await asyncio.gather(*(check(name) for name in sorted(pending)))
        for name, problem in zip(sorted(pending), results, strict=True):
            if problem is None:
                pending.discard(name)
                print(f"[infra] {name} ready", file=sys.stderr)
            else:
                problems[name] = problem
        if pending:
            await asyncio.sleep(0.5)
    for name in sorted(pending):
        print(f"[infra] NOT READY {name}: {problems.get(name)}", file=sys.stderr)
    return 1 if pending else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=120.0)
    sys.exit(asyncio.run(main(parser.parse_args().timeout)))
