"""models/cognate_validation on a tiny architecture: every figure measured, failures as rows."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

from forgebench.errors import ForgebenchError
from forgebench.models import cognate_validation as cv
from forgebench.models.architecture import TARGET_PARAMS, Architecture
from forgebench.record import validate_measurements
from forgebench.registry import BENCHMARKS

TINY = {
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 512,
    "max_positions": 128,
}
CFG = {
    "architecture": TINY,
    "seeds": 3,
    "repetitions": 2,
    "warmup": 1,
    "prompt_tokens": 8,
    "new_tokens": 8,
    "forward_batch_size": 2,
    "forward_seq_len": 32,
    "train_batch_size": 2,
    "train_seq_len": 32,
    "train_steps": 1,
    "load_repetitions": 1,
    "threads": 1,
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def frame():
    return cv.run(CFG, seed=11)


def _ok(frame, case, metric):
    sel = frame[(frame["case"] == case) & (frame["metric"] == metric)]
    assert (sel["status"] == "ok").all(), sel[["metric", "status"]]
    return sel


def test_every_row_is_measured_and_ok(frame):
    validate_measurements(frame)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"]
    assert set(frame["suite"]) == {"models"} and set(frame["benchmark"]) == {"cognate_validation"}


def test_parameter_count_against_the_target(frame):
    n = Architecture.from_config(TINY).param_count()
    counts = _ok(frame, "cognate", "param_count")
    assert list(counts["value"]) == [n] * 3  # one per seed's model
    rel = _ok(frame, "cognate", "param_count_rel_diff")["value"]
    assert rel.tolist() == pytest.approx([(n - TARGET_PARAMS) / TARGET_PARAMS] * 3)
    abs_rel = _ok(frame, "cognate", "param_count_abs_rel_diff")["value"].to_numpy()
    assert (abs_rel == rel.abs().to_numpy()).all()
    assert (_ok(frame, "cognate", "parameter_bytes")["value"] == 4 * n).all()


def test_three_seeds_same_architecture_different_weights(frame):
    same = _ok(frame, "seeds", "architecture_identical")
    assert len(same) == 3 and (same["value"] == 1.0).all()
    diff = _ok(frame, "seeds", "weights_max_abs_diff")
    assert len(diff) == 3 and (diff["value"] > 0).all()


def test_memory_and_throughput_rows(frame):
    n = Architecture.from_config(TINY).param_count()
    assert _ok(frame, "cognate", "weights_file_bytes")["value"].iloc[0] >= 4 * n
    load = _ok(frame, "cognate", "load_rss_delta")
    assert len(load) == 1 and load["value"].iloc[0] > 0
    assert len(_ok(frame, "cognate", "load_time")) == 1
    assert len(_ok(frame, "cognate", "resident_rss_delta")) == 1
    for metric in ("generate_tokens_per_s", "forward_tokens_per_s", "train_tokens_per_s"):
        rows = _ok(frame, "cognate", metric)
        assert rows["warmup"].sum() == 1 and (~rows["warmup"]).sum() == 2, metric
        assert (rows["value"] > 0).all(), metric


def test_a_failed_load_is_a_failed_row_and_the_rest_still_runs():
    cfg = {**CFG, "timeout_s": 0.001, "repetitions": 1, "warmup": 0, "seeds": 2}
    frame = cv.run(cfg, seed=0)
    load = frame[frame["metric"].isin(["load_rss_delta", "resident_rss_delta", "load_time"])]
    assert len(load) == 3 and (load["status"] == "timeout").all() and load["value"].isna().all()
    assert (frame.loc[~frame.index.isin(load.index), "status"] == "ok").all()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"seeds": 1}, "seeds"),
        ({"forward_seq_len": 4096}, "max_positions"),
        ({"architecture": {**TINY, "num_heads": 3}}, "architecture.hidden_size"),
        ({"sedes": 3}, "sedes"),
    ],
)
def test_bad_config_names_the_key(override, key):
    with pytest.raises(ForgebenchError, match=key):
        cv.run({**CFG, **override}, seed=0)


def test_registered_or_pending_registration():
    """Registered by the lead in forgebench.registry; until then the module is loadable."""
    if "models/cognate_validation" in BENCHMARKS:
        fn, version = BENCHMARKS.get("models", "cognate_validation").load()
        assert fn is cv.run and version == cv.BENCHMARK_VERSION
    assert cv.BENCHMARK_VERSION == 1
