"""`python -m bench [--quick] [--prefill N]`: the whole benchmark against the running local stack.

Needs `make infra-up` and `scripts/dev.sh start` (3 client + 3 server workers) first;
`bench/run.sh` does both under the shared stack lock. Writes bench/results/report.md,
results.json and, when matplotlib is installed, throughput.png and latency.png.
`python -m bench --render bench/results/results.json` re-renders a report from saved results.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from pymongo.errors import PyMongoError

from bench import (
    load,
    neighbours,
    pgstat,
    prefill,
    profile,
    raw_limit,
    report,
    storage_limit,
    watchers,
)
from bench.lag import LagProbe
from bench.stack import ROOT, Stack, check_health
from jobstream.settings import Settings
from jobstream.storage import MongoRepository, slot_of

log = logging.getLogger("bench")

RESULTS = ROOT / "bench" / "results"
PAGE_PROBE_AT = 100_000  # documents stored when the prefilled run first reads the jobs list
PAGE_PROBE_LIMIT_MS = 250.0
PROFILED = ["client-1", "server-1"]


@dataclass(frozen=True)
class Plan:
    """How much of everything to run (bounded in count and time)."""

    mode: str
    idle_seconds: float
    warmup_seconds: float
    raw_seconds: float
    raw_relays: int
    ops_per_job: int
    throughput_probe_ops: float  # offered ops/s of the saturation probe (far above capacity)
    throughput_fractions: list[float]
    load_seconds: float
    drain_timeout: float
    probe_rate: float  # offered single-op jobs/s of the latency probe
    probe_seconds: float
    fractions: list[float]
    latency_seconds: float
    big_sizes: list[int]
    big_timeouts: dict[int, float] = field(default_factory=dict)
    profile_seconds: float = 10
    storage_seconds: float = 5  # per concurrency level of the storage limit
    storage_concurrency: tuple[int, ...] = storage_limit.CONCURRENCY
    storage_passes: int = 2
    listing_requests: int = 200  # first jobs page, one request after the other
    prefill_documents: int = 1_000_000  # 0: no prefilled run
    prefill_budget_seconds: float = 600  # run 12 stored 1M in 133 s; some days run 3x slower
    watch_clients: int = 20  # watchers of the watched job (half streams, half ?wait=)
    watch_seconds: float = 20  # small-job load per run (without or with watchers)
    watch_pairs: int = 2  # runs without and with, in pairs of alternating order (ABBA...)
    watch_load: float = 1.25  # offered load per run, as a share of the sustained throughput
    watch_fallback_ops: float = 1000  # offered ops/s when the throughput section did not run
    watched_operations: int = 100_000  # the job the watchers wait on, submitted as each run starts
    neighbour_rate: float = 5  # single-op jobs/s, alone and beside a big job (section neighbours)
    neighbour_seconds: float = 20
    neighbour_operations: int = 100_000  # the big job beside them


FULL = Plan(
    mode="full",
    idle_seconds=6,
    warmup_seconds=4,
    raw_seconds=20,
    raw_relays=3,
    ops_per_job=10,
    throughput_probe_ops=5000,
    # up to 150 %: the short saturation probe tends to underestimate (run 9: every level up to
    # 125 % kept up, and the watchers section sustained more)
    throughput_fractions=[0.25, 0.5, 0.75, 1.0, 1.25, 1.5],
    load_seconds=10,
    drain_timeout=60,
    probe_rate=400,
    probe_seconds=8,
    fractions=[0.25, 0.5, 0.75, 0.9],
    latency_seconds=10,
    big_sizes=[1, 100, 10_000, 100_000],
    big_timeouts={1: 30, 100: 30, 10_000: 120, 100_000: 300},
    profile_seconds=10,
)

QUICK = Plan(
    mode="quick",
    idle_seconds=3,
    warmup_seconds=2,
    raw_seconds=8,
    raw_relays=3,
    ops_per_job=10,
    throughput_probe_ops=5000,
    throughput_fractions=[0.5, 1.0],
    load_seconds=6,
    drain_timeout=30,
    probe_rate=400,
    probe_seconds=5,
    fractions=[0.5, 0.9],
    latency_seconds=6,
    big_sizes=[1, 100, 10_000],
    big_timeouts={1: 30, 100: 30, 10_000: 90},
    profile_seconds=6,
    storage_seconds=3,
    storage_concurrency=(8, 32),
    storage_passes=1,
    listing_requests=100,
    prefill_documents=0,
    watch_seconds=5,
    watched_operations=3_000,
    neighbour_seconds=8,
    neighbour_operations=10_000,
)


def machine_facts(mode: str) -> dict[str, Any]:
    """Cores, CPU, memory, Python, date and commit."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "mode": mode,
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


