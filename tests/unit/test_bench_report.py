"""The benchmark's pure parts: percentiles, ratios, load summaries, /proc and py-spy parsing, and
the report rendered from a fixed results dict. No services, no timing assertions."""

from __future__ import annotations

import copy
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymongo.errors import BulkWriteError

from jobstream.models import job_created_at
from jobstream.storage import slot_of

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level package beside jobstream/, not installed
    sys.path.insert(0, str(ROOT))

from bench import pgstat, prefill, procstat, report, storage_limit  # noqa: E402
from bench.lag import summarize_lag  # noqa: E402
from bench.load import Submission, body_for, next_page_url, summarize_load, tag  # noqa: E402
from bench.profile import package_of, top_frames  # noqa: E402
from bench.raw_limit import message_sizes, steady_slope  # noqa: E402
from bench.stack import counter_delta, parse_counters, total  # noqa: E402
from bench.stats import percentile, rate, ratio, steady_rate, summarize  # noqa: E402
from bench.watchers import watcher_db_reads  # noqa: E402

# --- percentiles and ratios ------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)


def test_percentile_does_not_depend_on_input_order() -> None:
    assert percentile([30, 10, 20], 50) == 20
    assert percentile([4.0, 1.0, 3.0, 2.0], 25) == pytest.approx(1.75)


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.5], 99) == 7.5


@pytest.mark.parametrize("q", [-1, 100.5, float("nan")])
def test_percentile_rejects_q_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1, 2, 3], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50),
    st.floats(0, 100),
    st.floats(0, 100),
)
def test_percentile_is_bounded_and_monotonic(values: list[float], q1: float, q2: float) -> None:
    low, high = sorted((q1, q2))
    assert min(values) <= percentile(values, low) <= percentile(values, high) <= max(values)


def test_summarize_reports_count_mean_and_percentiles() -> None:
    summary = summarize([10, 20, 30, 40])
    assert summary["count"] == 4
    assert summary["mean"] == 25
    assert (summary["min"], summary["max"]) == (10, 40)
    assert summary["p50"] == 25
    assert summary["p99"] == pytest.approx(39.7)


def test_summarize_of_nothing_has_no_figures() -> None:
    summary = summarize([])
    assert summary["count"] == 0
    assert all(summary[k] is None for k in ("mean", "p50", "p95", "p99", "max"))


def test_ratio_and_rate_refuse_missing_or_empty_denominators() -> None:
    assert ratio(250, 1000) == 0.25
    assert ratio(None, 1000) is None
    assert ratio(250, None) is None
    assert ratio(250, 0) is None
    assert rate(100, 4) == 25
    assert rate(100, 0) is None
    assert rate(100, None) is None


def test_steady_rate_counts_only_inside_the_window() -> None:
    completions = [(0.5, 10), (1.0, 10), (2.0, 10), (3.0, 10), (9.0, 10)]
    assert steady_rate(completions, 1.0, 3.0) == 15  # 30 units over 2 s
    assert steady_rate(completions, 3.0, 3.0) is None


def test_steady_slope_takes_the_middle_of_a_delivery_curve() -> None:
    progress = [(0.0, 0), (1.0, 100), (2.0, 300), (3.0, 500), (4.0, 900), (5.0, 1000)]
    # 20 % (200) first reached at t=2 (300), 80 % (800) at t=4 (900): 600 over 2 s
    assert steady_slope(progress) == 300
    assert steady_slope([(0.0, 0), (1.0, 0)]) is None


# --- the load summary ------------------------------------------------------------------------


def _sub(i: int, ops: int, scheduled: float, post: float, finish: float | None) -> Submission:
    sub = Submission(i, ops, scheduled=scheduled, sent=scheduled, answered=scheduled + post)
    sub.job_id = f"{i:032x}"
    sub.created_at = scheduled + post / 2
    sub.finished_at = None if finish is None else scheduled + finish
    return sub


def test_summarize_load_measures_from_the_schedule_to_finished_at() -> None:
    # 10 jobs of 10 ops due every 0.1 s from t=1000; each answered in 20 ms, done in 50 ms
    subs = [_sub(i, 10, 1000 + i / 10, 0.02, 0.05) for i in range(10)]
    summary = summarize_load(subs, 10.0, 10)
    assert summary["offered_ops_per_s"] == 100
    assert summary["completed"] == summary["accepted"] == summary["jobs"] == 10
    assert summary["errors"] == 0
    # 100 ops from t=1000 to the last finish at 1000.9 + 0.05
    assert summary["completed_ops_per_s"] == pytest.approx(100 / 0.95)
    assert summary["latency_ms"]["p50"] == pytest.approx(50)
    assert summary["post_ms"]["p99"] == pytest.approx(20)
    assert summary["server_ms"]["p50"] == pytest.approx(40)


def test_summarize_load_counts_errors_and_unfinished_jobs() -> None:
    subs = [_sub(0, 1, 1.0, 0.01, 0.03), _sub(1, 1, 2.0, 0.01, None)]
    failed = Submission(2, 1, scheduled=3.0, sent=3.0, answered=3.5, error="HTTP 503: b''")
    summary = summarize_load([*subs, failed], 1.0, 1)
    assert (summary["jobs"], summary["accepted"], summary["completed"]) == (3, 2, 1)
    assert summary["errors"] == 1
    assert summary["first_errors"] == ["HTTP 503: b''"]
    assert summary["latency_ms"]["count"] == 1


def test_body_for_has_one_expression_per_line() -> None:
    lines = body_for(100).decode().splitlines()
    assert len(lines) == 100
    assert all(line.strip() for line in lines)


def test_raw_pipeline_messages_are_jobstream_sized() -> None:
    sizes = message_sizes()
    assert sizes["request_key"] > 32  # "<job id>-<index>"
    assert sizes["response_key"] == 32  # the job id
    assert sizes["request_value"] > 50 and sizes["response_value"] > 50


