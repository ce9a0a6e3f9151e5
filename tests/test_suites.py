"""Suites: the original objectives and groups, distinct tasks, scores with CIs and chance,
unavailable and failed tasks, and the evaluation config schema."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from forgebench.errors import ForgebenchError
from forgebench.evaluation import suites as su
from forgebench.evaluation.samples import read_samples, samples_frame, write_samples
from forgebench.record import Recorder, read_measurements, write_measurements
from forgebench.stats import proportion_ci

# The original suites, verbatim (truthfulqa_mc is lm-eval's truthfulqa_mc2).
ORIGINAL = {
    "coding": (
        ["humaneval", "mbpp", "boolq"],
        {
            "core": ["humaneval", "mbpp", "boolq"],
            "reasoning": ["winogrande", "piqa"],
            "programming_logic": ["gsm8k"],
        },
    ),
    "general": (
        ["mmlu", "gsm8k", "hellaswag"],
        {
            "core": ["mmlu", "gsm8k", "hellaswag"],
            "reasoning": ["arc_easy", "arc_challenge", "winogrande"],
            "language_understanding": ["boolq", "piqa", "truthfulqa_mc"],
        },
    ),
    "logic": (
        ["hellaswag", "winogrande", "arc_challenge", "boolq"],
        {"reasoning_core": ["hellaswag", "winogrande", "arc_challenge", "boolq"]},
    ),
    "math": (
        ["gsm8k", "mmlu_stem", "winogrande"],
        {
            "core": ["gsm8k", "mmlu_stem", "winogrande"],
            "reasoning": ["arc_challenge", "hellaswag"],
            "mathematical_reasoning": ["mathqa", "drop"],
        },
    ),
    "writing": (
        ["mmlu", "truthfulqa_mc", "hellaswag", "boolq"],
        {
            "core": ["mmlu", "truthfulqa_mc", "hellaswag", "boolq"],
            "reasoning": ["winogrande", "piqa"],
            "language_understanding": ["arc_easy", "arc_challenge"],
        },
    ),
}
OFFLINE = [f"fb_{d}" for d in ("arc_challenge", "arc_easy", "boolq", "gsm8k", "hellaswag")] + [
    f"fb_{d}" for d in ("humaneval", "mbpp", "piqa", "winogrande")
]
HUB = ["drop", "mathqa", "mmlu", "mmlu_stem", "truthfulqa_mc2"]


@pytest.mark.parametrize("name", su.SUITE_NAMES)
def test_suite_files_carry_the_original_suites(name: str) -> None:
    suite = su.load_suite(name)
    objectives, groups = ORIGINAL[name]
    assert suite.name == name
    assert [o.name for o in suite.objectives] == objectives
    assert {g: [m.name for m in ms] for g, ms in suite.groups.items()} == groups
    for member in suite.members():  # every name resolves to the catalog's task and metric
        assert member.ref == su.CATALOG[member.name]
        assert member.weight == 1.0


def test_truthfulqa_mc_is_lm_evals_mc2() -> None:
    assert su.CATALOG["truthfulqa_mc"].task == "truthfulqa_mc2"


def test_tasks_for_lists_each_task_once() -> None:
    assert su.tasks_for(su.SUITE_NAMES, allow_online=False) == sorted(OFFLINE)
    assert su.tasks_for(su.SUITE_NAMES, allow_online=True) == sorted(OFFLINE + HUB)
    assert su.tasks_for(["logic"], allow_online=False) == [
        "fb_arc_challenge",
        "fb_boolq",
        "fb_hellaswag",
        "fb_winogrande",
    ]
    assert su.unavailable_tasks(su.SUITE_NAMES, allow_online=False) == HUB
    assert su.unavailable_tasks(su.SUITE_NAMES, allow_online=True) == []


def test_bad_suite_files_are_refused(tmp_path) -> None:
    cases = {
        "unknown": {"objectives": ["no_such_task"]},
        "weight": {"objectives": [{"name": "boolq", "weight": 0}]},
        "empty": {"objectives": []},
        "key": {"objectives": [{"name": "boolq", "metrik": "acc"}]},
        "repeat": {"objectives": ["boolq", "boolq"]},
    }
    for name, doc in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises(ForgebenchError):
            su.load_suite(path)
    with pytest.raises(ForgebenchError, match="known suites"):
        su.load_suite("nonexistent", tmp_path)


def test_overrides_and_custom_tasks(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    doc = {
        "objectives": [
            {"name": "boolq", "weight": 3},
            {"name": "arc_easy", "metric": "acc"},
            {"name": "custom", "task": "fb_custom", "metric": "f1"},
        ],
        "groups": {"g": ["boolq", {"name": "piqa", "metric": "acc"}]},
    }
    path.write_text(yaml.safe_dump(doc))
    suite = su.load_suite(path)
    assert suite.name == "mine"
    by = {o.name: o for o in suite.members()}
    assert by["boolq"].weight == 3.0
    assert by["arc_easy"].ref == su.TaskRef("fb_arc_easy", "acc")
    assert by["custom"].ref == su.TaskRef("fb_custom", "f1", "none")
    assert by["piqa"].ref == su.TaskRef("fb_piqa", "acc")


# ------------------------------------------------------------------------------ scores


def _task_files(
    model: str,
    task: str,
    values: dict[str, list[float]],
    n_choices: int | None,
    targets: list[int] | None = None,
):
    """Measurement rows and samples of one evaluated task, as the runner writes them; the
    gold answers are ``targets`` (default: choices in turn, 0, 1, .., n_choices - 1, 0, ..)."""
    rec = Recorder("eval", task, 1)
    for metric, vals in values.items():
        rec.add(model, {"task": task}, metric, "fraction", True, float(np.mean(vals)))
    first = next(iter(values.values()))
    logged = {
        task: [
            {
                "doc_id": i,
                "doc": {"i": i},
                "doc_hash": f"h{task}{i}",
                "target": targets[i] if targets else i % (n_choices or 1),
                "filter": "none",
                "metrics": list(values),
                **{m: vals[i] for m, vals in values.items()},
            }
            for i in range(len(first))
        ]
    }
    samples = samples_frame(
        logged, model=model, task=task, n_choices=(lambda s, d: n_choices) if n_choices else None
    )
    return rec.frame(), samples


def _failed_record(model: str, task: str, status: str) -> pd.DataFrame:
    rec = Recorder("eval", task, 1)
    rec.add(model, {"task": task, "reason": "boom"}, "evaluation", "run", True, None, status=status)
    return rec.frame()


def _logic_inputs(rng: np.random.Generator, *, fail: str | None = None):
    records, samples = [], []
    for name, n, k in (("hellaswag", 40, 4), ("winogrande", 60, 2), ("arc_challenge", 30, 4)):
        ref = su.CATALOG[name]
        vals = rng.integers(0, 2, n).astype(float).tolist()
        r, s = _task_files("m", ref.task, {"acc": vals, "acc_norm": vals[::-1]}, k)
        records.append(r)
        samples.append(s)
    if fail:
        records.append(_failed_record("m", fail, "error:RuntimeError"))
    else:
        r, s = _task_files("m", "fb_boolq", {"acc": rng.integers(0, 2, 50).astype(float)}, 2)
        records.append(r)
        samples.append(s)
    return pd.concat(records, ignore_index=True), pd.concat(samples, ignore_index=True)


def test_score_is_the_weighted_mean_of_objectives_with_a_ci() -> None:
    records, samples = _logic_inputs(np.random.default_rng(1))
    suite = su.load_suite("logic")
    rows, table = su.score_suite(suite, "m", records, samples, allow_online=False, seed=3)
    parts = table.set_index("name")
    expected = np.mean([parts.loc[o.name, "score"] for o in suite.objectives])
    get = dict(zip(rows["metric"], rows["value"], strict=True))
    assert get["score"] == pytest.approx(expected)
    assert get["score_ci_low"] < get["score"] < get["score_ci_high"]
    # Per objective: the mean of its per-document values for the catalog's metric.
    hs = samples[(samples.task == "fb_hellaswag") & (samples.metric == "acc_norm")]
    assert get["objective.hellaswag"] == pytest.approx(hs["value"].mean())
    assert get["objective.winogrande"] == pytest.approx(
        samples[(samples.task == "fb_winogrande") & (samples.metric == "acc")]["value"].mean()
    )
    # Chance: the higher of uniform and majority class, per objective: 1/4 for hellaswag
    # (answers spread evenly over 40 documents), 1/2 for winogrande and boolq; ARC's 30
    # documents hold answer 0 and 1 eight times each, so its majority class is 8/30.
    assert get["objective.hellaswag.chance"] == pytest.approx(0.25)
    assert get["objective.arc_challenge.chance_uniform"] == pytest.approx(0.25)
    assert get["objective.arc_challenge.chance"] == pytest.approx(8 / 30)
    assert get["chance"] == pytest.approx((0.25 + 0.5 + 8 / 30 + 0.5) / 4)
    assert get["chance_uniform"] == pytest.approx((0.25 + 0.5 + 0.25 + 0.5) / 4)
    head = json.loads(rows.loc[rows.metric == "score", "params"].iloc[0])
    assert head["complete"] is True and head["missing"] == []
    assert (rows["status"] == "ok").all()
    assert get["group.reasoning_core"] == pytest.approx(expected)
    assert parts.loc["logic", "kind"] == "suite"


def test_weights_change_the_score() -> None:
    records, samples = _logic_inputs(np.random.default_rng(2))
    suite = su.load_suite("logic")
    heavy = su.Suite(
        "logic",
        "",
        tuple(
            su.Objective(o.name, o.ref, 5.0 if o.name == "boolq" else 1.0) for o in suite.objectives
        ),
    )
    rows, table = su.score_suite(heavy, "m", records, samples, allow_online=False)
    s = table.set_index("name")["score"]
    expected = (s["hellaswag"] + s["winogrande"] + s["arc_challenge"] + 5 * s["boolq"]) / 8
    assert rows.loc[rows.metric == "score", "value"].iloc[0] == pytest.approx(expected)


def test_single_objective_ci_is_its_clopper_pearson_interval() -> None:
    vals = np.random.default_rng(5).integers(0, 2, 80).astype(float)
    part = su.PartScore("x", su.TaskRef("fb_x", "acc"), 1.0, "ok", values=vals)
    score, ci = su.weighted_score_ci([part], confidence=0.9)
    assert score == pytest.approx(vals.mean())
    assert ci == pytest.approx(proportion_ci(int(vals.sum()), 80, 0.9))


def test_objectives_at_zero_are_not_certain_zeros() -> None:
    """The coding suite of a small model: HumanEval and MBPP 0/20, BoolQ 0/20. The pooled
    bootstrap called the score a certain 0 ([0.0%, 0.0%]); each objective's 0/20 supports
    up to 16.8%, and the score's interval carries all three (Bonferroni)."""
    records, samples = [], []
    for name in ("humaneval", "mbpp", "boolq"):
        ref = su.CATALOG[name]
        rec = Recorder("eval", ref.task, 1)
        rec.add("m", {}, "x", "fraction", True, 0.0)
        records.append(rec.frame())
        logged = {
            ref.task: [
                {"doc_id": i, "doc": {}, "doc_hash": f"{name}{i}", "target": "t",
                 "filter": ref.filter, "metrics": [ref.metric], ref.metric: 0.0}
                for i in range(20)
            ]
        }  # fmt: skip
        samples.append(samples_frame(logged, model="m", task=ref.task))
    rows, table = su.score_suite(
        su.load_suite("coding"), "m", pd.concat(records), pd.concat(samples), allow_online=False
    )
    get = dict(zip(rows["metric"], rows["value"], strict=True))
    assert get["score"] == 0.0 and get["score_ci_low"] == 0.0
    assert get["objective.humaneval.ci_high"] == pytest.approx(proportion_ci(0, 20)[1])
    assert get["score_ci_high"] == pytest.approx(proportion_ci(0, 20, 1 - 0.05 / 3)[1])
    assert get["score_ci_high"] > 0.168
    assert table.set_index("name").loc["humaneval", "score_ci_high"] > 0.168