async def run(plan: Plan, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every section in turn; results are saved after each one, so a failure keeps the rest."""
    started = time.monotonic()
    results: dict[str, Any] = {"meta": machine_facts(plan.mode), "plan": asdict(plan)}
    results["meta"]["charts"] = report.charts_available()
    notes: list[str] = results.setdefault("notes", [])
    connector = aiohttp.TCPConnector(limit=400, limit_per_host=0)
    settings = Settings.from_env()
    lag_probe = LagProbe(settings)
    async with aiohttp.ClientSession(connector=connector) as session:
        missing = await check_health(session)
        if missing:
            raise SystemExit(
                f"workers not answering /health: {', '.join(missing)}. Start the stack first: "
                "`make infra-up && scripts/dev.sh start` (or bench/run.sh)."
            )
        await lag_probe.start()
        results["meta"]["database"] = settings.mongo_database
        results["meta"]["documents_at_start"] = {
            name: values.get("n_live_tup")
            for name, values in (await pgstat.snapshot(settings.mongo_database)).items()
            if not name.startswith("_ferretdb")
        }
        stack = Stack(session)
        phases = load.Phases(session, lag_probe, settings.mongo_database)
        results["phases"] = phases.records

        def save() -> None:
            results["meta"]["duration_seconds"] = round(time.monotonic() - started, 1)
            results["resources"] = {"processes": phases.processes()}
            report.write(results, out_dir)

        py_spy = profile.find_py_spy(args.py_spy)
        if py_spy is None:
            notes.append("no profile: py-spy not found (`--py-spy PATH`)")

        def profiler(tag: str):  # type: ignore[no-untyped-def]
            return lambda seconds: profile.record(
                py_spy, PROFILED, seconds, out_dir / "profiles", tag=tag
            )

        try:
            log.info("pipeline check and warm-up")
            await load.warm_up(stack, plan.warmup_seconds, 200)
            results["meta"]["lag_before_measuring"] = await load.settle(lag_probe)
            async with phases.phase("idle (workers up, no load)"):
                await asyncio.sleep(plan.idle_seconds)

            if "raw" in args.sections:
                log.info("raw limit: %d s of produce, %d relays", plan.raw_seconds, plan.raw_relays)
                async with phases.phase("raw two-hop limit"):
                    try:
                        results["raw_limit"] = await raw_limit.measure(
                            seconds=plan.raw_seconds, relays=plan.raw_relays
                        )
                    except (RuntimeError, TimeoutError, OSError) as exc:
                        log.exception("raw limit failed")
                        results["raw_limit"] = {"error": f"{type(exc).__name__}: {exc}"}
                log.info("raw limit: %s msg/s", results["raw_limit"].get("msgs_per_s"))
                save()

            if "storage" in args.sections:
                log.info(
                    "storage limit: %g s at each of %s concurrent",
                    plan.storage_seconds,
                    plan.storage_concurrency,
                )
                async with phases.phase("storage limit (bare PyMongo client)"):
                    try:
                        results["storage_limit"] = await storage_limit.measure(
                            settings.mongo_url,
                            seconds=plan.storage_seconds,
                            concurrency=plan.storage_concurrency,
                            passes=plan.storage_passes,
                        )
                    except (PyMongoError, OSError) as exc:
                        log.exception("storage limit failed")
                        results["storage_limit"] = {"error": f"{type(exc).__name__}: {exc}"}
                log.info("storage limit: %s ops/s", results["storage_limit"].get("ops_per_s"))
                save()

            if "throughput" in args.sections:
                results["throughput"] = await load.throughput_sweep(
                    stack,
                    phases,
                    plan.ops_per_job,
                    plan.throughput_probe_ops,
                    plan.probe_seconds,
                    plan.throughput_fractions,
                    plan.load_seconds,
                    plan.drain_timeout,
                )
                save()
                sustained = results["throughput"]["sustained"]
                if py_spy and sustained:
                    log.info("profiling %s at %.0f ops/s", PROFILED, sustained)
                    results.setdefault("profiles", []).append(
                        await load.profiled_load(
                            stack,
                            phases,
                            profiler("small-jobs"),
                            sustained / plan.ops_per_job,
                            plan.ops_per_job,
                            plan.profile_seconds,
                            plan.drain_timeout,
                        )
                    )
                    save()

            if "watchers" in args.sections:
                sustained = (results.get("throughput") or {}).get("sustained")
                offered = plan.watch_load * sustained if sustained else plan.watch_fallback_ops
                if not sustained:
                    notes.append(
                        f"watchers: no sustained throughput measured; offered "
                        f"{plan.watch_fallback_ops:g} ops/s"
                    )
                log.info(
                    "watchers: %d runs of %g s of %.0f ops/s, without and with %d watchers",
                    2 * plan.watch_pairs,
                    plan.watch_seconds,
                    offered,
                    plan.watch_clients,
                )
                results["watchers"] = await watchers.with_and_without(
                    stack,
                    phases,
                    clients=plan.watch_clients,
                    operations_per_job=plan.ops_per_job,
                    offered_ops_per_second=offered,
                    seconds=plan.watch_seconds,
                    watched_operations=plan.watched_operations,
                    drain_timeout=plan.drain_timeout,
                    pairs=plan.watch_pairs,
                    offered_share=plan.watch_load if sustained else None,
                )
                save()

            if "latency" in args.sections:
                results["latency"] = await load.latency_sweep(
                    stack,
                    phases,
                    plan.probe_rate,
                    plan.probe_seconds,
                    plan.fractions,
                    plan.latency_seconds,
                    plan.drain_timeout,
                )
                save()
                capacity = results["latency"]["capacity_jobs_per_s"]
                if py_spy and capacity:
                    log.info("profiling %s at %.0f single-op jobs/s", PROFILED, capacity)
                    results.setdefault("profiles", []).append(
                        await load.profiled_load(
                            stack,
                            phases,
                            profiler("single-op"),
                            capacity,
                            1,
                            plan.profile_seconds,
                            plan.drain_timeout,
                        )
                    )
                    save()

            if "big" in args.sections:
                big_jobs: list[dict[str, Any]] = results.setdefault("big_jobs", [])
                for n, size in enumerate(plan.big_sizes):
                    timeout = plan.big_timeouts.get(size, 120)
                    big_jobs.append(await load.big_job(stack, phases, size, timeout, n))
                    save()
                leftovers = [
                    b["job_id"] for b in big_jobs if b.get("job_id") and b["operations"] > 100
                ]
                await load.delete_jobs(stack, leftovers)

            if "listing" in args.sections:
                results["listing"] = await load.listing(
                    stack, phases, "listing: first jobs page", plan.listing_requests
                )
                save()

            if "prefill" in args.sections and plan.prefill_documents > 0:
                results["prefilled"] = await prefilled_run(
                    plan, stack, phases, settings, args.sections, save
                )
                save()

            # Last: its single-operation jobs at 5/s are the newest jobs after it, sparse ones,
            # which the FerretDB listing reads slot by slot (a page of 100 of them took 375 ms
            # against 80-120 ms for denser jobs), so the listing and prefill sections run first.
            if "neighbours" in args.sections:
                results["neighbours"] = await neighbours.alone_and_beside(
                    stack,
                    phases,
                    jobs_per_second=plan.neighbour_rate,
                    seconds=plan.neighbour_seconds,
                    big_operations=plan.neighbour_operations,
                    drain_timeout=plan.drain_timeout,
                )
                save()
        except load.PipelineStuck as exc:
            log.error("pipeline stuck: %s", exc)
            notes.append(f"stopped early, pipeline stuck: {exc}")
        finally:
            save()
            await lag_probe.stop()
    return results


async def prefilled_run(
    plan: Plan,
    stack: Stack,
    phases: load.Phases,
    settings: Settings,
    sections: set[str],
    save: Any,
) -> dict[str, Any]:
    """Fill the workers' database, then run the small-job and listing phases again on it.

    At 100,000 documents the listing is probed first (its first page, and five pages of 100 as
    the benchmark's poller reads them): a page slower than PAGE_PROBE_LIMIT_MS there means the
    listing scans the collection, and FerretDB 1.x sorts a scanned collection in its own memory
    (a million jobs: ~9 GB live, 16 GB resident, measured), so the prefill stops there rather
    than take the machine down, and the report says why.
    """
    out: dict[str, Any] = {}

    async def probe(stored: int) -> str | None:
        first = await load.time_pages(stack, 1, 30)
        fast = all(ms is not None and ms <= PAGE_PROBE_LIMIT_MS for ms in first)
        walk = await load.time_pages(stack, 5, load.PAGE_SIZE) if fast else []
        out["probe"] = {"documents": stored, "first_page_ms": first, "pages_of_100_ms": walk}
        slow = [
            (f"page {n} of {size}", ms)
            for size, times in ((30, first), (load.PAGE_SIZE, walk))
            for n, ms in enumerate(times, start=1)
            if ms is None or ms > PAGE_PROBE_LIMIT_MS
        ]
        if not slow:
            return None
        took = ", ".join(
            f"{what}: " + ("failed or > 30 s" if ms is None else f"{ms:,.0f} ms")
            for what, ms in slow[:3]
        )
        return (
            f"the jobs list took {took} with {stored:,} documents stored (limit "
            f"{PAGE_PROBE_LIMIT_MS:g} ms): listing scans the collection, so the prefill stopped "
            "there instead of a million"
        )

    log.info(
        "prefill: %d documents into %s (at most %g s)",
        plan.prefill_documents,
        settings.mongo_database,
        plan.prefill_budget_seconds,
    )
    async with phases.phase("prefill the database"):
        try:
            out["prefill"] = await prefill.prefill(
                settings.mongo_url,
                settings.mongo_database,
                plan.prefill_documents,
                budget_seconds=plan.prefill_budget_seconds,
                checkpoint=probe,
                checkpoint_at=min(PAGE_PROBE_AT, plan.prefill_documents),
            )
        except (PyMongoError, OSError) as exc:
            log.exception("prefill failed")
            out["prefill"] = {"error": f"{type(exc).__name__}: {exc}"}
            return out
        first, last = out["prefill"]["created_seconds"]
        repository = MongoRepository.connect(settings.mongo_url, settings.mongo_database)
        try:
            await repository.register_slots(
                range(
                    slot_of(datetime.fromtimestamp(first, UTC)),
                    slot_of(datetime.fromtimestamp(last + 1, UTC)),
                )
            )
        finally:
            await repository.close()
        started = time.monotonic()
        out["prefill"]["vacuumed"] = await pgstat.vacuum_analyze(settings.mongo_database)
        out["prefill"]["vacuum_seconds"] = round(time.monotonic() - started, 1)
    log.info("prefill: %s", out["prefill"])
    save()
    if out["prefill"].get("stopped"):
        out["skipped"] = out["prefill"]["stopped"]
        return out
    phases.labels["run"] = "prefilled"
    try:
        if "throughput" in sections:
            out["throughput"] = await load.throughput_sweep(
                stack,
                phases,
                plan.ops_per_job,
                plan.throughput_probe_ops,
                plan.probe_seconds,
                plan.throughput_fractions,
                plan.load_seconds,
                plan.drain_timeout,
                prefix="prefilled: ",
            )
            save()
        if "listing" in sections:
            out["listing"] = await load.listing(
                stack, phases, "prefilled: listing: first jobs page", plan.listing_requests
            )
    finally:
        phases.labels.pop("run", None)
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~2-minute run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument(
        "--sections",
        default="raw,storage,throughput,watchers,latency,big,neighbours,listing,prefill",
        help="comma-separated subset of raw,storage,throughput,watchers,latency,big,neighbours,"
        "listing,prefill",
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=None,
        metavar="N",
        help="documents to pre-fill before running the small-job and listing phases again "
        f"(default {FULL.prefill_documents:,}; --quick: {QUICK.prefill_documents}; 0 skips it)",
    )
    parser.add_argument(
        "--watch-ops",
        type=float,
        default=None,
        metavar="OPS",
        help="offered ops/s of the watchers section when the throughput section does not run "
        f"(default {FULL.watch_fallback_ops:g}, under the capacity; e.g. `--sections watchers "
        "--watch-ops 1500` to run that section alone above it)",
    )
    parser.add_argument("--py-spy", default=None, help="path of py-spy (default: on PATH)")
    parser.add_argument("--render", type=Path, help="re-render a report from a results.json")
    args = parser.parse_args(argv)
    args.sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    if args.render:
        results = report.load(args.render)
        results.setdefault("meta", {})["charts"] = report.charts_available()
        for path in report.write(results, args.out):
            print(path)
        return 0
    plan = QUICK if args.quick else FULL
    if args.prefill is not None:
        plan = replace(plan, prefill_documents=max(args.prefill, 0))
    if args.watch_ops is not None:
        plan = replace(plan, watch_fallback_ops=args.watch_ops)
    results = asyncio.run(run(plan, args.out, args))
    for target in results.get("targets", []):
        status = {True: "met", False: "NOT MET", None: "not measured"}[target["ok"]]
        print(f"{status:>12}  {target['target']}: {target['measured']}")
    print(f"report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