# --- /proc, /metrics and py-spy parsing ------------------------------------------------------


def test_parse_stat_survives_spaces_and_parentheses_in_the_command() -> None:
    fields = ["S", "1", *["0"] * 9, "150", "50", "7", "3", *["0"] * 30]
    line = "4242 (python (faust) w) " + " ".join(fields)
    stat = procstat.parse_stat(line)
    assert (stat.pid, stat.ppid) == (4242, 1)
    assert (stat.utime, stat.stime, stat.cutime, stat.cstime) == (150, 50, 7, 3)
    assert stat.ticks == 210


def test_parse_status_reads_kilobytes() -> None:
    text = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert procstat.parse_status_kb(text, "VmHWM") == 204800
    assert procstat.parse_status_kb(text, "VmSwap") is None


def test_descendants_walks_the_whole_tree() -> None:
    tree = {1: [2, 3], 2: [4], 4: [5]}
    assert sorted(procstat.descendants(1, tree)) == [1, 2, 3, 4, 5]
    assert procstat.descendants(3, tree) == [3]


def test_cpu_delta_ignores_restarted_processes() -> None:
    before = {"a": procstat.Sample("a", 1, 2.0, 0, 0), "b": procstat.Sample("b", 2, 1.0, 0, 0)}
    after = {"a": procstat.Sample("a", 1, 5.5, 0, 0), "b": procstat.Sample("b", 9, 0.1, 0, 0)}
    assert procstat.cpu_delta(before, after) == {"a": 3.5}


EXPOSITION = """\
# HELP operations_evaluated_total Operations evaluated by outcome
# TYPE operations_evaluated_total counter
operations_evaluated_total{outcome="succeeded"} 90.0
operations_evaluated_total{outcome="failed"} 10.0
# HELP consumer_messages_received_total Kafka messages consumed
# TYPE consumer_messages_received_total counter
consumer_messages_received_total{topic="application.operation.request"} 100.0
# HELP unrelated_total something else
# TYPE unrelated_total counter
unrelated_total 5.0
"""


def test_parse_counters_keeps_the_wanted_samples_with_labels() -> None:
    counters = parse_counters(EXPOSITION)
    assert counters == {
        "operations_evaluated_total{outcome=succeeded}": 90.0,
        "operations_evaluated_total{outcome=failed}": 10.0,
        "consumer_messages_received_total{topic=application.operation.request}": 100.0,
    }


def test_counter_delta_and_total_over_workers() -> None:
    before = {"server-1": {"operations_evaluated_total{outcome=succeeded}": 10.0}}
    after = {
        "server-1": {"operations_evaluated_total{outcome=succeeded}": 25.0},
        "server-2": {"operations_evaluated_total{outcome=failed}": 3.0},
        "client-1": {"operations_evaluated_total{outcome=failed}": 100.0},
    }
    grown = counter_delta(before, after)
    assert total(grown, "operations_evaluated_total", "server") == 18.0
    assert total(grown, "operations_evaluated_total") == 118.0


def test_top_frames_shares_self_and_inclusive_samples() -> None:
    collapsed = "\n".join(
        [
            "process 1:python;thread 0x1;main (/app/jobstream/app.py:10);"
            "persist (/app/jobstream/agents/persist.py:20) 6",
            "process 1:python;thread 0x1;main (/app/jobstream/app.py:10);"
            "insert_many (/v/lib/python3.11/site-packages/pymongo/collection.py:5) 4",
            "garbage line",
        ]
    )
    profile = top_frames(collapsed)
    assert profile["samples"] == 10
    own = dict(map(tuple, profile["self"]))
    inclusive = dict(map(tuple, profile["inclusive"]))
    assert own["/app/jobstream/agents/persist.py:persist"] == 60.0
    assert own["pymongo/collection.py:insert_many"] == 40.0
    assert inclusive["/app/jobstream/app.py:main"] == 100.0
    assert top_frames("")["samples"] == 0


def test_top_frames_counts_waiting_samples_apart() -> None:
    collapsed = "\n".join(
        [
            "run_forever (asyncio/base_events.py:607);EpollSelector.select (selectors.py:468) 70",
            "run_forever (asyncio/base_events.py:607);"
            "Jobs.post (jobstream/views/jobs.py:126);send (aiokafka/producer/producer.py:9) 30",
        ]
    )
    profile = top_frames(collapsed)
    assert (profile["samples"], profile["idle_samples"]) == (30, 70)
    assert profile["packages"] == [["aiokafka", 100.0]]
    inclusive = dict(map(tuple, profile["inclusive"]))
    assert inclusive["jobstream/views/jobs.py:Jobs.post"] == 100.0
    assert not any(name.startswith("asyncio/base_events.py") for name in inclusive)


def test_package_of_a_frame() -> None:
    assert package_of("aiokafka/producer/sender.py:Sender.run") == "aiokafka"
    assert package_of("selectors.py:EpollSelector.select") == "selectors"


def test_summarize_lag_totals_and_ranks_partitions() -> None:
    lag = summarize_lag({0: 100, 1: 50, 2: 10, 3: 5}, {0: 40, 1: 50, 2: 0})
    assert lag["total"] == 60 + 0 + 10 + 5
    assert lag["partitions_lagging"] == 3
    assert lag["worst"] == [[0, 60], [2, 10], [3, 5]]


def test_pgstat_merges_tables_by_collection_and_diffs_counters() -> None:
    before = pgstat.parse("jobstream.jobs_0a1b2c3d|10|1000|5|5|100|50|100\nnot a row\n")
    after = pgstat.parse(
        "jobstream.jobs_0a1b2c3d|12|3000|9|9|110|60|110\n"
        "jobstream.results_ff00ff00|0|0|0|0|20|0|20\n"
    )
    assert before["jobs"]["seq_tup_read"] == 1000
    assert pgstat.delta(before, after) == {
        "jobs": {
            "seq_scan": 2,
            "seq_tup_read": 2000,
            "idx_scan": 4,
            "idx_tup_fetch": 4,
            "n_tup_ins": 10,
            "n_tup_upd": 10,
        },
        "results": {"n_tup_ins": 20},
    }


