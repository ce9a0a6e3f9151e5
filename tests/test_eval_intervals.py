"""Intervals of evaluation figures: exact Clopper-Pearson for shares of documents (0/20 is
not a certain 0), conservative bounds for pass@k, the chance level as the higher of the
uniform and the majority-class baseline, and the report cell that shows them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from forgebench import analysis, report
from forgebench.evaluation.samples import chance_accuracy, samples_frame
from forgebench.knowledge.common import record_items
from forgebench.record import Recorder
from forgebench.stats import proportion_ci

STATS = {"confidence": 0.95, "bootstrap_resamples": 200, "practical_threshold": 0.05, "alpha": 0.05}
#: Clopper-Pearson's 95% upper bound of 0 successes in 20.
UPPER_0_OF_20 = 1 - 0.025 ** (1 / 20)


def _logged(values: list[float], targets: list[int], metric: str = "acc") -> dict:
    return {
        "t": [
            {
                "doc_id": i,
                "doc": {"i": i},
                "doc_hash": f"h{i}",
                "target": target,
                "filter": "none",
                "metrics": [metric],
                metric: value,
            }
            for i, (value, target) in enumerate(zip(values, targets, strict=True))
        ]
    }


# ------------------------------------------------------------------------------ chance


def test_boolq_chance_is_its_majority_class_not_one_half() -> None:
    # 62 of 100 answers are "yes" (index 1): always answering "yes" scores 0.62, so a
    # model must clear 0.62, not 1/2; the "always no" model (0.38) is below chance.
    targets = [1] * 62 + [0] * 38
    always_no = [float(t == 0) for t in targets]
    frame = samples_frame(_logged(always_no, targets), model="m", task="t",
                          n_choices=lambda s, d: 2)  # fmt: skip
    assert chance_accuracy(frame) == pytest.approx(0.62)


def test_chance_levels_are_both_recorded_and_the_higher_wins() -> None:
    from forgebench.evaluation.samples import chance_levels

    balanced = samples_frame(_logged([1.0] * 8, [0, 1, 2, 3] * 2), model="m", task="t",
                             n_choices=lambda s, d: 4)  # fmt: skip
    assert chance_levels(balanced) == {
        "chance_uniform": 0.25,
        "chance_majority": 0.25,
        "chance_acc": 0.25,
    }
    skewed = samples_frame(_logged([1.0] * 8, [2] * 5 + [0, 1, 3]), model="m", task="t",
                           n_choices=lambda s, d: 4)  # fmt: skip
    assert chance_levels(skewed)["chance_majority"] == pytest.approx(5 / 8)
    assert chance_levels(skewed)["chance_acc"] == pytest.approx(5 / 8)
    # A target that is no choice index (WinoGrande logs the continuation): no majority
    # without lm-eval's gold, and chance stays uniform.
    text = samples_frame(_logged([1.0] * 4, [0] * 4), model="m", task="t",
                         n_choices=lambda s, d: 2, gold=lambda s, d: None)  # fmt: skip
    levels = chance_levels(text)
    assert math.isnan(levels["chance_majority"]) and levels["chance_acc"] == 0.5
    # Not multiple choice: no chance at all.
    assert math.isnan(
        chance_levels(samples_frame(_logged([1.0], [0]), model="m", task="t"))["chance_acc"]
    )


# ------------------------------------------------------------------------- intervals


def test_document_interval_is_clopper_pearson_for_shares() -> None:
    from forgebench.evaluation.samples import document_interval

    low, high, how = document_interval(np.zeros(20), "pass@1", 0.95)
    assert (low, high) == (0.0, pytest.approx(UPPER_0_OF_20)) and how == "Clopper-Pearson"
    assert high == pytest.approx(0.1684, abs=1e-4)
    values = np.array([1.0] * 7 + [0.0] * 13)
    assert document_interval(values, "acc", 0.9)[:2] == proportion_ci(7, 20, 0.9)
    # a score that is not a share: Student's t, said to be approximate
    assert document_interval([0.2, 0.4, 0.9], "acc", 0.95)[2] == "t (approximate)"
    assert math.isnan(document_interval([], "acc", 0.95)[0])


def test_pass_at_k_interval_brackets_per_problem_uncertainty() -> None:
    from forgebench.evaluation.samples import document_interval

    # per-problem pass@5 estimates from 10 samples each: 4 always solved, 6 sometimes, 10 never
    values = np.array([1.0] * 4 + [0.5, 0.7, 0.9, 0.3, 0.95, 0.6] + [0.0] * 10)
    low, high, how = document_interval(values, "pass@5", 0.95)
    assert low == proportion_ci(4, 20)[0] and high == proportion_ci(10, 20)[1]
    assert low < values.mean() < high and "pass@k" in how


def test_pass_at_k_interval_covers_at_its_level() -> None:
    """Problems with per-problem solve rates p_i, n samples each, pass@k by the unbiased
    estimator: the interval covers the population pass@k at least 95% of the time."""
    from math import comb

    from forgebench.evaluation.samples import document_interval

    rng = np.random.default_rng(0)
    n_samples, k, problems = 10, 3, 30
    population = rng.beta(0.5, 0.8, 5000)  # many problems nearly never / nearly always solved
    truth = float(np.mean(1 - (1 - population) ** k))
    covered = 0
    runs = 400
    for _ in range(runs):
        p = rng.choice(population, problems)
        c = rng.binomial(n_samples, p)
        est = [1 - comb(n_samples - ci, k) / comb(n_samples, k) for ci in c]
        low, high, _ = document_interval(est, "pass@3", 0.95)
        covered += low <= truth <= high
    assert covered / runs >= 0.95


# --------------------------------------------------------------- knowledge and RAG items


def test_knowledge_items_all_missed_have_a_nonzero_upper_bound() -> None:
    rec = Recorder("knowledge", "k", 1)
    record_items(rec, "c", {}, "hit_rate", [0.0] * 20, {"bootstrap_resamples": 200}, seed=1)
    rows = rec.frame().set_index("metric")
    assert rows.loc["hit_rate_ci_low", "value"] == 0.0
    assert rows.loc["hit_rate_ci_high", "value"] == pytest.approx(UPPER_0_OF_20)


def test_rag_recall_never_hit_has_a_nonzero_upper_bound() -> None:
    from forgebench.rag.retrieval import _record_quality

    rec = Recorder("rag", "retrieval", 1)
    opts = {"confidence": 0.95, "bootstrap_resamples": 200}
    _record_quality(rec, "bm25", {}, {"recall_at_1": [0.0] * 20}, ["ok"] * 20, opts, 0)
    rows = rec.frame().set_index("metric")
    assert rows.loc["recall_at_1_mean", "value"] == 0.0
    assert rows.loc["recall_at_1_mean_ci_high", "value"] == pytest.approx(UPPER_0_OF_20)


# ----------------------------------------------------------------------------- report


def _cell(rows: list[tuple[str, float]], metric: str = "pass_at_1.create_test") -> dict:
    rec = Recorder("eval", "fb_humaneval", 1)
    for name, value in rows:
        rec.add("m", {"task": "fb_humaneval"}, name, "docs" if name == "n_docs" else "fraction",
                True, value)  # fmt: skip
    cells = report.Cells(analysis.summarize_measurements(rec.frame(), STATS, seed=0))
    return report._eval_cell(cells, "fb_humaneval", "m", metric)


def test_report_cell_shows_the_exact_interval_of_0_of_20() -> None:
    """A record as the evaluation wrote it before it recorded intervals: pass@1 0, its
    lm-eval stderr 0, 20 documents. Value ± z·stderr said [0.0%, 0.0%]."""
    cell = _cell([("pass_at_1.create_test", 0.0), ("pass_at_1.create_test_stderr", 0.0),
                  ("n_docs", 20.0)])  # fmt: skip
    assert cell["text"] == "0.0% [0.0%, 16.8%]"


def test_report_cell_prefers_the_recorded_interval_and_names_both_chances() -> None:
    rows = [("acc", 0.45), ("acc_stderr", 0.05), ("acc_ci_low", 0.35), ("acc_ci_high", 0.55),
            ("n_docs", 100.0), ("chance_uniform", 0.5), ("chance_majority", 0.62),
            ("chance_acc", 0.62)]  # fmt: skip
    cell = _cell(rows, "acc")
    assert cell["text"] == "45.0% [35.0%, 55.0%]"
    assert cell["flag"] == "does not clear chance" and cell["chance"] == "62.0%"
    assert "uniform 50.0%" in cell["title"] and "majority class 62.0%" in cell["title"]


def test_report_cell_keeps_stderr_for_pass_at_k_above_one() -> None:
    # pass@10 is no share of documents: no binomial interval is made up for it
    cell = _cell([("pass_at_10", 0.5), ("pass_at_10_stderr", 0.1), ("n_docs", 20.0)],
                 "pass_at_10")  # fmt: skip
    assert "z·stderr" in cell["how"]


def test_samples_from_before_the_gold_column_still_read_and_write(tmp_path) -> None:
    from forgebench.evaluation.samples import (
        COLUMNS,
        SAMPLES_KIND,
        read_samples,
        write_samples,
    )
    from forgebench.record import write_derived_table

    frame = samples_frame(_logged([1.0, 0.0], [0, 1]), model="m", task="t",
                          n_choices=lambda s, d: 2)  # fmt: skip
    assert frame["gold"].tolist() == [0, 1]  # from the logged choice indices
    old = frame.drop(columns="gold")
    write_derived_table(old, tmp_path / "old.parquet", {"kind": SAMPLES_KIND})
    write_samples(old, tmp_path / "new.parquet", {})
    for name in ("old", "new"):
        back = read_samples(tmp_path / f"{name}.parquet")
        assert list(back.columns) == list(COLUMNS) and back["gold"].isna().all()
        pd.testing.assert_frame_equal(back.drop(columns="gold"), old)


# ----------------------------------------------------------------------------- runner


class _Task:
    """What the runner reads of an lm-eval task: output type, choices, gold."""

    def __init__(self, gold: object, multiple_input: int = 0, kind: str = "multiple_choice"):
        self.config = type("Config", (), {"output_type": kind})()
        self.multiple_input = multiple_input
        self._gold = gold

    def doc_to_choice(self, doc: dict) -> list[str]:
        return ["no", "yes"]

    def doc_to_text(self, doc: dict) -> object:
        return self._gold if self.multiple_input else "question"

    def doc_to_target(self, doc: dict) -> object:
        return " the rest of the sentence" if self.multiple_input else self._gold


def test_gold_is_found_as_lm_eval_scores_it() -> None:
    from forgebench.evaluation.runner import gold_fn

    leaves = {
        "index": _Task(1),
        "label": _Task("no"),
        "winogrande": _Task(1, multiple_input=2),  # the gold is doc_to_text's index
        "unknown": _Task("maybe"),
        "several": _Task([0, 1]),
        "generated": _Task("42", kind="generate_until"),
    }
    gold = gold_fn(leaves)
    got = {name: gold(name, {}) for name in leaves}
    assert got == {"index": 1, "label": 0, "winogrande": 1, "unknown": None, "several": None,
                   "generated": None}  # fmt: skip


def _metric_frame(metric: str, filt: str, values: list[float], reported: float) -> pd.DataFrame:
    from forgebench.evaluation.runner import _metric_rows

    logged = {
        "t": [
            {"doc_id": i, "doc": {}, "doc_hash": f"h{i}", "target": "", "filter": filt,
             "metrics": [metric], metric: v}
            for i, v in enumerate(values)
        ]
    }  # fmt: skip
    samples = samples_frame(logged, model="m", task="t")
    results = {"results": {"t": {f"{metric},{filt}": reported, f"{metric}_stderr,{filt}": 0.0}}}
    rec = Recorder("eval", "t", 1)
    _metric_rows(rec, "m", "t", results, {"task": "t"}, None, samples, 0.95)
    return rec.frame().set_index("metric")


def test_humaneval_0_of_20_is_recorded_with_its_exact_interval() -> None:
    rows = _metric_frame("pass@1", "create_test", [0.0] * 20, 0.0)
    assert rows.loc["pass_at_1.create_test", "value"] == 0.0
    assert rows.loc["pass_at_1.create_test_ci_low", "value"] == 0.0
    assert rows.loc["pass_at_1.create_test_ci_high", "value"] == pytest.approx(UPPER_0_OF_20)


def test_pass_at_k_rows_get_the_bracketing_interval() -> None:
    values = [1.0] * 5 + [0.4, 0.8] + [0.0] * 13
    rows = _metric_frame("pass@10", "create_test", values, float(np.mean(values)))
    assert rows.loc["pass_at_10.create_test_ci_low", "value"] == proportion_ci(5, 20)[0]
    assert rows.loc["pass_at_10.create_test_ci_high", "value"] == proportion_ci(7, 20)[1]


def test_no_interval_for_a_figure_the_documents_do_not_average_to() -> None:
    # a group aggregate lm-eval did not weight by size: the documents' interval is not its
    rows = _metric_frame("acc", "none", [1.0, 0.0, 0.0, 0.0], 0.4)
    assert "acc" in rows.index and "acc_ci_low" not in rows.index
