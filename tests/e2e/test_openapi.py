"""The OpenAPI document says exactly what the API does: schemathesis with every check finds nothing.

Two runs: the schemathesis command line (`schemathesis run <document> -c all`, every phase:
examples, coverage, fuzzing and stateful sequences), authenticated when the session has a token;
and, through schemathesis' pytest integration, generated requests without any token, which are
all refused with a JSON 401 when the workers have tokens, and meet every check when they do not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from conftest import AUTH_HEADERS, TOKEN, Stack
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from jobstream.settings import Settings
from jobstream.views.openapi import openapi_document

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

API = "http://127.0.0.1:8080"
#: The settings the workers run with, as far as the document shows them.
SETTINGS = Settings(api_tokens=(TOKEN,) if TOKEN else ())
DOCUMENT = openapi_document(SETTINGS)
schema = schemathesis.openapi.from_dict(DOCUMENT)
load_all_checks()
ALL_CHECKS = CHECKS.get_all()
#: Examples per operation and phase of the command-line run (JOBSTREAM_E2E_SCHEMATHESIS_EXAMPLES).
EXAMPLES = int(os.environ.get("JOBSTREAM_E2E_SCHEMATHESIS_EXAMPLES", "30"))
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def anonymous(stack: Stack) -> requests.Session:
    """A plain HTTP session without a token, once the workers are up."""
    with requests.Session() as session:
        yield session


def test_served_document_is_the_one_tested(stack: Stack) -> None:
    served = requests.get(f"{API}/api/openapi.json", headers=AUTH_HEADERS, timeout=10)
    assert served.status_code == 200
    assert served.json() == DOCUMENT


def test_schemathesis_with_every_check_reports_no_failure(stack: Stack, tmp_path: Path) -> None:
    # Given a stack whose workers are all ready (an earlier test may have restarted one, and a
    # worker answers /ready with its documented 503 while its group rebalances)
    every_worker_ready()
    # and the command a user would run against the served document, with every check
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{API}/api/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        # GET /api/jobs/{id}?wait= may hold a request up to its documented 60 s
        "--request-timeout",
        "75",
        # the event streams never end by themselves (keepalives defeat any read timeout):
        # test_events.py drives them with schemathesis, read as streams
        "--exclude-path-regex",
        "/events$",
        "--no-color",
    ]
    if TOKEN:
        command += ["--header", f"Authorization: Bearer {TOKEN}"]

    # When it runs (in a scratch directory: it keeps a cache in the working directory)
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=1700, check=False
    )

    # Then it finds no failure and no error in any phase
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-12000:]


def every_worker_ready(timeout: float = 90.0) -> None:
    """Poll every worker's /ready until each answers 200 (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    for port in (8080, 8081, 8082, 8090, 8091, 8092):
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"the worker on port {port} is not ready"
            time.sleep(0.2)


#: Without a token the event streams would be answered, and never end: test_events.py reads them.
GENERATED = schema if TOKEN else schema.exclude(path_regex="/events$")


@GENERATED.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_requests_without_a_token_meet_every_check(case: Any, anonymous: requests.Session) -> None:
    # When a generated request is sent without a token
    response = case.call_and_validate(
        base_url=API, session=anonymous, checks=ALL_CHECKS, timeout=75
    )

    # Then, with tokens, the API refuses it with a JSON 401 whatever it asked; without, any
    # refusal is a JSON problem with a message
    if TOKEN and case.path.startswith("/api"):
        assert response.status_code == 401, (case.method, case.formatted_path)
        # schemathesis' response keeps each header as a list, under its lower-cased name
        assert response.headers["www-authenticate"][0].startswith("Bearer")
        assert response.json()["error"] == "unauthorized"
    elif response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("message"), str) and body["message"]