def test_boolq_objective_chance_is_its_majority_class() -> None:
    """62% of BoolQ's answers are "yes": a model that always says "no" scores 0.38 and
    must be compared with 0.62, not 1/2."""
    targets = [1] * 62 + [0] * 38
    r, s = _task_files("m", "fb_boolq", {"acc": [float(t == 0) for t in targets]}, 2, targets)
    suite = su.Suite("one", "", (su.Objective("boolq", su.CATALOG["boolq"]),))
    rows, table = su.score_suite(suite, "m", r, s, allow_online=False)
    get = dict(zip(rows["metric"], rows["value"], strict=True))
    assert get["objective.boolq.chance"] == pytest.approx(0.62)
    assert get["chance"] == pytest.approx(0.62)
    assert table.set_index("name").loc["boolq", "chance"] == pytest.approx(0.62)


def test_suite_interval_covers_at_its_level() -> None:
    """Three objectives of 20, 40 and 200 documents with weights 1, 1, 2: the interval
    covers the weighted mean of their true accuracies at least 95% of the time, small and
    near-zero objectives included."""
    rng = np.random.default_rng(11)
    truth_p, sizes, weights = (0.02, 0.5, 0.9), (20, 40, 200), (1.0, 1.0, 2.0)
    truth = float(np.dot(weights, truth_p) / sum(weights))
    covered, runs = 0, 400
    for _ in range(runs):
        parts = [
            su.PartScore(f"p{i}", su.TaskRef(f"fb_{i}", "acc"), w, "ok",
                         values=(rng.random(n) < p).astype(float))
            for i, (p, n, w) in enumerate(zip(truth_p, sizes, weights, strict=True))
        ]  # fmt: skip
        _, (low, high) = su.weighted_score_ci(parts, confidence=0.95)
        covered += low <= truth <= high
    assert covered / runs >= 0.95


