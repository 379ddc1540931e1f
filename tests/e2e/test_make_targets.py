"""The seed's `make api-*` targets work against the running local stack (with the session's token
when the API needs one: they send JOBSTREAM_API_TOKEN as the CLI does)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest
from conftest import ROOT, TOKEN, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def make(target: str, **variables: str) -> Any:
    """Run `make -s <target> VAR=...` and parse the JSON it prints (None when it prints nothing)."""
    args = ["make", "-s", target, "API_URL=http://127.0.0.1:8080"]
    args += [f"{key}={value}" for key, value in variables.items()]
    if TOKEN:
        args.append(f"JOBSTREAM_API_TOKEN={TOKEN}")
    done = await asyncio.to_thread(
        subprocess.run, args, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout) if done.stdout.strip() else None


async def test_every_api_target_drives_the_api(stack: Stack) -> None:
    # Given one job of each sample, created through the make targets
    single = await make("api-create-job-with-single-operation")
    multiple = await make("api-create-job-with-multiple-operations")
    error = await make("api-create-job-with-error-operation")
    assert (single["created_operations"], multiple["created_operations"]) == (1, 10)
    assert error["created_operations"] == 1
    for job in (single, multiple, error):
        await stack.wait_completed(job["id"])

    # When they are read back through the other targets
    jobs = await make("api-get-jobs", SIZE="100")
    job = await make("api-get-job", JOB_ID=error["id"])
    operations = await make("api-get-job-operations", JOB_ID=multiple["id"])
    first = operations["items"][0]
    operation = await make("api-get-job-operation", JOB_ID=multiple["id"], OPERATION_ID=first["id"])

    # Then they show the jobs and results
    assert {single["id"], multiple["id"], error["id"]} <= {j["id"] for j in jobs["items"]}
    assert job["operations"]["failed"] == 1
    assert [op["result"] for op in operations["items"]][8] == "1.75"
    assert operation == first

    # And api-delete-job removes a job
    assert await make("api-delete-job", JOB_ID=single["id"]) is None
    assert (await stack.request("GET", f"/api/jobs/{single['id']}"))[0] == 404


async def test_targets_that_need_an_id_say_so(stack: Stack) -> None:
    done = await asyncio.to_thread(
        subprocess.run, ["make", "-s", "api-get-job"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "JOB_ID=<id>" in done.stderr
