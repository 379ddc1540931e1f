"""Turn a results dict into `report.md`, `results.json` and (with matplotlib) two PNG charts.

Everything but `write` and the plotting is pure: the unit tests render a fixed results dict.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from bench.stats import ratio

#: The targets (issue 12; the big-job and memory ones from earlier issues still hold).
SMALL_JOB_OPERATIONS = 10
RAW_SHARE = 0.28  # 2.5x run 7's 11.2 % of the raw two-hop limit
STORAGE_SHARE = 0.50
COMMANDS_PER_SMALL_JOB = 3.0
DOCUMENTS_PER_OPERATION = 0.02
P99_LIMIT_MS = 60.0
BIG_JOB_SHARE = 0.80
BIG_JOB_OPERATIONS = 100_000
RSS_LIMIT_MB = 250.0
PREFILL_DOCUMENTS = 1_000_000
PREFILLED_SHARE = 0.90
FIRST_PAGE_P99_MS = 50.0
#: Issue 13: small jobs' throughput with watchers, as a share of it without them (same run).
WATCHED_SHARE = 1.0

DASH = "\u2013"

GROUPS = {
    "client workers": ("client-1", "client-2", "client-3"),
    "server workers": ("server-1", "server-2", "server-3"),
    "Kafka x3": ("kafka-1", "kafka-2", "kafka-3"),
    "FerretDB + PostgreSQL": ("ferretdb", "postgres"),
    "Jaeger + Prometheus": ("jaeger", "prometheus"),
    "benchmark client": ("bench",),
}


# --- formatting ------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    """A number for a table: thousands separators, fixed digits; a dash when missing."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def pct(value: float | None, digits: int = 0) -> str:
    """A fraction as a percentage; a dash when missing."""
    return DASH if value is None else f"{100 * value:.{digits}f} %"


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """A Markdown table (cells already formatted or formatted with `fmt`)."""
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for row in rows:
        cells = [c if isinstance(c, str) else fmt(c) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- targets ---------------------------------------------------------------------------------


def _status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**not met**")


def latency_at_half(results: dict[str, Any]) -> dict[str, Any] | None:
    """The latency point whose offered load is closest to half the single-op capacity."""
    points = (results.get("latency") or {}).get("points") or []
    if not points:
        return None
    return min(points, key=lambda p: abs(p.get("fraction", 0.0) - 0.5))


def big_job(results: dict[str, Any], operations: int) -> dict[str, Any] | None:
    """The big-job entry of that size, if it ran."""
    return next(
        (b for b in results.get("big_jobs") or [] if b.get("operations") == operations), None
    )


def worker_processes(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The six workers' process entries."""
    processes = (results.get("resources") or {}).get("processes") or []
    return [p for p in processes if p.get("kind") == "worker"]


def throughput_ratio(results: dict[str, Any]) -> float | None:
    """jobstream's sustained ops/s as a share of the raw pipeline's messages/s."""
    sustained = (results.get("throughput") or {}).get("sustained")
    raw = (results.get("raw_limit") or {}).get("msgs_per_s")
    return ratio(sustained, raw)


def limits(results: dict[str, Any]) -> dict[str, Any]:
    """Small jobs' sustained ops/s against each limit and against the lower of the two.

    The raw limit is in messages/s of single-operation messages through two hops, the storage
    limit in operations/s of 10-operation jobs stored by a bare client: each is the most that
    layer alone lets through, so the lower one is where small jobs stop first.
    """
    sustained = (results.get("throughput") or {}).get("sustained")
    raw = (results.get("raw_limit") or {}).get("msgs_per_s")
    storage = (results.get("storage_limit") or {}).get("ops_per_s")
    known = {k: v for k, v in (("raw", raw), ("storage", storage)) if v}
    lower = min(known, key=known.__getitem__) if known else None
    return {
        "sustained": sustained,
        "raw": raw,
        "storage": storage,
        "of_raw": ratio(sustained, raw),
        "of_storage": ratio(sustained, storage),
        "lower": lower,
        "of_lower": ratio(sustained, known.get(lower)) if lower else None,
    }


# --- database work, from the workers' mongo_* counters (jobstream.dbmetrics) -----------------

COMMANDS = "mongo_commands_total"
DOCUMENTS = "mongo_documents_written_total"
WRITE_COMMANDS = frozenset({"insert", "update", "delete", "findAndModify", "bulkWrite"})
API_READ = "api-read"  # jobstream.dbmetrics.API_READ (the report imports nothing of jobstream)
WATCH_READ = "api-watch"  # jobstream.dbmetrics.WATCH_READ: reads of event streams and waits


def parse_key(key: str) -> tuple[str, dict[str, str]]:
    """`name{a=1,b=2}` (bench.stack.parse_counters' keys) -> ("name", {"a": "1", "b": "2"})."""
    name, _, rest = key.partition("{")
    pairs = (item.split("=", 1) for item in rest.rstrip("}").split(",") if "=" in item)
    return name, dict(pairs)


def phase_db_work(phase: dict[str, Any]) -> dict[str, Any] | None:
    """Database commands and documents written in a phase, over every worker (None: no counters).

    `commands` leaves out the API's reads (origin `api-read`, and `api-watch` for event streams
    and waits), counted apart in `api_reads`.
    """
    work: dict[str, Any] = {
        "commands": 0.0,
        "writes": 0.0,
        "api_reads": 0.0,
        "failed": 0.0,
        "documents": 0.0,
        "by_command": {},
    }
    seen = False
    for values in (phase.get("counters") or {}).values():
        for key, value in values.items():
            name, labels = parse_key(key)
            if name == DOCUMENTS:
                seen = True
                work["documents"] += value
            elif name == COMMANDS:
                seen = True
                if labels.get("outcome") == "failed":
                    work["failed"] += value
                if labels.get("origin") in (API_READ, WATCH_READ):
                    work["api_reads"] += value
                    continue
                command = labels.get("command", "?")
                work["commands"] += value
                work["writes"] += value if command in WRITE_COMMANDS else 0.0
                work["by_command"][command] = work["by_command"].get(command, 0.0) + value
    return work if seen else None


def db_costs(results: dict[str, Any], run: str = "empty") -> list[dict[str, Any]]:
    """Per job size: database commands per job and documents written per operation.

    Summed over the phases of that size (`run`: "empty" or "prefilled" database) whose jobs all
    completed, so every command of those jobs falls inside the phases counted. The counters
    include what the workers did meanwhile on their own (reconciliation's scans): it is part of
    the cost of running jobs.
    """
    sizes: dict[int, dict[str, Any]] = {}
    for phase in results.get("phases") or []:
        n, jobs = phase.get("operations_per_job"), phase.get("jobs") or 0
        if not n or not jobs or not phase.get("drained") or phase.get("run", "empty") != run:
            continue
        work = phase_db_work(phase)
        if work is None:
            continue
        row = sizes.setdefault(n, {"operations_per_job": n, "phases": 0, "jobs": 0, "work": []})
        row["phases"] += 1
        row["jobs"] += jobs
        row["work"].append(work)
    out = []
    for n, row in sorted(sizes.items()):
        jobs, work = row.pop("jobs"), row.pop("work")

        def per_job(key: str, work: list[dict[str, Any]] = work, jobs: int = jobs) -> float:
            return sum(w[key] for w in work) / jobs

        by_command: dict[str, float] = {}
        for w in work:
            for command, value in w["by_command"].items():
                by_command[command] = by_command.get(command, 0.0) + value / jobs
        out.append(
            row
            | {
                "jobs": jobs,
                "commands_per_job": per_job("commands"),
                "writes_per_job": per_job("writes"),
                "api_reads_per_job": per_job("api_reads"),
                "failed_per_job": per_job("failed"),
                "documents_per_job": per_job("documents"),
                "documents_per_operation": per_job("documents") / n,
                "by_command": dict(sorted(by_command.items(), key=lambda kv: -kv[1])),
                "api_reads_labelled": any(w["api_reads"] for w in work),
            }
        )
    return out


def db_cost(results: dict[str, Any], operations: int, run: str = "empty") -> dict[str, Any] | None:
    """The db_costs row of one job size, if measured."""
    return next((r for r in db_costs(results, run) if r["operations_per_job"] == operations), None)


def prefilled_ratio(results: dict[str, Any]) -> float | None:
    """Small jobs' sustained throughput on the prefilled database over the empty one's."""
    empty = (results.get("throughput") or {}).get("sustained")
    full = (((results.get("prefilled") or {}).get("throughput")) or {}).get("sustained")
    return ratio(full, empty)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue: what it asks, what was measured, met or not (None: no data)."""
    targets = []
    lim = limits(results)
    sustained, raw, storage = lim["sustained"], lim["raw"], lim["storage"]
    targets.append(
        {
            "target": f"throughput of {SMALL_JOB_OPERATIONS}-op jobs ≥ {RAW_SHARE:.0%} of the "
            "raw two-hop limit",
            "measured": f"{fmt(sustained, 0)} ops/s = {pct(lim['of_raw'], 1)} of "
            f"{fmt(raw, 0)} msg/s",
            "ok": None if lim["of_raw"] is None else lim["of_raw"] >= RAW_SHARE,
        }
    )
    targets.append(
        {
            "target": f"throughput of {SMALL_JOB_OPERATIONS}-op jobs ≥ {STORAGE_SHARE:.0%} of "
            "the storage limit",
            "measured": f"{fmt(sustained, 0)} ops/s = {pct(lim['of_storage'], 1)} of "
            f"{fmt(storage, 0)} ops/s",
            "ok": None if lim["of_storage"] is None else lim["of_storage"] >= STORAGE_SHARE,
        }
    )

    small = db_cost(results, SMALL_JOB_OPERATIONS)
    if small is None:
        measured, ok = "not measured (no mongo_* counters on the workers' /metrics)", None
    else:
        measured = (
            f"{fmt(small['commands_per_job'], 2)} commands per job "
            f"({fmt(small['writes_per_job'], 2)} writes) over {fmt(small['jobs'])} jobs"
        )
        if not small["api_reads_labelled"]:
            measured += ", API reads included (not labelled `api-read`)"
        ok = small["commands_per_job"] <= COMMANDS_PER_SMALL_JOB
    targets.append(
        {
            "target": f"database commands per {SMALL_JOB_OPERATIONS}-op job ≤ "
            f"{COMMANDS_PER_SMALL_JOB:g} (API reads excluded)",
            "measured": measured,
            "ok": ok,
        }
    )

    big_cost = db_cost(results, BIG_JOB_OPERATIONS)
    targets.append(
        {
            "target": f"documents written per operation ≤ {DOCUMENTS_PER_OPERATION:g} for a "
            f"{BIG_JOB_OPERATIONS:,}-op job",
            "measured": "not measured"
            if big_cost is None
            else f"{fmt(big_cost['documents_per_operation'], 4)} "
            f"({fmt(int(big_cost['documents_per_job']))} documents)",
            "ok": None
            if big_cost is None
            else big_cost["documents_per_operation"] <= DOCUMENTS_PER_OPERATION,
        }
    )

    point = latency_at_half(results)
    p99 = None if point is None else point["latency_ms"].get("p99")
    rate = None if point is None else point.get("offered_jobs_per_s")
    capacity = (results.get("latency") or {}).get("capacity_jobs_per_s")
    targets.append(
        {
            "target": f"p99 of single-op jobs ≤ {P99_LIMIT_MS:g} ms at half the sustained rate",
            "measured": f"p99 {fmt(p99, 0)} ms (to `finished_at`, a lower bound) at "
            f"{fmt(rate, 1)} jobs/s (sustained {fmt(capacity, 1)} jobs/s)",
            "ok": None if p99 is None else p99 <= P99_LIMIT_MS,
        }
    )

    big = big_job(results, BIG_JOB_OPERATIONS)
    big_share = None if big is None else ratio(big.get("ops_per_s"), sustained)
    if big is None:
        measured, ok = "not run", None
    elif not big.get("completed"):
        done = big.get("done_operations")
        measured = (
            f"not completed within {fmt(big.get('timeout_seconds'), 0)} s "
            f"({fmt(done)} of {BIG_JOB_OPERATIONS:,} done)"
        )
        ok = False
    else:
        measured = (
            f"{fmt(big.get('total_seconds'), 1)} s, {fmt(big.get('ops_per_s'), 0)} ops/s = "
            f"{pct(big_share)} of small jobs' {fmt(sustained, 0)} ops/s"
        )
        ok = big_share is not None and big_share >= BIG_JOB_SHARE
    targets.append(
        {
            "target": f"a {BIG_JOB_OPERATIONS:,}-op job completes, at ≥ {BIG_JOB_SHARE:.0%} "
            "of small jobs' throughput",
            "measured": measured,
            "ok": ok,
        }
    )

    prefilled = results.get("prefilled") or {}
    stored = (prefilled.get("prefill") or {}).get("stored")
    share = prefilled_ratio(results)
    skipped = prefilled.get("skipped")
    if skipped:
        measured, ok = f"not run: {skipped}", False
    elif share is None:
        measured, ok = "not run", None
    else:
        measured = (
            f"{fmt(prefilled['throughput'].get('sustained'), 0)} ops/s = {pct(share)} of the "
            f"empty run's {fmt(sustained, 0)} ops/s, with {fmt(stored)} documents stored"
        )
        ok = share >= PREFILLED_SHARE and (stored or 0) >= PREFILL_DOCUMENTS
    targets.append(
        {
            "target": f"on a database of ≥ {PREFILL_DOCUMENTS:,} documents, small jobs' "
            f"throughput within {1 - PREFILLED_SHARE:.0%} of the empty run",
            "measured": measured,
            "ok": ok,
        }
    )
    page = _page_p99(prefilled.get("listing"))
    empty_page = _page_p99(results.get("listing"))
    probe = prefilled.get("probe") or {}
    if skipped and probe.get("first_page_ms"):
        first = probe["first_page_ms"][0]
        measured = (
            f"{'failed' if first is None else fmt(first, 0) + ' ms'} once, with "
            f"{fmt(probe.get('documents'))} documents stored (the prefill stopped there)"
        )
        ok = False
    elif page is None:
        measured, ok = "not run", None
    else:
        measured = f"p99 {fmt(page, 1)} ms (empty database: {fmt(empty_page, 1)} ms)"
        ok = page < FIRST_PAGE_P99_MS
    targets.append(
        {
            "target": f"first jobs page p99 < {FIRST_PAGE_P99_MS:g} ms on that database",
            "measured": measured,
            "ok": ok,
        }
    )

    targets.extend(watcher_targets(results))

    workers = worker_processes(results)
    peak = max((w.get("peak_rss_mb") or 0.0 for w in workers), default=None)
    worst = max(workers, key=lambda w: w.get("peak_rss_mb") or 0.0)["name"] if workers else None
    targets.append(
        {
            "target": f"peak RSS per worker < {RSS_LIMIT_MB:g} MB",
            "measured": f"max {fmt(peak, 0)} MB ({worst})" if workers else "not measured",
            "ok": None if peak is None else peak < RSS_LIMIT_MB,
        }
    )
    return targets


def watcher_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The watchers section's runs in the order they ran (each with its `run` number)."""
    halves = (results.get("watchers") or {}).get("halves") or []
    return [{"run": n, **h} for n, h in enumerate(halves, start=1)]


def watcher_halves(results: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A run without and a run with watchers, if both ran (the first of each)."""
    halves = [h for h in watcher_runs(results) if h.get("load")]
    without = next((h for h in halves if not h.get("watchers")), None)
    watched = next((h for h in halves if h.get("watchers")), None)
    return None if without is None or watched is None else (without, watched)


def watcher_comparison(section: dict[str, Any]) -> dict[str, Any] | None:
    """Throughput with watchers against without, over every run of the watchers section.

    Runs pair up in order (1-2, 3-4, ...; the section flips each pair's order). The headline
    ratio is the sum of the with-runs' completed ops/s over the without-runs' (every run offers
    the same load, and each condition runs as often, so it is also the ratio of the means). The
    spread of a condition is (max - min) / mean of its repeats; `noise` is the larger of the two:
    a gap from 100 % no larger than that is not told apart from run-to-run noise. None when
    either condition has no run, or a run has no figure (no run is left out of the ratio)."""
    halves = [{"run": n, **h} for n, h in enumerate(section.get("halves") or [], start=1)]
    figures = [((h.get("load") or {}).get("completed_ops_per_s"), h) for h in halves]
    missing = [h["run"] for value, h in figures if value is None]
    with_ = [v for v, h in figures if v is not None and h.get("watchers")]
    without = [v for v, h in figures if v is not None and not h.get("watchers")]
    if missing or not with_ or not without:
        return None
    pairs = []
    for a, b in zip(figures[::2], figures[1::2], strict=False):
        if bool(a[1].get("watchers")) != bool(b[1].get("watchers")):
            on, off = (a, b) if a[1].get("watchers") else (b, a)
            pairs.append(
                {
                    "runs": [a[1]["run"], b[1]["run"]],
                    "first": "with" if a[1].get("watchers") else "without",
                    "ratio": ratio(on[0], off[0]),
                }
            )

    def spread(values: list[float]) -> float | None:
        mean = sum(values) / len(values)
        return (max(values) - min(values)) / mean if len(values) > 1 and mean > 0 else None

    spreads = {"without": spread(without), "with": spread(with_)}
    known = [s for s in spreads.values() if s is not None]
    share = ratio(sum(with_), sum(without))
    noise = max(known) if known else None
    return {
        "ratio": share,
        "method": "sum of the with-runs over the sum of the without-runs",
        "runs": {"with": len(with_), "without": len(without)},
        "mean_ops_per_s": {"with": sum(with_) / len(with_), "without": sum(without) / len(without)},
        "pairs": pairs,
        "spread": spreads,
        "noise": noise,
        "within_noise": None if noise is None or share is None else abs(share - 1.0) <= noise,
    }


def watcher_reads(results: dict[str, Any]) -> dict[str, Any] | None:
    """Over every run with watchers: jobs they read, their commands, watches, reads beyond."""
    runs = [h for h in watcher_runs(results) if h.get("watchers") and h.get("load")]
    if not runs:
        return None

    def watches(h: dict[str, Any]) -> float | None:
        db = h.get("db") or {}
        if db.get("watches_with_dashboard") is not None:
            return db["watches_with_dashboard"]
        return (h.get("watch") or {}).get("watches")

    def add(values: Iterable[float | None]) -> float | None:
        values = list(values)
        return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]

    return {
        "runs": len(runs),
        "job_reads": add((h.get("db") or {}).get("job_reads") for h in runs),
        "commands": add((h.get("db") or {}).get("commands") for h in runs),
        "watches": add(watches(h) for h in runs),
        "beyond": add((h.get("db") or {}).get("job_reads_beyond_first_state") for h in runs),
        "dashboard": any(h.get("dashboard") for h in runs),
    }


def _comparison_text(comparison: dict[str, Any]) -> str:
    """The throughput comparison's detail: runs, pairs, and the gap against the noise."""
    runs = comparison["runs"]
    pairs = ", ".join(
        f"runs {p['runs'][0]}-{p['runs'][1]} ({p.get('first', '?')} first) {pct(p['ratio'], 1)}"
        for p in comparison["pairs"]
    )
    text = f"{runs['with']} run(s) with and {runs['without']} without"
    if pairs:
        text += f"; per pair: {pairs}"
    noise = comparison.get("noise")
    if noise is None:
        return text + "; no repeat of either condition, so no measure of the noise"
    gap = abs((comparison.get("ratio") or 1.0) - 1.0)
    where = "within" if comparison.get("within_noise") else "larger than"
    return (
        text + f"; the {pct(gap, 1)} gap is {where} the spread between repeats of one condition "
        f"(without {pct(comparison['spread']['without'], 1)}, with "
        f"{pct(comparison['spread']['with'], 1)})"
    )


def watcher_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 13: watchers cost no database read beyond each watch's first state, and no
    throughput (same run)."""
    section = results.get("watchers") or {}
    clients = section.get("clients", "?")
    reads = watcher_reads(results)
    comparison = watcher_comparison(section)
    if reads is None or watcher_halves(results) is None:
        return [
            {
                "target": f"{clients} watchers: no database read beyond each watch's first state",
                "measured": "not run",
                "ok": None,
            },
            {
                "target": "small jobs' throughput with watchers not lower than without",
                "measured": "not run",
                "ok": None,
            },
        ]
    beyond = reads["beyond"]
    page = " and a dashboard job page" if reads["dashboard"] else ""
    over = f" (over {reads['runs']} runs)" if reads["runs"] > 1 else ""
    if comparison is None:
        measured, ok = "not measured: a run has no throughput figure", None
    else:
        share = comparison["ratio"]
        means = comparison["mean_ops_per_s"]
        measured = f"{fmt(means['with'], 0)} vs {fmt(means['without'], 0)} ops/s = {pct(share, 1)}"
        if len(section.get("halves") or []) > 2:
            measured += f" ({_comparison_text(comparison)})"
        ok = None if share is None else share >= WATCHED_SHARE
    return [
        {
            "target": f"{clients} watchers (event streams, `?wait=`, `/api/events`){page} during "
            "load: no database read beyond each watch's first state",
            "measured": f"{fmt(reads['job_reads'], 0)} jobs read "
            f"({fmt(reads['commands'], 0)} commands, origin `api-watch`) for "
            f"{fmt(reads['watches'])} watches: {fmt(beyond, 0)} beyond the first state{over}",
            "ok": None if beyond is None else beyond <= 0,
        },
        {
            "target": "small jobs' throughput with those watchers not lower than without "
            "(same run)",
            "measured": measured,
            "ok": ok,
        },
    ]


# --- sections --------------------------------------------------------------------------------


def _watchers(results: dict[str, Any]) -> str:
    section = results.get("watchers") or {}
    runs = watcher_runs(results)
    if watcher_halves(results) is None:
        return "_not run_"
    comparison = watcher_comparison(section)
    clients = section.get("clients")
    rows = []
    for h in runs:
        load, seen, db = h.get("load") or {}, h.get("watch") or {}, h.get("db") or {}
        job, page = h.get("watched_job") or {}, h.get("dashboard") or {}
        ends = ", ".join(f"{k} {v}" for k, v in sorted((seen.get("stream_ends") or {}).items()))
        watched = bool(h.get("watchers"))
        rows.append(
            (
                fmt(h.get("watchers")),
                fmt(load.get("offered_ops_per_s"), 0),
                fmt(load.get("completed_ops_per_s"), 0),
                fmt(load.get("steady_ops_per_s"), 0),
                f"{load.get('completed', 0):,}/{load.get('accepted', 0):,}"
                + ("" if h.get("drained", True) else " ⚠"),
                fmt((load.get("latency_ms") or {}).get("p99"), 0),
                DASH if not job.get("completed") else f"{fmt(job.get('seconds'), 1)} s",
                f"{fmt(seen.get('streams'))} ({ends or DASH})" if watched else DASH,
                f"{fmt(seen.get('waits'))} ({fmt(seen.get('waits_completed'))} completed)"
                if watched
                else DASH,
                fmt(seen.get("followed_events")) if watched else DASH,
                fmt(db.get("job_reads"), 0),
                fmt(db.get("commands"), 0),
                fmt(db.get("job_reads_beyond_first_state"), 0),
                fmt(seen.get("errors")),
                f"{fmt(page.get('streams'))} ({fmt(page.get('events'))} events, "
                f"{page.get('last_status')})"
                if page
                else DASH,
                f"{fmt(page.get('operations_pages'))} "
                f"({fmt(page.get('operations_requests_served'), 0)} served)"
                if page
                else DASH,
                fmt(page.get("job_reads")) if page else DASH,
                fmt(h.get("run")),
            )
        )
    head = (
        "watchers",
        "offered ops/s",
        "completed ops/s",
        "steady ops/s",
        "jobs done",
        "job p99 ms",
        "watched job done in",
        "streams (last status)",
        "waits",
        "`/api/events` job events",
        "jobs read by watchers",
        "their DB commands",
        "reads beyond first state",
        "watcher errors",
        "job page: streams (events, last status)",
        "job page: operations pages (served)",
        "job page: job reads",
        "run",
    )
    share = section.get("offered_share")
    offered = (
        f"{pct(share)} of the sustained throughput, so *completed* is about its capacity"
        if share
        else "the sustained throughput was not measured"
    )
    order = " / ".join("with" if h.get("watchers") else "without" for h in runs)
    text = (
        f"The small-job load ({section.get('operations_per_job')}-op jobs, "
        f"{fmt(section.get('offered_ops_per_s'), 0)} ops/s offered for "
        f"{fmt(section.get('seconds'), 0)} s: {offered}) ran {len(runs)} times, in this order: "
        f"{order}, each beside one job of {fmt(section.get('watched_operations'))} operations "
        "submitted as the run starts, each after Kafka's backlog settled. *With*: "
        f"{clients} clients waiting for that job to complete (half on "
        "`GET /api/jobs/{id}/events`, half with `?wait=60`, over the three client APIs), one "
        "`GET /api/events` follower"
        + (
            ", and one client doing what the dashboard's job page does on that job (its event "
            "stream, the first page of 50 operations as it opens and again when it sees the job "
            "complete, and a read of the job whenever its stream says nothing for 3 s)"
            if any(h.get("dashboard") for h in runs)
            else " (no dashboard job page in this run)"
        )
        + ". *Jobs read by watchers* is `job_watcher_reads_total`, *their DB commands* "
        '`mongo_commands_total{origin="api-watch"}`, both from the workers\' /metrics; each '
        "stream opened (the job page's included) and each wait answered reads its first state "
        "once, so *beyond first state* = jobs read minus watches."
    )
    scheduled = (section.get("offered_ops_per_s") or 0) * (section.get("seconds") or 0)
    scheduled /= section.get("operations_per_job") or 1
    started = [(h.get("load") or {}).get("jobs") for h in runs]
    if scheduled and any(n is not None and n < 0.95 * scheduled for n in started):
        posts = [((h.get("load") or {}).get("post_ms") or {}).get("p50") for h in runs]
        text += (
            f" The client did not keep to the schedule: of the {fmt(round(scheduled))} jobs due "
            f"in each run it started {', '.join(fmt(n) for n in started)} (run by run; at most "
            "256 POSTs in flight, none started after the schedule's end), their POSTs answered "
            f"in p50 {', '.join(fmt(None if p is None else p / 1000, 1) for p in posts)} s: the "
            "load each run carried is what the system let in, not the offered one."
        )
    if comparison is None:
        text += " With watchers / without: not measured (a run has no throughput figure)."
    else:
        verdict = "met" if (comparison["ratio"] or 0) >= WATCHED_SHARE else "not met"
        text += (
            f" With watchers / without: **{pct(comparison['ratio'], 1)}** ({verdict}; "
            f"{comparison['method']}: {_comparison_text(comparison)})."
        )
    text += "\n\n" + table(head, rows)
    if comparison is not None and len(runs) > 2:
        by = {True: [], False: []}  # type: dict[bool, list[dict[str, Any]]]
        for h in runs:
            by[bool(h.get("watchers"))].append(h)
        summary = [
            (
                name,
                ", ".join(str(h["run"]) for h in by[key]),
                ", ".join(
                    fmt((h.get("load") or {}).get("completed_ops_per_s"), 0) for h in by[key]
                ),
                fmt(comparison["mean_ops_per_s"][mean], 0),
                pct(comparison["spread"][mean], 1),
            )
            for name, key, mean in (
                ("without", False, "without"),
                (f"with {clients} watchers", True, "with"),
            )
        ]
        text += "\n\n" + table(
            ("condition", "runs", "completed ops/s, per run", "mean", "spread (max - min) / mean"),
            summary,
        )
    page_runs = [h["dashboard"] for h in runs if h.get("dashboard")]
    if page_runs:
        cost = section.get("page_read_commands") or {}
        pages = sum(p.get("operations_pages") or 0 for p in page_runs)
        polls = sum(p.get("job_reads") or 0 for p in page_runs)
        per_page, per_job = cost.get("operations_page"), cost.get("job")
        estimate = (
            None if per_page is None or per_job is None else pages * per_page + polls * per_job
        )
        text += (
            f'\n\nThe job page\'s own reads are ordinary API reads (`origin="api-read"`, where '
            "the benchmark's polling of its small jobs also goes, so the workers' counters "
            f"cannot tell them apart): over {len(page_runs)} runs it read {pages} operations "
            f"pages and read the job {polls} times; alone, after the runs, an operations page "
            f"cost {fmt(per_page, 0)} database commands and a job read {fmt(per_job, 0)}, so "
            f"about {fmt(estimate, 0)} commands in all. Its event streams' first states are "
            "among the watchers' reads above."
        )
    return text


def _facts(meta: dict[str, Any]) -> str:
    rows = [
        ("date (UTC)", meta.get("date")),
        ("commit", f"`{meta.get('commit')}`" + (" (dirty tree)" if meta.get("dirty") else "")),
        ("mode", meta.get("mode")),
        ("CPU cores", meta.get("cores")),
        ("CPU", meta.get("cpu_model")),
        ("memory", f"{fmt(meta.get('memory_gb'), 1)} GB"),
        ("Python", meta.get("python")),
        ("run time", f"{fmt(meta.get('duration_seconds'), 0)} s"),
        ("database", f"`{meta.get('database', 'jobstream')}`"),
        (
            "documents already stored at start",
            ", ".join(f"{k} {fmt(v)}" for k, v in (meta.get("documents_at_start") or {}).items())
            or DASH,
        ),
    ]
    return table(("fact", "value"), ((k, fmt(v) if not isinstance(v, str) else v) for k, v in rows))


def _targets(results: dict[str, Any]) -> str:
    rows = [(t["target"], t["measured"], _status(t["ok"])) for t in evaluate_targets(results)]
    return table(("target (from the issue)", "measured", "status"), rows)


def _main_table(results: dict[str, Any]) -> str:
    """The headline figures in one table."""
    thr = results.get("throughput") or {}
    lat = results.get("latency") or {}
    lim = limits(results)
    point = latency_at_half(results)
    big = big_job(results, BIG_JOB_OPERATIONS) or {}
    small_cost = db_cost(results, SMALL_JOB_OPERATIONS) or {}
    big_cost = db_cost(results, BIG_JOB_OPERATIONS) or {}
    storage = results.get("storage_limit") or {}
    prefilled = results.get("prefilled") or {}
    workers = worker_processes(results)
    rows = [
        ("raw two-hop Kafka limit (aiokafka, acks=all)", f"{fmt(lim['raw'], 0)} msg/s"),
        (
            f"storage limit (bare PyMongo client, {SMALL_JOB_OPERATIONS}-op jobs)",
            f"{fmt(lim['storage'], 0)} ops/s ({fmt(storage.get('jobs_per_s'), 0)} jobs/s, "
            f"{fmt(storage.get('best_concurrency'))} concurrent)",
        ),
        (
            f"jobstream sustained throughput ({thr.get('operations_per_job', '?')}-op jobs)",
            f"{fmt(lim['sustained'], 0)} ops/s",
        ),
        ("jobstream / raw limit", pct(lim["of_raw"], 1)),
        ("jobstream / storage limit", pct(lim["of_storage"], 1)),
        (
            "jobstream / the lower limit",
            DASH if lim["lower"] is None else f"{pct(lim['of_lower'], 1)} ({lim['lower']})",
        ),
        (
            f"database commands per {SMALL_JOB_OPERATIONS}-op job (writes)",
            DASH
            if not small_cost
            else f"{fmt(small_cost['commands_per_job'], 2)} "
            f"({fmt(small_cost['writes_per_job'], 2)})",
        ),
        (
            f"documents written per operation, {BIG_JOB_OPERATIONS:,}-op job",
            fmt(big_cost.get("documents_per_operation"), 4),
        ),
        ("single-op jobs sustained", f"{fmt(lat.get('capacity_jobs_per_s'), 1)} jobs/s"),
        (
            "single-op latency at half that rate (p50 / p95 / p99)",
            DASH
            if point is None
            else " / ".join(fmt(point["latency_ms"].get(k), 0) for k in ("p50", "p95", "p99"))
            + " ms",
        ),
        (
            f"{BIG_JOB_OPERATIONS:,}-op job",
            "not run"
            if not big
            else (
                f"{fmt(big.get('total_seconds'), 1)} s ({fmt(big.get('ops_per_s'), 0)} ops/s)"
                if big.get("completed")
                else f"not completed in {fmt(big.get('timeout_seconds'), 0)} s"
            ),
        ),
        (
            "single-op jobs beside a big job, p99 (alone)",
            _neighbour_p99s(results),
        ),
        (
            "first jobs page p99, empty / prefilled database",
            f"{fmt(_page_p99(results.get('listing')), 1)} / "
            f"{fmt(_page_p99(prefilled.get('listing')), 1)} ms",
        ),
        (
            "small jobs on the prefilled database / on the empty one",
            pct(prefilled_ratio(results)),
        ),
        (
            f"small jobs with {(results.get('watchers') or {}).get('clients', '?')} watchers / "
            "without (same run)",
            _watch_share(results),
        ),
        (
            "database reads by watchers beyond each watch's first state",
            fmt((watcher_reads(results) or {}).get("beyond"), 0),
        ),
        (
            "peak RSS, largest worker",
            f"{fmt(max((w.get('peak_rss_mb') or 0.0 for w in workers), default=None), 0)} MB",
        ),
    ]
    return table(("figure", "value"), rows)


def _neighbour_p99s(results: dict[str, Any]) -> str:
    """The facts table's p99 of small jobs beside a big one, and alone."""
    pair = neighbour_runs(results)
    if pair is None:
        return DASH
    alone, beside = (run["latency_ms"]["p99"] for run in pair)
    return f"{fmt(beside, 0)} ms ({fmt(alone, 0)} ms)"


def _watch_share(results: dict[str, Any]) -> str:
    """The facts table's throughput with watchers / without, with its noise when measured."""
    comparison = watcher_comparison(results.get("watchers") or {})
    if comparison is None:
        return DASH
    text = pct(comparison["ratio"], 1)
    if comparison.get("noise") is not None:
        runs = comparison["runs"]
        text += (
            f" ({runs['with']} + {runs['without']} runs, alternating; repeats of one condition "
            f"differ by up to {pct(comparison['noise'], 1)})"
        )
    return text


def _page_p99(listing: dict[str, Any] | None) -> float | None:
    return ((listing or {}).get("latency_ms") or {}).get("p99")


def _limits(results: dict[str, Any]) -> str:
    lim = limits(results)
    if lim["raw"] is None and lim["storage"] is None:
        return "_not run_"
    rows = [
        ("raw two-hop Kafka pipeline", f"{fmt(lim['raw'], 0)} msg/s", pct(lim["of_raw"], 1)),
        (
            "storage: bare PyMongo client",
            f"{fmt(lim['storage'], 0)} ops/s",
            pct(lim["of_storage"], 1),
        ),
    ]
    lower = {"raw": "the raw Kafka limit", "storage": "the storage limit", None: DASH}
    return (
        f"Small jobs ({SMALL_JOB_OPERATIONS} operations) sustained "
        f"**{fmt(lim['sustained'], 0)} ops/s**. Each limit is the most its layer alone lets "
        "through on this machine, measured in the same run; the lower one is where small jobs "
        f"would stop first: here **{lower[lim['lower']]}**, of which jobstream reaches "
        f"**{pct(lim['of_lower'], 1)}**.\n\n" + table(("limit", "value", "jobstream's share"), rows)
    )


def _storage(results: dict[str, Any]) -> str:
    storage = results.get("storage_limit")
    if not storage:
        return "_not run_"
    if storage.get("error"):
        return f"_failed: {storage['error']}_"

    def row(level: dict[str, Any], label: str) -> list[str]:
        ms = level.get("job_ms") or {}
        runs = level.get("runs_jobs_per_s") or []
        return [
            label,
            fmt(level.get("commands_per_job")),
            fmt(level.get("jobs")),
            fmt(level.get("jobs_per_s"), 0),
            " / ".join(fmt(r, 0) for r in runs) if len(runs) > 1 else DASH,
            fmt(level.get("ops_per_s"), 0),
            fmt(ms.get("p50"), 1),
            fmt(ms.get("p99"), 1),
        ]

    rows = [row(level, fmt(level["concurrency"])) for level in storage.get("levels") or []]
    three = storage.get("three_commands")
    if three:
        rows.append(row(three, f"{fmt(three.get('concurrency'))}, completion apart"))
    words = {COMMANDS: "commands", DOCUMENTS: "documents written"}
    per_job = ", ".join(
        f"{parse_key(key)[1].get('command')} {words.get(parse_key(key)[0], key)} {fmt(value, 2)}"
        for key, value in (storage.get("per_job") or {}).items()
    )
    lost = storage.get("lost_updates")
    stored, expected = storage.get("completed_documents"), storage.get("jobs_stored")
    if stored is not None and expected is not None and stored != expected:
        lost = (lost or 0) + abs(expected - stored)
    return (
        f"The least database work a {storage.get('operations_per_job')}-operation job needs, "
        "with no Kafka, Faust or HTTP: a bare `AsyncMongoClient` on the same server, in a "
        f"scratch database (`{storage.get('database')}`, dropped after), "
        f"{storage.get('model')}. Each of N coroutines stores jobs one after the other: insert "
        "the job document (its operations inside), then one update that `$set`s its results "
        "on their positions, its counters and its completion. Each concurrency runs "
        f"{fmt(storage.get('passes', 1))} times {fmt(storage.get('seconds_per_level'), 0)} s "
        "(ascending, then descending); the best is the limit. The last row "
        "completes the job with a third command (results that arrive in more than one "
        f"batch). Per job, counted by `jobstream.dbmetrics`: {per_job or DASH}."
        + ("" if not lost else f" ⚠ {fmt(lost)} updates matched no job in progress.")
        + "\n\n"
        + table(
            (
                "concurrent",
                "commands/job",
                "jobs",
                "jobs/s",
                "jobs/s per run",
                "ops/s",
                "job p50 ms",
                "job p99 ms",
            ),
            rows,
        )
    )


def _db_work(results: dict[str, Any]) -> str:
    rows = db_costs(results)
    if not rows:
        return (
            "_not measured: no `mongo_*` counters on the workers' /metrics (the storage wiring "
            "of `jobstream.dbmetrics.command_listener`)._"
        )
    labelled = all(r["api_reads_labelled"] for r in rows)
    table_rows = [
        (
            fmt(r["operations_per_job"]),
            fmt(r["jobs"]),
            fmt(r["commands_per_job"], 2),
            fmt(r["writes_per_job"], 2),
            fmt(r["api_reads_per_job"], 2),
            fmt(r["documents_per_job"], 2),
            fmt(r["documents_per_operation"], 4),
            ", ".join(f"{c} {v:.2f}" for c, v in list(r["by_command"].items())[:6]) or DASH,
        )
        for r in rows
    ]
    note = (
        ""
        if labelled
        else " ⚠ Some sizes show no API reads labelled `api-read`: their commands per job "
        "include the benchmark's polling."
    )
    return (
        "From the workers' `mongo_commands_total` and `mongo_documents_written_total` "
        "(`jobstream.dbmetrics`), scraped before and after each phase, summed over the phases of "
        "each job size whose jobs all completed. *Commands* are all told (submission, "
        "persisting, completion, and what the workers do meanwhile on their own), except the "
        "API's reads (origin `api-read`: the benchmark polling jobs), shown apart. *Documents "
        "written*: inserted + modified + upserted + deleted, as the server reported."
        + note
        + "\n\n"
        + table(
            (
                "operations per job",
                "jobs",
                "commands/job",
                "writes/job",
                "API reads/job",
                "documents written/job",
                "documents written/operation",
                "commands/job by name",
            ),
            table_rows,
        )
    )


def _listing_row(label: str, listing: dict[str, Any] | None) -> list[str]:
    listing = listing or {}
    ms = listing.get("latency_ms") or {}
    done, planned = listing.get("requests"), listing.get("planned_requests")
    return [
        label,
        fmt(done) + ("" if planned in (None, done) else f" of {fmt(planned)} (time limit)"),
        fmt(listing.get("total_reported")),
        fmt(ms.get("p50"), 1),
        fmt(ms.get("p95"), 1),
        fmt(ms.get("p99"), 1),
        fmt(ms.get("max"), 1),
        fmt(listing.get("errors")),
    ]


def _prefilled(results: dict[str, Any]) -> str:
    prefilled = results.get("prefilled") or {}
    fill = prefilled.get("prefill") or {}
    listing = results.get("listing")
    if not prefilled and not listing:
        return "_not run_"
    parts = []
    if fill.get("error"):
        parts.append(f"_prefill failed: {fill['error']}_")
    elif prefilled.get("skipped"):
        probe = prefilled.get("probe") or {}
        times = [*(probe.get("first_page_ms") or []), *(probe.get("pages_of_100_ms") or [])]
        parts.append(
            f"⚠ The prefilled run did not happen: {prefilled['skipped']}. Pages read at "
            f"{fmt(probe.get('documents'))} documents: "
            + (", ".join("failed" if ms is None else f"{ms:,.0f} ms" for ms in times) or DASH)
            + ". Reading the list on a million documents the same way would hold the whole "
            "collection in FerretDB's memory (FerretDB 1.x sorts what it cannot push down in "
            "memory: measured ~9 GB live, 16 GB resident for a million 1 KB documents)."
        )
    elif fill:
        complete = "" if fill.get("complete") else " ⚠ stopped by its time budget"
        parts.append(
            f"The workers' database (`{fill.get('database')}`) was filled with "
            f"**{fmt(fill.get('stored'))}** synthetic completed jobs (`{fill.get('collection')}`, "
            f"created over the hour before, so the benchmark's jobs stay the newest) in "
            f"{fmt(fill.get('seconds'), 0)} s ({fmt(fill.get('documents_per_s'), 0)} documents/s, "
            f"`insert_many` of {fmt(fill.get('batch_size'))}){complete}; then PostgreSQL's "
            "tables behind it were vacuumed and analysed "
            + (
                f"({fmt(fill.get('vacuum_seconds'), 0)} s), as autovacuum would have done over "
                "time."
                if fill.get("vacuumed")
                else "(not done: psql not found)."
            )
            + " The small-job and listing phases then ran again."
        )
    empty_thr = results.get("throughput") or {}
    full_thr = prefilled.get("throughput") or {}
    small_empty = db_cost(results, SMALL_JOB_OPERATIONS) or {}
    small_full = db_cost(results, SMALL_JOB_OPERATIONS, run="prefilled") or {}
    rows = [
        (
            "small jobs sustained",
            f"{fmt(empty_thr.get('sustained'), 0)} ops/s",
            f"{fmt(full_thr.get('sustained'), 0)} ops/s",
            pct(prefilled_ratio(results)),
        ),
        (
            f"database commands per {SMALL_JOB_OPERATIONS}-op job",
            fmt(small_empty.get("commands_per_job"), 2),
            fmt(small_full.get("commands_per_job"), 2),
            pct(ratio(small_full.get("commands_per_job"), small_empty.get("commands_per_job"))),
        ),
        (
            "first jobs page p99",
            f"{fmt(_page_p99(listing), 1)} ms",
            f"{fmt(_page_p99(prefilled.get('listing')), 1)} ms",
            pct(ratio(_page_p99(prefilled.get("listing")), _page_p99(listing))),
        ),
    ]
    parts.append(
        "*Empty* is the database as the run found it (emptied at its start), holding only the "
        "run's own jobs (a few thousand).\n\n"
        + table(("figure", "empty database", "prefilled", "prefilled / empty"), rows)
    )
    parts.append(
        "The first page of `GET /api/jobs` (size 30), one request after the other, round robin "
        "over the three client APIs, with no other load:\n\n"
        + table(
            (
                "database",
                "requests",
                "total reported",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "errors",
            ),
            [
                _listing_row("empty", listing),
                _listing_row("prefilled", prefilled.get("listing")),
            ],
        )
    )
    loads = ([full_thr["probe"]] if full_thr.get("probe") else []) + (full_thr.get("loads") or [])
    if loads:
        parts.append("Small jobs on the prefilled database:\n\n" + _load_table(full_thr, results))
    return "\n\n".join(parts)


def _load_table(thr: dict[str, Any], results: dict[str, Any]) -> str:
    """One row per load of a throughput sweep (its probe first)."""
    lim = limits(results)
    probe = thr.get("probe")
    loads = ([probe] if probe else []) + (thr.get("loads") or [])
    rows = [
        (
            "probe" if r is probe else pct(r.get("fraction")),
            fmt(r["offered_ops_per_s"], 0),
            fmt(r["submitted_ops_per_s"], 0),
            fmt(r["completed_ops_per_s"], 0),
            fmt(r.get("steady_ops_per_s"), 0),
            pct(ratio(r["completed_ops_per_s"], lim["raw"]), 1),
            pct(ratio(r["completed_ops_per_s"], lim["storage"]), 1),
            f"{r['completed']:,}/{r['accepted']:,}" + ("" if r.get("drained", True) else " ⚠"),
            fmt(r["latency_ms"].get("p50"), 0),
            fmt(r["latency_ms"].get("p99"), 0),
            fmt(r["post_ms"].get("p50"), 0),
            fmt(r["errors"]),
        )
        for r in loads
    ]
    head = (
        "load (of probe)",
        "offered ops/s",
        "submitted ops/s",
        "completed ops/s",
        "steady ops/s",
        "of raw limit",
        "of storage limit",
        "jobs done",
        "job p50 ms",
        "job p99 ms",
        "POST p50 ms",
        "errors",
    )
    return table(head, rows)


def _throughput(results: dict[str, Any]) -> str:
    thr = results.get("throughput") or {}
    if not thr.get("probe") and not thr.get("loads"):
        return "_not run_"
    return (
        f"Jobs of {thr.get('operations_per_job')} operations. The *probe* offers far more than "
        "the system takes (at most 64 POSTs in flight) for a few seconds; the loads after it are "
        "open-loop arrivals at fractions of what the probe completed. *Completed* is end to end "
        "(first scheduled submission → last `finished_at`, drain included); *steady* counts "
        "completions inside the arrival window after its first fifth. *Sustained* = the best "
        f"completed rate of a run whose jobs all completed: **{fmt(thr.get('sustained'), 0)} "
        "ops/s**. ⚠ = some jobs never completed (stalled for 20 s: stuck or lost).\n\n"
        + _load_table(thr, results)
    )


def _raw(results: dict[str, Any]) -> str:
    raw = results.get("raw_limit")
    if not raw:
        return "_not run_"
    if raw.get("error"):
        return f"_failed: {raw['error']}_"
    sizes = raw.get("message_bytes") or {}
    rows = [
        ("end to end (produce → relay → sink)", f"{fmt(raw.get('msgs_per_s'), 0)} msg/s"),
        ("steady (20 → 80 % delivered)", f"{fmt(raw.get('steady_msgs_per_s'), 0)} msg/s"),
        ("first hop, produce alone", f"{fmt(raw.get('produce_msgs_per_s'), 0)} msg/s"),
        ("messages", fmt(raw.get("messages"))),
        ("relay processes (consumer group)", fmt(raw.get("relays"))),
        (
            "topics",
            f"{raw.get('partitions')} partitions, RF {raw.get('replication_factor')}, "
            f"min.insync {raw.get('min_insync_replicas')}, acks={raw.get('acks')}, "
            f"linger {raw.get('linger_ms')} ms",
        ),
        (
            "bytes per request / response (key + value)",
            f"{fmt(sizes.get('request_key', 0) + sizes.get('request_value', 0), 0)} / "
            f"{fmt(sizes.get('response_key', 0) + sizes.get('response_value', 0), 0)}",
        ),
    ]
    return table(("raw pipeline", "value"), rows)


def _latency(results: dict[str, Any]) -> str:
    lat = results.get("latency") or {}
    points = lat.get("points") or []
    if not points:
        return "_not run_"
    probe = lat.get("probe") or {}
    rows = [
        (
            "probe" if p is probe else pct(p.get("fraction")),
            fmt(p["offered_jobs_per_s"], 1),
            fmt(p["completed_ops_per_s"], 1),
            f"{p['completed']:,}/{p['accepted']:,}" + ("" if p.get("drained", True) else " ⚠"),
            fmt(p["latency_ms"].get("p50"), 0),
            fmt(p["latency_ms"].get("p95"), 0),
            fmt(p["latency_ms"].get("p99"), 0),
            fmt(p["latency_ms"].get("max"), 0),
            fmt(p["post_ms"].get("p50"), 0),
            fmt(p["server_ms"].get("p50"), 0),
            fmt(p["errors"]),
        )
        for p in ([probe] if probe else []) + points
    ]
    head = (
        "load (of sustained)",
        "offered jobs/s",
        "completed jobs/s",
        "jobs done",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "POST p50 ms",
        "server p50 ms",
        "errors",
    )
    return (
        "Single-operation jobs. Latency is the job's `finished_at` minus its *scheduled* "
        "submission time (no coordinated omission); *POST* is until the 201, *server* is "
        "`created_at` → `finished_at`. The probe submits far above capacity (at most 64 POSTs "
        "in flight) and defines the sustained rate. `finished_at` is stamped when the persist "
        "agent *starts* writing a batch's counters, so it is a lower bound of when the API shows "
        "the job completed; the traced *total* below (until the whole batch is written) is an "
        "upper bound.\n\n" + table(head, rows) + _stages(points)
    )


def _stages(points: list[dict[str, Any]]) -> str:
    """Per-stage latency (p50 / p95 ms) from the traced jobs of each load."""
    traced = [p for p in points if (p.get("stages") or {}).get("breakdown")]
    if not traced:
        return ""
    stages = [row["stage"] for row in traced[0]["stages"]["breakdown"]]
    rows = []
    for stage in stages:
        cells = [stage]
        for point in traced:
            row = next(r for r in point["stages"]["breakdown"] if r["stage"] == stage)
            cells.append(f"{fmt(row.get('p50'), 0)} / {fmt(row.get('p95'), 0)}")
        rows.append(cells)
    head = ["stage (ms, p50 / p95)"] + [
        f"{pct(p.get('fraction'))} ({p['stages']['read']} traced)" for p in traced
    ]
    return (
        "\n\n**Where the time goes.** A tenth of the jobs carried a sampled `traceparent`; their "
        "spans, read back from Jaeger, split each job into consecutive stages (see "
        "`bench/traces.py`). A negative hop means the consumer had the message before the "
        "producer had its acknowledgement.\n\n" + table(head, rows)
    )


def _big(results: dict[str, Any], small: float | None) -> str:
    jobs = results.get("big_jobs") or []
    if not jobs:
        return "_not run_"
    rows = [
        (
            fmt(b["operations"]),
            fmt(b.get("first_computed_by_seconds"), 1),
            fmt(b.get("post_seconds"), 2),
            fmt(b.get("computed_by_seconds"), 1),
            fmt(b.get("responses_consumed_by_seconds"), 1),
            fmt(b.get("total_seconds"), 2),
            fmt(b.get("ops_per_s"), 0),
            pct(ratio(b.get("ops_per_s"), small)),
            fmt(b.get("completed"))
            if b.get("completed")
            else f"no ({fmt(b.get('done_operations'))} done)",
        )
        for b in jobs
    ]
    head = (
        "operations",
        "first computed s",
        "POST (201) s",
        "all computed s",
        "all responses at persist s",
        "completed s",
        "ops/s",
        "of small jobs'",
        "completed",
    )
    return (
        "One job at a time; every time is from the start of its POST. The POST stores every "
        "operation in MongoDB and then publishes every request (acks=all) before answering "
        "201, so *first computed* (a server evaluated its first operation) marks roughly the "
        "end of the insert. *All computed* / *all responses at persist*: the servers' "
        "`operations_evaluated_total` / the clients' responses consumed reached the job's size "
        "(sampled every 0.5 s, for jobs of 10,000 operations and more).\n\n" + table(head, rows)
    )


def neighbour_runs(results: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(alone, beside the big job) runs of the neighbours section, when both ran."""
    runs = (results.get("neighbours") or {}).get("runs") or []
    alone = next((r for r in runs if not r.get("beside_big_job")), None)
    beside = next((r for r in runs if r.get("beside_big_job")), None)
    return (alone, beside) if alone and beside else None


def _neighbours(results: dict[str, Any]) -> str:
    section = results.get("neighbours")
    pair = neighbour_runs(results)
    if not section or not pair:
        return "_not run_"
    rows = []
    for run in pair:
        latency, post = run["latency_ms"], run["post_ms"]
        big = run.get("big_job") or {}
        rows.append(
            (
                "beside the big job" if run.get("beside_big_job") else "alone",
                f"{run['completed']}/{run['jobs']}",
                fmt(latency["p50"], 0),
                fmt(latency["p95"], 0),
                fmt(latency["p99"], 0),
                fmt(latency["max"], 0),
                fmt(post["p99"], 0),
                fmt(big.get("total_seconds"), 1) if big else DASH,
                run["errors"],
            )
        )
    head = (
        "single-op jobs",
        "done",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "POST p99 ms",
        "big job done in s",
        "errors",
    )
    return (
        f"Single-operation jobs at {fmt(section['jobs_per_second'], 0)} jobs/s for "
        f"{fmt(section['seconds'], 0)} s (open loop, latency from each job's scheduled time to "
        f"its `finished_at`), alone, then starting as a job of "
        f"{fmt(section['big_operations'])} operations is submitted beside them (its POST, "
        "computing and persisting overlap theirs). Jobs of more than "
        "`JOBSTREAM_BULK_OPERATIONS` operations travel on the bulk lane, with agents of their "
        "own (`jobstream/topics.py`), so the small jobs share the machine with the big one, not "
        "a queue.\n\n" + table(head, rows)
    )


def _processes(results: dict[str, Any]) -> str:
    resources = results.get("resources") or {}
    processes = resources.get("processes") or []
    if not processes:
        return "_not measured_"
    wall = sum(p.get("wall_seconds", 0.0) for p in results.get("phases") or [])
    rows = [
        (
            p["name"],
            fmt(p.get("pid")),
            fmt(p.get("cpu_seconds"), 1),
            f"{100 * p['cpu_seconds'] / wall:.0f} %" if wall else DASH,
            fmt(p.get("rss_mb"), 0),
            fmt(p.get("peak_rss_mb"), 0),
        )
        for p in sorted(processes, key=lambda p: (p.get("kind") != "worker", p["name"]))
    ]
    return (
        f"CPU seconds over all measured phases ({fmt(wall, 0)} s of wall time; "
        "100 % = one core), RSS now and peak (`VmHWM`; for services summed over the process "
        "tree).\n\n"
        + table(("process", "pid", "CPU s", "CPU of one core", "RSS MB", "peak MB"), rows)
    )


def group_cpu(phase: dict[str, Any]) -> dict[str, float]:
    """A phase's CPU percent (of one core) per process group."""
    per = phase.get("cpu_percent") or {}
    return {group: sum(per.get(n, 0.0) for n in names) for group, names in GROUPS.items()}


# prefixes of both lanes' counters (`...request}` and `...request.bulk}`)
REQUESTS_IN = "consumer_messages_received_total{topic=application.operation.request"
RESPONSES_IN = "consumer_messages_received_total{topic=application.operation.response"
POSTS = "http_request_duration_seconds_count{method=POST,route=/api/jobs}"


def _peak(phase: dict[str, Any], hop: str) -> str:
    """The most messages seen waiting at a hop, both lanes together (`requests` and
    `bulk requests`)."""
    peaks = (phase.get("lag") or {}).get("peak") or {}
    lanes = [v for k, v in peaks.items() if k in (hop, f"bulk {hop}")]
    return fmt(sum(lanes) if lanes else None)


def _phases(results: dict[str, Any]) -> str:
    phases = results.get("phases") or []
    if not phases:
        return "_not measured_"
    rows = []
    for phase in phases:
        groups = group_cpu(phase)
        rows.append(
            [phase["name"], fmt(phase.get("wall_seconds"), 1)]
            + [f"{groups[g]:.0f}" for g in GROUPS]
            + [f"{sum(groups.values()):.0f}", _peak(phase, "requests"), _peak(phase, "responses")]
        )
    cores = (results.get("meta") or {}).get("cores") or 0
    work = []
    for phase in phases:
        counters = phase.get("counters") or {}

        def get(worker: str, prefix: str, counters: dict[str, Any] = counters) -> str:
            values = counters.get(worker) or {}
            return fmt(int(sum(v for k, v in values.items() if k.startswith(prefix))))

        work.append(
            [phase["name"]]
            + [get(f"client-{n}", POSTS) for n in (1, 2, 3)]
            + [get(f"server-{n}", REQUESTS_IN) for n in (1, 2, 3)]
            + [get(f"client-{n}", RESPONSES_IN) for n in (1, 2, 3)]
        )
    return (
        f"CPU % of one core per group during each phase; the machine has {cores} cores "
        f"({100 * cores} %). *Lag* is the most messages seen waiting (end offset minus committed, "
        "sampled every 2 s) in front of compute (requests) and of persist (responses).\n\n"
        + table(
            ["phase", "wall s", *GROUPS, "total", "peak lag requests", "peak lag responses"],
            rows,
        )
        + "\n\nWork per worker and phase: POSTs answered by each client, requests consumed by "
        "each server, responses consumed by each client. A worker at 0 while its peers work "
        "holds partitions it does not fetch.\n\n"
        + table(
            ["phase"]
            + [f"POSTs c{n}" for n in (1, 2, 3)]
            + [f"requests s{n}" for n in (1, 2, 3)]
            + [f"responses c{n}" for n in (1, 2, 3)],
            work,
        )
    )


def _profile_tables(name: str, profile: dict[str, Any]) -> str:
    if "error" in profile:
        return f"**{name}**: profiling failed: {str(profile['error'])[:200]}"
    busy, idle = profile.get("samples") or 0, profile.get("idle_samples") or 0
    packages = ", ".join(f"{p} {s:.0f} %" for p, s in profile.get("packages", [])[:8])
    inclusive = [(f"`{f}`", f"{s:.1f} %") for f, s in profile.get("inclusive", [])[:12]]
    own = [(f"`{f}`", f"{s:.1f} %") for f, s in profile.get("self", [])[:8]]
    return (
        f"**{name}**: {fmt(busy)} busy samples, {fmt(idle)} waiting "
        f"(`profiles/{profile.get('file')}`). On the CPU by package: {packages or DASH}."
        "\n\n"
        + table(("on the stack (inclusive, busy samples)", "share"), inclusive)
        + "\n\n"
        + table(("on the CPU (self)", "share"), own)
    )


def _profiles(results: dict[str, Any]) -> str:
    runs = results.get("profiles") or []
    if not runs:
        return (
            "_No profile: py-spy was not found (`--py-spy PATH`, or py-spy on PATH, records "
            "client-1 and server-1 in a phase of its own, at the sustained load)._"
        )
    parts = []
    for run in runs:
        load = run.get("load") or {}
        parts.append(
            f"### {run.get('phase')}\n\nSampled with py-spy (`--nonblocking`); samples whose "
            "frame on the CPU is a wait (selector, lock, condition) are counted as waiting. "
            f"{fmt(load.get('completed_ops_per_s'), 0)} ops/s completed meanwhile."
        )
        for name, profile in (run.get("workers") or {}).items():
            parts.append(_profile_tables(name, profile))
    return "\n\n".join(parts)


EVALUATED = "operations_evaluated_total"


def cost_per_operation(phase: dict[str, Any]) -> tuple[float, dict[str, float]] | None:
    """(operations evaluated, CPU ms per operation per group) of a phase; None if idle."""
    counters = phase.get("counters") or {}
    evaluated = sum(
        v for values in counters.values() for k, v in values.items() if k.startswith(EVALUATED)
    )
    if evaluated < 50:
        return None
    cpu = phase.get("cpu_seconds") or {}
    return evaluated, {
        group: 1000 * sum(cpu.get(n, 0.0) for n in names) / evaluated
        for group, names in GROUPS.items()
    }


def _costs(results: dict[str, Any]) -> str:
    rows = []
    for phase in results.get("phases") or []:
        cost = cost_per_operation(phase)
        if cost is None:
            continue
        evaluated, per = cost
        rows.append(
            [phase["name"], fmt(int(evaluated))]
            + [fmt(per[g], 2) for g in GROUPS]
            + [fmt(sum(per.values()), 2)]
        )
    if not rows:
        return "_not measured_"
    return (
        "CPU milliseconds spent per operation computed in the phase, by group (the machine "
        "offers 2,000 CPU ms per second on 2 cores; whatever is idle in a phase is charged to "
        "its operations too, so light phases look dearer).\n\n"
        + table(["phase", "operations", *GROUPS, "total"], rows)
    )


def _mean_of(phase: dict[str, Any], histogram: str) -> float | None:
    """Mean of a histogram over a phase, from its _sum and _count deltas (all workers)."""
    counters = phase.get("counters") or {}
    sums = counts = 0.0
    for values in counters.values():
        for key, value in values.items():
            if key.startswith(histogram + "_sum"):
                sums += value
            elif key.startswith(histogram + "_count"):
                counts += value
    return sums / counts if counts else None


def _postgres(results: dict[str, Any]) -> str:
    rows = []
    for phase in results.get("phases") or []:
        tables = phase.get("postgres") or {}
        cost = cost_per_operation(phase)
        if not tables or cost is None:
            continue
        evaluated = cost[0]
        jobs = tables.get("jobs", {})
        scanned = sum(t.get("seq_tup_read", 0) for t in tables.values())
        rows.append(
            [
                phase["name"],
                fmt(int(evaluated)),
                fmt(jobs.get("seq_scan", 0)),
                fmt(jobs.get("seq_tup_read", 0)),
                fmt(sum(t.get("idx_scan", 0) for t in tables.values())),
                fmt(sum(t.get("n_tup_ins", 0) for t in tables.values())),
                fmt(sum(t.get("n_tup_upd", 0) for t in tables.values())),
                fmt(scanned / evaluated, 0),
            ]
        )
    if not rows:
        return "_not measured (psql not found)_"
    return (
        "PostgreSQL's own counters (`pg_stat_user_tables`) for the tables FerretDB keeps the "
        "collections in, per phase: sequential scans of `jobs` and the rows they read, index "
        "scans, rows inserted and updated, all tables; and rows read by sequential scans per "
        "operation. Rows read per operation far above 1 mean queries that FerretDB does not push "
        "down to an index and answers by reading whole collections. PostgreSQL publishes an idle "
        "connection's counters up to 10 s late, so a phase's figures hold some of the previous "
        "phase's.\n\n"
        + table(
            (
                "phase",
                "operations",
                "seq scans of jobs",
                "rows read by them",
                "index scans",
                "rows inserted",
                "rows updated",
                "seq-scanned rows per operation",
            ),
            rows,
        )
    )


def observations(results: dict[str, Any]) -> list[str]:
    """Plain facts drawn from the figures (no judgement beyond thresholds stated inline)."""
    out: list[str] = []
    phases = results.get("phases") or []
    cores = (results.get("meta") or {}).get("cores") or 0
    lim = limits(results)
    if lim["raw"] and lim["storage"]:
        names = {"raw": "the raw Kafka limit", "storage": "the storage limit"}
        other = "storage" if lim["lower"] == "raw" else "raw"
        out.append(
            f"Of the two limits, {names[lim['lower']]} is the lower "
            f"({lim[other] / lim[lim['lower']]:.1f} times below {names[other]}): small jobs reach "
            f"{pct(lim['of_lower'], 1)} of it."
        )
    small = db_cost(results, SMALL_JOB_OPERATIONS)
    bare = (results.get("storage_limit") or {}).get("commands_per_job")
    if small:
        out.append(
            f"A {SMALL_JOB_OPERATIONS}-operation job costs {small['commands_per_job']:.2f} "
            f"database commands ({small['writes_per_job']:.2f} writes) and writes "
            f"{small['documents_per_job']:.2f} documents"
            + (f"; the storage limit's bare client needs {bare} commands." if bare else ".")
        )
    idle = next((p for p in phases if p["name"].startswith("idle")), None)
    if idle:
        groups = group_cpu(idle)
        out.append(
            "With no load, the stack already uses "
            + ", ".join(f"{g} {v:.0f} %" for g, v in groups.items() if v >= 2)
            + f" of a core (total {sum(groups.values()):.0f} %)."
        )
    busy = [p for p in phases if cost_per_operation(p)]
    if busy and cores:
        hot = [p for p in busy if sum(group_cpu(p).values()) >= 85 * cores]
        if hot:
            out.append(
                f"{len(hot)} of {len(busy)} loaded phases used ≥ 85 % of all {cores} cores: "
                "the machine is CPU-bound, so every component's CPU per operation is what "
                "limits throughput."
            )
        worst = max(busy, key=lambda p: cost_per_operation(p)[0])  # type: ignore[index]
        _, per = cost_per_operation(worst)  # type: ignore[misc]
        ranked = sorted(per.items(), key=lambda kv: -kv[1])
        out.append(
            f"In `{worst['name']}` (most operations), CPU per operation: "
            + ", ".join(f"{g} {v:.2f} ms" for g, v in ranked if v >= 0.05)
            + "."
        )
        evaluation = _mean_of(worst, "operation_evaluation_seconds")
        servers = per.get("server workers")
        if evaluation is not None and servers:
            out.append(
                f"Evaluating an expression takes {1e6 * evaluation:.0f} µs on average "
                "(`operation_evaluation_seconds`, wall clock, so inflated by CPU contention), "
                f"at most {100 * evaluation * 1000 / servers:.0f} % of the {servers:.2f} ms of "
                "server-worker CPU per operation: the rest is consuming, publishing and "
                "acknowledging."
            )
    for phase in phases:
        counters = phase.get("counters") or {}
        got = {
            n: sum(
                v
                for k, v in (counters.get(f"server-{n}") or {}).items()
                if k.startswith(REQUESTS_IN)
            )
            for n in (1, 2, 3)
        }
        if sum(got.values()) >= 300 and min(got.values()) == 0:
            idle_servers = [f"server-{n}" for n, v in got.items() if v == 0]
            out.append(
                f"In `{phase['name']}`, {', '.join(idle_servers)} consumed no request while "
                "the others did: its partitions were not being fetched (operations there wait "
                "for a rebalance or for reconciliation)."
            )
    scans = []
    for phase in phases:
        jobs = (phase.get("postgres") or {}).get("jobs") or {}
        cost = cost_per_operation(phase)
        if cost and jobs.get("seq_scan"):
            scans.append((jobs["seq_tup_read"] / cost[0], jobs["seq_scan"] / cost[0], phase))
    if scans:
        per_op, scans_per_op, phase = max(scans, key=lambda x: x[0])
        if scans_per_op >= 0.1:
            out.append(
                f"PostgreSQL read {per_op:,.0f} rows of `jobs` by sequential scans per operation "
                f"in `{phase['name']}` ({scans_per_op:.2f} full scans per operation): FerretDB "
                "answers some query on `jobs` by reading the whole collection, so its cost grows "
                "with the number of jobs stored."
            )
        else:
            out.append(
                f"Sequential scans of `jobs` are rare (at most {scans_per_op:.2f} per operation, "
                f"in `{phase['name']}`): lookups by id use the GIN indexes the local stack adds to "
                "FerretDB's tables (scripts/infra/postgres/ferretdb-indexes.sql)."
            )
    stuck = [
        r["phase"]
        for r in ((results.get("throughput") or {}).get("loads") or [])
        + ((results.get("latency") or {}).get("points") or [])
        if not r.get("drained", True)
    ]
    if stuck:
        out.append(f"Jobs never completed (stalled ≥ 20 s) in: {', '.join(stuck)}.")
    return out


def render_markdown(results: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    meta = results.get("meta") or {}
    small = (results.get("throughput") or {}).get("sustained")
    charts = ""
    if meta.get("charts"):
        charts = "\n![throughput](throughput.png)\n\n![latency](latency.png)\n"
    elif "charts" in meta:
        charts = "\n_Charts not drawn: matplotlib is not installed._\n"
    notes = results.get("notes") or []
    sections = [
        "# jobstream benchmark",
        "Generated by `python -m bench`"
        + (" --quick" if meta.get("mode") == "quick" else "")
        + " against the local stack (3 client + 3 server workers, Kafka x3, FerretDB on "
        "PostgreSQL), everything on one machine over loopback.",
        "## Machine and run\n\n" + _facts(meta),
        "## Headline\n\n" + _main_table(results),
        "## Targets\n\n" + _targets(results),
        "## Observations\n\n" + ("\n".join(f"- {o}" for o in observations(results)) or "_none_"),
        "## Small jobs against both limits\n\n" + _limits(results),
        "## Throughput vs offered load\n\n" + _throughput(results) + "\n" + charts,
        "## Watchers during load\n\n" + _watchers(results),
        "## The limit: raw two-hop pipeline on the same cluster\n\n" + _raw(results),
        "## The storage limit: a bare PyMongo client on the same database\n\n" + _storage(results),
        "## Database work per job\n\n" + _db_work(results),
        "## Latency of single-operation jobs\n\n" + _latency(results),
        "## Big jobs\n\n" + _big(results, small),
        "## Small jobs beside a big one\n\n" + _neighbours(results),
        "## Listing, and a prefilled database\n\n" + _prefilled(results),
        "## CPU and memory per process\n\n" + _processes(results),
        "## Where the CPU went, per phase\n\n" + _phases(results),
        "## CPU per operation\n\n" + _costs(results),
        "## PostgreSQL behind FerretDB\n\n" + _postgres(results),
        "## Profiles\n\n" + _profiles(results),
    ]
    if notes:
        sections.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(sections) + "\n"


# --- files -----------------------------------------------------------------------------------


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """throughput.png and latency.png; [] when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    loads = (results.get("throughput") or {}).get("loads") or []
    raw = (results.get("raw_limit") or {}).get("msgs_per_s")
    storage = (results.get("storage_limit") or {}).get("ops_per_s")
    prefilled_loads = (((results.get("prefilled") or {}).get("throughput")) or {}).get("loads")
    if loads:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        offered = [r["offered_ops_per_s"] for r in loads]
        ax.plot(offered, [r["completed_ops_per_s"] or 0 for r in loads], "o-", label="completed")
        ax.plot(offered, offered, ":", color="grey", label="offered = completed")
        if raw:
            ax.axhline(raw, color="red", linestyle="--", label=f"raw limit {raw:,.0f} msg/s")
            target = f"target {RAW_SHARE:.0%} of raw"
            ax.axhline(RAW_SHARE * raw, color="orange", linestyle="--", label=target)
        if storage:
            label = f"storage limit {storage:,.0f} ops/s"
            ax.axhline(storage, color="purple", linestyle="-.", label=label)
            target = f"target {STORAGE_SHARE:.0%} of storage"
            ax.axhline(STORAGE_SHARE * storage, color="violet", linestyle=":", label=target)
        if prefilled_loads:
            ax.plot(
                [r["offered_ops_per_s"] for r in prefilled_loads],
                [r["completed_ops_per_s"] or 0 for r in prefilled_loads],
                "s--",
                label="completed, prefilled database",
            )
        ax.set_xlabel("offered load (operations/s)")
        ax.set_ylabel("throughput (operations/s)")
        ax.set_title("jobstream throughput vs offered load")
        ax.legend(fontsize="small", loc="best")
        ax.grid(True, alpha=0.3)
        path = out_dir / "throughput.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    points = (results.get("latency") or {}).get("points") or []
    if points:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        offered = [p["offered_jobs_per_s"] for p in points]
        for key in ("p50", "p95", "p99"):
            ax.plot(offered, [p["latency_ms"].get(key) or 0 for p in points], "o-", label=key)
        ax.axhline(P99_LIMIT_MS, color="red", linestyle="--", label="p99 target")
        ax.set_xlabel("offered load (single-op jobs/s)")
        ax.set_ylabel("submitted → completed (ms)")
        ax.set_yscale("log")
        ax.set_title("single-operation job latency")
        ax.legend()
        ax.grid(True, alpha=0.3, which="both")
        path = out_dir / "latency.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def charts_available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write results.json, the charts when possible, and report.md; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results.setdefault("meta", {})["charts"] = bool(plot(results, out_dir))
    results["targets"] = evaluate_targets(results)
    json_path = out_dir / "results.json"
    json_path.write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    md_path = out_dir / "report.md"
    md_path.write_text(render_markdown(results))
    paths = [md_path, json_path]
    if results["meta"]["charts"]:
        paths += [out_dir / "throughput.png", out_dir / "latency.png"]
    return paths


def load(path: Path) -> dict[str, Any]:
    """A results.json written by `write`."""
    return orjson.loads(path.read_bytes())