def test_ci_narrows_with_more_documents() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 1000):
        parts = [
            su.PartScore(
                f"p{i}",
                su.TaskRef(f"fb_{i}", "acc"),
                1.0,
                "ok",
                values=rng.integers(0, 2, n).astype(float),
            )
            for i in range(3)
        ]
        _, (lo, hi) = su.weighted_score_ci(parts, confidence=0.95)
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3


def test_hub_objectives_are_unavailable_offline_and_the_suite_incomplete() -> None:
    rng = np.random.default_rng(3)
    records, samples = [], []
    for name in ("gsm8k", "winogrande", "arc_challenge", "hellaswag"):
        ref = su.CATALOG[name]
        vals = rng.integers(0, 2, 30).astype(float)
        rec = Recorder("eval", ref.task, 1)
        rec.add("m", {}, "x", "fraction", True, 0.5)
        records.append(rec.frame())
        logged = {
            ref.task: [
                {
                    "doc_id": i,
                    "doc": {},
                    "doc_hash": f"{name}{i}",
                    "target": "t",
                    "filter": ref.filter,
                    "metrics": [ref.metric],
                    ref.metric: vals[i],
                }
                for i in range(30)
            ]
        }
        samples.append(samples_frame(logged, model="m", task=ref.task))
    rows, table = su.score_suite(
        su.load_suite("math"), "m", pd.concat(records), pd.concat(samples), allow_online=False
    )
    by = rows.set_index("metric")
    head = json.loads(by.loc["score", "params"])
    assert head["complete"] is False and head["missing"] == ["mmlu_stem"]
    assert by.loc["objective.mmlu_stem", "status"] == "unavailable"
    assert math.isnan(by.loc["objective.mmlu_stem", "value"])
    assert "allow_online" in json.loads(by.loc["objective.mmlu_stem", "params"])["reason"]
    # The score is the mean of what is there, never a filled-in value for what is not.
    t = table.set_index("name")
    assert by.loc["score", "value"] == pytest.approx(
        (t.loc["gsm8k", "score"] + t.loc["winogrande", "score"]) / 2
    )
    assert by.loc["score", "status"] == "ok"
    assert "missing mmlu_stem" in t.loc["math", "reason"]
    # generative gsm8k has no chance level, so the suite has none
    assert "chance" not in by.index
    assert t.loc["mathqa", "status"] == t.loc["drop", "status"] == "unavailable"
    assert by.loc["group.mathematical_reasoning", "status"] == "unavailable"
    assert json.loads(by.loc["group.core", "params"])["missing"] == ["mmlu_stem"]
    # Online the hub task is expected; not evaluated is still unavailable, with that reason.
    rows, _ = su.score_suite(
        su.load_suite("math"), "m", pd.concat(records), pd.concat(samples), allow_online=True
    )
    reason = json.loads(rows.set_index("metric").loc["objective.mmlu_stem", "params"])["reason"]
    assert "not evaluated" in reason


