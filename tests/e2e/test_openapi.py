"""Property-based hostile input from the OpenAPI document (schemathesis): no 5xx, JSON errors."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from conftest import Stack
from hypothesis import HealthCheck, settings
from schemathesis import checks

from jobstream.settings import Settings
from jobstream.views.openapi import openapi_document

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

API = "http://127.0.0.1:8080"
schema = schemathesis.openapi.from_dict(openapi_document(Settings()))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def api(stack: Stack) -> requests.Session:
    """A plain HTTP session, once the workers are up."""
    with requests.Session() as session:
        yield session


def test_served_document_is_the_one_tested(api: requests.Session) -> None:
    served = api.get(f"{API}/api/openapi.json", timeout=10).json()
    assert served == openapi_document(Settings())


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_api_never_fails_with_a_server_error(case: Any, api: requests.Session) -> None:
    response = case.call_and_validate(base_url=API, session=api, checks=CHECKS, timeout=30)
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("message"), str) and body["message"]