def test_cost_per_operation_charges_each_group() -> None:
    phase = {
        "name": "p",
        "cpu_seconds": {"client-1": 1.0, "kafka-1": 2.0, "ferretdb": 0.5, "postgres": 0.5},
        "counters": {
            "server-1": {"operations_evaluated_total{outcome=succeeded}": 600.0},
            "server-2": {"operations_evaluated_total{outcome=failed}": 400.0},
        },
    }
    evaluated, per = report.cost_per_operation(phase)
    assert evaluated == 1000
    assert per["client workers"] == pytest.approx(1.0)
    assert per["Kafka x3"] == pytest.approx(2.0)
    assert per["FerretDB + PostgreSQL"] == pytest.approx(1.0)
    assert report.cost_per_operation({"name": "idle", "counters": {}}) is None


def test_observations_name_a_server_that_consumed_nothing() -> None:
    phase = {
        "name": "throughput 50%",
        "wall_seconds": 10.0,
        "cpu_seconds": {},
        "cpu_percent": {},
        "counters": {
            "server-1": {report.REQUESTS_IN: 500.0, "operations_evaluated_total": 500.0},
            "server-2": {report.REQUESTS_IN: 500.0, "operations_evaluated_total": 500.0},
            "server-3": {},
        },
    }
    text = " ".join(report.observations({"meta": {"cores": 2}, "phases": [phase]}))
    assert "server-3 consumed no request" in text


# --- the report ------------------------------------------------------------------------------


def _latency(p50: float, p95: float, p99: float) -> dict[str, Any]:
    return {"count": 100, "mean": p50, "min": 1.0, "p50": p50, "p95": p95, "p99": p99, "max": p99}


def _load(offered: float, completed: float, p99: float) -> dict[str, Any]:
    return {
        "operations_per_job": 10,
        "jobs": 150,
        "accepted": 150,
        "completed": 150,
        "errors": 0,
        "first_errors": [],
        "offered_jobs_per_s": offered / 10,
        "offered_ops_per_s": offered,
        "submitted_ops_per_s": offered,
        "completed_ops_per_s": completed,
        "steady_ops_per_s": completed,
        "latency_ms": _latency(p99 / 3, p99 / 2, p99),
        "post_ms": _latency(5.0, 9.0, 12.0),
        "server_ms": _latency(30.0, 60.0, 90.0),
        "drained": True,
        "phase": f"throughput {offered:g} ops/s",
    }


def _cmd(command: str, origin: str = "worker", outcome: str = "succeeded") -> str:
    """A key of mongo_commands_total as bench.stack.parse_counters writes it."""
    return f"mongo_commands_total{{command={command},origin={origin},outcome={outcome}}}"


def _docs(command: str) -> str:
    return f"mongo_documents_written_total{{command={command}}}"


def _half(watchers: int, completed: float, reads: float) -> dict[str, Any]:
    """One run of the watchers section (bench.watchers.half's shape)."""
    return {
        "phase": f"watchers: {watchers} during 2000 ops/s",
        "watchers": watchers,
        "load": {
            "offered_ops_per_s": 2000.0,
            "completed_ops_per_s": completed,
            "steady_ops_per_s": completed,
            "completed": 4000,
            "accepted": 4000,
            "latency_ms": {"p99": 900.0},
        },
        "drained": True,
        "watched_job": {"operations": 10_000, "completed": True, "seconds": 12.5},
        "watch": {
            "streams": 10 if watchers else 0,
            "stream_ends": {"completed": 10} if watchers else {},
            "waits": 10 if watchers else 0,
            "waits_completed": 10 if watchers else 0,
            "watches": 20 if watchers else 0,
            "followed_events": 5000 if watchers else 0,
            "errors": 0,
            "first_errors": [],
        },
        "db": {
            "commands": reads,
            "job_reads": reads,
            "job_reads_beyond_first_state": max(reads - 20, 0.0) if watchers else None,
        },
    }