def test_a_failed_task_keeps_its_status_and_stops_nothing() -> None:
    records, samples = _logic_inputs(np.random.default_rng(4), fail="fb_boolq")
    rows, _ = su.score_suite(su.load_suite("logic"), "m", records, samples, allow_online=False)
    by = rows.set_index("metric")
    assert by.loc["objective.boolq", "status"] == "error:RuntimeError"
    assert by.loc["score", "status"] == "ok"
    assert json.loads(by.loc["score", "params"])["missing"] == ["boolq"]


def test_a_suite_with_nothing_available_has_a_failed_score() -> None:
    empty = Recorder("eval", "x", 1).frame()
    rows, _ = su.score_suite(
        su.load_suite("writing"),
        "m",
        empty,
        samples_frame({}, model="m", task="x"),
        allow_online=False,
    )
    by = rows.set_index("metric")
    assert by.loc["score", "status"] == "unavailable"
    assert math.isnan(by.loc["score", "value"])


def test_near_chance_model_is_not_above_chance() -> None:
    rng = np.random.default_rng(9)
    r, s = _task_files(
        "m",
        "fb_hellaswag",
        {"acc_norm": rng.integers(0, 4, 100).__eq__(0).astype(float).tolist()},
        4,
    )
    suite = su.Suite("one", "", (su.Objective("hellaswag", su.CATALOG["hellaswag"]),))
    _, table = su.score_suite(suite, "m", r, s, allow_online=False)
    row = table.set_index("name").loc["hellaswag"]
    assert row["score_ci_low"] < 0.25 < row["score_ci_high"]
    assert not row["above_chance"]
    r, s = _task_files("m", "fb_hellaswag", {"acc_norm": [1.0] * 90 + [0.0] * 10}, 4)
    _, table = su.score_suite(suite, "m", r, s, allow_online=False)
    assert table.set_index("name").loc["hellaswag", "above_chance"]


