"""Behaviour of jobstream.models: the Kafka events' wire form and the API's documents."""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstream.models import (
    MAX_MESSAGE_TEXT_BYTES,
    MAX_PER_MESSAGE,
    InvalidEvent,
    Job,
    Operation,
    OperationRequest,
    OperationResult,
    decode_requests,
    decode_results,
    operation_id,
    request_messages,
    result_messages,
)

T = TypeVar("T")

JOB_ID = "0123456789abcdef0123456789abcdef"
OTHER_JOB_ID = "fedcba9876543210fedcba9876543210"

REQUESTS: dict[str, Any] = {
    "job_id": JOB_ID,
    "total": 5,
    "attempt": 1,
    "operations": [{"index": 2, "expression": "1 + 2"}, {"index": 3, "expression": "3 / 4"}],
}
RESULTS: dict[str, Any] = {
    "job_id": JOB_ID,
    "total": 5,
    "results": [
        {"index": 2, "status": "succeeded", "result": "3", "error": None},
        {"index": 3, "status": "failed", "result": None, "error": "division by zero at column 3"},
    ],
}


def with_(base: dict[str, Any], **changes: Any) -> bytes:
    return orjson.dumps({**base, **changes})


def without(base: dict[str, Any], name: str) -> bytes:
    return orjson.dumps({k: v for k, v in base.items() if k != name})


def with_item(base: dict[str, Any], items: str, **changes: Any) -> bytes:
    """The message with its last item changed (so a bad item after a good one is refused)."""
    *good, last = base[items]
    return with_(base, **{items: [*good, {**last, **changes}]})


def without_item_field(base: dict[str, Any], items: str, name: str) -> bytes:
    *good, last = base[items]
    return with_(base, **{items: [*good, {k: v for k, v in last.items() if k != name}]})


def requests_back(requests: Iterable[OperationRequest]) -> list[OperationRequest]:
    return [r for _, value in request_messages(requests) for r in decode_requests(value)]


def results_back(results: Iterable[OperationResult]) -> list[OperationResult]:
    return [r for _, value in result_messages(results) for r in decode_results(value)]


def request_batches(requests: Iterable[OperationRequest]) -> list[list[OperationRequest]]:
    return [decode_requests(value) for _, value in request_messages(requests)]


def result_batches(results: Iterable[OperationResult]) -> list[list[OperationResult]]:
    return [decode_results(value) for _, value in result_messages(results)]


def request_key(request: OperationRequest) -> Hashable:
    return request.job_id, request.total, request.attempt


def result_key(result: OperationResult) -> Hashable:
    return result.job_id, result.total


def json_bytes(text: str | None) -> int:
    """What a string adds to a message's JSON, quotes aside (escapes and UTF-8 counted)."""
    return 0 if text is None else len(orjson.dumps(text)) - 2


def request_bytes(request: OperationRequest) -> int:
    return json_bytes(request.expression)


def result_bytes(result: OperationResult) -> int:
    return json_bytes(result.result) + json_bytes(result.error)


def assert_grouped(
    batches: list[list[T]], key: Callable[[T], Hashable], chars: Callable[[T], int]
) -> None:
    """Each batch is one run within the bounds, and ends only where the next item could not join."""
    for batch in batches:
        assert 1 <= len(batch) <= MAX_PER_MESSAGE
        assert len({key(item) for item in batch}) == 1
        assert len(batch) == 1 or sum(map(chars, batch)) <= MAX_MESSAGE_TEXT_BYTES
    for before, after in itertools.pairwise(batches):
        assert (
            key(before[-1]) != key(after[0])
            or len(before) == MAX_PER_MESSAGE
            or sum(map(chars, before)) + chars(after[0]) > MAX_MESSAGE_TEXT_BYTES
        )


@functools.cache
def long_text(length: int) -> str:
    return "9" * length


