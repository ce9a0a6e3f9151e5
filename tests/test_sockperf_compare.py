"""sockperf_compare against the installed sockperf (skipped, or failed under CI, without it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from conftest import require_executable

from forgebench.analysis import check_targets
from forgebench.errors import ForgebenchError
from forgebench.network import sockperf_compare
from forgebench.network.sockperf_compare import parse_report, run

ROUNDS = 5


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    require_executable("sockperf")
    return run({"rounds": ROUNDS, "duration_s": 0.3, "warmup_s": 0.1}, seed=11)


def _children(name: str) -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if name in " ".join(p.cmdline())]


def test_rows_per_round_and_positive_ratio(frame: pd.DataFrame) -> None:
    p50 = frame[frame["metric"] == "rtt_p50"]
    assert sorted(p50["case"].unique()) == ["forgebench", "sockperf"]
    assert (p50.groupby("case")["repetition"].apply(sorted) == [list(range(ROUNDS))] * 2).all()
    assert (p50["status"] == "ok").all()
    assert (p50["value"] > 0).all() and (p50["value"] < 0.1).all()
    ratio = frame[frame["metric"] == "rtt_p50_ratio"]
    assert ratio["case"].unique().tolist() == ["ratio"]
    assert sorted(ratio["repetition"]) == list(range(ROUNDS))
    assert (ratio["status"] == "ok").all() and (ratio["value"] > 0).all()
    assert (ratio["unit"] == "ratio").all() and not ratio["higher_is_better"].any()
    for r in range(ROUNDS):
        ours = p50[(p50["case"] == "forgebench") & (p50["repetition"] == r)]["value"].item()
        theirs = p50[(p50["case"] == "sockperf") & (p50["repetition"] == r)]["value"].item()
        got = ratio[ratio["repetition"] == r]["value"].item()
        assert math.isclose(got, ours / theirs, rel_tol=1e-12)


def test_raw_samples_match_the_p50(frame: pd.DataFrame) -> None:
    rtt = frame[(frame["metric"] == "rtt") & (frame["status"] == "ok")]
    assert set(rtt["case"]) == {"forgebench", "sockperf"}
    p50 = frame[frame["metric"] == "rtt_p50"].set_index(["case", "repetition"])["value"]
    for (case, rep), group in rtt.groupby(["case", "repetition"]):
        assert len(group) > 100
        assert math.isclose(group["value"].median(), p50[(case, rep)], rel_tol=1e-9)
    params = json.loads(frame[frame["case"] == "sockperf"]["params"].iloc[0])
    assert params["rtt_source"] == "full-log rxTime-txTime"
    reported = frame[frame["metric"] == "rtt_p50_reported"]
    assert len(reported) == ROUNDS and (reported["value"] > 0).all()


def test_no_server_left_behind(frame: pd.DataFrame) -> None:
    assert not _children("sockperf") and not _children("echo_server")


def test_ratio_target_is_judged_by_the_stats_core(frame: pd.DataFrame) -> None:
    target = {
        "name": "ratio",
        "suite": "network",
        "benchmark": "sockperf_compare",
        "case": "ratio",
        "metric": "rtt_p50_ratio",
        "statistic": "median",
        "op": "<=",
        "threshold": 1.3,
    }
    checked = check_targets([target], pd.DataFrame(), frame, {}, seed=0)
    row = checked.iloc[0]
    if np.isnan(row["ci_low"]) or np.isnan(row["ci_high"]):
        # a few rounds' ratios: no distribution-free interval of their median exists
        assert row["verdict"] == "inconclusive"
    else:
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
    assert row["verdict"] in {"met", "not met", "inconclusive"}


def test_parse_report_halves_and_full_rtt() -> None:
    text = (
        "sockperf: ====> avg-latency=7.0 (std-dev=1.0)\n"
        "sockperf: Total 1234 observations; each percentile contains 12.34 observations\n"
        "sockperf: ---> percentile 50.000 =    6.500\n"
        "sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=1; ReceivedMessages=1\n"
    )
    assert parse_report(text, full_rtt=False) == (pytest.approx(13e-6), 1234, 0.55)
    full = text.replace("avg-latency", "avg-rtt")
    assert parse_report(full, full_rtt=True)[0] == pytest.approx(6.5e-6)


def test_missing_sockperf_is_a_clear_user_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no sockperf on PATH
    with pytest.raises(ForgebenchError, match="apt-get install sockperf"):
        sockperf_compare.run({"rounds": 5, "duration_s": 1.0}, seed=0)


def test_too_few_rounds_is_a_user_error() -> None:
    with pytest.raises(ForgebenchError, match="rounds >= 5"):
        sockperf_compare.run({"rounds": 2, "duration_s": 1.0}, seed=0)