def test_score_suite_files_round_trip(tmp_path) -> None:
    records, samples = _logic_inputs(np.random.default_rng(6))
    rec_paths, sample_paths = [], []
    for task, frame in records.groupby("benchmark"):
        p = tmp_path / f"{task}.parquet"
        write_measurements(frame, p, {"t": 1})
        rec_paths.append(p)
        q = tmp_path / f"{task}.samples.parquet"
        write_samples(samples[samples.task == task], q, {"task": task})
        sample_paths.append(q)
        assert read_samples(q).shape[0] == (samples.task == task).sum()
    _, table = su.score_suite_files(
        "logic",
        "m",
        rec_paths,
        sample_paths,
        out_record=tmp_path / "suite.parquet",
        out_table=tmp_path / "table.parquet",
        allow_online=False,
        n_resamples=200,
    )
    again = read_measurements(tmp_path / "suite.parquet")
    assert again["benchmark"].unique().tolist() == ["suite_logic"]
    assert again["case"].unique().tolist() == ["m"]
    assert pd.read_parquet(tmp_path / "table.parquet").shape[0] == len(table)


# ------------------------------------------------------------------------------ schema


def test_evaluation_schema_fills_defaults_and_names_bad_keys(tmp_path, repo) -> None:
    from forgebench.config import check_config

    schema = yaml.safe_load((repo / "config" / "schema.yaml").read_text())
    schema["properties"]["evaluation"] = {"$ref": "schemas/evaluation.schema.yaml", "default": {}}
    schema["properties"]["suites"]["properties"]["eval"] = {
        "$ref": "schemas/evaluation.schema.yaml#/$defs/eval_suite"
    }
    (tmp_path / "schemas").mkdir()
    for f in (repo / "config" / "schemas").glob("*.yaml"):
        (tmp_path / "schemas" / f.name).write_text(f.read_text())
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(schema))
    cfg = {
        "suites": {"eval": {"benchmarks": {"overhead": {"rounds": 3}}}},
        "evaluation": {"subset_size": 50, "per_task": {"fb_gsm8k": {"subset_size": 5}}},
    }
    check_config(cfg, tmp_path / "schema.yaml")
    assert cfg["evaluation"]["backend"] == "hf" and cfg["evaluation"]["batch_size"] == 16
    assert cfg["evaluation"]["suites"] == list(su.SUITE_NAMES)
    assert cfg["suites"]["eval"]["benchmarks"]["overhead"]["limit"] == 200
    with pytest.raises(ForgebenchError, match="per_task"):
        bad = {"suites": {}, "evaluation": {"per_task": {"fb_gsm8k": {"seed": 1}}}}
        check_config(bad, tmp_path / "schema.yaml")
    with pytest.raises(ForgebenchError, match="subset_size"):
        check_config({"suites": {}, "evaluation": {"subset_sise": 5}}, tmp_path / "schema.yaml")
    with pytest.raises(ForgebenchError, match=r"evaluation\.suites"):
        check_config({"suites": {}, "evaluation": {"suites": ["poetry"]}}, tmp_path / "schema.yaml")
