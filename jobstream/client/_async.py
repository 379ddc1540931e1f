"""The asynchronous client (`jobstream.client.AsyncClient`); the same API as `Client`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import PurePath
from types import TracebackType
from typing import Any

import httpx

from jobstream.client._core import (
    DEFAULT_POLL,
    DEFAULT_RETRY,
    STREAM_HEADERS,
    Attempts,
    Config,
    Pager,
    Poll,
    Retry,
    Source,
    Waiter,
    Watcher,
    job_path,
    submission_body,
)
from jobstream.client.models import Job, Operation, Submission

#: How the client pauses (between retries and polls); the unit tests replace it to run instantly.
_sleep = asyncio.sleep


class AsyncClient:
    """An asyncio client of the jobstream API; `async with` it, or `await aclose()`.

    Configured and behaving as `Client` (same defaults, retries, errors); the iterators are async.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retry: Retry = DEFAULT_RETRY,
        poll: Poll = DEFAULT_POLL,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = Config.resolve(base_url, token, timeout=timeout, retry=retry, poll=poll)
        self._http = httpx.AsyncClient(
            base_url=self.config.base_url,
            headers=self.config.headers(),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    # --- the API ---

    async def submit(self, source: Source) -> Submission:
        """Create a job from a Path, text or bytes (one expression per line), or a list."""
        if isinstance(source, PurePath):  # reading a file blocks: not on the event loop
            body, kind = await asyncio.to_thread(submission_body, source)
        else:
            body, kind = submission_body(source)
        data = await self._request(
            "POST", "/api/jobs", content=body, headers={"Content-Type": kind}
        )
        return Submission.from_json(data)

    async def job(self, job_id: str) -> Job:
        """The job with its counters; raises NotFound when there is none."""
        return Job.from_json(await self._request("GET", job_path(job_id)))

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job is finished and return it; raises WaitTimeout after `timeout` s."""
        waiter = Waiter(job_id, timeout, self.config.poll)
        while True:
            held = waiter.hold()
            started = time.monotonic()
            job = Job.from_json(
                await self._request(
                    "GET",
                    job_path(job_id),
                    params={"wait": held} if held else None,
                    timeout=self.config.timeout + held,
                )
            )
            pause = waiter.after(job, held, time.monotonic() - started)
            if pause is None:
                return job
            await _sleep(pause)

    async def watch(
        self, job_id: str, interval: float | None = None, *, timeout: float | None = None
    ) -> AsyncIterator[Job]:
        """The job's state now, then each time its counters change, ending once it is finished.

        Follows the job's event stream without polling, as `Client.watch` does (same `interval`,
        `timeout`, reconnections and errors).
        """
        pause = self.config.poll.watch_interval if interval is None else interval
        watcher = Watcher(job_id, self.config, timeout, pause)
        while True:
            try:
                async with self._http.stream(
                    "GET",
                    watcher.path,
                    headers=STREAM_HEADERS,
                    timeout=self.config.stream_timeout(),
                ) as response:
                    if watcher.opened(response):
                        async for text in response.aiter_text():
                            for job in watcher.read(text):
                                yield job
                            if watcher.finished:
                                return
                            watcher.check_deadline()
                        for job in watcher.read_end():
                            yield job
                        if watcher.finished:
                            return
                        wait = watcher.on_end()
                    else:
                        await response.aread()
                        wait = watcher.on_answer(response)
            except httpx.TransportError as exc:
                wait = watcher.on_error(exc)
            await _sleep(wait)

    async def operations(
        self, job_id: str, status: str | None = None, *, page_size: int = 100
    ) -> AsyncIterator[Operation]:
        """Every operation of the job in order (every page), or only those with `status`."""
        async for item in self._pages(job_path(job_id, "operations"), page_size, status):
            yield Operation.from_json(item)

    async def operation(self, job_id: str, index: int | str) -> Operation:
        """One operation, by its 1-based index (or its id, "<job_id>-<index>")."""
        return Operation.from_json(
            await self._request("GET", job_path(job_id, "operations", index))
        )

    async def jobs(self, status: str | None = None, *, page_size: int = 100) -> AsyncIterator[Job]:
        """Every job, newest first, or only those with `status`."""
        seen: set[str] = set()
        async for item in self._pages("/api/jobs", page_size, status):
            job = Job.from_json(item)
            if job.id not in seen:  # new jobs push older ones onto the next page
                seen.add(job.id)
                yield job

    async def delete(self, job_id: str) -> None:
        """Remove the job, its operations and results; raises NotFound when there is none."""
        await self._request("DELETE", job_path(job_id))

    # --- plumbing ---

    async def _pages(
        self, path: str, size: int, status: str | None
    ) -> AsyncIterator[dict[str, Any]]:
        pager = Pager(path, size, status)
        while not pager.done:
            url, params = pager.request()
            for item in pager.advance(await self._request("GET", url, params=params)):
                yield item

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        seconds = self.config.timeout if timeout is None else timeout
        attempts = Attempts(method, self.config.url(url), self.config.retry, seconds)
        while True:
            try:
                response = await self._http.request(
                    method, url, params=params, content=content, headers=headers, timeout=seconds
                )
            except httpx.TransportError as exc:
                await _sleep(attempts.on_error(exc))
                continue
            pause = attempts.on_response(response)
            if pause is None:
                return attempts.result(response)
            await _sleep(pause)
