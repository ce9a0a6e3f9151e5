"""Our generator against wrk: parsing wrk's result line, a real interleaved run, failures."""

from __future__ import annotations

import pytest
from conftest import require_executable

from forgebench.errors import ForgebenchError
from forgebench.service import wrk_compare


def _cfg(**over):
    cfg = {
        "path": "/health",
        "connections": 4,
        "wrk_threads": 1,
        "rounds": 2,
        "duration_s": 1,
        "warmup_s": 0.2,
        "timeout_s": 2.0,
        "startup_timeout_s": 60,
        "db": {"users": 20, "posts": 50, "comments": 100, "page_size": 10},
        "faults": [],
    }
    cfg.update(over)
    return cfg


def test_parse_wrk_result_line() -> None:
    text = (
        "Running 1s test\nFORGEBENCH requests=1200 duration_us=1000500 connect=0 read=1 "
        "write=0 status=3 timeout=2 p50_us=310.000 p99_us=902.500\n"
    )
    r = wrk_compare.parse_wrk(text)
    assert r["requests"] == 1200 and r["status"] == 3 and r["p99_us"] == 902.5
    with pytest.raises(ForgebenchError, match="no result line"):
        wrk_compare.parse_wrk("Running 1s test\n")


def test_interleaved_rounds_against_wrk() -> None:
    require_executable("wrk")
    frame = wrk_compare.run(_cfg(), seed=4)
    assert set(frame["case"]) == {"forgebench", "wrk", "ratio"}
    sides = frame[frame["case"] != "ratio"]
    assert (sides["status"] == "ok").all()
    for side in ("forgebench", "wrk"):
        rate = sides[(sides["case"] == side) & (sides["metric"] == "throughput")]["value"]
        assert len(rate) == 2 and (rate > 100).all()
        p50 = sides[(sides["case"] == side) & (sides["metric"] == "latency_p50")]["value"]
        p99 = sides[(sides["case"] == side) & (sides["metric"] == "latency_p99")]["value"]
        assert (p50.to_numpy() <= p99.to_numpy()).all() and (p50 > 0).all()
        cpu = sides[(sides["case"] == side) & (sides["metric"] == "cpu_per_1000_requests")]
        assert (cpu["value"] > 0).all()
    # ours corrected as wrk corrects its own: a back-fill only adds latencies, p99 rises
    ours = sides[sides["case"] == "forgebench"].set_index(["repetition", "metric"])["value"]
    for r in (0, 1):
        assert ours[(r, "latency_p99")] >= ours[(r, "latency_p99_uncorrected")]
    ratio = frame[frame["case"] == "ratio"]
    wanted = {"throughput_deviation", "latency_p50_deviation", "latency_p99_deviation"}
    assert wanted | {"cpu_per_1000_requests_ratio"} <= set(ratio["metric"])
    assert (ratio["status"] == "ok").all()


def test_failing_endpoint_fails_the_ratio_rows() -> None:
    require_executable("wrk")
    faults = [{"path_prefix": "/api/v1/info", "error_share": 1.0}]
    frame = wrk_compare.run(_cfg(path="/api/v1/info", faults=faults, rounds=2), seed=0)
    ratio = frame[frame["case"] == "ratio"]
    assert (ratio["status"] != "ok").all() and ratio["value"].isna().all()
    failed = frame[frame["metric"] == "failed_requests"]
    assert (failed["value"] > 0).all()  # both generators counted the 500s


def _stats_correct(values_us: list[int], expected: int) -> list[int]:
    """wrk 4.1's stats.c ``stats_correct`` on a histogram, as written there (a line-by-line
    port, to check the vectorised version against)."""
    data = [0] * (max(values_us) + 1)
    for v in values_us:
        data[v] += 1
    for n in range(expected * 2, len(data)):
        count, m = data[n], n - expected
        while count and m > expected:
            data[m] += count
            m -= expected
    return sorted(v for v, c in enumerate(data) for _ in range(c))


def test_coordinated_omission_correction_matches_wrk() -> None:
    """By hand: 2 connections, 8 answers in 4 ms: e = 4000 // 4 = 1000 us; 3500 us adds
    2500 and 1500; 2000 us adds nothing (1000 is not above e). Then wrk's own loop on
    random latencies gives the same multiset."""
    import numpy as np

    lat = np.array([100, 200, 300, 400, 500, 600, 2000, 3500]) * 1e-6
    got = wrk_compare.wrk_corrected_latencies(lat, 0.004, 8, 2)
    assert sorted(np.rint(got * 1e6).astype(int)) == sorted(
        [100, 200, 300, 400, 500, 600, 2000, 3500, 2500, 1500]
    )
    rng = np.random.default_rng(1)
    raw = rng.integers(1, 20_000, size=300)
    got = wrk_compare.wrk_corrected_latencies(raw * 1e-6, 1.5, 300, 10)
    expected = _stats_correct(raw.tolist(), int(1.5e6) // 30)
    assert sorted(np.rint(got * 1e6).astype(int).tolist()) == expected
