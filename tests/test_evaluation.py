"""A model's evaluation through lm-eval on a tiny random model over prepared data
from the shared mirror, its outputs, failures as rows, and the overhead benchmark."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATASETS
from tiny_models import make_tiny_llama

from forgebench.errors import ForgebenchError
from forgebench.evaluation.runner import (
    EvalSettings,
    evaluate,
    metric_name,
    output_paths,
    select_docs,
)
from forgebench.evaluation.samples import read_samples
from forgebench.record import read_measurements
from forgebench.stats import proportion_ci

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

# lm-eval and transformers warn about things a test model does on purpose (random weights,
# no chat template); the module's pytest config turns warnings into errors.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

ARC_TEST_DOCS = 2376
CFG = {"batch_size": 8, "bootstrap_iters": 100}


def _tiny_models(root, texts, seeds):
    """Random LlamaForCausalLM models (one per seed) sharing a byte-level BPE tokenizer."""
    return [
        make_tiny_llama(
            root / f"m{seed}",
            seed=seed,
            texts=texts,
            vocab_size=400,
            layers=1,
            heads=2,
            max_positions=1024,
        )
        for seed in seeds
    ]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Prepared arc_easy and gsm8k (forgebench.datasets from the mirror) and two tiny
    random models that differ only in their seed."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"no dataset mirror at {SHARED_DATASETS}")
    from forgebench.datasets import prepare

    root = tmp_path_factory.mktemp("eval")
    datasets = root / "datasets"
    for name in ("arc_easy", "gsm8k"):
        prepare(name, mirror=SHARED_DATASETS, allow_online=False, out_dir=datasets / name)
    test = pd.read_parquet(datasets / "arc_easy" / "test.parquet")
    texts = (test["question"] + " " + test["choices"].map(lambda c: " ".join(c["text"]))).tolist()
    models = _tiny_models(root, texts[:400], (0, 1))
    return {"root": root, "datasets": datasets, "models": models, "arc_test": test}


def _run(setup, task, *, model=0, name="tiny", cfg=CFG, seed=3, out="results", **kw):
    out_dir = setup["root"] / out
    frame = evaluate(
        setup["models"][model],
        name,
        task,
        cfg=cfg,
        datasets_dir=setup["datasets"],
        out_dir=out_dir,
        seed=seed,
        **kw,
    )
    return frame, output_paths(out_dir, name)


def test_select_docs_depends_on_count_and_seed_only() -> None:
    a = select_docs(1000, 20, 7)
    assert a == select_docs(1000, 20, 7) and len(set(a)) == 20 and a == sorted(a)
    assert a != select_docs(1000, 20, 8)
    assert all(0 <= i < 1000 for i in a)
    assert select_docs(10, 10, 7) is None and select_docs(10, None, 7) is None


def test_metric_names() -> None:
    assert metric_name("acc", "none") == "acc"
    assert metric_name("exact_match", "strict-match") == "exact_match.strict_match"
    assert metric_name("pass@1", "create_test") == "pass_at_1.create_test"


def test_config_mistakes_raise_naming_the_key(setup) -> None:
    with pytest.raises(ForgebenchError, match="exclusive"):
        EvalSettings.from_cfg({"limit": 5, "subset_size": 5})
    with pytest.raises(ForgebenchError, match=r"evaluation\.backend"):
        _run(setup, "fb_arc_easy", cfg={**CFG, "backend": "no-such-backend"})


def test_subset_evaluation_writes_every_output(setup) -> None:
    frame, paths = _run(setup, "fb_arc_easy", cfg={**CFG, "subset_size": 12})
    assert (frame["status"] == "ok").all()
    assert set(frame["suite"]) == {"eval"} and set(frame["benchmark"]) == {"fb_arc_easy"}
    assert set(frame["case"]) == {"tiny"}
    got = dict(zip(frame["metric"], frame["value"], strict=True))
    for metric in ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "chance_acc", "n_docs"):
        assert metric in got
    assert got["n_docs"] == 12 and got["wall_time"] > 0
    assert read_measurements(paths.record).shape == frame.shape

    samples = read_samples(paths.samples)
    expected_ids = select_docs(ARC_TEST_DOCS, 12, 3)
    assert sorted(samples["doc_id"].unique()) == expected_ids
    assert set(samples["metric"]) == {"acc", "acc_norm"} and len(samples) == 24
    acc = samples[samples.metric == "acc"]
    assert got["acc"] == pytest.approx(acc["value"].mean())
    assert acc["correct"].tolist() == (acc["value"] == 1.0).tolist()
    # doc_hash is lm-eval's hash of the document: one per document, stable across metrics
    assert acc["doc_hash"].is_unique and acc["doc_hash"].str.fullmatch("[0-9a-f]{64}").all()
    # chance over exactly the evaluated documents: the mean of 1/choices, the share of the
    # most frequent gold answer (position), and the higher of the two
    docs = setup["arc_test"].iloc[expected_ids]
    uniform = float(np.mean([1 / len(c["text"]) for c in docs["choices"]]))
    assert (acc["n_choices"].to_numpy() == [len(c["text"]) for c in docs["choices"]]).all()
    targets = [
        c["label"].tolist().index(k)
        for c, k in zip(docs["choices"], docs["answerKey"], strict=True)
    ]
    assert acc["target"].astype(int).tolist() == targets
    assert acc["gold"].tolist() == targets
    majority = max(targets.count(t) for t in set(targets)) / len(targets)
    assert got["chance_uniform"] == pytest.approx(uniform)
    assert got["chance_majority"] == pytest.approx(majority)
    assert got["chance_acc"] == pytest.approx(max(uniform, majority))

    results = json.loads(paths.results_json("fb_arc_easy").read_text())
    assert results["results"]["fb_arc_easy"]["acc,none"] == got["acc"]
    assert results["config"]["random_seed"] == 3 and "samples" not in results
    lines = (paths.lm_eval_dir("fb_arc_easy") / "samples_fb_arc_easy.jsonl").read_text()
    lines = lines.splitlines()
    assert [json.loads(x)["doc_id"] for x in lines] == expected_ids
    params = json.loads(frame["params"].iloc[0])
    assert params["mode"] == "subset" and params["n_docs_total"] == ARC_TEST_DOCS


def test_shares_of_documents_have_exact_intervals(setup) -> None:
    """acc and acc_norm of 12 documents get Clopper-Pearson intervals from the per-document
    outcomes, beside lm-eval's stderr; value ± z·stderr read 0/n as a certain 0."""
    frame, paths = _run(setup, "fb_arc_easy", cfg={**CFG, "subset_size": 12})
    got = dict(zip(frame["metric"], frame["value"], strict=True))
    samples = read_samples(paths.samples)
    for metric in ("acc", "acc_norm"):
        assert f"{metric}_ci_low" in got and f"{metric}_ci_high" in got, sorted(got)
        k = int(samples.loc[samples.metric == metric, "value"].sum())
        low, high = proportion_ci(k, 12, 0.95)
        assert got[f"{metric}_ci_low"] == pytest.approx(low)
        assert got[f"{metric}_ci_high"] == pytest.approx(high)
        assert high - low > 0.2  # 12 documents cannot pin an accuracy down
    ci = frame[frame.metric == "acc_ci_low"]
    assert json.loads(ci["params"].iloc[0])["interval"] == "Clopper-Pearson"


