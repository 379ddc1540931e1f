"""Turning a submitted body into a job's list of expressions, with every bound a user controls.

Pure: no Faust, no I/O. Expressions are not parsed here: a syntax error ends that one operation as
failed (as the original did), while a malformed *body* rejects the whole job with a clear 4xx.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from jobstream.errors import InvalidJob, JobTooLarge, UnsupportedMediaType

TEXT = "text/plain"
JSON = "application/json"
SUPPORTED = (TEXT, JSON)


@dataclass(frozen=True)
class SubmissionLimits:
    """Bounds on a submitted job."""

    max_body_bytes: int = 4 * 1024 * 1024
    max_line_length: int = 1000
    max_operations: int = 100_000


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower-cased, without parameters."""
    if not content_type:
        return TEXT  # curl --data-binary without -H: be lenient, plain text is the native form
    return content_type.split(";", 1)[0].strip().lower()


def parse_body(body: bytes, content_type: str | None, limits: SubmissionLimits) -> list[str]:
    """The expressions of a job body; raises InvalidJob (400), JobTooLarge (413) or 415."""
    if len(body) > limits.max_body_bytes:
        raise JobTooLarge(f"body is {len(body)} bytes; the limit is {limits.max_body_bytes}")
    kind = media_type(content_type)
    if kind == TEXT:
        expressions = _from_text(body, limits)
    elif kind == JSON:
        expressions = _from_json(body, limits)
    else:
        raise UnsupportedMediaType(
            f"content type {kind!r} is not supported; send text/plain or application/json"
        )
    if not expressions:
        raise InvalidJob("the job has no operations: send at least one expression")
    return expressions


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJob(f"body is not valid UTF-8 (byte {exc.start})") from None


def _check(text: str, where: str, limits: SubmissionLimits) -> None:
    if len(text) > limits.max_line_length:
        raise JobTooLarge(
            f"{where} is {len(text)} characters long; the limit is {limits.max_line_length}"
        )
    for column, char in enumerate(text, start=1):
        if (char < " " and char != "\t") or "\x7f" <= char <= "\x9f" or char in "\u2028\u2029":
            raise InvalidJob(f"{where} contains control character {char!r} at column {column}")


def _from_text(body: bytes, limits: SubmissionLimits) -> list[str]:
    expressions: list[str] = []
    # split on \n only: str.splitlines() would also split on \x0c, \x1c, \u2028... (which are
    # rejected as control characters) and make line numbers disagree with the user's editor
    for number, line in enumerate(_decode(body).split("\n"), start=1):
        stripped = line.removesuffix("\r").strip(" \t")
        if not stripped or stripped.startswith("#"):
            continue  # blank lines and comments are not operations
        _check(stripped, f"line {number}", limits)
        expressions.append(stripped)
        if len(expressions) > limits.max_operations:
            raise JobTooLarge(f"the job has more than {limits.max_operations} operations")
    return expressions


def _from_json(body: bytes, limits: SubmissionLimits) -> list[str]:
    _decode(body)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJob(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("operations"), list):
        raise InvalidJob('JSON body must be an object like {"operations": ["1 + 2", ...]}')
    items = document["operations"]
    if len(items) > limits.max_operations:
        raise JobTooLarge(
            f"the job has {len(items)} operations; the limit is {limits.max_operations}"
        )
    expressions: list[str] = []
    for position, item in enumerate(items):
        where = f"operations[{position}]"
        stripped = item.strip() if isinstance(item, str) else ""
        if not stripped:
            raise InvalidJob(f"{where} must be a non-empty string")
        _check(stripped, where, limits)
        expressions.append(stripped)
    return expressions