RESULTS: dict[str, Any] = {
    "meta": {
        "date": "2026-01-02 03:04:05",
        "commit": "abc1234",
        "dirty": False,
        "mode": "full",
        "cores": 2,
        "cpu_model": "Test CPU",
        "memory_gb": 24.0,
        "python": "3.11.7",
        "duration_seconds": 540.0,
        "charts": False,
    },
    "raw_limit": {
        "msgs_per_s": 5000.0,
        "steady_msgs_per_s": 8200.0,
        "produce_msgs_per_s": 20000.0,
        "messages": 160000,
        "relays": 3,
        "partitions": 60,
        "replication_factor": 3,
        "min_insync_replicas": 2,
        "acks": "all",
        "linger_ms": 5,
        "message_bytes": {
            "request_key": 36.0,
            "request_value": 110.0,
            "response_key": 32.0,
            "response_value": 120.0,
        },
    },
    "throughput": {
        "operations_per_job": 10,
        "loads": [_load(500, 498.0, 80.0), _load(1000, 990.0, 120.0), _load(2000, 1600.0, 900.0)],
        "sustained": 1600.0,
    },
    "latency": {
        "capacity_jobs_per_s": 200.0,
        "probe": {**_load(300, 200.0, 2000.0), "operations_per_job": 1},
        "points": [
            {**_load(50, 50.0, 40.0), "fraction": 0.25},
            {**_load(100, 100.0, 55.0), "fraction": 0.5},
            {**_load(180, 170.0, 400.0), "fraction": 0.9},
        ],
    },
    "big_jobs": [
        {"operations": 1, "completed": True, "total_seconds": 0.05, "ops_per_s": 20.0},
        {
            "operations": 100_000,
            "completed": True,
            "post_seconds": 12.0,
            "computed_by_seconds": 60.0,
            "total_seconds": 76.9,
            "ops_per_s": 1300.0,
            "timeout_seconds": 300,
            "done_operations": 100_000,
        },
    ],
    "resources": {
        "processes": [
            {
                "name": "client-1",
                "pid": 11,
                "kind": "worker",
                "cpu_seconds": 120.0,
                "rss_mb": 150.0,
                "peak_rss_mb": 180.0,
            },
            {
                "name": "server-1",
                "pid": 12,
                "kind": "worker",
                "cpu_seconds": 90.0,
                "rss_mb": 90.0,
                "peak_rss_mb": 95.0,
            },
            {
                "name": "kafka-1",
                "pid": 13,
                "kind": "service",
                "cpu_seconds": 60.0,
                "rss_mb": 700.0,
                "peak_rss_mb": 720.0,
            },
        ]
    },
    "storage_limit": {
        "database": "bench_storage_0123abcd",
        "operations_per_job": 10,
        "model": "one job document embedding its operations and results",
        "levels": [
            {
                "concurrency": 4,
                "commands_per_job": 2,
                "jobs": 900,
                "jobs_per_s": 180.0,
                "ops_per_s": 1800.0,
                "lost_updates": 0,
                "job_ms": _latency(20.0, 30.0, 40.0),
            },
            {
                "concurrency": 16,
                "commands_per_job": 2,
                "jobs": 1500,
                "jobs_per_s": 300.0,
                "runs_jobs_per_s": [280.0, 320.0],
                "ops_per_s": 3000.0,
                "lost_updates": 0,
                "job_ms": _latency(50.0, 70.0, 90.0),
            },
        ],
        "best_concurrency": 16,
        "jobs_per_s": 300.0,
        "ops_per_s": 3000.0,
        "commands_per_job": 2,
        "per_job": {
            "mongo_commands_total{command=insert}": 1.0,
            "mongo_commands_total{command=update}": 1.0,
        },
        "three_commands": {
            "concurrency": 16,
            "commands_per_job": 3,
            "jobs": 1000,
            "jobs_per_s": 200.0,
            "ops_per_s": 2000.0,
            "lost_updates": 0,
            "job_ms": _latency(70.0, 90.0, 120.0),
        },
        "lost_updates": 0,
        "seconds_per_level": 5.0,
    },
    "phases": [
        {
            "name": "throughput 500 ops/s",
            "wall_seconds": 20.0,
            "cpu_seconds": {"client-1": 8.0, "kafka-1": 4.0},
            "cpu_percent": {"client-1": 40.0, "kafka-1": 20.0, "bench": 5.0},
            "operations_per_job": 10,
            "jobs": 100,
            "drained": True,
            "counters": {
                "client-1": {
                    _cmd("insert"): 100.0,
                    _cmd("update"): 150.0,
                    _cmd("find", origin="api-read"): 40.0,
                    _docs("insert"): 100.0,
                    _docs("update"): 150.0,
                },
                "client-2": {_cmd("update"): 30.0, _docs("update"): 30.0},
                "server-1": {"operations_evaluated_total{outcome=succeeded}": 1000.0},
            },
        },
        {
            # jobs that did not all complete: their commands may fall into the next phase
            "name": "throughput 125%",
            "operations_per_job": 10,
            "jobs": 100,
            "drained": False,
            "counters": {"client-1": {_cmd("insert"): 100.0, _cmd("update"): 900.0}},
        },
        {
            "name": "job of 100,000 operations",
            "operations_per_job": 100_000,
            "jobs": 1,
            "drained": True,
            "counters": {
                "client-1": {
                    _cmd("insert"): 2.0,
                    _cmd("update"): 600.0,
                    _docs("insert"): 200.0,
                    _docs("update"): 1000.0,
                },
                "client-3": {_cmd("find", origin="api-read"): 300.0},
            },
        },
        {
            "name": "prefilled: throughput 50%",
            "run": "prefilled",
            "operations_per_job": 10,
            "jobs": 100,
            "drained": True,
            "counters": {
                "client-1": {
                    _cmd("insert"): 100.0,
                    _cmd("update"): 190.0,
                    _cmd("find", origin="api-read"): 30.0,
                    _docs("insert"): 100.0,
                    _docs("update"): 190.0,
                }
            },
        },
    ],
    "listing": {
        "phase": "listing: first jobs page",
        "requests": 200,
        "size": 30,
        "latency_ms": _latency(4.0, 6.0, 8.0),
        "errors": 0,
        "total_reported": 2500,
        "items": 30,
    },
    "prefilled": {
        "prefill": {
            "database": "jobstream_bench",
            "collection": "jobs",
            "requested": 1_000_000,
            "inserted": 1_000_000,
            "already_present": 0,
            "stored": 1_000_000,
            "complete": True,
            "seconds": 130.0,
            "documents_per_s": 7692.3,
            "batch_size": 1000,
            "vacuumed": True,
            "vacuum_seconds": 20.0,
        },
        "throughput": {
            "operations_per_job": 10,
            "probe": _load(5000, 1500.0, 3000.0),
            "loads": [_load(750, 748.0, 90.0), _load(1500, 1520.0, 700.0)],
            "sustained": 1520.0,
        },
        "listing": {
            "phase": "prefilled: listing: first jobs page",
            "requests": 200,
            "size": 30,
            "latency_ms": _latency(9.0, 15.0, 21.0),
            "errors": 0,
            "total_reported": 1_002_500,
            "items": 30,
        },
    },
    "watchers": {
        "clients": 20,
        "operations_per_job": 10,
        "offered_ops_per_s": 2000.0,
        "offered_share": 1.25,
        "seconds": 20,
        "watched_operations": 10_000,
        "halves": [
            _half(0, 1560.0, reads=0.0),
            _half(20, 1580.0, reads=20.0),
        ],
        "ratio": 1580.0 / 1560.0,
    },
}


