"""The sampler-overhead benchmark: both cases, paired, identical results, valid rows."""

from __future__ import annotations

import json

import pandas as pd

from forgebench.harness import sampler_overhead
from forgebench.record import COLUMNS, validate_measurements

TINY = {"interval_s": 0.01, "rounds": 3, "warmup_rounds": 1, "workload_iterations": 20_000}


def test_tiny_run_has_both_cases_paired_and_ok():
    frame = sampler_overhead.run(TINY, seed=3)
    assert list(frame.columns) == list(COLUMNS)
    validate_measurements(frame)
    counts = frame.groupby(["case", "warmup"]).size().to_dict()
    assert counts == {
        ("with_sampler", False): 3,
        ("with_sampler", True): 1,
        ("without_sampler", False): 3,
        ("without_sampler", True): 1,
    }
    assert (frame["status"] == "ok").all()  # every run gave the first run's result
    assert (frame["suite"] == "harness").all() and (frame["benchmark"] == "sampler_overhead").all()
    assert (frame["benchmark_version"] == sampler_overhead.BENCHMARK_VERSION).all()
    assert (frame["metric"] == "workload_time").all() and (frame["unit"] == "s").all()
    assert not frame["higher_is_better"].any() and (frame["sample"] == 0).all()
    assert (frame["value"] > 0).all()
    assert frame["params"].nunique() == 1
    assert json.loads(frame["params"].iloc[0]) == {"interval_s": 0.01, "workload_iterations": 20000}
    for _, pair in frame.groupby("repetition"):
        assert sorted(pair["case"]) == ["with_sampler", "without_sampler"]
    assert frame["warmup"].tolist() == [True, True] + [False] * 6
    assert isinstance(frame["started_at"].iloc[0], pd.Timestamp)
    assert str(frame["started_at"].dt.tz) == "UTC"


def test_order_within_rounds_follows_the_seed():
    a = sampler_overhead.run(TINY, seed=11)["case"].tolist()
    b = sampler_overhead.run(TINY, seed=11)["case"].tolist()
    assert a == b
    orders = {tuple(sampler_overhead.run(TINY, seed=s)["case"]) for s in range(6)}
    assert len(orders) > 1


def test_workload_is_deterministic():
    assert sampler_overhead.workload(10_000) == sampler_overhead.workload(10_000)
    assert sampler_overhead.workload(10_000) != sampler_overhead.workload(10_001)


def test_failures_become_rows(monkeypatch):
    def boom(case, iterations, interval_s):
        if case == "with_sampler":
            raise OSError("no /proc")
        return 0.01, 42

    monkeypatch.setattr(sampler_overhead, "_timed", boom)
    frame = sampler_overhead.run(TINY, seed=0)
    statuses = frame.groupby("case")["status"].unique().to_dict()
    assert list(statuses["with_sampler"]) == ["error:OSError"]
    assert list(statuses["without_sampler"]) == ["ok"]
    assert frame.loc[frame["case"] == "with_sampler", "value"].isna().all()
