"""Run one registered benchmark under the resource sampler and write its two tables."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench import alerts, record
from forgebench.provenance import collect_provenance
from forgebench.registry import BENCHMARKS
from forgebench.sampler import ResourceSampler, live_path_for

log = logging.getLogger(__name__)

# Job-level figures from the sampler, recorded as rows so targets and SLAs can use them.
JOB_CASE = "job"
_JOB_METRICS = (
    # summary key, metric, unit, higher_is_better
    ("peak_rss_bytes", "peak_rss", "bytes", False),
    ("cpu_percent_mean", "cpu_percent_mean", "percent", False),
    ("cpu_percent_max", "cpu_percent_max", "percent", False),
    ("memory_growth_mb_per_hour", "memory_growth", "MB/hour", False),
    ("duration_s", "job_duration", "s", False),
    # other processes' CPU while the job ran: a verdict on its timings is "noisy" above
    # statistics.noisy_foreign_cpu_percent
    ("foreign_cpu_percent_mean", "foreign_cpu_percent", "percent", False),
)


def job_case(subject: str | None = None) -> str:
    """The case of a job's own rows: ``job``, or ``job:<subject>`` where several jobs share
    one suite/benchmark (one evaluation job per model and task), so theirs stay apart."""
    return JOB_CASE if subject is None else f"{JOB_CASE}:{subject}"


def is_job_case(case: str) -> bool:
    return case == JOB_CASE or case.startswith(JOB_CASE + ":")


def resource_rows(
    rec: record.Recorder, summary: Mapping[str, Any], interval_s: float, case: str = JOB_CASE
) -> None:
    """Append the sampler's job-level figures to ``rec``; absent figures are left out."""
    params = {"sampler_interval_s": interval_s, "peak_rss_source": summary.get("peak_rss_source")}
    for key, metric, unit, higher in _JOB_METRICS:
        value = summary.get(key)
        if value is None or not record.is_finite(float(value)):
            continue
        rec.add(case, params, metric, unit, higher, float(value))


def run_measured(
    fn: Callable[[], pd.DataFrame],
    *,
    suite: str,
    name: str,
    version: int,
    config: Mapping[str, Any],
    measurements_path: str | Path,
    resources_path: str | Path,
    code_dir: str | None = None,
    extra_provenance: Mapping[str, Any] | None = None,
    job_subject: str | None = None,
) -> pd.DataFrame:
    """Run ``fn`` under one resource sampler; write its rows plus job rows, and the samples.

    Every job that measures (registered benchmarks, model builds, evaluations, compression)
    goes through here, so each has the same job rows and resource table.
    """
    seed = int(config.get("seed", 0))
    interval_s = float(config.get("sampler", {}).get("interval_s", 0.1))
    # The live file lets `forgebench watch` show the job's CPU and memory while it runs,
    # and the alert watcher judge them against the configured thresholds (forgebench.alerts).
    live_path = live_path_for(resources_path)
    job = f"{suite}/{name}" + (f" ({job_subject})" if job_subject else "")
    watcher = alerts.watcher_from_config(config.get("alerts"), job=job, live_path=live_path)
    with ResourceSampler(interval_s=interval_s, live_path=live_path) as sampler, watcher:
        frame = fn()
    summary = sampler.summary()
    # After the run: ``extra_provenance`` may be a dict ``fn`` filled in.
    provenance = collect_provenance(config, seed=seed, code_dir=code_dir)
    provenance["benchmark"] = {**(extra_provenance or {})}
    provenance["benchmark"].update(suite=suite, name=name, version=version)
    if job_subject is not None:
        provenance["benchmark"]["job_subject"] = job_subject
    provenance["resources"] = summary
    rec = record.Recorder(suite, name, version)
    resource_rows(rec, summary, interval_s, job_case(job_subject))
    watcher.add_rows(rec, job_case(job_subject))
    frame = pd.concat([record.validate_measurements(frame), rec.frame()], ignore_index=True)
    frame = record.write_measurements(frame, measurements_path, provenance)
    record.write_resources(sampler.samples(), resources_path, provenance)
    failed = int((frame["status"] != "ok").sum())
    log.info("%s/%s: %d rows written, %d failed", suite, name, len(frame), failed)
    return frame


def with_model(frame: pd.DataFrame, model: str | None) -> pd.DataFrame:
    """``frame`` with ``model`` in every row's params (kept where a row names its own): a
    benchmark that reads a model says which in each of its rows (issue 16)."""
    if model is None or frame.empty:
        return frame

    def tag(text: str) -> str:
        params = json.loads(text) if text else {}
        params.setdefault("model", model)
        return record.canonical_params(params)

    return frame.assign(params=frame["params"].map(tag))


def run_benchmark(
    suite: str,
    name: str,
    config: Mapping[str, Any],
    *,
    measurements_path: str | Path,
    resources_path: str | Path,
    code_dir: str | None = None,
) -> pd.DataFrame:
    """Run ``suite/name`` with its config section; write measurements and resource samples.

    The whole benchmark, servers it starts included, runs under one sampler, so the
    resource table covers the process tree that did the work.
    """
    from forgebench.workflow import benchmark_config

    spec = BENCHMARKS.get(suite, name)
    fn, version = spec.load()
    section = benchmark_config(config, suite, name)
    seed = int(config.get("seed", 0))
    log.info("running %s (version %d)", spec.key, version)
    model = section.get("model") if {"model", "compressed"} & set(spec.needs) else None
    return run_measured(
        lambda: with_model(fn(section, seed=seed), model),
        suite=suite,
        name=name,
        version=version,
        config=config,
        measurements_path=measurements_path,
        resources_path=resources_path,
        code_dir=code_dir,
        extra_provenance={"config": section},
    )
