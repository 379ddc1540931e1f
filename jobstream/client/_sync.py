"""The synchronous client (`jobstream.client.Client`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
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
_sleep = time.sleep


class Client:
    """A client of the jobstream API; use it as a context manager, or call `close()`.

    `base_url` and `token` default to JOBSTREAM_API_URL and JOBSTREAM_API_TOKEN (then to
    http://127.0.0.1:8080 and no token). Reads and deletes are retried on connection failures and
    503s; a job submission is retried only when it cannot have reached the server.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retry: Retry = DEFAULT_RETRY,
        poll: Poll = DEFAULT_POLL,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = Config.resolve(base_url, token, timeout=timeout, retry=retry, poll=poll)
        self._http = httpx.Client(
            base_url=self.config.base_url,
            headers=self.config.headers(),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    # --- the API ---

    def submit(self, source: Source) -> Submission:
        """Create a job from a Path, text or bytes (one expression per line), or a list."""
        body, kind = submission_body(source)
        data = self._request("POST", "/api/jobs", content=body, headers={"Content-Type": kind})
        return Submission.from_json(data)

    def job(self, job_id: str) -> Job:
        """The job with its counters; raises NotFound when there is none."""
        return Job.from_json(self._request("GET", job_path(job_id)))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is finished and return it; raises WaitTimeout after `timeout` s."""
        waiter = Waiter(job_id, timeout, self.config.poll)
        while True:
            held = waiter.hold()
            started = time.monotonic()
            job = Job.from_json(
                self._request(
                    "GET",
                    job_path(job_id),
                    params={"wait": held} if held else None,
                    timeout=self.config.timeout + held,
                )
            )
            pause = waiter.after(job, held, time.monotonic() - started)
            if pause is None:
                return job
            _sleep(pause)

    def watch(
        self, job_id: str, interval: float | None = None, *, timeout: float | None = None
    ) -> Iterator[Job]:
        """The job's state now, then each time its counters change, ending once it is finished.

        Follows the job's event stream (`GET /api/jobs/{id}/events`): no polling, one database
        read per connection. A stream that ends early or breaks is opened again (reconnections
        follow the `retry` policy). Raises NotFound when the job is, or gets, deleted.
        `interval` (default `poll.watch_interval`) is the least time between two yielded states:
        one that comes sooner is held back for a newer one (the final state never is). With
        `timeout`, raises WaitTimeout once it passes; it is checked at each change or keepalive
        (every 15 s), so a job that stops moving is noticed up to 15 s late.
        """
        pause = self.config.poll.watch_interval if interval is None else interval
        watcher = Watcher(job_id, self.config, timeout, pause)
        while True:
            try:
                with self._http.stream(
                    "GET",
                    watcher.path,
                    headers=STREAM_HEADERS,
                    timeout=self.config.stream_timeout(),
                ) as response:
                    if watcher.opened(response):
                        for text in response.iter_text():
                            yield from watcher.read(text)
                            if watcher.finished:
                                return
                            watcher.check_deadline()
                        yield from watcher.read_end()
                        if watcher.finished:
                            return
                        wait = watcher.on_end()
                    else:
                        response.read()
                        wait = watcher.on_answer(response)
            except httpx.TransportError as exc:
                wait = watcher.on_error(exc)
            _sleep(wait)

    def operations(
        self, job_id: str, status: str | None = None, *, page_size: int = 100
    ) -> Iterator[Operation]:
        """Every operation of the job in order (every page), or only those with `status`."""
        for item in self._pages(job_path(job_id, "operations"), page_size, status):
            yield Operation.from_json(item)

    def operation(self, job_id: str, index: int | str) -> Operation:
        """One operation, by its 1-based index (or its id, "<job_id>-<index>")."""
        return Operation.from_json(self._request("GET", job_path(job_id, "operations", index)))

    def jobs(self, status: str | None = None, *, page_size: int = 100) -> Iterator[Job]:
        """Every job, newest first, or only those with `status`."""
        seen: set[str] = set()
        for item in self._pages("/api/jobs", page_size, status):
            job = Job.from_json(item)
            if job.id not in seen:  # new jobs push older ones onto the next page
                seen.add(job.id)
                yield job

    def delete(self, job_id: str) -> None:
        """Remove the job, its operations and results; raises NotFound when there is none."""
        self._request("DELETE", job_path(job_id))

    # --- plumbing ---

    def _pages(self, path: str, size: int, status: str | None) -> Iterator[dict[str, Any]]:
        pager = Pager(path, size, status)
        while not pager.done:
            url, params = pager.request()
            yield from pager.advance(self._request("GET", url, params=params))

    def _request(
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
                response = self._http.request(
                    method, url, params=params, content=content, headers=headers, timeout=seconds
                )
            except httpx.TransportError as exc:
                _sleep(attempts.on_error(exc))
                continue
            pause = attempts.on_response(response)
            if pause is None:
                return attempts.result(response)
            _sleep(pause)
