"""Behaviour of jobstream.models: the Kafka events' wire form and the API's documents."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstream.models import (
    InvalidEvent,
    Job,
    Operation,
    OperationRequest,
    OperationResult,
    operation_id,
)

JOB_ID = "0123456789abcdef0123456789abcdef"

REQUEST: dict[str, Any] = {
    "job_id": JOB_ID,
    "index": 2,
    "total": 5,
    "expression": "1 + 2",
    "attempt": 1,
}
RESULT: dict[str, Any] = {
    "job_id": JOB_ID,
    "index": 2,
    "total": 5,
    "status": "succeeded",
    "result": "3",
    "error": None,
}


def with_(base: dict[str, Any], **changes: Any) -> bytes:
    return orjson.dumps({**base, **changes})


def without(base: dict[str, Any], name: str) -> bytes:
    return orjson.dumps({k: v for k, v in base.items() if k != name})


# --- operation ids ------------------------------------------------------------------------------


def test_operation_id_is_job_id_dash_index() -> None:
    assert operation_id(JOB_ID, 1) == f"{JOB_ID}-1"
    assert operation_id(JOB_ID, 100_000) == f"{JOB_ID}-100000"


def test_result_knows_the_id_of_its_operation() -> None:
    result = OperationResult(JOB_ID, 7, 9, "failed", error="boom")
    assert result.operation_id == f"{JOB_ID}-7"


# --- OperationRequest ---------------------------------------------------------------------------


def test_request_round_trips_through_its_wire_form() -> None:
    # Given a request on its third delivery attempt
    request = OperationRequest(JOB_ID, 2, 5, "3 / 4 + 1", attempt=3)

    # When it is encoded and decoded
    decoded = OperationRequest.from_bytes(request.to_bytes())

    # Then nothing is lost
    assert decoded == request


def test_request_wire_form_is_a_json_object_with_every_field() -> None:
    request = OperationRequest(JOB_ID, 2, 5, "1 + 2")
    assert orjson.loads(request.to_bytes()) == REQUEST


def test_request_decodes_from_the_documented_wire_form() -> None:
    assert OperationRequest.from_bytes(orjson.dumps(REQUEST)) == OperationRequest(
        JOB_ID, 2, 5, "1 + 2", 1
    )


def test_request_ignores_unknown_fields() -> None:
    decoded = OperationRequest.from_bytes(with_(REQUEST, trace="x"))
    assert decoded == OperationRequest(JOB_ID, 2, 5, "1 + 2", 1)


UTF8_TEXT = st.characters(codec="utf-8")  # any code point but the lone surrogates


@given(
    job_id=st.text(UTF8_TEXT, max_size=40),
    index=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    total=st.integers(min_value=0, max_value=2**63 - 1),
    expression=st.text(UTF8_TEXT, max_size=200),
    attempt=st.integers(min_value=1, max_value=1000),
)
def test_any_request_round_trips(
    job_id: str, index: int, total: int, expression: str, attempt: int
) -> None:
    request = OperationRequest(job_id, index, total, expression, attempt)
    assert OperationRequest.from_bytes(request.to_bytes()) == request


# --- OperationResult ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [
        OperationResult(JOB_ID, 1, 1, "succeeded", result="1.75"),
        OperationResult(JOB_ID, 4, 9, "failed", error="division by zero at column 3"),
        OperationResult(JOB_ID, 4, 9, "failed"),
        OperationResult(JOB_ID, 100_000, 100_000, "succeeded", result="-0.5"),
    ],
    ids=["succeeded", "failed", "failed-without-message", "last-of-a-big-job"],
)
def test_result_round_trips_through_its_wire_form(result: OperationResult) -> None:
    assert OperationResult.from_bytes(result.to_bytes()) == result


def test_result_wire_form_is_a_json_object_with_every_field() -> None:
    result = OperationResult(JOB_ID, 2, 5, "succeeded", result="3")
    assert orjson.loads(result.to_bytes()) == RESULT


def test_result_without_result_and_error_fields_decodes_them_as_none() -> None:
    # Given a failed result whose optional fields are absent rather than null
    raw = orjson.dumps({"job_id": JOB_ID, "index": 1, "total": 1, "status": "failed"})

    # When it is decoded
    # Then they are None
    assert OperationResult.from_bytes(raw) == OperationResult(JOB_ID, 1, 1, "failed")


# --- malformed events ---------------------------------------------------------------------------

DECODERS = [OperationRequest.from_bytes, OperationResult.from_bytes]


@pytest.mark.parametrize("decode", DECODERS, ids=["request", "result"])
@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"{", b"\xff\xfe", b'{"job_id": "a",}', b"{'job_id': 'a'}"],
    ids=["empty", "text", "unclosed", "not-utf8", "trailing-comma", "single-quotes"],
)
def test_event_that_is_not_json_is_invalid(decode: Any, raw: bytes) -> None:
    with pytest.raises(InvalidEvent, match="event is not JSON"):
        decode(raw)


@pytest.mark.parametrize("decode", DECODERS, ids=["request", "result"])
@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[]", "list"), (b'"x"', "str"), (b"1", "int"), (b"null", "NoneType"), (b"true", "bool")],
)
def test_event_that_is_not_a_json_object_is_invalid(decode: Any, raw: bytes, kind: str) -> None:
    with pytest.raises(InvalidEvent, match=f"must be a JSON object, got {kind}"):
        decode(raw)


@pytest.mark.parametrize("decode", DECODERS, ids=["request", "result"])
def test_event_without_a_value_is_invalid(decode: Any) -> None:
    # A Kafka record can have a null value (a tombstone); it is not an event
    with pytest.raises(InvalidEvent, match="event has no value"):
        decode(None)


def test_invalid_event_is_a_value_error() -> None:
    assert issubclass(InvalidEvent, ValueError)


@pytest.mark.parametrize("name", list(REQUEST))
def test_request_without_a_field_is_invalid_and_names_it(name: str) -> None:
    with pytest.raises(InvalidEvent, match=f"field '{name}' must be"):
        OperationRequest.from_bytes(without(REQUEST, name))


@pytest.mark.parametrize("name", ["job_id", "index", "total", "status"])
def test_result_without_a_required_field_is_invalid_and_names_it(name: str) -> None:
    with pytest.raises(InvalidEvent, match=f"field '{name}' must be"):
        OperationResult.from_bytes(without(RESULT, name))


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("job_id", 123, "str"),
        ("job_id", None, "str"),
        ("job_id", ["a"], "str"),
        ("index", "2", "int"),
        ("index", 2.0, "int"),
        ("index", True, "int"),
        ("index", False, "int"),
        ("index", None, "int"),
        ("total", "5", "int"),
        ("total", True, "int"),
        ("total", 5.5, "int"),
        ("expression", 3, "str"),
        ("expression", None, "str"),
        ("expression", {"text": "1"}, "str"),
        ("attempt", "1", "int"),
        ("attempt", True, "int"),
        ("attempt", None, "int"),
    ],
)
def test_request_field_of_the_wrong_type_is_invalid(name: str, value: Any, kind: str) -> None:
    # Given a request whose field has the wrong JSON type (a bool is not an int here)
    raw = with_(REQUEST, **{name: value})

    # When it is decoded
    # Then it is refused, naming the field and the expected type
    with pytest.raises(InvalidEvent, match=f"field '{name}' must be {kind}"):
        OperationRequest.from_bytes(raw)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("job_id", 1, "field 'job_id' must be str"),
        ("index", True, "field 'index' must be int"),
        ("index", "1", "field 'index' must be int"),
        ("index", 1.0, "field 'index' must be int"),
        ("total", False, "field 'total' must be int"),
        ("total", None, "field 'total' must be int"),
        ("status", None, "field 'status' must be str"),
        ("status", 1, "field 'status' must be str"),
        ("result", 3, "field 'result' must be a string or null"),
        ("result", 1.75, "field 'result' must be a string or null"),
        ("error", False, "field 'error' must be a string or null"),
        ("error", ["x"], "field 'error' must be a string or null"),
    ],
)
def test_result_field_of_the_wrong_type_is_invalid(name: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        OperationResult.from_bytes(with_(RESULT, **{name: value}))


@pytest.mark.parametrize("status", ["pending", "SUCCEEDED", "ok", "", "cancelled"])
def test_result_with_an_unknown_status_is_invalid(status: str) -> None:
    with pytest.raises(
        InvalidEvent, match=f"status must be 'succeeded' or 'failed', got {status!r}"
    ):
        OperationResult.from_bytes(with_(RESULT, status=status))


def test_wrong_type_message_is_truncated_for_huge_values() -> None:
    # Given a wrong-typed field holding a huge value
    raw = with_(REQUEST, index="9" * 10_000)

    # When it is refused, the message stays short (it ends up in logs and the dead-letter topic)
    with pytest.raises(InvalidEvent) as caught:
        OperationRequest.from_bytes(raw)
    assert len(str(caught.value)) < 100


# --- Job ----------------------------------------------------------------------------------------

CREATED = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
FINISHED = datetime(2024, 5, 6, 7, 9, 0, tzinfo=UTC)


def test_job_in_progress_shows_pending_operations_and_no_finish_time() -> None:
    # Given a job of 10 operations, 3 succeeded and 2 failed
    job = Job(JOB_ID, "in_progress", 10, 3, 2, CREATED, None)

    # When it is shown by the API
    document = job.to_json()

    # Then pending is computed, times are ISO 8601 in UTC with a Z, and finished_at is null
    assert document == {
        "id": JOB_ID,
        "status": "in_progress",
        "operations": {"total": 10, "succeeded": 3, "failed": 2, "pending": 5},
        "created_at": "2024-05-06T07:08:09.123000Z",
        "finished_at": None,
    }


def test_completed_job_shows_its_finish_time_and_nothing_pending() -> None:
    job = Job(JOB_ID, "completed", 4, 3, 1, CREATED, FINISHED)

    document = job.to_json()

    assert document["operations"]["pending"] == 0
    assert document["created_at"] == "2024-05-06T07:08:09.123000Z"
    assert document["finished_at"] == "2024-05-06T07:09:00Z"
    assert document["status"] == "completed"


def test_pending_is_never_negative() -> None:
    # Given counters that overshoot the total (a corrupt or racing document)
    job = Job(JOB_ID, "completed", 2, 2, 1, CREATED, FINISHED)

    # Then pending is 0 rather than -1
    assert job.pending == 0
    assert job.to_json()["operations"]["pending"] == 0


def test_job_document_is_json_serialisable() -> None:
    job = Job(JOB_ID, "cancelled", 3, 1, 0, CREATED, FINISHED)
    assert orjson.loads(orjson.dumps(job.to_json())) == job.to_json()


@given(
    total=st.integers(min_value=0, max_value=10**6),
    succeeded=st.integers(min_value=0, max_value=10**6),
    failed=st.integers(min_value=0, max_value=10**6),
)
def test_pending_is_what_is_left_of_the_total(total: int, succeeded: int, failed: int) -> None:
    job = Job(JOB_ID, "in_progress", total, succeeded, failed, CREATED, None)
    assert job.pending == max(total - succeeded - failed, 0)


@given(st.datetimes(timezones=st.just(UTC)))
def test_any_utc_time_is_shown_ending_in_z_and_parses_back(moment: datetime) -> None:
    text = Job(JOB_ID, "in_progress", 1, 0, 0, moment, None).to_json()["created_at"]
    assert text.endswith("Z")
    assert "+" not in text
    assert datetime.fromisoformat(text) == moment


# --- Operation ----------------------------------------------------------------------------------


def test_operation_document_has_every_field() -> None:
    operation = Operation(f"{JOB_ID}-3", JOB_ID, 3, "3 / 4 + 1", "succeeded", "1.75", None)

    assert operation.to_json() == {
        "id": f"{JOB_ID}-3",
        "job_id": JOB_ID,
        "index": 3,
        "expression": "3 / 4 + 1",
        "status": "succeeded",
        "result": "1.75",
        "error": None,
    }


def test_pending_operation_document_has_null_result_and_error() -> None:
    operation = Operation(f"{JOB_ID}-1", JOB_ID, 1, "1 +", "pending", None, None)

    document = operation.to_json()

    assert document["status"] == "pending"
    assert document["result"] is None
    assert document["error"] is None


def test_failed_operation_document_carries_its_error() -> None:
    error = "unexpected end of expression, expected a number or '(' at column 3"
    operation = Operation(f"{JOB_ID}-1", JOB_ID, 1, "1 +", "failed", None, error)
    assert operation.to_json()["error"] == error
