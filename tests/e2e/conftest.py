"""The running system for end-to-end tests: 3 client + 3 server workers on the real services.

By default the session starts the workers with `scripts/dev.sh` (reconciliation tightened so the
crash tests finish in seconds) and stops them afterwards. With JOBSTREAM_E2E_EXTERNAL=1 the tests
use workers that are already running (`make dev-start`).

With JOBSTREAM_E2E_TOKEN=<token> (or =1 for a random one) the workers are started with that one
API token (JOBSTREAM_API_TOKENS) and every request of the session carries it (AUTH_HEADERS); with
JOBSTREAM_E2E_EXTERNAL=1 it must be one of the running workers' tokens. Unset, the API is open.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from helpers import eventually
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parents[2]
DEV = str(ROOT / "scripts" / "dev.sh")
PID_DIR = Path(os.environ.get("JOBSTREAM_STATE_DIR", ROOT / ".infra")) / "pids"
CLIENT_PORTS = (8080, 8081, 8082)
SERVER_PORTS = (8090, 8091, 8092)
#: The API token the session uses, or None: the API is open (see the module's docstring).
TOKEN: str | None = {"": None, "1": secrets.token_urlsafe(24)}.get(
    os.environ.get("JOBSTREAM_E2E_TOKEN", ""), os.environ.get("JOBSTREAM_E2E_TOKEN")
)
#: Headers that authenticate a request to the API (empty when it is open).
AUTH_HEADERS = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}
#: Tight reconciliation for the tests: a lost operation is re-published after a few seconds.
E2E_ENV = {
    "JOBSTREAM_RECONCILE_AFTER": "6",
    "JOBSTREAM_RECONCILE_INTERVAL": "2",
    "JOBSTREAM_API_TOKENS": TOKEN or "",
}


@dataclass
class Stack:
    """The workers under test and a shared HTTP session."""

    session: aiohttp.ClientSession
    mongo: AsyncMongoClient
    external: bool
    #: The API token every request of `session` carries, or None when the API is open.
    token: str | None = None

    @property
    def api(self) -> str:
        """Base URL of the first client worker's API."""
        return f"http://127.0.0.1:{CLIENT_PORTS[0]}"

    def client(self, n: int) -> str:
        """Base URL of client worker n (0-2)."""
        return f"http://127.0.0.1:{CLIENT_PORTS[n % 3]}"

    async def request(
        self, method: str, path: str, *, base: str | None = None, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
        """Send a request; returns status, parsed JSON body (or None) and headers."""
        async with self.session.request(method, (base or self.api) + path, **kwargs) as response:
            raw = await response.read()
            body = None
            if raw:
                assert response.content_type == "application/json", (response.status, raw[:200])
                body = await response.json()
            return response.status, body, response.headers

    async def submit(self, text: str, *, base: str | None = None) -> str:
        """Create a job from plain text; returns its id."""
        status, body, _ = await self.request(
            "POST",
            "/api/jobs",
            base=base,
            data=text.encode(),
            headers={"Content-Type": "text/plain"},
        )
        assert status == 201, body
        return body["id"]

    async def job(self, job_id: str) -> dict[str, Any]:
        """The job as the API shows it."""
        status, body, _ = await self.request("GET", f"/api/jobs/{job_id}")
        assert status == 200, body
        return body

    async def wait_completed(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until the job is completed; returns it."""

        async def completed() -> dict[str, Any] | None:
            job = await self.job(job_id)
            return job if job["status"] == "completed" else None

        return await eventually(completed, timeout=timeout, interval=0.2, description=job_id)

    async def operations(self, job_id: str) -> list[dict[str, Any]]:
        """Every operation of a job, through the paginated API."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            status, body, _ = await self.request(
                "GET", f"/api/jobs/{job_id}/operations?page={page}&size=100"
            )
            assert status == 200, body
            items += body["items"]
            if len(items) >= body["total"] or not body["items"]:
                return items
            page += 1

    def kill_worker(self, name: str) -> None:
        """SIGKILL one worker process (client-1..3, server-1..3)."""
        pid = int((PID_DIR / f"{name}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid):  # gone, or a zombie nobody has reaped yet
            assert time.monotonic() < deadline, f"{name} (pid {pid}) survived SIGKILL"
            time.sleep(0.01)

    def start_worker(self, name: str) -> None:
        """Start one worker again and wait for its health check."""
        subprocess.run(
            [DEV, "start-one", name], check=True, timeout=120, env={**os.environ, **E2E_ENV}
        )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def _pipeline_ready(stack: Stack) -> None:
    """Every client answers and a job submitted to each completes (consumer groups assigned)."""
    for n in range(3):
        job_id = await stack.submit("1 + 1\n2 * 3\n", base=stack.client(n))
        await stack.wait_completed(job_id, timeout=120)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(service_checker: Any, mongo_url: str) -> AsyncIterator[Stack]:
    """The 3 + 3 workers, ready to take jobs."""
    await service_checker.require("kafka", "ferretdb")
    external = os.environ.get("JOBSTREAM_E2E_EXTERNAL") == "1"
    if not external:
        env = {**os.environ, **E2E_ENV}
        await asyncio.to_thread(subprocess.run, [DEV, "start"], check=True, timeout=240, env=env)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), headers=AUTH_HEADERS)
    mongo: AsyncMongoClient = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    s = Stack(session, mongo, external, TOKEN)
    try:
        await _pipeline_ready(s)
        yield s
    finally:
        await session.close()
        await mongo.close()
        if not external:
            await asyncio.to_thread(subprocess.run, [DEV, "stop"], timeout=120)


@pytest.fixture
def database(stack: Stack) -> Any:
    """The database the workers write to (for checks straight from MongoDB)."""
    return stack.mongo[os.environ.get("JOBSTREAM_MONGO_DATABASE", "jobstream")]