def test_every_model_gets_the_same_documents(setup) -> None:
    cfg = {**CFG, "subset_size": 6}
    _, a = _run(setup, "fb_arc_easy", model=0, name="a", cfg=cfg, out="same")
    _, b = _run(setup, "fb_arc_easy", model=1, name="b", cfg=cfg, out="same")
    sa, sb = read_samples(a.samples), read_samples(b.samples)
    assert sa["doc_hash"].tolist() == sb["doc_hash"].tolist()
    # different weights: the log-likelihoods differ even where the answers agree
    ra, rb = (
        [
            json.loads(x)["resps"]
            for x in (p.lm_eval_dir("fb_arc_easy") / "samples_fb_arc_easy.jsonl")
            .read_text()
            .splitlines()
        ]
        for p in (a, b)
    )
    assert ra != rb


def test_tasks_of_one_job_answer_as_separate_jobs(setup, caplog) -> None:
    """One process, one loaded model, two tasks: the same rows and per-document answers as
    a job per task, and the samples table keeps each task's rows apart."""
    cfg = {**CFG, "subset_size": 5, "max_gen_toks": 3}
    tasks = ["fb_arc_easy", "fb_gsm8k"]
    with caplog.at_level("INFO", logger="forgebench.evaluation.runner"):
        both, paths = _run(setup, tasks, cfg=cfg, out="both")
    assert sum("model loaded" in r.getMessage() for r in caplog.records) == 1
    assert (both["status"] == "ok").all() and list(dict.fromkeys(both["benchmark"])) == tasks
    joint = read_samples(paths.samples)
    for task in tasks:
        one, own = _run(setup, task, cfg=cfg, out=f"own_{task}")
        keep = ["metric", "value", "params"]
        a = both[(both.benchmark == task) & ~both.metric.isin(["wall_time", "lm_eval_time"])]
        b = one[~one.metric.isin(["wall_time", "lm_eval_time"])]
        a, b = a[keep].reset_index(drop=True), b[keep].reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
        pd.testing.assert_frame_equal(
            joint[joint.task == task].reset_index(drop=True), read_samples(own.samples)
        )
        assert paths.results_json(task).is_file()


