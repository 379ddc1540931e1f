"""The benchmark's pure parts: percentiles, ratios, load summaries, /proc and py-spy parsing, and
the report rendered from a fixed results dict. No services, no timing assertions."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level package beside jobstream/, not installed
    sys.path.insert(0, str(ROOT))

from bench import pgstat, procstat, report  # noqa: E402
from bench.lag import summarize_lag  # noqa: E402
from bench.load import Submission, body_for, summarize_load  # noqa: E402
from bench.profile import package_of, top_frames  # noqa: E402
from bench.raw_limit import message_sizes, steady_slope  # noqa: E402
from bench.stack import counter_delta, parse_counters, total  # noqa: E402
from bench.stats import percentile, rate, ratio, steady_rate, summarize  # noqa: E402

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
        "msgs_per_s": 6000.0,
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
            {**_load(100, 100.0, 85.0), "fraction": 0.5},
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
    "phases": [
        {
            "name": "throughput 500 ops/s",
            "wall_seconds": 20.0,
            "cpu_seconds": {"client-1": 8.0, "kafka-1": 4.0},
            "cpu_percent": {"client-1": 40.0, "kafka-1": 20.0, "bench": 5.0},
        }
    ],
}


def _targets(results: dict[str, Any]) -> dict[str, bool | None]:
    return {t["target"].split(" ")[0]: t["ok"] for t in report.evaluate_targets(results)}


def test_targets_from_a_fixed_result() -> None:
    targets = report.evaluate_targets(RESULTS)
    assert [t["ok"] for t in targets] == [True, True, True, True]
    assert "26.7 %" in targets[0]["measured"]  # 1600 / 6000
    assert "p99 85 ms" in targets[1]["measured"]  # the 50 % point
    assert "81 %" in targets[2]["measured"]  # 1300 / 1600


def test_throughput_ratio_is_jobstream_over_raw() -> None:
    assert report.throughput_ratio(RESULTS) == pytest.approx(1600 / 6000)
    results = copy.deepcopy(RESULTS)
    del results["raw_limit"]
    assert report.throughput_ratio(results) is None


def test_targets_not_met_and_not_measured() -> None:
    results = copy.deepcopy(RESULTS)
    results["raw_limit"]["msgs_per_s"] = 10_000.0  # 1600 is 16 %
    results["latency"]["points"][1]["latency_ms"]["p99"] = 150.0
    results["big_jobs"][1].update(completed=False, done_operations=40_000)
    results["resources"]["processes"][0]["peak_rss_mb"] = 300.0
    assert [t["ok"] for t in report.evaluate_targets(results)] == [False, False, False, False]
    del results["latency"], results["big_jobs"], results["resources"], results["raw_limit"]
    assert [t["ok"] for t in report.evaluate_targets(results)] == [None] * 4


def test_big_job_target_needs_throughput_within_a_fifth_of_small_jobs() -> None:
    results = copy.deepcopy(RESULTS)
    results["big_jobs"][1]["ops_per_s"] = 1250.0  # 78 % of 1600
    assert [t["ok"] for t in report.evaluate_targets(results)][2] is False


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
    ):
        assert heading in text
    assert "`abc1234`" in text
    assert "| 2,000 | 2,000 | 1,600 |" in text  # offered, submitted, completed
    assert "6,000 msg/s" in text
    assert "26.7 %" in text
    assert "**met**" in text and "**not met**" not in text
    assert "_Charts not drawn: matplotlib is not installed._" in text
    assert "| client-1 | 11 | 120.0 |" in text
    # every table row has as many cells as its header
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            assert len({row.count(" | ") for row in rows if "---" not in row}) == 1, block


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
