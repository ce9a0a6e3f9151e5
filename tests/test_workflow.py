"""End-to-end runs of the Snakemake workflow on the tiny config, in a temporary directory."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from forgebench import record

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"

# The tiny run (every stage, models included) takes minutes: beyond the default timeout.
pytestmark = [pytest.mark.workflow, pytest.mark.timeout(1800)]


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("tiny")
    proc = snakemake("--cores", "2", "--directory", str(workdir), "--configfile", str(TINY))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


def test_raw_tables_follow_the_record(tiny_run):
    raw = tiny_run / "results" / "raw"
    echo = record.read_measurements(raw / "network" / "echo_latency.parquet")
    assert list(echo.columns) == list(record.COLUMNS)
    rtt = echo[(echo["metric"] == "rtt") & ~echo["warmup"]]
    cases = set(rtt["case"])
    assert {"persistent_64B", "persistent_4096B", "connect_per_request_64B"} <= cases
    assert any(c.startswith("concurrent_2x") for c in cases)
    assert (rtt.groupby("case").size() >= 100).all()
    assert echo["warmup"].any()
    prov = record.read_provenance(raw / "network" / "echo_latency.parquet")
    assert prov["benchmark"]["name"] == "echo_latency"
    assert prov["seed"] == 1
    assert "git_commit" in prov
    resources = record.read_resources(raw / "network" / "echo_latency.resources.parquet")
    assert {"cpu_percent", "rss_bytes"} <= set(resources["metric"])
    job = echo[echo["case"] == "job"]
    assert set(job["metric"]) >= {"peak_rss", "cpu_percent_mean"}


def test_summary_and_report(tiny_run):
    results = tiny_run / "results"
    summary = pd.read_parquet(results / "summary" / "summary.parquet")
    row = summary[(summary["case"] == "persistent_64B") & (summary["metric"] == "rtt")].iloc[0]
    assert row["n_ok"] >= 100
    assert 0 < row["p50"] < 1
    assert row["ci_low"] <= row["median"] <= row["ci_high"]
    verdicts = pd.read_parquet(results / "summary" / "verdicts.parquet")
    assert set(verdicts["name"]) == {
        "sampler overhead",
        "sampler overhead under 1%",
        "persistent 64 B p50 under 1 s",
        "sqlite JOIN vs N+1",
        "JOIN at least 80% faster than N+1 (SQLite)",
        "grokfast steps to generalise",
        "Grokfast: at least 60% fewer steps to generalise",
    }
    grok = verdicts.set_index("name").loc["grokfast steps to generalise"]
    assert grok["method"] == "kaplan-meier"
    assert verdicts.set_index("name").loc["persistent 64 B p50 under 1 s", "verdict"] == "met"
    html = (results / "report" / "index.html").read_text()
    plots = sorted((results / "report" / "plots").glob("*.png"))
    assert {p.stem for p in plots} >= {
        "cdf_network_echo_latency_persistent",
        "cdf_network_echo_latency_connect_per_request",
        "cdf_network_echo_latency_concurrent",
    }
    for plot in plots:
        assert f'src="plots/{plot.name}"' in html
        assert plot.read_bytes().startswith(b"\x89PNG")
    assert "persistent_64B" in html
    for name in ("summary.md", "summary.json"):
        assert (results / "report" / name).stat().st_size > 100


def test_rerun_is_a_fast_no_op(tiny_run):
    """Nothing to do, in well under 5 s: judged on the process's CPU time, which other
    load on a shared machine does not inflate (its wall time is logged beside it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = snakemake("--cores", "2", "--directory", str(tiny_run), "--configfile", str(TINY))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr
    print(f"up-to-date rerun: {wall:.2f} s wall, {cpu:.2f} s CPU")
    assert cpu < 5, f"up-to-date rerun used {cpu:.1f} s of CPU ({wall:.1f} s wall)"


def test_report_regenerates_identically_from_stored_results(tiny_run):
    """`forgebench report` rebuilds from raw Parquet alone, with identical tables."""
    summary = tiny_run / "results" / "summary" / "summary.parquet"
    before = summary.read_bytes()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "forgebench.cli",
            "report",
            "--config",
            str(TINY),
            "--results",
            str(tiny_run / "results"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert summary.read_bytes() == before


def test_snakemake_report(tiny_run):
    proc = snakemake(
        "--cores",
        "1",
        "--directory",
        str(tiny_run),
        "--configfile",
        str(TINY),
        "--report",
        str(tiny_run / "workflow.html"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tiny_run / "workflow.html").stat().st_size > 10_000


def test_lint_and_dry_run_of_the_default_config(tmp_path):
    lint = snakemake("--lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "good condition" in lint.stdout + lint.stderr
    # In an empty directory, so results of an earlier local run cannot hide the jobs.
    default = str(REPO / "config" / "config.yaml")
    dry = snakemake("-n", "--cores", "2", "--directory", str(tmp_path), "--configfile", default)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "rule benchmark" in dry.stdout
    for line in ("threads:", "mem_mb=", "runtime="):
        assert line in dry.stdout
    counts = json.dumps(dry.stdout.count("rule benchmark"))
    assert int(counts) >= 2


def _gate(results: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "forgebench.cli", "gate", "--results", str(results), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "forgebench.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _overlay(path: Path, doc: dict) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


ECHO = "results/raw/network/echo_latency.parquet"


@pytest.mark.slow  # three workflow runs, each ending in a report: several minutes
def test_gate_catches_a_planted_regression_against_an_imported_baseline(tiny_run, tmp_path):
    """A CI job's view: the baseline is a run exported elsewhere and imported by path; a
    rerun with a regression planted in the echo server fails the gate and names it in
    under 40 lines, and the same rerun without the plant passes.

    The baseline is a run made with the same statistics overlay as the CI runs, so the
    runs differ in the echo benchmark alone (rerun by --forcerun in both): every other
    table is the baseline's own, and run-to-run noise elsewhere cannot read as a change."""
    import shutil

    work = tmp_path / "ci"
    shutil.copytree(tiny_run, work, symlinks=True)
    results = work / "results"
    # Two runs on a shared machine differ by more than 5% by chance; the plant is 40x.
    thresholds = {"network/echo_latency/rtt": 0.5, "network/echo_latency/throughput": 0.5}
    statistics = {"statistics": {"metric_thresholds": thresholds}}

    def run(overlay: dict, name: str, *extra: str) -> subprocess.CompletedProcess:
        proc = snakemake(
            "--cores", "2", "--directory", str(work), *extra,
            "--configfile", str(TINY), _overlay(tmp_path / f"{name}.yaml", overlay),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    run(statistics, "baseline")  # reruns the jobs whose params hold `statistics`
    export = _cli("history", "--results", str(results), "export", "latest",
                  "--to", str(tmp_path / "baseline"))  # fmt: skip
    assert export.returncode == 0, export.stderr
    archive = Path(export.stdout.strip())
    shutil.rmtree(results / "history")  # a fresh clone has no stored runs

    def ci_run(planted: float) -> subprocess.CompletedProcess:
        overlay = {
            **statistics,
            "history": {"baseline": str(archive)},
            "testing": {"planted_delay_s": {"network/echo_latency": planted}},
        }
        return run(overlay, f"ci-{planted}", f"--forcerun={ECHO}")

    planted = ci_run(0.002)
    assert "GATE FAILED" in planted.stdout  # the workflow's own closing summary
    gate = _gate(results, "--fail-on-noisy", "--junit", str(tmp_path / "gate.xml"))
    assert gate.returncode == 1, gate.stdout + gate.stderr
    lines = gate.stdout.splitlines()
    assert len(lines) < 40
    assert any("network/echo_latency" in line and "regression" in line for line in lines)
    assert (tmp_path / "gate.xml").is_file()

    clean = ci_run(0.0)
    assert "GATE PASSED" in clean.stdout, clean.stdout[-3000:]
    gate = _gate(results)
    assert gate.returncode == 0, gate.stdout


@pytest.mark.slow  # two workflow runs and a rebuilt report: minutes
def test_a_failed_job_still_writes_a_report_that_names_it(tiny_run, tmp_path):
    """One benchmark fails on purpose (config testing.fail_benchmarks): Snakemake exits
    non-zero and deletes its table, yet the run writes a report of every other table that
    names the missing one, its status and log; the earlier table is intact under
    results/archive/; `forgebench report` rebuilds the same pages; the gate and watch name
    the job; a clean rerun clears it all."""
    import shutil

    work = tmp_path / "failing"
    shutil.copytree(tiny_run, work, symlinks=True)
    results = work / "results"
    table = work / ECHO
    archived = results / "archive" / "raw" / "network" / "echo_latency.parquet"
    before = table.read_bytes()
    assert archived.read_bytes() == before  # the first run's report kept the last good table
    runs_before = len(list((results / "history").glob("run_id=*")))
    fail = {"testing": {"fail_benchmarks": ["network/echo_latency"]}}
    proc = snakemake("--cores", "2", "--directory", str(work), "--configfile", str(TINY),
                     _overlay(tmp_path / "fail.yaml", fail))  # fmt: skip
    console = proc.stdout + proc.stderr
    assert proc.returncode == 1, console[-3000:]
    assert not table.exists()  # Snakemake removed the failed job's output
    assert archived.read_bytes() == before  # ... and the earlier table is intact
    assert "GATE FAILED" in proc.stdout and "raw/network/echo_latency.parquet" in proc.stdout
    assert "\n    reason: " not in console  # the profile's quiet: [reason]
    expected = {
        "table": "raw/network/echo_latency.parquet",
        "suite": "network",
        "benchmark": "echo_latency",
        "status": "not run: job failed",
        "log": "logs/benchmark/network/echo_latency.log",
        "last_good": "archive/raw/network/echo_latency.parquet",
    }
    assert json.loads((results / "summary" / "not_run.json").read_text()) == [expected]
    report = results / "report"
    html = (report / "index.html").read_text()
    assert 'id="not-run"' in html and "not run: job failed" in html
    assert "logs/benchmark/network/echo_latency.log" in html
    assert 'href="../archive/raw/network/echo_latency.parquet"' in html
    assert (
        "| `raw/network/echo_latency.parquet` | network | **not run: job failed** |"
        in (report / "summary.md").read_text()
    )
    assert json.loads((report / "summary.json").read_text())["not_run"] == [expected]
    summary = pd.read_parquet(results / "summary" / "summary.parquet")
    assert "echo_latency" not in set(summary["benchmark"])  # no stale row in any verdict
    assert {"n_plus_one", "grokfast"} <= set(summary["benchmark"])  # the rest is there
    # The history rule's work ran on what exists: the run is stored.
    assert len(list((results / "history").glob("run_id=*"))) == runs_before + 1
    # `forgebench report` gives the same pages as the workflow's hook.
    pages = [f"report/{n}" for n in ("index.html", "summary.md", "summary.json")]
    pages += [f"summary/{n}" for n in ("not_run.json", "summary.parquet", "verdicts.parquet")]
    made = {p: (results / p).read_bytes() for p in pages}
    cli = _cli("report", "--config", str(TINY), "--results", str(results))
    assert cli.returncode == 0, cli.stderr
    assert "not run: job failed: raw/network/echo_latency.parquet" in cli.stderr
    for p in pages:
        assert (results / p).read_bytes() == made[p], p
    gate = _gate(results)
    assert gate.returncode == 1
    assert any("echo_latency" in x and "not run: job failed" in x for x in gate.stdout.splitlines())
    watched = _cli("watch", "--directory", str(work), "--once")
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert "FAILED   benchmark network/echo_latency" in watched.stdout
    assert "the run ended: a job failed" in watched.stdout
    # Without the failure the table comes back and the record is cleared.
    clean = snakemake("--cores", "2", "--directory", str(work), "--configfile", str(TINY))
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
    assert json.loads((results / "summary" / "not_run.json").read_text()) == []
    assert table.is_file() and archived.read_bytes() == table.read_bytes()
