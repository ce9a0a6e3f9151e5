"""Paired comparison of two models' per-document results: pairing on documents, the exact
interval of the difference and McNemar's test as its dual, the bootstrap for other values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from forgebench import stats
from forgebench.evaluation.paired import compare_samples, pairs_for
from forgebench.record import validate_measurements


def samples(model: str, correct: list[bool], order: list[int] | None = None) -> pd.DataFrame:
    """Per-document 0/1 rows of ``model``, in ``order``."""
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


def test_identical_models_have_no_flips_but_no_certain_zero_delta() -> None:
    """No discordant document in 40 supports a discordance rate up to 8.8%, so the
    difference is not a certain 0: the interval is ± that bound, the test p = 1."""
    a = [bool(i % 3) for i in range(40)]
    v = run(samples("a", a), samples("b", a))
    assert v["acc_flip_rate"] == 0 and v["acc_delta"] == 0
    bound = stats.proportion_ci(0, 40)[1]
    assert v["acc_delta_ci_low"] == pytest.approx(-bound)
    assert v["acc_delta_ci_high"] == pytest.approx(bound)
    assert v["acc_flip_rate_ci_high"] == pytest.approx(bound)
    assert v["acc_mcnemar_p"] == v["acc_delta_p"] == 1.0


@pytest.mark.parametrize(
    ("gained", "lost", "n"),
    [(5, 0, 20), (6, 0, 20), (0, 5, 20), (9, 2, 60), (10, 2, 60), (30, 15, 200), (3, 3, 30)],
)
def test_interval_and_test_agree(gained: int, lost: int, n: int) -> None:
    """The interval excludes 0 exactly when the p-value shown beside it is below 5%, and
    that p is McNemar's exact test: 5 gained and 0 lost of 20 (p = 0.0625) is no call,
    though a bootstrap of the 20 documents excluded 0."""
    a = [True] * lost + [False] * gained + [True] * (n - gained - lost)
    b = [False] * lost + [True] * gained + [True] * (n - gained - lost)
    v = run(samples("a", a), samples("b", b))
    excludes = v["acc_delta_ci_low"] > 0 or v["acc_delta_ci_high"] < 0
    assert excludes == (v["acc_mcnemar_p"] < 0.05)
    assert excludes == (v["acc_delta_p"] < 0.05)
    p = sps.binomtest(gained, gained + lost, 0.5).pvalue
    assert v["acc_mcnemar_p"] == pytest.approx(p)
    assert v["acc_delta_p"] == pytest.approx(p)
    assert v["acc_delta_ci_low"] <= v["acc_delta"] <= v["acc_delta_ci_high"]


@pytest.mark.parametrize("n", [10, 20, 50])
def test_delta_interval_covers_at_its_level(n: int) -> None:
    """Exact coverage, enumerating every (gained, lost) outcome of n documents, of the true
    difference p10 - p01 over a grid of discordance probabilities."""
    from forgebench.evaluation.paired import delta_interval

    outcomes = np.array([(g, ll, n - g - ll) for g in range(n + 1) for ll in range(n + 1 - g)])
    bounds = np.array([delta_interval(int(g), int(ll), n, 0.95)[1] for g, ll, _ in outcomes])
    worst = 1.0
    grid = np.linspace(0, 1, 21)
    for p10 in grid:
        for p01 in grid[grid <= 1 - p10 + 1e-9]:
            probs = np.array([p10, p01, max(0.0, 1.0 - p10 - p01)])
            prob = sps.multinomial.pmf(outcomes, n, probs / probs.sum())
            d = p10 - p01
            inside = (bounds[:, 0] <= d + 1e-12) & (d - 1e-12 <= bounds[:, 1])
            worst = min(worst, float(prob[inside].sum()))
    assert worst >= 0.95


def test_other_values_use_a_bootstrap_whose_p_is_its_dual() -> None:
    from forgebench.evaluation.paired import bootstrap_delta

    rng = np.random.default_rng(3)
    for shift in (0.0, 0.02, 0.05, 0.1, -0.07):
        a = rng.random(40)
        b = np.clip(a + shift + rng.normal(0, 0.15, 40), 0, 1)
        delta, (low, high), p = bootstrap_delta(a, b, confidence=0.95, n_resamples=999, seed=1)
        assert delta == pytest.approx(float(np.mean(b - a)))
        assert low <= delta <= high
        assert (low > 0 or high < 0) == (p < 0.05)
    frame = samples("a", [True] * 10).assign(value=np.linspace(0.1, 0.9, 10))
    other = frame.assign(model="b", value=frame["value"] + 0.05)
    v = run(frame, other)
    assert v["acc_delta"] == pytest.approx(0.05) and "acc_mcnemar_p" not in v.index


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
