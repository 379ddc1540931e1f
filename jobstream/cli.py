"""The `jobstream` command: submit jobs, follow them with a progress bar, inspect and delete them.

Tables for people, `--json` for scripts (one JSON document; JSON lines for listings and streams).
Exit codes: 0 done and every operation succeeded, 1 done with failed operations, 2 usage or input
error (the API's 4xx included), 3 API unreachable, failing (5xx) or a wait timed out.

`jobstream worker ...` runs the Faust worker CLI; Faust is imported only then, so the rest of the
command starts fast and works where the workers' dependencies are not configured.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import click
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from jobstream import __version__
from jobstream.client import (
    DEFAULT_URL,
    TOKEN_ENV,
    URL_ENV,
    ApiError,
    ApiUnreachable,
    Client,
    ClientError,
    Job,
    Operation,
    ProtocolError,
    Unauthorized,
    WaitTimeout,
)


class Exit(IntEnum):
    """The command's exit codes."""

    OK = 0
    FAILED_OPERATIONS = 1
    USAGE = 2
    UNAVAILABLE = 3
    INTERRUPTED = 130


class JobStatus(StrEnum):
    in_progress = "in_progress"
    completed = "completed"
    cancelled = "cancelled"


class OperationStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


#: Least seconds between two updates of a followed job (the progress bar, `watch`'s lines).
FOLLOW_INTERVAL = 0.5
#: A finished job's operations are listed in full up to this many; beyond, only failures.
SUMMARY_ROWS = 50
#: Failed operations a summary shows at most.
SUMMARY_FAILURES = 10
#: Rows `ops` shows in a table unless --limit says otherwise.
TABLE_ROWS = 100

#: Width of tables written to a pipe or a file (rich would take 80 and cut ids and errors).
PIPE_WIDTH = 200

#: Makes the client; the unit tests replace it to talk to an in-memory API.
make_client: Callable[..., Client] = Client

