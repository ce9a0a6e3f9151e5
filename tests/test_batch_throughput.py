"""Batch throughput (forgebench.service.batch): page batches run as the service's jobs,
every result checked against the generator, only verified pages counted."""

from __future__ import annotations

import numpy as np

from forgebench.outage import OutageGuard, OutageLimits
from forgebench.service import batch, scenarios
from forgebench.service.loadgen import run_async
from forgebench.service.server import service_process

SMALL_DB = {"users": 60, "posts": 120, "comments": 240, "page_size": 10}


def _cfg(**over):
    cfg = {
        "db": SMALL_DB,
        "job": {"workers": 2},
        "pages_per_job": 4,
        "in_flight": 2,
        "warmup_s": 0.3,
        "duration_s": 2.0,
        "window_s": 0.1,
        "batches": 5,
        "timeout_s": 5.0,
        "startup_timeout_s": 120.0,
    }
    return {**cfg, **over}


def test_run_counts_verified_pages_per_minute():
    df = batch.run(_cfg(), seed=3)
    jobs = df[df.metric == "job_latency"]
    assert len(jobs) and (jobs.status == "ok").all()
    assert jobs.warmup.any() and (~jobs.warmup).any()
    rate = df[df.metric == "ops_per_minute"].value.iloc[0]
    low = df[df.metric == "ops_per_minute_ci_low"].value.iloc[0]
    high = df[df.metric == "ops_per_minute_ci_high"].value.iloc[0]
    assert rate > 0 and low <= rate <= high
    windows = df[df.metric == "window_ops_per_minute"]
    assert len(windows) == 20 and np.isclose(windows.value.mean(), rate)
    # pages counted in windows never exceed the verified jobs' pages
    measured_ok = int((~jobs.warmup & (jobs.status == "ok")).sum()) * 4
    assert windows.value.sum() * 0.1 / 60 <= measured_ok
    assert df[df.metric == "failure_share"].value.iloc[0] == 0.0


def test_a_wrong_result_is_a_mismatch_and_counts_nothing():
    cfg = _cfg(duration_s=0.6, warmup_s=0.0)
    settings = scenarios.server_settings(cfg, 3, rag=False)
    digests, _ = batch.expected_digests(cfg, 3)
    wrong = ["0" * 16] * len(digests)  # not the pages the server computes
    guard = OutageGuard(OutageLimits(10_000, 600.0), "test")
    with service_process(settings, startup_timeout_s=120.0) as addr:
        jobs = run_async(batch.drive(addr, cfg, wrong, guard))
    assert jobs.status and set(jobs.status) == {"mismatch"}
    assert batch.window_rates(jobs, 0.1).sum() == 0.0


def test_a_stopped_service_fails_jobs_as_rows():
    cfg = _cfg(duration_s=1.0, warmup_s=0.0)
    settings = scenarios.server_settings(cfg, 3, rag=False)
    digests, _ = batch.expected_digests(cfg, 3)
    guard = OutageGuard(OutageLimits(5, 600.0), "test")
    with service_process(settings, startup_timeout_s=120.0) as addr:
        pass  # stopped before any job
    jobs = run_async(batch.drive(addr, cfg, digests, guard))
    assert jobs.status and "ok" not in jobs.status
    assert any(s.startswith("error:") for s in jobs.status)
    assert "error:Outage" in jobs.status  # the guard stopped the attempts