def test_targets_from_a_fixed_result() -> None:
    # Given a run that meets every target, when its targets are evaluated
    targets = report.evaluate_targets(RESULTS)

    # Then every one is met, each with the figure it was judged on
    assert [t["ok"] for t in targets] == [True] * 11
    measured = [t["measured"] for t in targets]
    assert "32.0 %" in measured[0]  # 1600 / 5000
    assert "53.3 %" in measured[1]  # 1600 / 3000
    assert "2.80 commands per job (2.80 writes) over 100 jobs" in measured[2]
    assert "0.0120" in measured[3]  # 1200 documents / 100,000 operations
    assert "p99 55 ms" in measured[4]  # the 50 % point
    assert "81 %" in measured[5]  # 1300 / 1600
    assert "95 %" in measured[6] and "1,000,000 documents" in measured[6]  # 1520 / 1600
    assert "p99 21.0 ms" in measured[7] and "8.0 ms" in measured[7]
    assert "20 jobs read (20 commands, origin `api-watch`) for 20 watches: 0 beyond" in measured[8]
    assert "1,580 vs 1,560 ops/s = 101.3 %" in measured[9]


def test_throughput_ratio_is_jobstream_over_raw() -> None:
    assert report.throughput_ratio(RESULTS) == pytest.approx(1600 / 5000)
    results = copy.deepcopy(RESULTS)
    del results["raw_limit"]
    assert report.throughput_ratio(results) is None


def test_small_jobs_are_measured_against_each_limit_and_the_lower_one() -> None:
    # Given a raw limit of 5,000 msg/s and a storage limit of 3,000 ops/s
    lim = report.limits(RESULTS)

    # Then the storage limit is the lower, and small jobs' share of it is theirs of storage
    assert lim["lower"] == "storage"
    assert lim["of_raw"] == pytest.approx(1600 / 5000)
    assert lim["of_storage"] == pytest.approx(1600 / 3000)
    assert lim["of_lower"] == lim["of_storage"]

    # When the storage limit did not run, the raw limit is the only (so the lower) one
    results = copy.deepcopy(RESULTS)
    del results["storage_limit"]
    lim = report.limits(results)
    assert (lim["lower"], lim["of_storage"]) == ("raw", None)
    assert lim["of_lower"] == pytest.approx(1600 / 5000)


def test_targets_not_met_and_not_measured() -> None:
    # Given a run that misses every target
    results = copy.deepcopy(RESULTS)
    results["raw_limit"]["msgs_per_s"] = 10_000.0  # 1600 is 16 %
    results["storage_limit"]["ops_per_s"] = 4000.0  # 1600 is 40 %
    results["phases"][0]["counters"]["client-2"][_cmd("update")] = 130.0  # 3.8 per job
    results["phases"][2]["counters"]["client-1"][_docs("update")] = 5000.0  # 0.052 per op
    results["latency"]["points"][1]["latency_ms"]["p99"] = 150.0
    results["big_jobs"][1].update(completed=False, done_operations=40_000)
    results["prefilled"]["throughput"]["sustained"] = 1400.0  # 87.5 % of 1600
    results["prefilled"]["listing"]["latency_ms"]["p99"] = 80.0
    results["resources"]["processes"][0]["peak_rss_mb"] = 300.0
    results["watchers"]["halves"][1] = _half(20, 1500.0, reads=23.0)  # 3 reads beyond
    results["watchers"]["ratio"] = 1500.0 / 1560.0

    # Then none is met
    assert [t["ok"] for t in report.evaluate_targets(results)] == [False] * 11

    # And without the figures, none is measured
    for key in ("latency", "big_jobs", "resources", "raw_limit", "storage_limit", "phases"):
        del results[key]
    del results["prefilled"]
    del results["watchers"]
    assert [t["ok"] for t in report.evaluate_targets(results)] == [None] * 11


def test_big_job_target_needs_throughput_within_a_fifth_of_small_jobs() -> None:
    results = copy.deepcopy(RESULTS)
    results["big_jobs"][1]["ops_per_s"] = 1250.0  # 78 % of 1600
    assert [t["ok"] for t in report.evaluate_targets(results)][5] is False


def test_prefilled_target_needs_a_million_documents_stored() -> None:
    # Given a prefill stopped by its time budget before a million documents
    results = copy.deepcopy(RESULTS)
    results["prefilled"]["prefill"].update(stored=600_000, complete=False)

    # Then the prefilled throughput target is not met, though the throughput held
    target = report.evaluate_targets(results)[6]
    assert target["ok"] is False
    assert "600,000 documents" in target["measured"]


# --- database work per job -------------------------------------------------------------------


def test_parse_key_splits_name_and_labels() -> None:
    assert report.parse_key(_cmd("findAndModify", origin="api-read")) == (
        "mongo_commands_total",
        {"command": "findAndModify", "origin": "api-read", "outcome": "succeeded"},
    )
    assert report.parse_key("jobs_created_total") == ("jobs_created_total", {})


def test_db_costs_per_job_size_leave_out_api_reads_and_unfinished_phases() -> None:
    # Given phases of 10-op jobs (one whose jobs did not all complete) and a 100,000-op job
    rows = {r["operations_per_job"]: r for r in report.db_costs(RESULTS)}

    # Then 10-op jobs cost (100 inserts + 180 updates) / 100 jobs, the API's reads apart
    small = rows[10]
    assert small["jobs"] == 100 and small["phases"] == 1
    assert small["commands_per_job"] == pytest.approx(2.8)
    assert small["writes_per_job"] == pytest.approx(2.8)
    assert small["api_reads_per_job"] == pytest.approx(0.4)
    assert small["by_command"] == {"update": pytest.approx(1.8), "insert": pytest.approx(1.0)}
    assert small["documents_per_operation"] == pytest.approx(0.28)
    assert small["api_reads_labelled"] is True

    # And the big job wrote 1,200 documents for 100,000 operations
    assert rows[100_000]["commands_per_job"] == 602
    assert rows[100_000]["documents_per_operation"] == pytest.approx(0.012)

    # And the prefilled run is counted apart
    [prefilled] = report.db_costs(RESULTS, run="prefilled")
    assert prefilled["commands_per_job"] == pytest.approx(2.9)


