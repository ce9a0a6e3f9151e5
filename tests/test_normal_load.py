"""CPU under normal load: a saturation probe, then open-loop runs at half its rate, with the
service's CPU share from a sampler of its own process."""

from __future__ import annotations

import json

import pytest

from forgebench.errors import ForgebenchError
from forgebench.service import normal_load


def test_cpu_share_is_of_the_whole_machine() -> None:
    assert normal_load.cpu_share_percent(1.0, 1.0, 2) == 50.0
    assert normal_load.cpu_share_percent(3.0, 2.0, 4) == 37.5


def test_normal_load_against_the_real_service() -> None:
    cfg = {
        "endpoint": "status", "probe_users": 4, "probe_s": 0.8, "fraction": 0.5,
        "duration_s": 0.8, "repetitions": 2, "sampler_interval_s": 0.05, "timeout_s": 5.0,
        "startup_timeout_s": 120, "db": {"users": 5, "posts": 5, "comments": 5, "page_size": 5},
    }  # fmt: skip
    frame = normal_load.run(cfg, seed=1)
    assert (frame["status"] == "ok").all()
    sat = frame[(frame["case"] == "saturation") & (frame["metric"] == "throughput")]
    saturation = sat["value"].item()
    assert saturation > 10
    normal = frame[frame["case"] == "normal"]
    shares = normal[normal["metric"] == "cpu_share"]
    assert shares["repetition"].tolist() == [0, 1]
    assert ((shares["value"] > 0) & (shares["value"] <= 100)).all()
    for text in shares["params"]:
        params = json.loads(text)
        assert params["target_rate"] == pytest.approx(0.5 * saturation)
        assert params["cores"] >= 1
    core = normal[normal["metric"] == "cpu_core_percent"]["value"].to_numpy()
    cores = json.loads(shares["params"].iloc[0])["cores"]
    assert core == pytest.approx(shares["value"].to_numpy() * cores)
    achieved = normal[normal["metric"] == "achieved_rate"]["value"]
    assert (achieved < 0.8 * saturation).all()  # half the rate, Poisson noise aside


def test_bad_fraction_is_a_config_error() -> None:
    with pytest.raises(ForgebenchError, match="fraction"):
        normal_load.run({"endpoint": "status", "fraction": 1.5}, seed=0)
