"""What FerretDB asks of PostgreSQL: per-table scan and write counters (`pg_stat_user_tables`).

FerretDB keeps each collection in a PostgreSQL table named `<collection>_<hash>` in a schema named
after the database. Rows read by sequential scans (`seq_tup_read`) per operation show whether a
query was pushed down to an index or answered by reading the whole collection. Local stack only
(PostgreSQL on 127.0.0.1:15432, trust auth); without `psql` the figures are simply absent.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

PG = ("-h", "127.0.0.1", "-p", "15432", "-U", "ferretdb", "-d", "ferretdb")
FIELDS = (
    "seq_scan",
    "seq_tup_read",
    "idx_scan",
    "idx_tup_fetch",
    "n_tup_ins",
    "n_tup_upd",
    "n_live_tup",
)
GAUGES = ("n_live_tup",)  # a level, not a counter: left out of deltas
QUERY = (
    "SELECT schemaname || '.' || relname, "
    + ", ".join(f"coalesce({f}, 0)" for f in FIELDS)
    + " FROM pg_stat_user_tables WHERE schemaname = '{schema}'"
)


def parse(text: str) -> dict[str, dict[str, int]]:
    """psql -At output (`name|n|n|...` lines) -> {collection: {field: n}} (hash suffix dropped)."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != len(FIELDS) + 1:
            continue
        table = parts[0].split(".", 1)[-1]
        collection = table.rsplit("_", 1)[0] if "_" in table else table
        values = dict(zip(FIELDS, (int(p or 0) for p in parts[1:]), strict=True))
        merged = out.setdefault(collection, dict.fromkeys(FIELDS, 0))
        for key, value in values.items():
            merged[key] += value
    return out


def delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Growth of every counter per collection between two snapshots (zero growth left out)."""
    out: dict[str, Any] = {}
    for collection, values in after.items():
        old = before.get(collection, {})
        grown = {
            k: v - old.get(k, 0) for k, v in values.items() if k not in GAUGES and v - old.get(k, 0)
        }
        if grown:
            out[collection] = grown
    return out


async def snapshot(schema: str = "jobstream", timeout: float = 5.0) -> dict[str, dict[str, int]]:
    """The counters now ({} when psql or the server is not there)."""
    psql = shutil.which("psql")
    if psql is None:
        return {}
    try:
        process = await asyncio.create_subprocess_exec(
            psql,
            *PG,
            "-At",
            "-c",
            QUERY.format(schema=schema.replace("'", "")),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return {}
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return {}
    return parse(out.decode()) if process.returncode == 0 else {}


async def _psql(*args: str, timeout: float) -> str | None:
    """psql's stdout, or None when psql is missing, fails or takes longer than `timeout`."""
    psql = shutil.which("psql")
    if psql is None:
        return None
    try:
        process = await asyncio.create_subprocess_exec(
            psql,
            *PG,
            "-At",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    return out.decode() if process.returncode == 0 else None


async def vacuum_analyze(schema: str, timeout: float = 300.0) -> bool:
    """VACUUM (ANALYZE) the tables of one FerretDB database; True when it ran.

    After a bulk load PostgreSQL's autovacuum would otherwise visit the new rows in the middle
    of the phases measured next, and its planner would plan with statistics of an empty table:
    a database that filled up over time has neither problem.
    """
    names = await _psql(
        "-c",
        "SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM pg_stat_user_tables "
        f"WHERE schemaname = '{schema.replace(chr(39), '')}'",
        timeout=30,
    )
    tables = [line.strip() for line in (names or "").splitlines() if line.strip()]
    if not tables:
        return False
    return await _psql("-c", f"VACUUM (ANALYZE) {', '.join(tables)}", timeout=timeout) is not None