def job(count: int, expression: str = "1 + 1") -> list[OperationRequest]:
    return [OperationRequest(JOB_ID, i, count, expression) for i in range(1, count + 1)]


def outcomes(count: int) -> list[OperationResult]:
    return [OperationResult(JOB_ID, i, count, "succeeded", str(i)) for i in range(1, count + 1)]


UTF8_TEXT = st.characters(codec="utf-8")  # any code point but the lone surrogates
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
COUNT = st.integers(min_value=0, max_value=2**63 - 1)
#: Expression (or result) lengths around the size bound; built once each, so examples stay cheap.
LONG_TEXT = st.sampled_from(
    [MAX_MESSAGE_TEXT_BYTES // parts + offset for parts in (3, 2, 1) for offset in (-1, 0, 1)]
).map(long_text)
SHORT_TEXT = st.text(UTF8_TEXT, max_size=20)
SOME_TEXT = SHORT_TEXT | LONG_TEXT


def run_texts(draw: st.DrawFn) -> list[str]:
    """Texts of one run: many short ones (past the count bound), or a few around the size bound."""
    if draw(st.booleans()):
        count = draw(st.integers(min_value=1, max_value=2 * MAX_PER_MESSAGE + 1))
        pattern = draw(st.lists(SHORT_TEXT, min_size=1, max_size=5))
        return list(itertools.islice(itertools.cycle(pattern), count))
    return draw(st.lists(SOME_TEXT, min_size=1, max_size=8))


@st.composite
def request_runs(draw: st.DrawFn) -> list[OperationRequest]:
    """Runs of requests of one job and attempt each (adjacent runs may share them)."""
    requests: list[OperationRequest] = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        job_id = draw(st.sampled_from([JOB_ID, OTHER_JOB_ID]))
        total = draw(st.sampled_from([1000, 1001]))
        attempt = draw(st.sampled_from([1, 2]))
        requests += [
            OperationRequest(job_id, index, total, text, attempt)
            for index, text in enumerate(run_texts(draw), start=1)
        ]
    return requests


@st.composite
def result_runs(draw: st.DrawFn) -> list[OperationResult]:
    """Runs of results of one job each (adjacent runs may share it)."""
    results: list[OperationResult] = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        job_id = draw(st.sampled_from([JOB_ID, OTHER_JOB_ID]))
        total = draw(st.sampled_from([1000, 1001]))
        texts = run_texts(draw)
        for index, text in enumerate(texts, start=1):
            status = draw(st.sampled_from(["succeeded", "failed"]))
            other = draw(st.none() | st.sampled_from(texts))
            result, error = (text, other) if draw(st.booleans()) else (other, text)
            results.append(OperationResult(job_id, index, total, status, result, error))
    return results


# --- operation ids ------------------------------------------------------------------------------


def test_operation_id_is_job_id_dash_index() -> None:
    assert operation_id(JOB_ID, 1) == f"{JOB_ID}-1"
    assert operation_id(JOB_ID, 100_000) == f"{JOB_ID}-100000"


def test_result_knows_the_id_of_its_operation() -> None:
    result = OperationResult(JOB_ID, 7, 9, "failed", error="boom")
    assert result.operation_id == f"{JOB_ID}-7"


# --- request messages ---------------------------------------------------------------------------


def test_requests_round_trip_through_their_messages() -> None:
    # Given requests of two jobs, one of them on its third delivery attempt
    requests = [
        OperationRequest(JOB_ID, 2, 5, "3 / 4 + 1", attempt=3),
        OperationRequest(JOB_ID, 4, 5, "1 +", attempt=3),
        OperationRequest(OTHER_JOB_ID, 1, 1, "(1)"),
    ]

    # When they are encoded and every message is decoded
    decoded = requests_back(requests)

    # Then nothing is lost, and the order is kept
    assert decoded == requests


@given(
    st.lists(
        st.builds(
            OperationRequest,
            job_id=st.one_of(
                st.sampled_from([JOB_ID, OTHER_JOB_ID]), st.text(UTF8_TEXT, max_size=40)
            ),
            index=INT64,
            total=st.one_of(st.just(5), COUNT),
            expression=st.text(UTF8_TEXT, max_size=200),
            attempt=st.one_of(st.just(1), st.integers(min_value=1, max_value=1000)),
        ),
        max_size=250,
    )
)
def test_any_requests_round_trip_in_order(requests: list[OperationRequest]) -> None:
    assert requests_back(requests) == requests


def test_no_requests_give_no_messages() -> None:
    assert list(request_messages([])) == []


def test_requests_can_come_from_a_generator() -> None:
    requests = job(3)
    assert requests_back(request for request in requests) == requests


def test_request_message_is_the_documented_json_object() -> None:
    requests = [OperationRequest(JOB_ID, 2, 5, "1 + 2"), OperationRequest(JOB_ID, 3, 5, "3 / 4")]

    [(key, value)] = request_messages(requests)

    assert key == f"{JOB_ID}-2".encode()
    assert orjson.loads(value) == REQUESTS


def test_requests_decode_from_the_documented_message() -> None:
    assert decode_requests(orjson.dumps(REQUESTS)) == [
        OperationRequest(JOB_ID, 2, 5, "1 + 2", 1),
        OperationRequest(JOB_ID, 3, 5, "3 / 4", 1),
    ]


def test_request_message_ignores_unknown_fields() -> None:
    raw = orjson.dumps(
        {**REQUESTS, "trace": "x", "operations": [{**REQUESTS["operations"][0], "x": 1}]}
    )
    assert decode_requests(raw) == [OperationRequest(JOB_ID, 2, 5, "1 + 2", 1)]


def test_requests_of_one_job_share_messages_of_at_most_max_per_message() -> None:
    # Given a job of 2.5 messages' worth of operations
    requests = job(MAX_PER_MESSAGE * 5 // 2)

    # When they are encoded
    messages = list(request_messages(requests))

    # Then they fill whole messages first, each keyed by the id of its first operation
    batches = [decode_requests(value) for _, value in messages]
    assert [len(batch) for batch in batches] == [
        MAX_PER_MESSAGE,
        MAX_PER_MESSAGE,
        MAX_PER_MESSAGE // 2,
    ]
    assert [key for key, _ in messages] == [
        operation_id(JOB_ID, 1).encode(),
        operation_id(JOB_ID, MAX_PER_MESSAGE + 1).encode(),
        operation_id(JOB_ID, 2 * MAX_PER_MESSAGE + 1).encode(),
    ]
    assert [r for batch in batches for r in batch] == requests


def test_max_per_message_requests_fit_in_one_message() -> None:
    assert [len(batch) for batch in request_batches(job(MAX_PER_MESSAGE))] == [MAX_PER_MESSAGE]
    assert [len(batch) for batch in request_batches(job(MAX_PER_MESSAGE + 1))] == [
        MAX_PER_MESSAGE,
        1,
    ]


@pytest.mark.parametrize(
    "change",
    [{"job_id": OTHER_JOB_ID}, {"total": 6}, {"attempt": 2}],
    ids=["job_id", "total", "attempt"],
)
def test_request_starts_a_new_message_when_its_job_total_or_attempt_changes(
    change: dict[str, Any],
) -> None:
    # Given two requests that differ only in their job, total or attempt
    first = OperationRequest(JOB_ID, 1, 5, "1")
    second = OperationRequest(
        **{"job_id": JOB_ID, "index": 2, "total": 5, "expression": "2", **change}
    )

    # When they are encoded
    messages = list(request_messages([first, second]))

    # Then each has its own message, keyed by its own operation id
    assert [decode_requests(value) for _, value in messages] == [[first], [second]]
    assert [key for key, _ in messages] == [
        operation_id(JOB_ID, 1).encode(),
        operation_id(second.job_id, 2).encode(),
    ]


def test_requests_of_a_job_split_by_another_job_are_not_regrouped() -> None:
    # Only consecutive requests share a message: the order of the input is the order on the wire
    a1, b1, a2 = (
        OperationRequest(JOB_ID, 1, 2, "1"),
        OperationRequest(OTHER_JOB_ID, 1, 1, "2"),
        OperationRequest(JOB_ID, 2, 2, "3"),
    )
    assert request_batches([a1, b1, a2]) == [[a1], [b1], [a2]]


def test_expressions_fill_a_message_up_to_the_size_bound_exactly() -> None:
    half = MAX_MESSAGE_TEXT_BYTES // 2
    requests = [
        OperationRequest(JOB_ID, 1, 2, long_text(half)),
        OperationRequest(JOB_ID, 2, 2, long_text(MAX_MESSAGE_TEXT_BYTES - half)),
    ]
    assert request_batches(requests) == [requests]


def test_expression_size_bound_starts_a_new_message() -> None:
    # Given three requests whose expressions fit two at a time, but not three, in one message
    requests = job(3, long_text(MAX_MESSAGE_TEXT_BYTES // 3 + 1))

    # When they are encoded
    messages = list(request_messages(requests))

    # Then the third starts a second message, keyed by its operation id
    assert [decode_requests(value) for _, value in messages] == [requests[:2], requests[2:]]
    assert messages[1][0] == operation_id(JOB_ID, 3).encode()


def test_over_long_expression_gets_a_message_of_its_own() -> None:
    # Given a request longer than the size bound between two short ones
    requests = [
        OperationRequest(JOB_ID, 1, 3, "1"),
        OperationRequest(JOB_ID, 2, 3, long_text(MAX_MESSAGE_TEXT_BYTES + 1)),
        OperationRequest(JOB_ID, 3, 3, "3"),
    ]

    # When they are encoded
    # Then it is still sent, alone in its message
    assert request_batches(requests) == [[r] for r in requests]


def test_full_message_of_ascii_expressions_stays_below_one_mebibyte() -> None:
    requests = job(MAX_PER_MESSAGE, long_text(MAX_MESSAGE_TEXT_BYTES // MAX_PER_MESSAGE))

    [(_, value)] = request_messages(requests)

    assert len(value) < 1024 * 1024


@pytest.mark.parametrize("text", ["\U0001f600" * 2621, '"\\' * 1300, "\x01" * 2621])
def test_messages_of_multibyte_or_escaped_text_stay_below_one_mebibyte(text: str) -> None:
    # Given 100 expressions whose JSON takes up to six bytes per character
    requests = job(MAX_PER_MESSAGE, text)
    results = [OperationResult(JOB_ID, r.index, r.total, "failed", error=text) for r in requests]

    # Then the bound counts encoded bytes: no message reaches Kafka's 1 MiB default
    for _, value in [*request_messages(requests), *result_messages(results)]:
        assert len(value) < 1024 * 1024


@given(request_runs())
def test_any_requests_are_grouped_into_as_few_messages_as_the_bounds_allow(
    requests: list[OperationRequest],
) -> None:
    messages = list(request_messages(requests))
    batches = [decode_requests(value) for _, value in messages]

    assert [r for batch in batches for r in batch] == requests
    assert_grouped(batches, request_key, request_bytes)
    assert [key for key, _ in messages] == [
        operation_id(batch[0].job_id, batch[0].index).encode() for batch in batches
    ]


# --- result messages ----------------------------------------------------------------------------


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
def test_result_round_trips_through_its_message(result: OperationResult) -> None:
    assert results_back([result]) == [result]


@given(
    st.lists(
        st.builds(
            OperationResult,
            job_id=st.one_of(
                st.sampled_from([JOB_ID, OTHER_JOB_ID]), st.text(UTF8_TEXT, max_size=40)
            ),
            index=INT64,
            total=st.one_of(st.just(5), COUNT),
            status=st.sampled_from(["succeeded", "failed"]),
            result=st.none() | st.text(UTF8_TEXT, max_size=100),
            error=st.none() | st.text(UTF8_TEXT, max_size=100),
        ),
        max_size=250,
    )
)
def test_any_results_round_trip_in_order(results: list[OperationResult]) -> None:
    assert results_back(results) == results


def test_no_results_give_no_messages() -> None:
    assert list(result_messages([])) == []


def test_result_message_is_the_documented_json_object() -> None:
    results = [
        OperationResult(JOB_ID, 2, 5, "succeeded", result="3"),
        OperationResult(JOB_ID, 3, 5, "failed", error="division by zero at column 3"),
    ]

    [(key, value)] = result_messages(results)

    assert key == JOB_ID.encode()
    assert orjson.loads(value) == RESULTS


def test_results_decode_from_the_documented_message() -> None:
    assert decode_results(orjson.dumps(RESULTS)) == [
        OperationResult(JOB_ID, 2, 5, "succeeded", result="3"),
        OperationResult(JOB_ID, 3, 5, "failed", error="division by zero at column 3"),
    ]


def test_result_message_ignores_unknown_fields() -> None:
    raw = orjson.dumps({**RESULTS, "trace": "x", "results": [{**RESULTS["results"][0], "x": 1}]})
    assert decode_results(raw) == [OperationResult(JOB_ID, 2, 5, "succeeded", result="3")]


def test_result_without_result_and_error_fields_decodes_them_as_none() -> None:
    # Given a failed result whose optional fields are absent rather than null
    raw = orjson.dumps(
        {"job_id": JOB_ID, "total": 1, "results": [{"index": 1, "status": "failed"}]}
    )

    # When it is decoded
    # Then they are None
    assert decode_results(raw) == [OperationResult(JOB_ID, 1, 1, "failed")]


def test_results_of_one_job_share_messages_of_at_most_max_per_message_keyed_by_the_job() -> None:
    # Given 2.5 messages' worth of results of one job
    results = outcomes(MAX_PER_MESSAGE * 5 // 2)

    # When they are encoded
    messages = list(result_messages(results))

    # Then they fill whole messages first, and every message is keyed by the job id
    batches = [decode_results(value) for _, value in messages]
    assert [len(batch) for batch in batches] == [
        MAX_PER_MESSAGE,
        MAX_PER_MESSAGE,
        MAX_PER_MESSAGE // 2,
    ]
    assert [key for key, _ in messages] == [JOB_ID.encode()] * 3
    assert [r for batch in batches for r in batch] == results


@pytest.mark.parametrize(
    "change", [{"job_id": OTHER_JOB_ID}, {"total": 6}], ids=["job_id", "total"]
)
def test_result_starts_a_new_message_when_its_job_or_total_changes(change: dict[str, Any]) -> None:
    first = OperationResult(JOB_ID, 1, 5, "succeeded", result="1")
    second = OperationResult(
        **{"job_id": JOB_ID, "index": 2, "total": 5, "status": "failed", **change}
    )

    messages = list(result_messages([first, second]))

    assert [decode_results(value) for _, value in messages] == [[first], [second]]
    assert [key for key, _ in messages] == [JOB_ID.encode(), second.job_id.encode()]


def test_results_of_a_job_split_by_another_job_are_not_regrouped() -> None:
    a1, b1, a2 = (
        OperationResult(JOB_ID, 1, 2, "succeeded", result="1"),
        OperationResult(OTHER_JOB_ID, 1, 1, "succeeded", result="2"),
        OperationResult(JOB_ID, 2, 2, "succeeded", result="3"),
    )
    assert result_batches([a1, b1, a2]) == [[a1], [b1], [a2]]


def test_result_and_error_sizes_count_towards_the_size_bound() -> None:
    # Given results whose result and error texts together fill exactly one message
    half = MAX_MESSAGE_TEXT_BYTES // 2
    filling = [
        OperationResult(JOB_ID, 1, 3, "succeeded", result=long_text(half)),
        OperationResult(JOB_ID, 2, 3, "failed", error=long_text(MAX_MESSAGE_TEXT_BYTES - half)),
    ]
    # And one more result of a single character
    last = OperationResult(JOB_ID, 3, 3, "succeeded", result="1")

    # When they are encoded
    # Then the two share a message and the third needs a new one
    assert result_batches([*filling, last]) == [filling, [last]]


def test_over_long_result_gets_a_message_of_its_own() -> None:
    results = [
        OperationResult(JOB_ID, 1, 3, "succeeded", result="1"),
        OperationResult(JOB_ID, 2, 3, "failed", error=long_text(MAX_MESSAGE_TEXT_BYTES + 1)),
        OperationResult(JOB_ID, 3, 3, "succeeded", result="3"),
    ]
    assert result_batches(results) == [[r] for r in results]


@given(result_runs())
def test_any_results_are_grouped_into_as_few_messages_as_the_bounds_allow(
    results: list[OperationResult],
) -> None:
    messages = list(result_messages(results))
    batches = [decode_results(value) for _, value in messages]

    assert [r for batch in batches for r in batch] == results
    assert_grouped(batches, result_key, result_bytes)
    assert [key for key, _ in messages] == [batch[0].job_id.encode() for batch in batches]


# --- malformed events ---------------------------------------------------------------------------

DECODERS = [decode_requests, decode_results]
KINDS = [
    pytest.param(decode_requests, REQUESTS, "operations", id="requests"),
    pytest.param(decode_results, RESULTS, "results", id="results"),
]


@pytest.mark.parametrize("decode", DECODERS, ids=["requests", "results"])
@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"{", b"\xff\xfe", b'{"job_id": "a",}', b"{'job_id': 'a'}"],
    ids=["empty", "text", "unclosed", "not-utf8", "trailing-comma", "single-quotes"],
)
def test_event_that_is_not_json_is_invalid(decode: Any, raw: bytes) -> None:
    with pytest.raises(InvalidEvent, match="event is not JSON"):
        decode(raw)


@pytest.mark.parametrize("decode", DECODERS, ids=["requests", "results"])
@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[]", "list"), (b'"x"', "str"), (b"1", "int"), (b"null", "NoneType"), (b"true", "bool")],
)
def test_event_that_is_not_a_json_object_is_invalid(decode: Any, raw: bytes, kind: str) -> None:
    with pytest.raises(InvalidEvent, match=f"must be a JSON object, got {kind}"):
        decode(raw)


@pytest.mark.parametrize("decode", DECODERS, ids=["requests", "results"])
def test_event_without_a_value_is_invalid(decode: Any) -> None:
    # A Kafka record can have a null value (a tombstone); it is not an event
    with pytest.raises(InvalidEvent, match="event has no value"):
        decode(None)


def test_invalid_event_is_a_value_error() -> None:
    assert issubclass(InvalidEvent, ValueError)


@pytest.mark.parametrize("name", ["job_id", "total", "attempt", "operations"])
def test_request_message_without_a_field_is_invalid_and_names_it(name: str) -> None:
    with pytest.raises(InvalidEvent, match=f"field '{name}' must be"):
        decode_requests(without(REQUESTS, name))


@pytest.mark.parametrize("name", ["job_id", "total", "results"])
def test_result_message_without_a_field_is_invalid_and_names_it(name: str) -> None:
    with pytest.raises(InvalidEvent, match=f"field '{name}' must be"):
        decode_results(without(RESULTS, name))


@pytest.mark.parametrize("name", ["index", "expression"])
def test_operation_without_a_field_is_invalid_and_names_it(name: str) -> None:
    with pytest.raises(InvalidEvent, match=f"field '{name}' must be"):
        decode_requests(without_item_field(REQUESTS, "operations", name))


@pytest.mark.parametrize("name", ["index", "status"])
def test_result_without_a_required_field_is_invalid_and_names_it(name: str) -> None:
    with pytest.raises(InvalidEvent, match=f"field '{name}' must be"):
        decode_results(without_item_field(RESULTS, "results", name))


@pytest.mark.parametrize(("decode", "base", "items"), KINDS)
@pytest.mark.parametrize(
    "value",
    [None, [], {}, "x", 1, True, {"index": 1, "expression": "1"}],
    ids=["null", "empty", "object", "str", "int", "bool", "single-item-not-in-a-list"],
)
def test_items_that_are_not_a_non_empty_list_are_invalid(
    decode: Any, base: dict[str, Any], items: str, value: Any
) -> None:
    with pytest.raises(InvalidEvent, match=f"field '{items}' must be a non-empty list"):
        decode(with_(base, **{items: value}))


@pytest.mark.parametrize(("decode", "base", "items"), KINDS)
@pytest.mark.parametrize(
    "item", [1, "x", None, [], True], ids=["int", "str", "null", "list", "bool"]
)
def test_item_that_is_not_a_json_object_is_invalid(
    decode: Any, base: dict[str, Any], items: str, item: Any
) -> None:
    # Given a message whose items are good but for the last one
    raw = with_(base, **{items: [*base[items], item]})

    # When it is decoded
    # Then the whole message is refused, naming the list
    with pytest.raises(InvalidEvent, match=f"every item of '{items}' must be a JSON object"):
        decode(raw)


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("job_id", 123, "str"),
        ("job_id", None, "str"),
        ("job_id", ["a"], "str"),
        ("job_id", True, "str"),
        ("total", "5", "int"),
        ("total", True, "int"),
        ("total", False, "int"),
        ("total", 5.5, "int"),
        ("total", 5.0, "int"),
        ("total", None, "int"),
        ("attempt", "1", "int"),
        ("attempt", True, "int"),
        ("attempt", 1.0, "int"),
        ("attempt", None, "int"),
    ],
)
def test_request_message_field_of_the_wrong_type_is_invalid(
    name: str, value: Any, kind: str
) -> None:
    # Given a message whose field has the wrong JSON type (a bool is not an int here)
    raw = with_(REQUESTS, **{name: value})

    # When it is decoded
    # Then it is refused, naming the field and the expected type
    with pytest.raises(InvalidEvent, match=f"field '{name}' must be {kind}"):
        decode_requests(raw)


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("index", "2", "int"),
        ("index", 2.0, "int"),
        ("index", True, "int"),
        ("index", False, "int"),
        ("index", None, "int"),
        ("index", [2], "int"),
        ("expression", 3, "str"),
        ("expression", None, "str"),
        ("expression", True, "str"),
        ("expression", ["1"], "str"),
        ("expression", {"text": "1"}, "str"),
    ],
)
def test_operation_field_of_the_wrong_type_is_invalid(name: str, value: Any, kind: str) -> None:
    # The bad operation comes after a good one: one bad item spoils the whole message
    with pytest.raises(InvalidEvent, match=f"field '{name}' must be {kind}"):
        decode_requests(with_item(REQUESTS, "operations", **{name: value}))


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("job_id", 1, "str"),
        ("job_id", None, "str"),
        ("job_id", False, "str"),
        ("total", False, "int"),
        ("total", True, "int"),
        ("total", None, "int"),
        ("total", "5", "int"),
        ("total", 5.0, "int"),
    ],
)
def test_result_message_field_of_the_wrong_type_is_invalid(
    name: str, value: Any, kind: str
) -> None:
    with pytest.raises(InvalidEvent, match=f"field '{name}' must be {kind}"):
        decode_results(with_(RESULTS, **{name: value}))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("index", True, "field 'index' must be int"),
        ("index", False, "field 'index' must be int"),
        ("index", "1", "field 'index' must be int"),
        ("index", 1.0, "field 'index' must be int"),
        ("index", None, "field 'index' must be int"),
        ("status", None, "field 'status' must be str"),
        ("status", 1, "field 'status' must be str"),
        ("status", True, "field 'status' must be str"),
        ("status", ["failed"], "field 'status' must be str"),
        ("result", 3, "field 'result' must be a string or null"),
        ("result", 1.75, "field 'result' must be a string or null"),
        ("result", True, "field 'result' must be a string or null"),
        ("result", {"value": "3"}, "field 'result' must be a string or null"),
        ("error", False, "field 'error' must be a string or null"),
        ("error", 0, "field 'error' must be a string or null"),
        ("error", ["x"], "field 'error' must be a string or null"),
    ],
)
def test_result_field_of_the_wrong_type_is_invalid(name: str, value: Any, message: str) -> None:
    # The bad result comes after a good one: one bad item spoils the whole message
    with pytest.raises(InvalidEvent, match=message):
        decode_results(with_item(RESULTS, "results", **{name: value}))


