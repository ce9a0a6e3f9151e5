"""The scaling sweep: workers behind one port and threads per worker, rows per point, and
no server left behind."""

from __future__ import annotations

import json

import psutil
import pytest

from forgebench.errors import ForgebenchError
from forgebench.service import scaling


def _cfg(**over: object) -> dict:
    cfg = {
        "endpoint": "db_page", "workers": [1, 2], "horizontal_threads": 0, "threads": [1],
        "closed_users": 4, "closed_s": 0.5, "open_rate": 40, "open_s": 0.5, "repetitions": 2,
        "sampler_interval_s": 0.05, "timeout_s": 5.0, "startup_timeout_s": 120,
        "db": {"users": 20, "posts": 20, "comments": 20, "page_size": 5},
    }  # fmt: skip
    cfg.update(over)
    return cfg


def test_points_and_bottleneck() -> None:
    points = scaling.sweep_points(_cfg(workers=[1, 2, 4], threads=[1, 4]))
    assert [p.case for p in points] == [
        "horizontal_1w", "horizontal_2w", "horizontal_4w", "vertical_1t", "vertical_4t",
    ]  # fmt: skip
    assert points[0].effective_threads == scaling.ANYIO_DEFAULT_THREADS
    assert scaling.bottleneck(120.0, 70.0, 70.0, 2, 2) == "cores"
    assert scaling.bottleneck(100.0, 10.0, 90.0, 2, 2) == "cores"  # others took the rest
    assert scaling.bottleneck(40.0, 95.0, 95.0, 2, 2) == "generator"
    assert scaling.bottleneck(95.0, 40.0, 40.0, 1, 4) == "workers"
    assert scaling.bottleneck(30.0, 20.0, 20.0, 2, 2) == "waiting"


def test_tiny_sweep_rows_per_point_and_no_server_left() -> None:
    before = {c.pid for c in psutil.Process().children(recursive=True)}
    frame = scaling.run(_cfg(), seed=3)
    after = {c.pid for c in psutil.Process().children(recursive=True)}
    assert after <= before  # every supervisor and worker stopped and reaped
    assert (frame["status"].isin(["ok", "censored"])).all()
    cases = ["horizontal_1w", "horizontal_2w", "vertical_1t"]
    assert sorted(frame["case"].unique()) == sorted(cases)
    per_rep = ["throughput", "latency_p99", "service_cpu_percent", "generator_cpu_percent",
               "generator_cpu_share", "other_cpu_percent"]  # fmt: skip
    for case in cases:
        rows = frame[frame["case"] == case]
        for metric in per_rep:
            assert rows[rows["metric"] == metric]["repetition"].tolist() == [0, 1], (case, metric)
        # two error shares a round (closed and open), every verified answer right
        errors = rows[rows["metric"] == "error_share"]
        assert len(errors) == 4 and (errors["value"] == 0).all()
        thr = rows[rows["metric"] == "throughput"]
        assert (thr["value"] > 10).all()
        params = json.loads(thr["params"].iloc[0])
        assert params["bottleneck"] in ("cores", "generator", "workers", "waiting")
    workers = {
        case: json.loads(frame[frame["case"] == case]["params"].iloc[0])["workers"]
        for case in cases
    }
    threads = json.loads(frame[frame["case"] == "vertical_1t"]["params"].iloc[0])["threads"]
    assert workers == {"horizontal_1w": 1, "horizontal_2w": 2, "vertical_1t": 1}
    assert threads == 1


def test_unloadable_endpoint_is_a_config_error() -> None:
    with pytest.raises(ForgebenchError, match="endpoint"):
        scaling.run(_cfg(endpoint="rag"), seed=0)


def test_report_points_have_intervals_over_repetitions(tmp_path) -> None:
    from forgebench.record import Recorder
    from forgebench.report import service

    rec = Recorder("service", "scaling", 1)
    for case, workers, values in (("horizontal_1w", 1, [100.0, 110.0, 120.0]),
                                  ("horizontal_2w", 2, [180.0, 200.0, 220.0])):  # fmt: skip
        p = {"axis": "horizontal", "workers": workers, "threads": 40, "bottleneck": "cores"}
        for rep, v in enumerate(values):
            rec.add(case, p, "throughput", "requests/s", True, v, repetition=rep)
            rec.add(case, p, "latency_p99", "s", False, 0.01 * (rep + 1), repetition=rep,
                    status="censored" if rep == 2 else "ok")  # fmt: skip
    rec.add("horizontal_2w", p, "throughput", "requests/s", True, float("nan"),
            repetition=3, status="error:NoSuccessfulRequests")  # fmt: skip
    frame = rec.frame().assign(suite="service", benchmark="scaling")
    points = service.scaling_points(frame)
    assert [p["case"] for p in points] == ["horizontal_1w", "horizontal_2w"]
    one, two = points
    assert one["throughput"]["mean"] == pytest.approx(110.0)
    assert one["throughput"]["low"] < 110.0 < one["throughput"]["high"]
    assert two["throughput"]["n"] == 3 and two["throughput"]["failed"] == 1
    assert one["latency_p99"]["censored"] == 1 and one["text"]["latency_p99"].startswith(">=")
    figures = service.plan_figures({"scaling": points}, tmp_path, None)
    assert len(figures) == 1 and figures[0].path.stat().st_size > 0
    assert service.plan_figures({"scaling": points[:1]}, tmp_path, None) == []