def test_per_task_overrides() -> None:
    from forgebench.evaluation.runner import task_config

    cfg = {"subset_size": 20, "limit": None, "per_task": {"fb_gsm8k": {"subset_size": 5}}}
    assert task_config(cfg, "fb_gsm8k") == {"subset_size": 5, "limit": None}
    assert task_config(cfg, "fb_arc_easy") == {"subset_size": 20, "limit": None}
    assert task_config({**cfg, "per_task": {"fb_x": {"limit": 3}}}, "fb_x") == {
        "subset_size": None,
        "limit": 3,
    }
    with pytest.raises(ForgebenchError, match=r"per_task\.fb_x"):
        task_config({"per_task": {"fb_x": {"seed": 1}}}, "fb_x")


def test_limit_takes_the_first_documents(setup) -> None:
    frame, paths = _run(setup, "fb_arc_easy", cfg={**CFG, "limit": 4}, out="limit")
    assert sorted(read_samples(paths.samples)["doc_id"].unique()) == [0, 1, 2, 3]
    assert json.loads(frame["params"].iloc[0])["mode"] == "limit"


def test_generation_is_capped(setup) -> None:
    cfg = {**CFG, "subset_size": 2, "max_gen_toks": 3, "num_fewshot": 1}
    frame, paths = _run(setup, "fb_gsm8k", cfg=cfg, out="gen")
    assert (frame["status"] == "ok").all()
    metrics = set(frame["metric"])
    assert {"exact_match.strict_match", "exact_match.flexible_extract"} <= metrics
    assert "chance_acc" not in metrics  # not multiple choice
    for line in (paths.lm_eval_dir("fb_gsm8k") / "samples_fb_gsm8k.jsonl").read_text().splitlines():
        gen_args = json.loads(line)["arguments"]["gen_args_0"]["arg_1"]
        assert gen_args["max_gen_toks"] == 3
    samples = read_samples(paths.samples)
    assert set(samples["filter"]) == {"strict-match", "flexible-extract"}
    assert samples["n_choices"].isna().all()


