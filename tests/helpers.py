"""Small helpers shared by the integration and end-to-end tests (no fixtures, no services).

`eventually` is the one way tests wait for something: it polls a condition against a deadline and
fails with the last thing it saw, so no test synchronises on a bare `sleep`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient

T = TypeVar("T")

#: Default per-request timeout of the HTTP helpers, in seconds.
HTTP_TIMEOUT = 5.0


class EventuallyTimeout(AssertionError):
    """A condition polled by `eventually` did not hold before its deadline."""


def unique_name(prefix: str = "test") -> str:
    """`<prefix>_<8 hex digits>`: a name no other test run uses (databases, topics, services)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def eventually(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.2,
    *,
    description: str | None = None,
    retry_on: tuple[type[BaseException], ...] = (AssertionError,),
) -> T:
    """Poll `predicate` until it returns a truthy value, and return that value.

    `predicate` may be a plain or an async callable. A falsy result, or an exception of a type in
    `retry_on` (by default AssertionError, so `assert`s can be used inside it), means "not yet".
    Each attempt is itself bounded by what is left of the deadline. When `timeout` seconds have
    passed, raises `EventuallyTimeout` (an AssertionError) naming the condition and the last result
    or exception seen. Any other exception propagates at once.
    """
    if timeout <= 0 or interval <= 0:
        raise ValueError("timeout and interval must be positive")
    what = description or getattr(predicate, "__qualname__", repr(predicate))
    deadline = time.monotonic() + timeout
    last_result: Any = None
    last_error: BaseException | None = None
    attempts = 0
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        try:
            result = predicate()
            if inspect.isawaitable(result):
                budget = max(remaining, 0.05)
                try:
                    result = await asyncio.wait_for(result, timeout=budget)
                except TimeoutError as exc:  # this attempt alone used up the deadline
                    raise TimeoutError(
                        f"an attempt was still running after {budget:.1f} s"
                    ) from exc
        except TimeoutError as exc:
            last_error = exc
        except retry_on as exc:
            last_error = exc
        else:
            if result:
                return result
            last_result, last_error = result, None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            seen = (
                f"last error: {type(last_error).__name__}: {last_error}"
                if last_error is not None
                else f"last result: {last_result!r}"
            )
            raise EventuallyTimeout(
                f"{what} did not hold within {timeout:g} s ({attempts} attempts); {seen}"
            ) from last_error
        await asyncio.sleep(min(interval, remaining))


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


async def get_json(
    url: str,
    *,
    params: dict[str, str] | None = None,
    request_timeout: float = HTTP_TIMEOUT,
    session: aiohttp.ClientSession | None = None,
) -> Any:
    """GET `url` and return its decoded JSON body; raises `aiohttp.ClientResponseError` on >= 400.

    Uses `session` when given, otherwise a session of its own that is closed before returning.
    """
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await get_json(url, params=params, request_timeout=request_timeout, session=own)
    async with session.get(url, params=params, timeout=_timeout(request_timeout)) as response:
        response.raise_for_status()
        return await response.json(content_type=None)


async def post_json(
    url: str,
    payload: Any,
    *,
    request_timeout: float = HTTP_TIMEOUT,
    session: aiohttp.ClientSession | None = None,
) -> tuple[int, Any]:
    """POST `payload` as JSON to `url`; returns `(status, decoded JSON body or None)`.

    Does not raise on error statuses, so tests can assert on 4xx answers.
    """
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await post_json(url, payload, request_timeout=request_timeout, session=own)
    async with session.post(url, json=payload, timeout=_timeout(request_timeout)) as response:
        body = await response.read()
        if not body:
            return response.status, None
        return response.status, await response.json(content_type=None)


# --- Kafka ---


async def topic_ready(admin: AIOKafkaAdminClient, name: str, partitions: int) -> bool:
    """Whether `name` exists with `partitions` partitions, each with a leader."""
    (topic,) = await admin.describe_topics([name])
    return (
        topic["error_code"] == 0
        and len(topic["partitions"]) == partitions
        and all(p["leader"] >= 0 and p["error_code"] == 0 for p in topic["partitions"])
    )


async def delete_topics(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Delete `names` (missing ones are ignored) and wait until the brokers no longer list them."""
    if not names:
        return
    await admin.delete_topics(names, timeout_ms=30_000)

    async def gone() -> bool:
        return not set(names) & set(await admin.list_topics())

    await eventually(gone, timeout=30, description=f"deletion of topics {names}")
