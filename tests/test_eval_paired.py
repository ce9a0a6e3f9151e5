"""Paired comparison of two models' per-document results."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forgebench.evaluation.paired import compare_samples, pairs_for
from forgebench.record import validate_measurements


def samples(model: str, correct: list[bool], order: list[int] | None = None) -> pd.DataFrame:
    idx = order or list(range(len(correct)))
    return pd.DataFrame(
        {
            "model": model,
            "task": "t",
            "subtask": "t",
            "doc_id": idx,
            "doc_hash": [f"h{i}" for i in idx],
            "filter": "none",
            "metric": "acc",
            "value": [float(correct[i]) for i in idx],
            "correct": [correct[i] for i in idx],
        }
    )


def run(a: pd.DataFrame, b: pd.DataFrame) -> pd.Series:
    frame = compare_samples(
        a, b, task="t", baseline_name="a", candidate_name="b",
        confidence=0.95, n_resamples=500, seed=0,
    )  # fmt: skip
    validate_measurements(frame)
    return frame.set_index("metric")["value"]


def test_known_flips_and_delta_pair_on_documents_not_positions() -> None:
    a = [True] * 30 + [False] * 30
    b = [True] * 20 + [False] * 10 + [True] * 5 + [False] * 25  # lost 10, gained 5
    rng = np.random.default_rng(0)
    shuffled = samples("b", b, list(rng.permutation(60)))
    v = run(samples("a", a), shuffled)
    assert v["acc_delta"] == pytest.approx(-5 / 60)
    assert v["acc_flip_rate"] == pytest.approx(15 / 60)
    assert v["acc_lost"] == pytest.approx(10 / 60) and v["acc_gained"] == pytest.approx(5 / 60)
    assert v["acc_delta_ci_low"] <= v["acc_delta"] <= v["acc_delta_ci_high"]
    assert v["acc_items"] == 60
    assert 0 < v["acc_mcnemar_p"] < 1


def test_identical_models_have_no_flips_and_a_zero_width_delta() -> None:
    a = [bool(i % 3) for i in range(40)]
    v = run(samples("a", a), samples("b", a))
    assert v["acc_flip_rate"] == 0 and v["acc_delta"] == 0
    assert v["acc_delta_ci_low"] == v["acc_delta_ci_high"] == 0
    assert v["acc_mcnemar_p"] == 1.0


def test_unpaired_documents_are_counted_and_left_out() -> None:
    a = samples("a", [True] * 10)
    b = samples("b", [True] * 8 + [False] * 2).iloc[:8]
    frame = compare_samples(
        a, b, task="t", baseline_name="a", candidate_name="b",
        confidence=0.95, n_resamples=200, seed=0,
    )  # fmt: skip
    assert frame["params"].map(lambda p: json.loads(p)["unpaired_items"] == 2).all()
    assert frame.set_index("metric").loc["acc_items", "value"] == 8


def test_pairs_compare_derived_models_with_their_base() -> None:
    models = ["cognate", "cognate__bitnet", "cognate__int8", "other"]
    cfg = {"paired": [{"baseline": "other", "candidate": "cognate"}]}
    assert pairs_for(cfg, models) == [
        ("other", "cognate"),
        ("cognate", "cognate__bitnet"),
        ("cognate", "cognate__int8"),
    ]