def test_missing_data_is_an_unavailable_row_not_a_crash(setup, tmp_path) -> None:
    frame = evaluate(
        setup["models"][0],
        "tiny",
        "fb_arc_easy",
        cfg=CFG,
        datasets_dir=tmp_path / "nothing",
        out_dir=tmp_path,
        seed=0,
    )
    assert frame["status"].tolist() == ["unavailable"]
    assert math.isnan(frame["value"].iloc[0])
    assert "arc_easy" in json.loads(frame["params"].iloc[0])["reason"]
    paths = output_paths(tmp_path, "tiny")
    assert read_samples(paths.samples).empty
    status = json.loads(paths.results_json("fb_arc_easy").read_text())["forgebench_status"]
    assert status == "unavailable"


def test_hub_task_offline_is_unavailable_by_name(setup, tmp_path) -> None:
    frame = evaluate(
        setup["models"][0], "tiny", "mmlu", cfg=CFG, datasets_dir=tmp_path, out_dir=tmp_path, seed=0
    )
    assert frame["status"].tolist() == ["unavailable"]
    assert "mmlu" in json.loads(frame["params"].iloc[0])["reason"]


def test_a_broken_model_is_an_error_row(setup, tmp_path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    frame = evaluate(
        broken,
        "broken",
        "fb_arc_easy",
        cfg={**CFG, "limit": 2},
        datasets_dir=setup["datasets"],
        out_dir=tmp_path,
        seed=0,
    )
    assert len(frame) == 1 and frame["status"].iloc[0].startswith("error:")
    assert read_measurements(output_paths(tmp_path, "broken").record).shape[0] == 1


def test_overhead_benchmark_refuses_a_missing_model(setup) -> None:
    from forgebench.evaluation import overhead

    with pytest.raises(ForgebenchError, match=r"overhead\.model"):
        overhead.run(
            {"model_dir": str(setup["root"] / "none"), "datasets_dir": str(setup["datasets"])},
            seed=0,
        )
    with pytest.raises(ForgebenchError, match=r"overhead\.datasets_dir"):
        overhead.run(
            {"model_dir": str(setup["models"][0]), "datasets_dir": str(setup["root"] / "none")},
            seed=0,
        )


@pytest.mark.slow  # two fresh interpreters importing torch and lm-eval: ~35 s
def test_overhead_benchmark_checks_answers_and_times_both(setup) -> None:
    from forgebench.evaluation import overhead

    cfg = {
        "model_dir": str(setup["models"][0]),
        "datasets_dir": str(setup["datasets"]),
        "limit": 6,
        "batch_size": 8,
        "rounds": 1,
        "warmup_rounds": 0,
        "bootstrap_iters": 0,
    }
    frame = overhead.run(cfg, seed=1)
    assert (frame["status"] == "ok").all(), frame[["case", "metric", "status"]]
    walls = frame[frame.metric == "wall_time"].set_index("case")["value"]
    assert set(walls.index) == {overhead.DIRECT, overhead.OURS} and (walls > 0).all()
    pct = frame.loc[frame.metric == "overhead", "value"].iloc[0]
    assert pct == pytest.approx((walls[overhead.OURS] / walls[overhead.DIRECT] - 1) * 100)


# ------------------------------------------------------------- subsets sized for signal


def test_clear_chance_power_is_the_exact_binomial_tail() -> None:
    from scipy import stats as sps

    from forgebench.evaluation.subset_size import clear_chance_power, documents_needed

    n, acc, chance = 40, 0.55, 0.27
    # k_min by brute force: the fewest right answers whose lower bound is above chance
    k_min = next(k for k in range(n + 1) if k and proportion_ci(k, n)[0] > chance)
    assert clear_chance_power(n, acc, chance) == pytest.approx(sps.binom.sf(k_min - 1, n, acc))
    need = documents_needed(acc, chance)
    assert clear_chance_power(need, acc, chance) >= 0.8
    assert all(clear_chance_power(m, acc, chance) < 0.8 for m in range(1, need))
    assert documents_needed(0.25, 0.27) is None  # at or below chance: never
    assert documents_needed(0.52, 0.5, max_n=1267) is None  # WinoGrande-like: beyond the set
    # A subset whose majority answer is more frequent needs more documents.
    assert documents_needed(acc, lambda m: 0.35) > need


def test_subset_chance_is_the_runners_chance_of_the_seeds_documents() -> None:
    from forgebench.evaluation.samples import chance_levels
    from forgebench.evaluation.subset_size import subset_chance

    rng = np.random.default_rng(0)
    docs = pd.DataFrame(
        {
            "subtask": "t",
            "doc_id": range(300),
            "n_choices": 4,
            "gold": rng.choice(4, 300, p=[0.4, 0.2, 0.2, 0.2]),
        }
    )
    at = subset_chance(docs, seed=7)
    pick = select_docs(300, 50, 7)
    assert at(50) == chance_levels(docs.iloc[pick])["chance_acc"]
    assert at(300) == chance_levels(docs)["chance_acc"] > 0.25  # the majority answer


def test_planning_accuracy_is_the_lower_bound() -> None:
    from forgebench.evaluation.subset_size import planning_accuracy

    assert planning_accuracy(1230, 1838) == pytest.approx(proportion_ci(1230, 1838)[0])
    assert planning_accuracy(1230, 1838) < 1230 / 1838


# ------------------------------------------------------------------ which model, where


def _default_config() -> dict:
    import yaml
    from conftest import REPO

    from forgebench.config import check_config

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    check_config(cfg, REPO / "config" / "schema.yaml")
    return cfg


def test_default_run_evaluates_the_pretrained_model_with_sized_subsets() -> None:
    from forgebench import workflow as fw

    cfg = _default_config()
    assert cfg["evaluation"]["models"] == ["smollm2"]
    assert cfg["models"]["smollm2"]["source"] == "gguf"
    tasks = fw.model_tasks(cfg, "smollm2")
    assert {"fb_arc_easy", "fb_piqa", "fb_hellaswag", "fb_winogrande", "fb_boolq"} <= set(tasks)
    settings = fw.evaluation_job_settings(cfg, "smollm2")
    assert "tasks" not in settings  # which tasks is the job's own list, not its settings
    for task in ("fb_gsm8k", "fb_humaneval", "fb_mbpp"):
        assert settings["per_task"][task]["subset_size"] == 5
    # EvoMerge's seeds and individuals keep their own smaller subsets.
    seed = cfg["evomerge"]["seeds"][0]
    evo = fw.evaluation_job_settings(cfg, seed)
    assert evo["subset_size"] == cfg["evomerge"]["subset_size"]
    assert all("subset_size" not in o for o in evo["per_task"].values())
    # The cognate's own evaluations are gone: only EvoMerge's fitness suite scores it.
    assert fw.model_suites(cfg, "cognate") == [cfg["evomerge"]["fitness_suite"]]


def test_every_model_dependent_benchmark_names_its_model() -> None:
    from forgebench import workflow as fw

    cfg = _default_config()
    for spec in fw.enabled_benchmarks(cfg):
        if "model" in spec.needs:
            model = fw.benchmark_config(cfg, spec.suite, spec.name).get("model")
            assert model in cfg["models"], f"{spec.key}: model {model!r}"


def test_benchmark_rows_carry_their_model() -> None:
    from forgebench.record import Recorder
    from forgebench.runner import with_model

    rec = Recorder("knowledge", "creativity", 1)
    rec.add("a", {"k": 1}, "m", "count", True, 1.0)
    rec.add("b", {"model": "other"}, "m", "count", True, 2.0)
    tagged = with_model(rec.frame(), "smollm2")
    assert [json.loads(p)["model"] for p in tagged["params"]] == ["smollm2", "other"]
    assert json.loads(tagged["params"].iloc[0])["k"] == 1
    assert with_model(rec.frame(), None).equals(rec.frame())
