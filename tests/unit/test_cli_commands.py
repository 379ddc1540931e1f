"""The `jobstream` command against the in-memory API: output for people and scripts, exit codes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from jobstream import cli
from jobstream.client import Client, Poll, Retry
from jobstream.client.fake import FakeApi

ROOT = Path(__file__).resolve().parents[2]
SEED = str(ROOT / "operations.txt")
SEED_ERROR = str(ROOT / "operations-error.txt")
BASE = "http://jobstream.test"
MISSING = "0" * 32


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """The API every command talks to; `fake.made` lists the (url, token) each client got."""
    api = FakeApi(steps_per_read=3)
    made: list[tuple[str | None, str | None]] = []

    def make_client(base_url: str | None, token: str | None) -> Client:
        made.append((base_url, token))
        return Client(
            base_url or BASE,
            token,
            transport=api.transport(),
            retry=Retry(attempts=2, backoff=0),
            poll=Poll(interval=0, max_interval=0, watch_interval=0),
        )

    monkeypatch.setattr(cli, "make_client", make_client)
    monkeypatch.setattr(cli, "FOLLOW_INTERVAL", 0)
    monkeypatch.delenv("JOBSTREAM_API_URL", raising=False)
    monkeypatch.delenv("JOBSTREAM_API_TOKEN", raising=False)
    api.made = made  # type: ignore[attr-defined]
    return api


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.app, list(args), input=input, env=env)


def submitted(fake: FakeApi, text: str, *, finish: bool = True) -> str:
    """A job created straight in the fake (and computed, unless `finish` is False)."""
    response = fake.handle(httpx.Request("POST", f"{BASE}/api/jobs", content=text.encode()))
    job_id: str = orjson.loads(response.content)["id"]
    if finish:
        fake.run(job_id)
    return job_id


def seed_expressions() -> list[str]:
    return [line.strip() for line in Path(SEED).read_text().splitlines() if line.strip()]


# --- submit ---


def test_submit_wait_json_prints_every_result_and_exits_0(fake: FakeApi) -> None:
    done = run("submit", SEED, "--wait", "--json")

    assert done.exit_code == 0, done.output
    document = orjson.loads(done.stdout)
    assert document["job"]["status"] == "completed"
    assert document["job"]["operations"]["succeeded"] == len(seed_expressions())
    results = {op["expression"]: op["result"] for op in document["operations"]}
    assert list(results) == seed_expressions()
    assert results["3 / 4 + 1"] == "1.75"
    assert results["0 * 3 + 4 - 1 + 5 * 39"] == "198"


def test_submit_wait_shows_a_summary_with_the_results(fake: FakeApi) -> None:
    done = run("submit", SEED, "--wait")

    assert done.exit_code == 0, done.output
    assert "completed" in done.stdout
    assert "10: 10 succeeded, 0 failed, 0 pending" in done.stdout
    assert "1.75" in done.stdout and "198" in done.stdout


def test_submit_wait_with_a_failed_operation_exits_1_and_shows_the_error(fake: FakeApi) -> None:
    done = run("submit", SEED_ERROR, "--wait")

    assert done.exit_code == 1, done.output
    assert "failed" in done.stdout
    assert "unexpected end of expression" in done.stdout


def test_a_big_job_s_summary_lists_only_its_first_failures(fake: FakeApi, tmp_path: Path) -> None:
    # Given a job of 200 operations, 15 of which fail
    source = tmp_path / "big.txt"
    source.write_text("\n".join(["1 +"] * 15 + [f"{i} * 2" for i in range(185)]))
    fake.steps_per_read = 100

    done = run("submit", str(source), "--wait")

    assert done.exit_code == 1
    assert done.stdout.count("unexpected end of expression") == cli.SUMMARY_FAILURES
    assert "368" not in done.stdout  # successes of a big job are not listed
    assert "5 more: jobstream ops" in done.stderr


def test_submit_without_wait_prints_the_new_job(fake: FakeApi) -> None:
    human = run("submit", SEED)
    scripted = run("submit", SEED, "--json")

    assert human.exit_code == scripted.exit_code == 0
    created = orjson.loads(scripted.stdout)
    assert created["created_operations"] == 10 and created["status"] == "in_progress"
    assert set(fake.jobs) == {created["id"], human.stdout.split()[1]}
    assert "jobstream watch" in human.stdout


def test_submit_reads_standard_input(fake: FakeApi) -> None:
    done = run("submit", "-", "--wait", "--json", input="2 * 21\n")

    assert done.exit_code == 0, done.output
    assert [op["result"] for op in orjson.loads(done.stdout)["operations"]] == ["42"]


def test_a_missing_file_exits_2(fake: FakeApi, tmp_path: Path) -> None:
    done = run("submit", str(tmp_path / "nope.txt"))

    assert done.exit_code == 2
    assert "cannot read" in done.stderr and "No such file" in done.stderr
    assert fake.requests == []


def test_an_over_long_line_exits_2_with_the_api_s_message(fake: FakeApi, tmp_path: Path) -> None:
    source = tmp_path / "long.txt"
    source.write_text("1 + 1\n" + "1 + " * 300 + "1\n")

    done = run("submit", str(source), "--wait")

    assert done.exit_code == 2
    assert "line 2 is 1201 characters long; the limit is 1000 (HTTP 413 too_large)" in done.stderr
    assert fake.jobs == {}


def test_a_wait_that_times_out_exits_3(fake: FakeApi) -> None:
    fake.supports_wait = False
    fake.steps_per_read = 0

    done = run("submit", SEED, "--wait", "--timeout", "0")

    assert done.exit_code == 3
    assert "is still in_progress after 0 s (0 of 10 operations done)" in done.stderr


# --- errors shared by every command ---


def test_an_unreachable_api_exits_3_with_a_clear_message(fake: FakeApi) -> None:
    fake.fail_next(*[httpx.ConnectError("[Errno 111] Connection refused")] * 2)

    done = run("jobs", "--api", "http://127.0.0.1:1")

    assert done.exit_code == 3
    assert "cannot reach the jobstream API at http://127.0.0.1:1/api/jobs" in done.stderr
    assert "Connection refused" in done.stderr
    assert "--api or JOBSTREAM_API_URL" in done.stderr


def test_an_unavailable_api_exits_3(fake: FakeApi) -> None:
    fake.fail_next(503, 503)
    done = run("job", MISSING)
    assert done.exit_code == 3
    assert "(HTTP 503 unavailable)" in done.stderr


def test_an_unknown_job_exits_2(fake: FakeApi) -> None:
    done = run("job", MISSING)
    assert done.exit_code == 2
    assert f"no job {MISSING} (HTTP 404 not_found)" in done.stderr


def test_a_missing_token_exits_2_and_says_how_to_give_one(fake: FakeApi) -> None:
    fake.token = "s3cret"

    refused = run("jobs")
    allowed = run("jobs", "--token", "s3cret")
    from_env = run("jobs", env={"JOBSTREAM_API_TOKEN": "s3cret"})

    assert refused.exit_code == 2
    assert "(HTTP 401 unauthorized)" in refused.stderr and "--token" in refused.stderr
    assert allowed.exit_code == from_env.exit_code == 0
    assert "s3cret" not in refused.output + allowed.output


def test_the_api_url_comes_from_the_option_or_the_environment(fake: FakeApi) -> None:
    run("jobs", "--api", "http://one:1")
    run("jobs", env={"JOBSTREAM_API_URL": "http://two:2"})
    assert [url for url, _ in fake.made] == ["http://one:1", "http://two:2"]


def test_a_malformed_api_url_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBSTREAM_API_URL", raising=False)
    done = run("jobs", "--api", "ftp://files.example")
    assert done.exit_code == 2
    assert "must look like http://host:port" in done.stderr


def test_usage_errors_exit_2(fake: FakeApi) -> None:
    assert run("submit").exit_code == 2
    assert run("ops", MISSING, "--status", "bogus").exit_code == 2
    conflicting = run("ops", MISSING, "--failed", "--status", "succeeded")
    assert conflicting.exit_code == 2 and "disagree" in conflicting.stderr


# --- jobs, job, ops, delete, watch ---


def test_jobs_lists_newest_first(fake: FakeApi) -> None:
    older = submitted(fake, "1")
    newer = submitted(fake, "2", finish=False)

    table = run("jobs")
    lines = run("jobs", "--json")
    completed = run("jobs", "--json", "--status", "completed")
    one = run("jobs", "--json", "--limit", "1")

    assert table.exit_code == 0
    assert table.stdout.index(newer) < table.stdout.index(older)
    assert [orjson.loads(line)["id"] for line in lines.stdout.splitlines()] == [newer, older]
    assert [orjson.loads(line)["id"] for line in completed.stdout.splitlines()] == [older]
    assert len(one.stdout.splitlines()) == 1


def test_jobs_says_when_there_are_none(fake: FakeApi) -> None:
    assert "No jobs." in run("jobs").stdout


def test_job_shows_one_job(fake: FakeApi) -> None:
    job_id = submitted(fake, "1\n2 +\n3")

    table = run("job", job_id)
    document = run("job", job_id, "--json")

    assert table.exit_code == document.exit_code == 0
    assert "3: 2 succeeded, 1 failed, 0 pending" in table.stdout
    assert orjson.loads(document.stdout) == fake.jobs[job_id].to_json()


def test_ops_lists_operations_and_only_failed_ones_with_failed(fake: FakeApi) -> None:
    job_id = submitted(fake, "1 + 1\n2 +\n3 * 3\n")

    every = run("ops", job_id, "--json")
    failed = run("ops", job_id, "--failed", "--json")
    table = run("ops", job_id, "--failed")

    assert [orjson.loads(line)["result"] for line in every.stdout.splitlines()] == ["2", None, "9"]
    assert [orjson.loads(line)["index"] for line in failed.stdout.splitlines()] == [2]
    assert "2 +" in table.stdout and "3 * 3" not in table.stdout


def test_ops_tables_stop_at_the_limit_and_say_so(fake: FakeApi) -> None:
    job_id = submitted(fake, "\n".join(f"{i} + 1000" for i in range(250)))

    table = run("ops", job_id)
    short = run("ops", job_id, "--limit", "5", "--json")
    every = run("ops", job_id, "--json")

    assert "1249" not in table.stdout and "1099" in table.stdout
    assert "Showing the first 100; --limit 0 shows them all." in table.stderr
    assert len(short.stdout.splitlines()) == 5
    assert len(every.stdout.splitlines()) == 250


def test_delete_removes_a_job(fake: FakeApi) -> None:
    job_id = submitted(fake, "1")
    other = submitted(fake, "2")

    human = run("delete", job_id)
    scripted = run("delete", other, "--json")
    again = run("delete", job_id)

    assert human.exit_code == scripted.exit_code == 0
    assert f"Deleted job {job_id}" in human.stdout
    assert orjson.loads(scripted.stdout) == {"id": other, "deleted": True}
    assert fake.jobs == {}
    assert again.exit_code == 2


def test_watch_streams_json_lines_until_the_job_ends(fake: FakeApi) -> None:
    job_id = submitted(fake, "\n".join(["1"] * 7 + ["1 +"]), finish=False)

    done = run("watch", job_id, "--json")

    states = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [s["operations"]["succeeded"] + s["operations"]["failed"] for s in states] == [3, 6, 8]
    assert states[-1]["status"] == "completed"
    assert done.exit_code == 1  # one operation failed
    # followed through the job's event stream, not by reading the job again and again
    assert [r.url.path for r in fake.requests[1:]] == [f"/api/jobs/{job_id}/events"]


def test_watch_prints_a_line_per_change_for_people(fake: FakeApi) -> None:
    job_id = submitted(fake, "1\n2\n3\n4", finish=False)

    done = run("watch", job_id)

    assert done.exit_code == 0
    assert "in_progress 3/4 done, 0 failed" in done.stdout
    assert "completed 4/4 done, 0 failed" in done.stdout


def test_watch_of_an_unknown_job_exits_2(fake: FakeApi) -> None:
    done = run("watch", MISSING)
    assert done.exit_code == 2
    assert f"no job {MISSING} (HTTP 404 not_found)" in done.stderr


def test_watch_that_times_out_exits_3_with_the_last_state(fake: FakeApi) -> None:
    # Given a job that does not move
    fake.steps_per_read = 0
    job_id = submitted(fake, "1\n2\n3\n4", finish=False)
    fake.run(job_id, 1)

    done = run("watch", job_id, "--timeout", "0")

    assert done.exit_code == 3
    assert "in_progress 1/4 done, 0 failed" in done.stdout
    assert "is still in_progress after 0 s (1 of 4 operations done)" in done.stderr


def test_following_on_a_terminal_draws_a_progress_bar(fake: FakeApi) -> None:
    # Given a terminal on stderr
    job_id = submitted(fake, "\n".join(["1"] * 9 + ["1 +"]), finish=False)
    screen = io.StringIO()
    out = cli.Output(json=False)
    out.err = Console(file=screen, force_terminal=True, width=160)

    # When a job is followed to its end
    with cli.make_client(None, None) as client:
        job = cli._follow(out, client, job_id, 10, None)

    # Then the bar showed operations done, failures, the rate and the time left
    assert job.finished
    assert [r.url.path for r in fake.requests[1:]] == [f"/api/jobs/{job_id}/events"]
    drawn = screen.getvalue()
    assert "10/10 done" in drawn and "1 failed" in drawn
    assert "ops/s" in drawn and "left" in drawn and "━" in drawn


# --- the command itself ---


def test_version_and_completion_are_offered() -> None:
    assert run("--version").stdout.strip().startswith("jobstream ")
    assert "--install-completion" in run("--help").stdout


def test_the_command_does_not_import_faust() -> None:
    probe = "import sys, jobstream.cli; print(sorted({'faust', 'aiokafka'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_worker_hands_every_argument_to_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    import jobstream.__main__

    got: list[Any] = []
    monkeypatch.setattr(jobstream.__main__, "main", got.append)

    done = run("worker", "--loglevel", "info", "--web-port", "8099", "--help")

    assert done.exit_code == 0, done.output
    assert got == [["worker", "--loglevel", "info", "--web-port", "8099", "--help"]]
