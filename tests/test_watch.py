"""`forgebench watch`: the run's plan joined with Snakemake's log and the live sampler files
(forgebench.watch), and the sampler's live file itself."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from forgebench import watch as fw
from forgebench.cli import main
from forgebench.sampler import ResourceSampler, live_path_for

# Snakemake 9's log of a run, as its default formatter writes it (`quiet: [reason]`).
LOG = """\
Job stats:
job          count
---------  -------
benchmark        3
report           1
total            4

Select jobs to execute...
Execute 2 jobs...

[Mon Dec  7 08:15:33 2026]
rule benchmark:
    input: results/datasets/boolq
    output: results/raw/network/echo_latency.parquet, results/raw/network/echo.resources.parquet
    log: logs/benchmark/network/echo_latency.log
    jobid: 3
    wildcards: suite=network, benchmark=echo_latency
    threads: 2

[Mon Dec  7 08:15:34 2026]
rule benchmark:
    output: results/raw/harness/x.parquet, results/raw/harness/x.resources.parquet
    log: logs/benchmark/harness/x.log
    jobid: 2
    wildcards: suite=harness, benchmark=x
[Mon Dec  7 08:15:40 2026]
Finished jobid: 3 (Rule: benchmark)
1 of 4 steps (25%) done
[Mon Dec  7 08:15:41 2026]
Error in rule benchmark:
    message: None
    jobid: 2
    output: results/raw/harness/x.parquet
[Mon Dec  7 08:15:42 2026]
rule benchmark:
    output: results/raw/rag/retrieval.parquet, results/raw/rag/retrieval.resources.parquet
    log: logs/benchmark/rag/retrieval.log
    jobid: 1
[Mon Dec  7 08:15:43 2026]
Job 4: report: results/report/index.html from 3 raw tables
"""


def _job(jobid: int, name: str, previous: float | None, rule: str = "benchmark") -> dict:
    suite, _, bench = name.partition("/")
    raw = f"results/raw/{suite}/{bench}"
    return {"jobid": jobid, "rule": rule, "name": name,
            "outputs": [f"{raw}.parquet", f"{raw}.resources.parquet"],
            "log": [f"logs/{rule}/{name}.log"], "previous_s": previous}  # fmt: skip


def test_the_log_says_which_jobs_started_finished_and_failed():
    events = fw.parse_log(LOG.splitlines(keepends=True))
    assert {j: s for j, (s, _) in events.items()} == {
        3: "done",
        2: "failed",
        1: "started",
        4: "started",
    }
    started = events[1][1]
    assert started is not None
    assert time.localtime(started)[3:6] == (8, 15, 42)


def test_a_snapshot_counts_jobs_estimates_time_left_and_shows_live_load(tmp_path):
    (tmp_path / ".snakemake" / "log").mkdir(parents=True)
    log = tmp_path / ".snakemake" / "log" / "run.snakemake.log"
    log.write_text(LOG)
    jobs = [_job(1, "rag/retrieval", 100.0), _job(2, "harness/x", 5.0),
            _job(3, "network/echo_latency", 7.0), _job(4, "report/all", None, "report"),
            _job(5, "service/load", 30.0)]  # fmt: skip
    fw.write_plan(tmp_path / fw.PLAN, jobs, str(log))
    started = fw.parse_log(LOG.splitlines())[1][1]
    now = started + 40.0
    # The running job's sampler writes its live file beside its resource table.
    live = Path(live_path_for(tmp_path / "results/raw/rag/retrieval.resources.parquet"))
    live.parent.mkdir(parents=True)
    sample = {"updated_unix": now - 1, "cpu_percent": 180.0, "rss_bytes": 300 * 2**20,
              "peak_rss_bytes": 310 * 2**20}  # fmt: skip
    live.write_text(json.dumps(sample))
    plan, states = fw.snapshot(tmp_path, now)
    by_id = {s.jobid: s for s in states}
    assert [by_id[i].state for i in (1, 2, 3, 4, 5)] == [
        "running",
        "failed",
        "done",
        "running",
        "waiting",
    ]
    left, unknown = fw.time_left(states, now)
    assert left == 60.0 + 30.0  # retrieval 100 s less the 40 s it ran, load's 30 s
    assert unknown == 1  # the report never ran before
    lines = fw.format_snapshot(plan, states, now, tmp_path)
    assert lines[0].startswith("1 of 5 jobs done, 2 running, 1 failed, 1 waiting")
    assert "about 1 min 30 s of job time left" in lines[0]
    assert any("rag/retrieval" in x and "cpu 180%" in x and "300.0 MiB" in x for x in lines)
    assert any("FAILED" in x and "logs/benchmark/harness/x.log" in x for x in lines)
    assert len(lines) < 10
    # A live file its job stopped rewriting is not shown as the job's load.
    _, states = fw.snapshot(tmp_path, now + fw.LIVE_STALE_S + 5)
    assert not next(s for s in states if s.jobid == 1).live
    # The hooks mark the end; watch then stops and names the report.
    report = tmp_path / "results" / "report" / "index.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>")
    fw.mark_ended(tmp_path / fw.PLAN, "a job failed")
    plan, states = fw.snapshot(tmp_path, now)
    assert fw.finished(plan, states)
    lines = fw.format_snapshot(plan, states, now, tmp_path)
    assert lines[-1] == f"report: {report.resolve()}"
    assert main(["watch", "--directory", str(tmp_path)]) == 1  # a job failed


def test_watch_without_a_run_says_how_to_start_one(tmp_path, capsys):
    assert main(["watch", "--directory", str(tmp_path), "--once"]) == 1
    assert "start the workflow" in capsys.readouterr().err


def test_the_sampler_flushes_a_live_file_while_it_runs_and_removes_it(tmp_path):
    live = tmp_path / "job.resources.live.json"
    with ResourceSampler(interval_s=0.02, gpu=False, live_path=live, live_every_s=0.05):
        deadline = time.monotonic() + 5
        # Poll with pauses: a loop of stat calls that never waits retakes the GIL after
        # each one and starves the sampler's thread (a few ticks in seconds).
        while not live.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = json.loads(live.read_text())
        # Rewritten while the block runs: the elapsed time grows.
        while time.monotonic() < deadline:
            later = json.loads(live.read_text())
            if later["t_s"] > seen["t_s"]:
                break
            time.sleep(0.01)
    assert later["t_s"] > seen["t_s"]
    assert later["pid"] == os.getpid() and later["rss_bytes"] > 0
    assert not live.exists()  # the block ended: nothing left to mistake for a running job
    assert not list(tmp_path.glob("*.tmp"))