def test_db_costs_say_when_api_reads_are_not_labelled() -> None:
    # Given workers whose API reads carry no origin (every command is `worker`)
    results = copy.deepcopy(RESULTS)
    counters = results["phases"][0]["counters"]["client-1"]
    counters[_cmd("find")] = counters.pop(_cmd("find", origin="api-read"))

    # Then the reads count in the job's cost, and the report says so
    small = report.db_cost(results, 10)
    assert small is not None
    assert small["commands_per_job"] == pytest.approx(3.2)
    assert small["writes_per_job"] == pytest.approx(2.8)
    assert small["api_reads_labelled"] is False
    assert "API reads included" in report.evaluate_targets(results)[2]["measured"]


def test_db_costs_are_absent_without_mongo_counters() -> None:
    results = copy.deepcopy(RESULTS)
    for phase in results["phases"]:
        phase["counters"] = {"server-1": {"operations_evaluated_total{outcome=ok}": 5.0}}
    assert report.db_costs(results) == []
    assert report.evaluate_targets(results)[2]["ok"] is None
    assert "not measured" in report.render_markdown(results).split("## Database work per job")[1]


def test_observations_name_the_lower_limit_and_a_jobs_cost() -> None:
    text = " ".join(report.observations(copy.deepcopy(RESULTS)))
    assert "the storage limit is the lower (1.7 times below the raw Kafka limit)" in text
    assert "53.3 %" in text
    assert "2.80 database commands (2.80 writes)" in text
    assert "bare client needs 2 commands" in text


def test_render_markdown_has_every_section_and_the_figures() -> None:
    text = report.render_markdown(copy.deepcopy(RESULTS))
    for heading in (
        "## Machine and run",
        "## Headline",
        "## Targets",
        "## Throughput vs offered load",
        "## The limit: raw two-hop pipeline",
        "## Latency of single-operation jobs",
        "## Big jobs",
        "## CPU and memory per process",
        "## Where the CPU went, per phase",
        "## Small jobs against both limits",
        "## The storage limit: a bare PyMongo client on the same database",
        "## Database work per job",
        "## Listing, and a prefilled database",
        "## Watchers during load",
    ):
        assert heading in text
    assert "| 20 | 2,000 | 1,580 | 1,580 | 4,000/4,000 | 900 | 12.5 s | 10 (completed 10) |" in text
    assert "| small jobs with 20 watchers / without (same run) | 101.3 % |" in text
    assert "`abc1234`" in text
    assert "| 2,000 | 2,000 | 1,600 |" in text  # offered, submitted, completed
    assert "5,000 msg/s" in text
    assert "32.0 %" in text
    assert "| storage: bare PyMongo client | 3,000 ops/s | 53.3 % |" in text
    assert "| 16 | 2 | 1,500 | 300 | 280 / 320 | 3,000 | 50.0 | 90.0 |" in text  # the best
    assert "| 10 | 100 | 2.80 | 2.80 | 0.40 | 2.80 | 0.2800 |" in text
    assert "| small jobs sustained | 1,600 ops/s | 1,520 ops/s | 95 % |" in text
    assert "| prefilled | 200 | 1,002,500 | 9.0 | 15.0 | 21.0 | 21.0 | 0 |" in text
    assert "**met**" in text and "**not met**" not in text
    assert "_Charts not drawn: matplotlib is not installed._" in text
    assert "| client-1 | 11 | 120.0 |" in text
    # every table row has as many cells as its header
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            assert len({row.count(" | ") for row in rows if "---" not in row}) == 1, block


def test_watchers_database_reads_are_their_labelled_commands_and_job_reads() -> None:
    # Given a phase's counter deltas: watchers' reads on two workers, and other API reads
    counters = {
        "client-1": {
            _cmd("find", origin="api-watch"): 7.0,
            _cmd("find", origin="api-read"): 40.0,
            "job_watcher_reads_total{kind=stream}": 5.0,
            "job_watcher_reads_total{kind=wait}": 2.0,
        },
        "client-2": {
            _cmd("find", origin="api-watch"): 3.0,
            "job_watcher_reads_total{kind=wait}": 3,
        },
        "server-1": {"operations_evaluated_total": 100.0},
    }
    # Then only the watchers' are counted
    assert watcher_db_reads(counters) == {"commands": 10.0, "job_reads": 10.0}
    assert watcher_db_reads({}) == {"commands": 0.0, "job_reads": 0.0}


def test_watchers_reads_are_left_out_of_a_jobs_database_cost() -> None:
    phase = {"counters": {"client-1": {_cmd("find", origin="api-watch"): 9.0, _cmd("insert"): 2}}}
    work = report.phase_db_work(phase)
    assert work is not None
    assert (work["commands"], work["api_reads"]) == (2.0, 9.0)


def test_render_markdown_of_an_empty_result_says_what_did_not_run() -> None:
    text = report.render_markdown({"meta": {"mode": "quick"}})
    assert "_not run_" in text
    assert "--quick" in text
    assert "not measured" in text


def test_format_helpers() -> None:
    assert report.fmt(None) == "\u2013"
    assert report.fmt(1234567) == "1,234,567"
    assert report.fmt(1234.567, 2) == "1,234.57"
    assert report.fmt(True) == "yes"
    assert report.pct(0.256, 1) == "25.6 %"
    assert report.table(("a", "b"), [(1, "x")]) == "| a | b |\n| --- | --- |\n| 1 | x |"


