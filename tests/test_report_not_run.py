"""A report that survives a failed job: missing tables listed with their log, the last good
table kept, `forgebench report` and the gate reading the same record (forgebench.report.not_run).

The input table is real (a loopback echo-latency run of a fraction of a second); the
missing one is missing for real (never written)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from forgebench import gate
from forgebench.report import build_report
from forgebench.report import not_run as nr
from forgebench.runner import run_benchmark

STATS = {"confidence": 0.95, "bootstrap_resamples": 100, "practical_threshold": 0.05}
ECHO = {
    "scenarios": ["persistent"],
    "payload_sizes": [64],
    "concurrency": [2],
    "warmup_requests": 5,
    "min_duration_s": 0.05,
    "min_requests": 50,
    "max_requests": 200,
    "timeout_s": 2.0,
}
MISSING = "results/raw/harness/sampler_overhead.parquet"


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """A working directory holding results/raw/network/echo_latency.parquet, run for real."""
    monkeypatch.chdir(tmp_path)
    config = {"seed": 3, "sampler": {"interval_s": 0.05},
              "suites": {"network": {"benchmarks": {"echo_latency": ECHO}}}}  # fmt: skip
    run_benchmark(
        "network",
        "echo_latency",
        config,
        measurements_path="results/raw/network/echo_latency.parquet",
        resources_path="results/raw/network/echo_latency.resources.parquet",
    )
    return Path("results")


def _build(results: Path, not_run: list[dict]) -> dict:
    return build_report(
        ["results/raw/network/echo_latency.parquet"],
        **nr.report_paths(results, history=False),
        statistics=STATS,
        comparisons=[],
        targets=[],
        seed=3,
        not_run=not_run,
    )


def test_the_last_good_table_survives_its_deletion(results):
    table = results / "raw" / "network" / "echo_latency.parquet"
    before = table.read_bytes()
    (kept,) = nr.keep_last_good([str(table)], results)
    assert kept == results / "archive" / "raw" / "network" / "echo_latency.parquet"
    assert nr.resources_of(kept).is_file()
    table.unlink()  # what Snakemake does before it reruns the job, and after it fails
    assert kept.read_bytes() == before
    # A new table replaces the archived copy; the old link is not written through.
    table.write_bytes(b"new")
    nr.keep_last_good([str(table)], results)
    assert kept.read_bytes() == b"new"
    assert not any(p.name.startswith(".") for p in kept.parent.iterdir())


def test_a_report_names_the_missing_table_its_status_and_log(results):
    nr.keep_last_good([MISSING], results)  # nothing to keep: it never existed
    missing = [nr.entry(MISSING, nr.JOB_FAILED, "logs/benchmark/harness/x.log", results)]
    assert missing[0]["suite"] == "harness" and missing[0]["benchmark"] == "sampler_overhead"
    assert missing[0]["last_good"] is None
    doc = _build(results, missing)
    assert doc["not_run"] == missing
    html = (results / "report" / "index.html").read_text()
    assert 'id="not-run"' in html and "not run: job failed" in html
    assert "logs/benchmark/harness/x.log" in html
    assert 'id="suite-harness"' in html  # a suite with no table at all still gets its block
    md = (results / "report" / "summary.md").read_text()
    assert "## Not run: 1 table missing" in md and "`raw/harness/sampler_overhead.parquet`" in md
    recorded = json.loads((results / "summary" / nr.NOT_RUN_FILE).read_text())
    assert recorded == missing
    # The gate fails on it and names the table and the log.
    result = gate.evaluate(results)
    assert not result.passed
    (item,) = [i for i in result.failing if i.source == "job"]
    assert item.name == "raw/harness/sampler_overhead.parquet"
    assert "logs/benchmark/harness/x.log" in item.detail
    # A complete build clears the record: an old failure never lingers.
    _build(results, [])
    assert json.loads((results / "summary" / nr.NOT_RUN_FILE).read_text()) == []
    assert "not run: job failed" not in (results / "report" / "index.html").read_text()
    assert gate.evaluate(results).passed


def test_last_good_table_is_linked_and_marked_stale(results):
    table = results / "raw" / "network" / "echo_latency.parquet"
    nr.keep_last_good([str(table)], results)
    gone = nr.entry(table, nr.JOB_FAILED, "logs/benchmark/network/echo_latency.log", results)
    assert gone["last_good"] == "archive/raw/network/echo_latency.parquet"
    other = results / "raw" / "network" / "other.parquet"  # so the report has a table
    os.link(table, other)
    build_report(
        [str(other)],
        **nr.report_paths(results, history=False),
        statistics=STATS, comparisons=[], targets=[], seed=3, not_run=[gone],
    )  # fmt: skip
    html = (results / "report" / "index.html").read_text()
    assert 'href="../archive/raw/network/echo_latency.parquet"' in html
    assert "stale, not used" in html


def test_forgebench_report_keeps_the_recorded_reason_and_sees_a_rerun(results):
    expected = ["results/raw/network/echo_latency.parquet", MISSING]
    present, missing = nr.split_present(expected, results)
    assert present == [Path(expected[0])]
    assert missing[0]["status"] == nr.NO_TABLE  # nothing recorded: the CLI cannot know why
    recorded = nr.entry(MISSING, nr.UPSTREAM_FAILED, None, results)
    nr.write_not_run(results / "summary" / nr.NOT_RUN_FILE, [recorded])
    _, missing = nr.split_present(expected, results)
    assert missing == [recorded]
    # A table the workflow recorded as not run but that exists, older than the record,
    # is outdated (its job never started); once rewritten it counts again.
    stale = nr.entry(expected[0], nr.UPSTREAM_FAILED, None, results)
    nr.write_not_run(results / "summary" / nr.NOT_RUN_FILE, [stale, recorded])
    record_time = (results / "summary" / nr.NOT_RUN_FILE).stat().st_mtime
    os.utime(expected[0], (record_time - 10, record_time - 10))
    present, missing = nr.split_present(expected, results)
    assert present == [] and [m["table"] for m in missing] == [stale["table"], recorded["table"]]
    os.utime(expected[0], (record_time + 10, record_time + 10))
    present, _ = nr.split_present(expected, results)
    assert present == [Path(expected[0])]
