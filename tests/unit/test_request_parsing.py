"""Behaviour of the pure request helpers of the job API: path ids and paging parameters.

Importing jobstream.views.jobs pulls in faust and aiohttp, but nothing here talks to a service.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict, MultiDictProxy

from jobstream.errors import InvalidJob, NotFound
from jobstream.views.jobs import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    job_id_from,
    operation_index_from,
    page_from,
)

JOB_ID = "0123456789abcdef0123456789abcdef"
OTHER_JOB_ID = "fedcba9876543210fedcba9876543210"


def assert_bad_request(error: InvalidJob) -> None:
    """A plain 400: not one of the InvalidJob subclasses with another status."""
    assert type(error) is InvalidJob
    assert error.status == 400


# --- job_id_from --------------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", [JOB_ID, "0" * 32, "f" * 32, OTHER_JOB_ID])
def test_32_lower_case_hex_digits_are_a_job_id(job_id: str) -> None:
    assert job_id_from(job_id) == job_id


@given(st.uuids())
def test_every_uuid_hex_is_a_job_id(value: uuid.UUID) -> None:
    # Jobs are created with uuid.uuid4().hex, so every such id must be accepted
    job_id = value.hex
    assert job_id_from(job_id) == job_id


@pytest.mark.parametrize(
    "raw",
    [
        "",
        JOB_ID[:-1],
        JOB_ID + "0",
        JOB_ID.upper(),
        "0123456789ABCDEF0123456789abcdef",
        "g" * 32,
        "0123456789abcdef-0123456789abcdef",
        "01234567-89ab-cdef-0123-456789abcdef",
        " " + JOB_ID,
        JOB_ID + " ",
        JOB_ID + "/",
        "../" + JOB_ID[3:],
        "\u0660" * 32,  # Arabic-Indic zeros are digits to Python, not to us
    ],
    ids=[
        "empty",
        "31-digits",
        "33-digits",
        "upper-case",
        "mixed-case",
        "not-hex",
        "dash-inside",
        "uuid-with-dashes",
        "leading-space",
        "trailing-space",
        "trailing-slash",
        "path-traversal",
        "non-ascii-digits",
    ],
)
def test_anything_else_is_not_a_job_id(raw: str) -> None:
    with pytest.raises(InvalidJob, match="malformed job id") as caught:
        job_id_from(raw)
    assert_bad_request(caught.value)


def test_job_id_followed_by_a_newline_is_not_a_job_id() -> None:
    with pytest.raises(InvalidJob):
        job_id_from(JOB_ID + "\n")


def test_malformed_job_id_message_is_truncated() -> None:
    # Given a huge path segment
    raw = "x" * 10_000

    # When it is refused, the message quotes only its start
    with pytest.raises(InvalidJob) as caught:
        job_id_from(raw)
    assert len(str(caught.value)) < 150


# --- operation_index_from -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "index"),
    [
        (f"{JOB_ID}-1", 1),
        (f"{JOB_ID}-42", 42),
        (f"{JOB_ID}-100000", 100_000),
        ("1", 1),
        ("42", 42),
        ("999999999", 999_999_999),
        (f"{JOB_ID}-999999999", 999_999_999),
    ],
)
def test_operation_id_or_bare_index_gives_the_index(raw: str, index: int) -> None:
    # Given an operation path segment, either "<job_id>-<n>" or just "<n>"
    # When it is read for that job
    # Then it is the 1-based index n
    assert operation_index_from(JOB_ID, raw) == index


@given(st.integers(min_value=1, max_value=999_999_999))
def test_operation_ids_made_for_a_job_give_back_their_index(index: int) -> None:
    assert operation_index_from(JOB_ID, f"{JOB_ID}-{index}") == index
    assert operation_index_from(JOB_ID, str(index)) == index


@pytest.mark.parametrize(
    "raw",
    [
        "0",
        f"{JOB_ID}-0",
        "000",
        "01",
        f"{JOB_ID}-007",
        "-1",
        f"{JOB_ID}--1",
        f"{JOB_ID}-",
        "",
        "one",
        "1.5",
        "1e3",
        "+1",
        " 1",
        "1 ",
        f"{JOB_ID}-1x",
        f"{JOB_ID}1",
        f"{JOB_ID[:-1]}-1",
        JOB_ID,
        "1000000000",
        f"{JOB_ID}-1000000000",
        "9" * 400,
    ],
    ids=[
        "zero",
        "zero-with-job",
        "zeros",
        "leading-zero",
        "leading-zeros-with-job",
        "negative",
        "negative-with-job",
        "no-index",
        "empty",
        "word",
        "decimal",
        "exponent",
        "plus-sign",
        "leading-space",
        "trailing-space",
        "suffix",
        "no-dash",
        "truncated-prefix",
        "job-id-alone",
        "ten-digits",
        "ten-digits-with-job",
        "huge",
    ],
)
def test_anything_else_is_not_an_operation_of_the_job(raw: str) -> None:
    with pytest.raises(InvalidJob, match="malformed operation id") as caught:
        operation_index_from(JOB_ID, raw)
    assert_bad_request(caught.value)


@pytest.mark.parametrize("raw", [f"{OTHER_JOB_ID}-1", f"{OTHER_JOB_ID}-999999999"])
def test_well_formed_id_of_another_jobs_operation_is_not_found(raw: str) -> None:
    # Given the id of an operation of another job, asked for under JOB_ID
    # Then it names nothing there: not found (404), as the OpenAPI document leads to expect
    with pytest.raises(NotFound, match=f"not an operation of job {JOB_ID}"):
        operation_index_from(JOB_ID, raw)


@pytest.mark.parametrize(
    "raw",
    ["\u00b2", "\uff11", "\u0663", f"{JOB_ID}-\u00b2"],
    ids=["superscript-two", "fullwidth-one", "arabic-three", "superscript-two-with-job"],
)
def test_non_ascii_digits_are_not_an_operation_index(raw: str) -> None:
    with pytest.raises(InvalidJob):
        operation_index_from(JOB_ID, raw)


# --- page_from ----------------------------------------------------------------------------------


def test_no_paging_parameters_mean_first_page_of_30() -> None:
    assert page_from({}) == (1, DEFAULT_PAGE_SIZE) == (1, 30)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"page": "3"}, (3, 30)),
        ({"size": "10"}, (1, 10)),
        ({"page": "2", "size": "100"}, (2, 100)),
        ({"page": "1", "size": "1"}, (1, 1)),
        ({"page": "999999999"}, (999_999_999, 30)),
        ({"page": "1000000000"}, (MAX_PAGE, 30)),
        ({"page": "007", "size": "050"}, (7, 50)),
        ({"other": "x"}, (1, 30)),
    ],
)
def test_paging_parameters_are_read_from_the_query(
    query: dict[str, str], expected: tuple[int, int]
) -> None:
    assert page_from(query) == expected


def test_largest_page_size_is_100() -> None:
    assert MAX_PAGE_SIZE == 100
    assert page_from({"size": "100"}) == (1, 100)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"size": "101"}, "size must be between 1 and 100, got 101"),
        ({"size": "1000"}, "size must be between 1 and 100, got 1000"),
        ({"size": "0"}, "size must be between 1 and 100, got 0"),
        ({"page": "0"}, "page must be between 1 and 1000000000, got 0"),
        ({"page": "-1"}, "page must be a positive integer, got '-1'"),
        ({"size": "-5"}, "size must be a positive integer, got '-5'"),
        ({"page": "two"}, "page must be a positive integer, got 'two'"),
        ({"size": "1.5"}, "size must be a positive integer, got '1.5'"),
        ({"page": "+2"}, "page must be a positive integer, got '+2'"),
        ({"page": " 2"}, "page must be a positive integer, got ' 2'"),
        ({"page": "1000000001"}, "page must be between 1 and 1000000000, got 1000000001"),
        ({"page": "10000000000"}, "page must be a positive integer, got '10000000000'"),
        ({"page": ""}, "page must be a positive integer, got ''"),
        ({"size": ""}, "size must be a positive integer, got ''"),
        ({"page": "9" * 1000}, "page must be a positive integer, got '99999999999999999999'"),
        ({"page": "2", "size": "x"}, "size must be a positive integer, got 'x'"),
    ],
    ids=[
        "size-over-100",
        "size-huge",
        "size-zero",
        "page-zero",
        "page-negative",
        "size-negative",
        "page-word",
        "size-decimal",
        "page-plus-sign",
        "page-space",
        "page-over-the-largest",
        "page-eleven-digits",
        "page-empty",
        "size-empty",
        "page-huge",
        "good-page-bad-size",
    ],
)
def test_bad_paging_parameter_is_an_invalid_job_naming_it(
    query: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidJob) as caught:
        page_from(query)
    assert str(caught.value) == message
    assert_bad_request(caught.value)


def test_page_from_reads_aiohttp_query_objects() -> None:
    # Given the MultiDictProxy aiohttp gives as request.query
    query = MultiDictProxy(MultiDict([("page", "4"), ("size", "25")]))

    # Then it is read like a dict
    assert page_from(query) == (4, 25)


@given(page=st.integers(min_value=1, max_value=MAX_PAGE), size=st.integers(1, MAX_PAGE_SIZE))
def test_every_valid_page_and_size_is_read_back(page: int, size: int) -> None:
    assert page_from({"page": str(page), "size": str(size)}) == (page, size)


@pytest.mark.parametrize(
    "query",
    [{"page": "\u00b2"}, {"size": "\u00b2"}, {"page": "\u0663"}, {"size": "\uff11"}],
    ids=["page-superscript-two", "size-superscript-two", "page-arabic-three", "size-fullwidth-one"],
)
def test_non_ascii_digits_are_not_a_page_or_size(query: dict[str, str]) -> None:
    with pytest.raises(InvalidJob):
        page_from(query)