app = typer.Typer(
    name="jobstream",
    help="Submit arithmetic jobs to a jobstream API, follow them, inspect and delete them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

ApiOption = Annotated[
    str | None,
    typer.Option(
        "--api",
        envvar=URL_ENV,
        metavar="URL",
        help=f"Base URL of the API \\[default: {DEFAULT_URL}].",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=TOKEN_ENV,
        help="Bearer token, when the API requires one.",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        min=0,
        help="Give up waiting after this long (exit code 3) \\[default: as long as it takes].",
        show_default=False,
    ),
]
JobId = Annotated[str, typer.Argument(metavar="ID", help="The job's id.", show_default=False)]


# --- commands ---


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"jobstream {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """Submit arithmetic jobs to a jobstream API, follow them, inspect and delete them."""


@app.command()
def submit(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-",
            help="One expression per line ('-' reads standard input).",
            show_default=False,
        ),
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job to its end, then summarise it.")
    ] = False,
    timeout: TimeoutOption = None,
    json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Create a job from a file of expressions; with --wait, follow it with a progress bar."""
    out = Output(json)
    body = _read_input(out, file)
    with _session(out, api, token) as client:
        created = client.submit(body)
        if not wait:
            if json:
                out.document(created.raw)
            else:
                out.say(
                    f"Job [bold]{created.id}[/] accepted with {created.created_operations:,} "
                    f"operations. Follow it with: jobstream watch {created.id}"
                )
            return
        job = _follow(out, client, created.id, created.created_operations, timeout)
        _summarise(out, client, job)
        raise typer.Exit(_finished_code(job))


@app.command()
def watch(
    job_id: JobId,
    timeout: TimeoutOption = None,
    json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Follow a job to its end: a progress bar on a terminal, else a line per change."""
    out = Output(json)
    with _session(out, api, token) as client:
        job = _follow(out, client, job_id, None, timeout, stream=True)
        if not json:
            _summarise(out, client, job)
        raise typer.Exit(_finished_code(job))


@app.command()
def jobs(
    status: Annotated[
        JobStatus | None, typer.Option("--status", help="Only jobs with this status.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="Show at most this many jobs (0: all).")
    ] = 20,
    json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """List jobs, newest first (JSON lines with --json)."""
    out = Output(json)
    with _session(out, api, token) as client:
        found = _limited(client.jobs(status.value if status else None), limit)
        if json:
            for job in found:
                out.line(job.raw)
            return
        table = Table("id", "status", "done", "failed", "created (UTC)", "took", box=None)
        table.columns[0].no_wrap, table.columns[0].min_width = True, 32  # never cut an id
        for job in found:
            table.add_row(
                job.id,
                _status(job.status),
                f"{job.done:,}/{job.total:,}",
                _failed(job.failed),
                _when(job.created_at),
                _took(job),
            )
        out.show(table if table.row_count else "No jobs.")


@app.command()
def job(
    job_id: JobId,
    json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Show one job and its counters."""
    out = Output(json)
    with _session(out, api, token) as client:
        found = client.job(job_id)
        if json:
            out.document(found.raw)
        else:
            out.show(_job_table(found))


@app.command()
def ops(
    job_id: JobId,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed operations.")] = False,
    status: Annotated[
        OperationStatus | None, typer.Option("--status", help="Only operations with this status.")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=0,
            help=f"Show at most this many (0: all) \\[default: {TABLE_ROWS} in a table, all with "
            "--json].",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """List a job's operations in order, with results and errors (JSON lines with --json)."""
    out = Output(json)
    if failed and status not in (None, OperationStatus.failed):
        out.error("--failed and --status disagree; give one of them")
        raise typer.Exit(Exit.USAGE)
    wanted = "failed" if failed else (status.value if status else None)
    with _session(out, api, token) as client:
        rows = limit if limit is not None else (0 if json else TABLE_ROWS)
        found = _limited(client.operations(job_id, wanted), rows)
        if json:
            for operation in found:
                out.line(operation.raw)
            return
        shown = list(found)
        out.show(_operations_table(shown) if shown else "No operations.")
        if rows and len(shown) == rows:
            out.note(f"Showing the first {rows:,}; --limit 0 shows them all.")


@app.command()
def delete(
    job_id: JobId,
    json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Delete a job with its operations and results (a running job stops)."""
    out = Output(json)
    with _session(out, api, token) as client:
        client.delete(job_id)
        if json:
            out.document({"id": job_id, "deleted": True})
        else:
            out.say(f"Deleted job {escape(job_id)}.")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def worker(ctx: typer.Context) -> None:
    """Run a Faust worker of jobstream's app (the same as `python -m jobstream worker`).

    Every argument goes to Faust's `worker` command: `jobstream worker --help` lists them.
    """
    from jobstream.__main__ import main as run_worker  # imports Faust: only here

    run_worker(["worker", *ctx.args])


def main() -> None:
    """Entry point of the `jobstream` console script."""
    app()


# --- following a job ---


def _follow(
    out: Output,
    client: Client,
    job_id: str,
    total: int | None,
    timeout: float | None,
    *,
    stream: bool = False,
) -> Job:
    """Wait for the job to finish: with a progress bar on a terminal, else quietly (or, with
    `stream`, a line per change); returns its final state. The progress bar and the lines follow
    the job's event stream (`Client.watch`); a quiet wait is one held request (`Client.wait`)."""
    if out.err.is_terminal:
        with _progress(out.err) as progress:
            task = progress.add_task(f"job {job_id[:8]}", total=total, failed=0)

            def show(job: Job) -> None:
                progress.update(task, completed=job.done, total=job.total, failed=job.failed)
                if stream and out.json:
                    out.line(job.raw)

            return _watch(client, job_id, timeout, show)
    if stream:
        return _watch(client, job_id, timeout, out.line_of_job)
    return client.wait(job_id, timeout)


def _watch(
    client: Client, job_id: str, timeout: float | None, on_change: Callable[[Job], None]
) -> Job:
    """Hand each change of the job to `on_change`; returns its final state (the last one)."""
    for job in client.watch(job_id, FOLLOW_INTERVAL, timeout=timeout):
        on_change(job)
    return job  # watch yields at least once, and ends with the final state


class _Failed(ProgressColumn):
    """Failed operations, in red once there is one."""

    def render(self, task: Task) -> Text:
        failed = task.fields.get("failed", 0)
        return Text(f"{failed:,} failed", style="red" if failed else "")


class _Rate(ProgressColumn):
    """Operations per second, as rich estimates them from recent updates."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} ops/s" if speed else "- ops/s", style="progress.data.speed")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} done"),
        _Failed(),
        _Rate(),
        TimeElapsedColumn(),
        TextColumn("elapsed"),
        TimeRemainingColumn(),
        TextColumn("left"),
        console=console,
        refresh_per_second=4,
    )


def _summarise(out: Output, client: Client, job: Job) -> None:
    """The finished job: counters, then its results (small jobs) or its first failures."""
    if out.json:
        operations = [op.raw for op in client.operations(job.id)]
        out.document({"job": job.raw, "operations": operations})
        return
    out.show(_job_table(job))
    if job.total <= SUMMARY_ROWS:
        out.show(_operations_table(list(client.operations(job.id))))
    elif job.failed:
        failures = list(_limited(client.operations(job.id, "failed"), SUMMARY_FAILURES))
        out.show(_operations_table(failures))
        if job.failed > len(failures):
            out.note(f"{job.failed - len(failures):,} more: jobstream ops {job.id} --failed")


def _finished_code(job: Job) -> Exit:
    return Exit.OK if job.status == "completed" and not job.failed else Exit.FAILED_OPERATIONS


# --- input, sessions and errors ---


def _read_input(out: Output, file: str) -> bytes:
    try:
        if file == "-":
            return click.get_binary_stream("stdin").read()
        return Path(file).read_bytes()
    except OSError as exc:
        out.error(f"cannot read {file}: {exc.strerror or exc}")
        raise typer.Exit(Exit.USAGE) from None


@contextmanager
def _session(out: Output, api: str | None, token: str | None) -> Iterator[Client]:
    """A client for the command, with every client error turned into a message and an exit code."""
    try:
        client = make_client(api, token)
    except ValueError as exc:
        out.error(str(exc))
        raise typer.Exit(Exit.USAGE) from None
    try:
        with client:
            yield client
    except ApiError as exc:
        out.error(f"{exc.message} (HTTP {exc.status} {exc.code})")
        if isinstance(exc, Unauthorized):
            out.note(f"Give a token with --token or {TOKEN_ENV}.")
        raise typer.Exit(Exit.USAGE if exc.status < 500 else Exit.UNAVAILABLE) from None
    except WaitTimeout as exc:
        out.error(str(exc))
        raise typer.Exit(Exit.UNAVAILABLE) from None
    except (ApiUnreachable, ProtocolError) as exc:
        out.error(str(exc))
        out.note(f"Is the API running there? Point to it with --api or {URL_ENV}.")
        raise typer.Exit(Exit.UNAVAILABLE) from None
    except ClientError as exc:
        out.error(str(exc))
        raise typer.Exit(Exit.UNAVAILABLE) from None
    except KeyboardInterrupt:
        out.note("Interrupted; a submitted job goes on running (jobstream watch ID follows it).")
        raise typer.Exit(Exit.INTERRUPTED) from None


class Output:
    """Where a command writes: stdout for results, stderr for progress, notes and errors."""

    def __init__(self, json: bool) -> None:
        self.json = json
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)
        if not self.out.is_terminal:
            self.out.width = PIPE_WIDTH

    def document(self, data: Any) -> None:
        """One JSON document."""
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        sys.stdout.flush()

    def line(self, data: Any) -> None:
        """One JSON line of a stream."""
        sys.stdout.write(orjson.dumps(data).decode() + "\n")
        sys.stdout.flush()

    def line_of_job(self, job: Job) -> None:
        """One change of a followed job: a JSON line, or a line of text."""
        if self.json:
            self.line(job.raw)
        else:
            self.out.print(
                f"{_when(datetime.now(UTC))} {job.status} {job.done:,}/{job.total:,} done, "
                f"{job.failed:,} failed"
            )

    def show(self, renderable: Any) -> None:
        self.out.print(renderable)

    def say(self, markup: str) -> None:
        self.out.print(markup, soft_wrap=True)

    def note(self, text: str) -> None:
        self.err.print(escape(text), style="dim", soft_wrap=True)

    def error(self, text: str) -> None:
        # soft_wrap: a message stays on one line, whole, for whoever greps it
        self.err.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)


# --- rendering ---


def _job_table(job: Job) -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("job", job.id)
    table.add_row("status", _status(job.status))
    table.add_row(
        "operations",
        f"{job.total:,}: {job.succeeded:,} succeeded, {_failed(job.failed)} failed, "
        f"{job.pending:,} pending",
    )
    table.add_row("created", _when(job.created_at) + " UTC")
    if job.finished_at:
        table.add_row("finished", f"{_when(job.finished_at)} UTC (took {_took(job)})")
    return table


def _operations_table(operations: list[Operation]) -> Table:
    table = Table("#", "expression", "status", "result or error", box=None)
    table.columns[0].justify = "right"
    table.columns[1].overflow = "fold"
    table.columns[3].overflow = "fold"
    for op in operations:
        outcome = (
            Text(op.error, style="red")
            if op.error is not None
            else Text(op.result if op.result is not None else "")
        )
        table.add_row(str(op.index), Text(op.expression), _status(op.status), outcome)
    return table


def _status(status: str) -> Text:
    style = {"completed": "green", "succeeded": "green", "failed": "red", "cancelled": "yellow"}
    return Text(status, style=style.get(status, "cyan"))


def _failed(count: int) -> str:
    return f"[red]{count:,}[/]" if count else "0"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _took(job: Job) -> str:
    if job.finished_at is None:
        return ""
    seconds = (job.finished_at - job.created_at).total_seconds()
    return f"{seconds:.2f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _limited(items: Iterator[Any], limit: int) -> Iterator[Any]:
    for count, item in enumerate(items, start=1):
        yield item
        if limit and count >= limit:
            return