def test_write_produces_the_report_and_json(tmp_path: Path) -> None:
    results = copy.deepcopy(RESULTS)
    paths = report.write(results, tmp_path)
    assert tmp_path / "report.md" in paths and tmp_path / "results.json" in paths
    assert report.load(tmp_path / "results.json")["throughput"]["sustained"] == 1600.0
    assert "## Targets" in (tmp_path / "report.md").read_text()


# --- the storage limit's and the prefill's documents -----------------------------------------


def test_results_update_sets_each_result_on_its_position() -> None:
    # Given results of operations 1 and 3 of a job
    at = datetime(2026, 1, 2, tzinfo=UTC)

    # When the update that stores them without completing the job is built
    update = storage_limit.results_update([(1, "3"), (3, "7")], 2, 0, at, complete=False)

    # Then each result lands on its operation's position (index 1 at 0), with the counters
    fields = update["$set"]
    assert fields["operations.0.result"] == "3" and fields["operations.2.result"] == "7"
    assert fields["operations.0.status"] == "succeeded"
    assert "operations.1.result" not in fields
    assert (fields["succeeded"], fields["failed"]) == (2, 0)
    assert "status" not in fields

    # And folded with completion, the same command completes the job
    folded = storage_limit.results_update([(1, "3")], 1, 0, at, complete=True)["$set"]
    assert (folded["status"], folded["finished_at"]) == ("completed", at)


def test_a_prefilled_job_is_a_completed_job_in_jobstreams_own_model() -> None:
    created = datetime(2026, 1, 2, tzinfo=UTC)
    doc = prefill.completed_job(7, created)
    assert doc["status"] == "completed" and doc["_id"] == prefill.prefill_id(7, created)
    assert (doc["total"], doc["succeeded"], doc["failed"], doc["ok"]) == (10, 10, 0, 10)
    assert len(doc["ops"]) == len(doc["res"]) == 10
    assert {r["status"] for r in doc["res"]} == {"succeeded"}
    assert doc["finished_at"] > doc["created_at"] and doc["slot"] == slot_of(created)


def test_prefill_times_are_oldest_first_within_the_hour_before_the_end() -> None:
    end = datetime(2026, 1, 2, 12, tzinfo=UTC)
    times = list(prefill.creation_times(1000, end))
    assert len(times) == 1000
    assert times == sorted(times)
    assert end - timedelta(hours=1) <= times[0] and times[-1] < end
    assert all(t.microsecond % 1000 == 0 for t in times)  # what BSON stores


def test_prefill_batches_hold_every_document_once() -> None:
    # Given 2,500 documents in batches of 1,000
    end = datetime(2026, 1, 2, tzinfo=UTC)
    batches = list(prefill.batches(2500, prefill.completed_job, 1000, end))

    # Then there are three batches, and every id once
    assert [len(b) for b in batches] == [1000, 1000, 500]
    ids = [doc["_id"] for batch in batches for doc in batch]
    assert len(set(ids)) == 2500


def test_prefill_ids_are_time_ordered_like_real_ones_and_never_a_uuid4() -> None:
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    ids = [prefill.prefill_id(n, at + timedelta(milliseconds=n)) for n in (0, 1, 999_999)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert all(i[12] == "7" for i in ids)  # a UUIDv7's version digit, not a uuid4's
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert job_created_at(ids[1]) == at + timedelta(milliseconds=1)


def test_a_phase_is_tagged_with_its_accepted_jobs_and_their_size() -> None:
    accepted = _sub(0, 10, 1.0, 0.01, 0.05)
    refused = Submission(1, 10, scheduled=1.0, error="HTTP 503")
    record: dict[str, Any] = {"name": "p"}
    tag(record, [accepted, refused], 10, drained=True)
    assert record == {"name": "p", "operations_per_job": 10, "jobs": 1, "drained": True}


class FakeJobs:
    """An in-memory collection that refuses ids it already holds, as a unique `_id` does."""

    def __init__(self, held: set[str] | None = None) -> None:
        self.ids: set[str] = set(held or ())

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool = True) -> Any:
        new = [d["_id"] for d in docs if d["_id"] not in self.ids]
        refused = len(docs) - len(new)
        self.ids.update(new)
        if refused:
            details = {"writeErrors": [{"code": 11000}] * refused, "nInserted": len(new)}
            raise BulkWriteError(details)
        return SimpleNamespace(inserted_ids=new)


class FakeClient:
    def __init__(self, jobs: FakeJobs) -> None:
        self.jobs = jobs
        self.closed = False

    def __getitem__(self, name: str) -> Any:
        return {"jobs": self.jobs}

    async def close(self) -> None:
        self.closed = True


async def test_prefill_stores_every_document_and_counts_those_already_there() -> None:
    # Given a collection that already holds the first 300 synthetic jobs of a prefill
    end = datetime(2026, 1, 2, tzinfo=UTC)
    times = list(prefill.creation_times(2500, end))
    jobs = FakeJobs({prefill.prefill_id(n, times[n]) for n in range(300)})
    client = FakeClient(jobs)

    # When the same 2,500 are prefilled in batches of 1,000
    result = await prefill.prefill(
        "mongodb://x", "db", 2500, batch_size=1000, connect=lambda *a, **k: client, end=end
    )

    # Then all 2,500 are there, 2,200 of them new, and the client is closed
    assert len(jobs.ids) == 2500
    assert (result["inserted"], result["already_present"], result["stored"]) == (2200, 300, 2500)
    assert result["complete"] is True and result["stopped"] is None
    assert client.closed