@pytest.mark.parametrize("status", ["pending", "SUCCEEDED", "ok", "", "cancelled"])
def test_result_with_an_unknown_status_is_invalid(status: str) -> None:
    with pytest.raises(
        InvalidEvent, match=f"status must be 'succeeded' or 'failed', got {status!r}"
    ):
        decode_results(with_item(RESULTS, "results", status=status))


HUGE = "x" * 10_000


@pytest.mark.parametrize(
    ("decode", "raw"),
    [
        (decode_requests, HUGE.encode()),
        (decode_requests, b'{"job_id": "' + HUGE.encode()),
        (decode_requests, with_(REQUESTS, total=HUGE)),
        (decode_requests, with_(REQUESTS, job_id=[HUGE])),
        (decode_requests, with_(REQUESTS, operations=HUGE)),
        (decode_requests, with_(REQUESTS, operations=[HUGE])),
        (decode_requests, with_item(REQUESTS, "operations", index=HUGE)),
        (decode_requests, with_item(REQUESTS, "operations", expression=[HUGE])),
        (decode_results, with_(RESULTS, results={"x": HUGE})),
        (decode_results, with_item(RESULTS, "results", status=HUGE)),
        (decode_results, with_item(RESULTS, "results", result=[HUGE])),
        (decode_results, with_item(RESULTS, "results", error={"x": HUGE})),
    ],
    ids=[
        "not-json",
        "unclosed-string",
        "total",
        "job_id",
        "operations",
        "operation-item",
        "index",
        "expression",
        "results",
        "status",
        "result",
        "error",
    ],
)
def test_invalid_event_message_is_truncated_for_huge_values(decode: Any, raw: bytes) -> None:
    # Given an invalid event holding a huge value
    # When it is refused, the message stays short (it ends up in logs and the dead-letter topic)
    with pytest.raises(InvalidEvent) as caught:
        decode(raw)
    assert len(str(caught.value)) < 120


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INT64 | st.floats(allow_nan=False) | st.text(UTF8_TEXT),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["job_id", "total", "attempt", "operations", "results", "index"])
            | st.sampled_from(["expression", "status", "result", "error"])
            | st.text(UTF8_TEXT, max_size=5),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("decode", DECODERS, ids=["requests", "results"])
@given(value=JSON_VALUES)
def test_any_json_either_decodes_or_is_an_invalid_event(decode: Any, value: Any) -> None:
    with contextlib.suppress(InvalidEvent):
        decode(orjson.dumps(value))


@pytest.mark.parametrize("decode", DECODERS, ids=["requests", "results"])
@given(raw=st.binary(max_size=100))
def test_any_bytes_either_decode_or_are_an_invalid_event(decode: Any, raw: bytes) -> None:
    with contextlib.suppress(InvalidEvent):
        decode(raw)


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
