"""The `jobstream` command against the running 3 + 3 workers, as a user runs it."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, Stack

from jobstream.errors import ExpressionError
from jobstream.expressions import compute
from jobstream.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

#: The installed console script (setup.cfg's entry point), beside this interpreter.
JOBSTREAM = str(Path(sys.executable).parent / "jobstream")
BIG_JOB = 100_000


def environment(stack: Stack) -> dict[str, str]:
    """The command's environment: this one, with the stack's API token when it requires one."""
    env = {k: v for k, v in os.environ.items() if k not in ("JOBSTREAM_API_URL", "COLUMNS")}
    env.pop("JOBSTREAM_API_TOKEN", None)
    if stack.token:
        env["JOBSTREAM_API_TOKEN"] = stack.token
    return env


def lines_of(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


async def jobstream(
    stack: Stack, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the command against the stack's first client worker, with output captured."""
    command = [JOBSTREAM, *args]
    if not any(arg.startswith("--api") for arg in args):
        command += ["--api", stack.api]
    return await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=environment(stack),
    )


def run_in_terminal(command: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run `command` on a pseudo-terminal (160 x 40) and return its exit code and all it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {k: v for k, v in env.items() if k not in ("NO_COLOR", "LINES")}
    process = subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env={**env, "TERM": "xterm"}
    )
    os.close(slave)
    drawn = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the command exited and closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, drawn.decode(errors="replace")


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_submit_wait_json_prints_the_exact_results(stack: Stack) -> None:
    # Given the seed's ten operations
    expressions = lines_of(ROOT / "operations.txt")

    # When they are submitted and waited for, for a script
    done = await jobstream(stack, "submit", "operations.txt", "--wait", "--json")

    # Then it exits 0 and prints every exact result, in order
    assert done.returncode == 0, done.stderr
    document = orjson.loads(done.stdout)
    assert document["job"]["status"] == "completed"
    assert document["job"]["operations"] == {
        "total": len(expressions),
        "succeeded": len(expressions),
        "failed": 0,
        "pending": 0,
    }
    operations = document["operations"]
    assert [op["expression"] for op in operations] == expressions
    assert [op["result"] for op in operations] == [compute(text) for text in expressions]
    results = {op["expression"]: op["result"] for op in operations}
    assert results["3 / 4 + 1"] == "1.75"
    assert results["0 * 3 + 4 - 1 + 5 * 39"] == "198"


async def test_a_job_with_a_failed_operation_exits_1_and_shows_the_error(stack: Stack) -> None:
    # Given the seed's file whose only line ends with a dangling operator
    (line,) = lines_of(ROOT / "operations-error.txt")
    with pytest.raises(ExpressionError) as expected:
        compute(line)

    # When it is submitted and waited for
    done = await jobstream(stack, "submit", "operations-error.txt", "--wait")

    # Then it exits 1, and the summary shows the operation's error
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1: 0 succeeded, 1 failed, 0 pending" in done.stdout
    assert str(expected.value) in done.stdout


async def test_a_100000_operation_job_shows_its_progress_and_finishes(
    stack: Stack, tmp_path: Path
) -> None:
    # Given a file of 100,000 operations
    source = tmp_path / "big.txt"
    source.write_text("".join(f"{n} + {n % 7}\n" for n in range(BIG_JOB)))

    # When it is submitted with --wait on a terminal
    command = [JOBSTREAM, "submit", str(source), "--wait", "--api", stack.api]
    code, drawn = await asyncio.to_thread(run_in_terminal, command, environment(stack), 280)

    # Then a progress bar showed operations done, failed, the rate and the time left as it ran
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    assert code == 0, plain[-3000:]
    counts = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+)/100,000 done", plain)]
    assert counts and counts[-1] == BIG_JOB, plain[-3000:]
    assert any(0 < n < BIG_JOB for n in counts), f"no frame in between: {sorted(set(counts))}"
    assert counts == sorted(counts)
    assert "0 failed" in plain and "ops/s" in plain and "left" in plain and "━" in plain
    # And the summary gives the final counters
    assert f"{BIG_JOB:,}: {BIG_JOB:,} succeeded, 0 failed, 0 pending" in plain


async def test_watch_prints_a_json_line_per_change_until_the_job_completes(stack: Stack) -> None:
    # Given a running job of 5,000 operations
    body = "".join(f"{n} * 3 - {n % 5}\n" for n in range(5000))
    job_id = await stack.submit(body, base=stack.client(1))

    # When the command watches it, for a script
    done = await jobstream(stack, "watch", job_id, "--json")

    # Then it printed the job's state at each change, growing, up to the completed job; exit 0
    assert done.returncode == 0, done.stderr
    states = [orjson.loads(line) for line in done.stdout.splitlines()]
    counts = [s["operations"]["succeeded"] + s["operations"]["failed"] for s in states]
    assert counts == sorted(counts) and counts[-1] == 5000, counts
    assert states[-1]["status"] == "completed"
    assert states[-1] == await stack.job(job_id)


async def test_delete_removes_a_job(stack: Stack) -> None:
    # Given a job created with the command
    created = await jobstream(stack, "submit", "operations.txt", "--json")
    assert created.returncode == 0, created.stderr
    job_id = orjson.loads(created.stdout)["id"]
    await stack.wait_completed(job_id)

    # When it is deleted
    deleted = await jobstream(stack, "delete", job_id)

    # Then the API no longer knows it, and the command says so with exit code 2
    assert deleted.returncode == 0, deleted.stderr
    assert f"Deleted job {job_id}" in deleted.stdout
    status, body, _ = await stack.request("GET", f"/api/jobs/{job_id}")
    assert status == 404, body
    again = await jobstream(stack, "job", job_id)
    assert again.returncode == 2
    assert "(HTTP 404 not_found)" in again.stderr


async def test_an_unreachable_api_exits_3_with_a_clear_message(stack: Stack) -> None:
    port = closed_port()

    done = await jobstream(stack, "jobs", "--api", f"http://127.0.0.1:{port}")

    assert done.returncode == 3, done.stdout + done.stderr
    assert f"cannot reach the jobstream API at http://127.0.0.1:{port}/api/jobs" in done.stderr
    assert "Connection refused" in done.stderr
    assert "Traceback" not in done.stderr


async def test_an_over_long_line_exits_2_with_the_api_s_message(
    stack: Stack, tmp_path: Path
) -> None:
    # Given a file whose second line is one character over the API's limit
    limit = Settings.from_env().max_line_length
    source = tmp_path / "long.txt"
    source.write_text("1 + 1\n" + "1" * (limit + 1) + "\n")

    # When it is submitted
    done = await jobstream(stack, "submit", str(source), "--wait")

    # Then the API refused it and the command shows the API's message, exit code 2
    assert done.returncode == 2, done.stdout + done.stderr
    message = f"line 2 is {limit + 1} characters long; the limit is {limit}"
    assert f"error: {message} (HTTP 413 too_large)" in done.stderr