async def test_prefill_stops_when_its_checkpoint_says_why() -> None:
    # Given a checkpoint at 2,000 documents that finds the listing too slow
    jobs = FakeJobs()
    seen: list[int] = []

    async def checkpoint(stored: int) -> str | None:
        seen.append(stored)
        return "listing too slow"

    # When 10,000 documents are asked for
    result = await prefill.prefill(
        "mongodb://x",
        "db",
        10_000,
        batch_size=500,
        checkpoint=checkpoint,
        checkpoint_at=2000,
        connect=lambda *a, **k: FakeClient(jobs),
    )

    # Then the checkpoint ran once, with at least 2,000 stored, and the prefill stopped there
    assert len(seen) == 1 and seen[0] >= 2000
    assert result["stored"] == len(jobs.ids) == seen[0] < 10_000
    assert (result["complete"], result["stopped"]) == (False, "listing too slow")


def test_a_skipped_prefilled_run_fails_both_targets_and_says_why() -> None:
    # Given a prefilled run stopped at 100,000 documents by a slow listing
    results = copy.deepcopy(RESULTS)
    reason = "the jobs list took page 1 of 30: 1,200 ms with 100,000 documents stored"
    results["prefilled"] = {
        "prefill": {"stored": 100_000, "complete": False, "stopped": reason},
        "probe": {"documents": 100_000, "first_page_ms": [1200.0], "pages_of_100_ms": []},
        "skipped": reason,
    }

    # Then both prefilled targets are not met, with the reason and the probe's figure
    prefilled, page = report.evaluate_targets(results)[6:8]
    assert prefilled["ok"] is False and reason in prefilled["measured"]
    assert page["ok"] is False and "1,200 ms once, with 100,000 documents" in page["measured"]
    assert "The prefilled run did not happen" in report.render_markdown(results)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"items": []}, "http://h:1/api/jobs?page=3&size=100"),
        ({"next": "0" * 31 + "a"}, f"http://h:1/api/jobs?cursor={'0' * 31}a&size=100"),
        ({"next": "/api/jobs?size=100&after=abc"}, "http://h:1/api/jobs?size=100&after=abc"),
        ({"next": "http://other:2/api/jobs?after=x"}, "http://other:2/api/jobs?after=x"),
        ({"next": None}, "http://h:1/api/jobs?page=3&size=100"),
    ],
)
def test_the_next_page_follows_the_listings_own_link(body: dict[str, Any], expected: str) -> None:
    assert next_page_url("http://h:1", body, 2, 100) == expected


# --- the watchers section: runs in alternating pairs, judged against their own noise -------------


def watch_run(completed: float | None, watchers: bool) -> dict[str, Any]:
    return {"watchers": watchers, "load": {"completed_ops_per_s": completed}}


def test_the_watchers_ratio_is_the_sum_of_with_over_without_with_pairs_in_their_order() -> None:
    section = {
        "halves": [
            watch_run(200, False),
            watch_run(210, True),
            watch_run(300, True),
            watch_run(250, False),
        ]
    }
    comparison = report.watcher_comparison(section)
    assert comparison is not None
    assert comparison["ratio"] == pytest.approx(510 / 450)
    assert [(p["runs"], p["first"]) for p in comparison["pairs"]] == [
        ([1, 2], "without"),
        ([3, 4], "with"),
    ]
    assert comparison["pairs"][0]["ratio"] == pytest.approx(210 / 200)
    assert comparison["pairs"][1]["ratio"] == pytest.approx(300 / 250)
    assert comparison["spread"]["without"] == pytest.approx(50 / 225)
    assert comparison["spread"]["with"] == pytest.approx(90 / 255)
    assert comparison["noise"] == pytest.approx(90 / 255)
    assert comparison["within_noise"] is True  # a 13 % gap inside a 35 % spread


def test_no_watchers_ratio_when_a_run_has_no_figure() -> None:
    section = {"halves": [watch_run(200, False), watch_run(None, True)]}
    assert report.watcher_comparison(section) is None
    assert report.watcher_comparison({"halves": [watch_run(200, False)]}) is None


def test_a_single_pair_has_no_measure_of_the_noise() -> None:
    comparison = report.watcher_comparison({"halves": [watch_run(100, False), watch_run(90, True)]})
    assert comparison is not None
    assert comparison["ratio"] == pytest.approx(0.9)
    assert comparison["noise"] is None and comparison["within_noise"] is None


def neighbour_run(beside: bool, latencies_ms: list[float]) -> dict[str, Any]:
    """One run of the neighbours section: single-op jobs with these latencies."""
    subs = []
    for i, ms in enumerate(latencies_ms):
        sub = Submission(i, 1, scheduled=1000.0 + i)
        sub.job_id, sub.answered, sub.finished_at = (
            f"j{i}",
            sub.scheduled + 0.01,
            sub.scheduled + ms / 1000,
        )
        subs.append(sub)
    run = summarize_load(subs, 5.0, 1) | {"beside_big_job": beside, "drained": True}
    if beside:
        run["big_job"] = {"operations": 100_000, "total_seconds": 12.5}
    return run


def test_the_neighbours_section_shows_small_jobs_alone_and_beside_the_big_job() -> None:
    # Given small jobs that took 50-60 ms alone and up to 900 ms beside a big job
    results = {
        "neighbours": {
            "jobs_per_second": 5,
            "seconds": 20,
            "big_operations": 100_000,
            "runs": [
                neighbour_run(False, [50.0] * 99 + [60.0]),
                neighbour_run(True, [70.0] * 99 + [900.0]),
            ],
        }
    }

    # When the report is rendered
    markdown = report.render_markdown(results)

    # Then the headline gives the p99 beside the big job, with the p99 alone beside it
    alone, beside = report.neighbour_runs(results)  # type: ignore[misc]
    assert f"{beside['latency_ms']['p99']:.0f} ms ({alone['latency_ms']['p99']:.0f} ms)" in markdown
    assert beside["latency_ms"]["max"] == pytest.approx(900.0)
    # ... and the section has one row per run, the big job's time on its own
    section = markdown.split("## Small jobs beside a big one")[1].split("\n## ")[0]
    assert "| alone | 100/100 |" in section
    assert "| beside the big job | 100/100 |" in section and "| 12.5 |" in section
