"""An lm-eval built-in task named in config with the user's own data files
(``evaluation.local_data``): evaluated offline through the runner with its own lm-eval
config, scored in a suite, checked at parse time, and scheduled alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from tiny_models import make_tiny_llama

from forgebench.datasets.fetch import sha256_bytes
from forgebench.errors import ForgebenchError
from forgebench.evaluation.runner import evaluate, output_paths
from forgebench.evaluation.samples import read_samples
from forgebench.evaluation.suites import load_suite, score_suite, tasks_for
from forgebench.evaluation.tasks import local_task_configs
from forgebench.record import read_measurements, read_provenance
from forgebench.stats import proportion_ci

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

#: lm-eval's openbookqa (allenai/openbookqa "main") schema: doc_to_text is the bare field
#: ``question_stem``, the target ``choices.label.index(answerKey.lstrip())``.
OPENBOOKQA = [
    {
        "id": f"q{i}",
        "question_stem": stem,
        "choices": {"text": choices, "label": ["A", "B", "C", "D"]},
        "answerKey": key,
    }
    for i, (stem, choices, key) in enumerate(
        [
            ("The sun is a", ["star", "planet", "moon", "comet"], "A"),
            ("Plants need light to", ["sleep", "make food", "walk", "sing"], "B"),
            ("Ice melts when it is", ["cold", "dark", "warmed", "wet"], "C"),
            ("A magnet attracts", ["wood", "glass", "paper", "iron"], "D"),
            ("Rain falls from", ["clouds", "rocks", "trees", "roots"], "A"),
            ("Sound travels as", ["light", "a wave", "a rock", "heat"], "B"),
            ("Fish breathe with", ["lungs", "leaves", "gills", "fins"], "C"),
        ]
    )
]
#: lm-eval's sciq (allenai/sciq) schema: the right answer is always the fourth choice.
SCIQ = [
    {
        "question": q,
        "distractor1": a,
        "distractor2": b,
        "distractor3": c,
        "correct_answer": right,
        "support": "",
    }
    for q, a, b, c, right in [
        ("What do plants absorb for photosynthesis?", "oxygen", "helium", "neon", "carbon dioxide"),
        ("What is frozen water called?", "steam", "fog", "dew", "ice"),
        ("Which planet is closest to the sun?", "mars", "venus", "earth", "mercury"),
    ]
]
CFG = {"batch_size": 8, "bootstrap_iters": 100}


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny random model evaluated on openbookqa and sciq from local JSONL files named by
    paths relative to the working directory (as a workflow job receives them)."""
    root = tmp_path_factory.mktemp("custom")
    write_jsonl(root / "data" / "obqa.jsonl", OPENBOOKQA)
    write_jsonl(root / "data" / "sciq.jsonl", SCIQ)
    texts = [d["question_stem"] + " " + " ".join(d["choices"]["text"]) for d in OPENBOOKQA]
    model = make_tiny_llama(root / "model", texts=texts * 20, layers=1, heads=2)
    cfg = {
        **CFG,
        "local_data": {
            "openbookqa": {"test": "data/obqa.jsonl"},
            "sciq": {"test": ["data/sciq.jsonl"]},
        },
    }
    here = Path.cwd()
    os.chdir(root)
    try:
        frame = evaluate(
            model,
            "tiny",
            ["openbookqa", "sciq"],
            cfg=cfg,
            datasets_dir=root / "no-prepared-datasets",
            out_dir=root / "results",
            seed=0,
        )
    finally:
        os.chdir(here)
    return {"root": root, "frame": frame, "paths": output_paths(root / "results", "tiny")}


def test_builtin_task_on_local_data_has_rows_interval_and_chance(evaluated) -> None:
    frame, paths = evaluated["frame"], evaluated["paths"]
    obqa = frame[frame["benchmark"] == "openbookqa"]
    assert (obqa["status"] == "ok").all(), obqa[["metric", "status", "params"]]
    got = dict(zip(obqa["metric"], obqa["value"], strict=True))
    assert got["n_docs"] == len(OPENBOOKQA)
    samples = read_samples(paths.samples)
    acc = samples[(samples["task"] == "openbookqa") & (samples["metric"] == "acc")]
    assert sorted(acc["doc_id"]) == list(range(len(OPENBOOKQA)))
    k = int(acc["value"].sum())
    assert got["acc"] == pytest.approx(k / len(OPENBOOKQA))
    low, high = proportion_ci(k, len(OPENBOOKQA), 0.95)
    assert (got["acc_ci_low"], got["acc_ci_high"]) == (pytest.approx(low), pytest.approx(high))
    # the built-in's own target template read the file: A, B, C, D, A, B, C
    assert acc.sort_values("doc_id")["gold"].tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert got["chance_uniform"] == pytest.approx(0.25)
    assert got["chance_majority"] == pytest.approx(2 / 7)
    params = json.loads(obqa["params"].iloc[0])
    assert params["data_files"] == {"test": "data/obqa.jsonl"}  # as configured
    # lm-eval ran the built-in config (its prompt: the bare question_stem) on the local file
    results = json.loads(paths.results_json("openbookqa").read_text())
    config = results["configs"]["openbookqa"]
    assert config["dataset_path"] == "json" and config["doc_to_text"] == "question_stem"
    assert config["test_split"] == "test" and config.get("validation_split") is None
    lines = (paths.lm_eval_dir("openbookqa") / "samples_openbookqa.jsonl").read_text()
    first = json.loads(lines.splitlines()[0])
    assert first["arguments"]["gen_args_0"]["arg_0"] == "The sun is a"


def test_every_local_task_is_recorded_with_its_files(evaluated) -> None:
    frame, paths = evaluated["frame"], evaluated["paths"]
    sciq = dict(
        zip(*frame.loc[frame["benchmark"] == "sciq", ["metric", "value"]].T.values, strict=True)
    )
    assert sciq["n_docs"] == len(SCIQ) and "acc_norm_ci_high" in sciq
    assert sciq["chance_majority"] == 1.0  # sciq's answer is always its fourth choice
    assert read_measurements(paths.record).shape == frame.shape
    prov = read_provenance(paths.record)["local_data"]
    data = evaluated["root"] / "data" / "sciq.jsonl"
    assert prov["sciq"]["test"] == [
        {"path": str(data), "bytes": data.stat().st_size, "sha256": sha256_bytes(data.read_bytes())}
    ]


def test_a_suite_scores_a_local_task(evaluated, tmp_path) -> None:
    """A suite objective naming the built-in task is scored from its rows, offline."""
    path = tmp_path / "science.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "science",
                "objectives": [
                    {"name": "openbookqa", "task": "openbookqa", "metric": "acc_norm"},
                    {"name": "sciq", "task": "sciq", "metric": "acc"},
                ],
            }
        )
    )
    suite = load_suite(path)
    assert tasks_for([suite], allow_online=False) == []
    assert tasks_for([suite], allow_online=False, local=["sciq", "openbookqa"]) == [
        "openbookqa",
        "sciq",
    ]
    paths = evaluated["paths"]
    rows, table = score_suite(
        suite,
        "tiny",
        read_measurements(paths.record),
        read_samples(paths.samples),
        allow_online=False,
    )
    assert table["kind"].tolist() == ["suite", "objective", "objective"], table
    assert table["status"].tolist() == ["ok", "ok", "ok"], table
    score = rows[rows["metric"] == "score"]
    assert json.loads(score["params"].iloc[0])["complete"] is True
    assert {"score_ci_low", "score_ci_high", "chance"} <= set(rows["metric"])


def test_unknown_task_name_is_a_clear_error(tmp_path) -> None:
    data = write_jsonl(tmp_path / "x.jsonl", SCIQ)
    with pytest.raises(ForgebenchError, match=r"'sciqq'.*no built-in task.*did you mean 'sciq'"):
        local_task_configs({"sciqq": {"test": str(data)}}, ["sciqq"])
    with pytest.raises(ForgebenchError, match=r"'mmlu'.*is a group"):
        local_task_configs({"mmlu": {"test": str(data)}}, ["mmlu"])


def test_missing_file_or_split_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ForgebenchError, match=r"task 'sciq': data file of split 'test'.*nope"):
        evaluate(
            tmp_path / "no-model",
            "tiny",
            "sciq",
            cfg={**CFG, "local_data": {"sciq": {"test": str(tmp_path / "nope.jsonl")}}},
            datasets_dir=tmp_path,
            out_dir=tmp_path,
            seed=0,
        )
    assert not (tmp_path / "raw").exists()  # raised before any task ran
    data = write_jsonl(tmp_path / "x.jsonl", SCIQ)
    with pytest.raises(ForgebenchError, match=r"local_data\.sciq: 2-shot prompts need its train"):
        evaluate(
            tmp_path / "no-model",
            "tiny",
            "sciq",
            cfg={**CFG, "num_fewshot": 2, "local_data": {"sciq": {"test": str(data)}}},
            datasets_dir=tmp_path,
            out_dir=tmp_path,
            seed=0,
        )
    with pytest.raises(ForgebenchError, match=r"no split named \['tset'\].*\['test', 'train'"):
        local_task_configs({"sciq": {"tset": str(data)}}, ["sciq"])
    with pytest.raises(ForgebenchError, match=r"no split it evaluates \(test or validation\)"):
        local_task_configs({"sciq": {"train": str(data)}}, ["sciq"])


def test_columns_the_templates_read_are_checked(tmp_path) -> None:
    """openbookqa's prompt is the bare field question_stem: a file without it would have
    been prompted with the literal word, so it is refused, naming what is missing."""
    data = write_jsonl(tmp_path / "sciq_shaped.jsonl", SCIQ)
    with pytest.raises(
        ForgebenchError, match=r"'openbookqa'.*doc_to_text reads \['question_stem'\]"
    ):
        local_task_configs({"openbookqa": {"test": str(data)}}, ["openbookqa"])
    csv = tmp_path / "sciq.csv"
    csv.write_text("question,distractor1,distractor2,distractor3,correct_answer\nq,a,b,c,d\n")
    with pytest.raises(ForgebenchError, match=r"doc_to_text reads \['support'\]"):
        local_task_configs({"sciq": {"test": str(csv)}}, ["sciq"])
    bound = local_task_configs({"sciq": {"test": str(data)}}, ["sciq"])["sciq"]
    assert bound["dataset_path"] == "json" and bound["training_split"] is None


def _workflow_config(tmp_path: Path, local_data: dict) -> dict:
    from forgebench.config import SCHEMA_PATH, check_config, load_yaml

    config = load_yaml(SCHEMA_PATH.parent / "config.yaml")
    config["evaluation"]["tasks"] = [*config["evaluation"]["tasks"], "sciq"]
    config["evaluation"]["local_data"] = local_data
    check_config(config)
    return config


def test_parse_time_check_names_the_key_and_the_file(tmp_path) -> None:
    from forgebench import workflow as fw

    write_jsonl(tmp_path / "data" / "sciq.jsonl", SCIQ)
    config = _workflow_config(tmp_path, {"sciq": {"test": "data/sciq.jsonl"}})
    fw.check_references(config, tmp_path)  # relative to the repository root given
    assert "sciq" in fw.model_tasks(config, "smollm2")
    settings = fw.evaluation_job_settings(config, "smollm2", tmp_path, tmp_path / "run")
    assert settings["local_data"] == {"sciq": {"test": ["../data/sciq.jsonl"]}}
    assert fw.model_local_data_files(config, "smollm2", tmp_path, tmp_path) == ["data/sciq.jsonl"]
    missing = _workflow_config(tmp_path, {"sciq": {"test": "data/gone.jsonl"}})
    with pytest.raises(
        ForgebenchError, match=r"'evaluation\.local_data\.sciq'.*split 'test'.*gone\.jsonl"
    ):
        fw.check_references(missing, tmp_path)
    unused = _workflow_config(tmp_path, {"sciq": {"test": "data/sciq.jsonl"}})
    unused["evaluation"]["tasks"] = ["fb_arc_easy"]
    with pytest.raises(ForgebenchError, match=r"no model is evaluated on sciq"):
        fw.check_references(unused, tmp_path)


def test_default_evaluation_jobs_carry_no_local_data() -> None:
    """The feature is opt-in: without local_data no job's params change."""
    from forgebench import workflow as fw
    from forgebench.config import SCHEMA_PATH, check_config, load_yaml

    config = load_yaml(SCHEMA_PATH.parent / "config.yaml")
    check_config(config)
    for model in fw.evaluated_models(config):
        assert "local_data" not in fw.evaluation_job_settings(config, model)
        assert fw.model_local_data_files(config, model) == []


@pytest.mark.workflow
def test_adding_a_local_task_schedules_only_its_jobs(tmp_path_factory, tmp_path) -> None:
    """After a (faked) tiny run, listing one built-in task with local data reruns the
    evaluation of the models that run it and what reads their evaluation, nothing else."""
    from test_scheduling import TINY, scheduled, snakemake
    from test_scheduling import checkout as made_checkout

    repo = made_checkout.__wrapped__(tmp_path_factory)
    write_jsonl(repo / "mydata" / "sciq_test.jsonl", SCIQ)
    overlay = tmp_path / "more.yaml"
    tiny = yaml.safe_load(TINY.read_text())
    tasks = [*yaml.safe_load((REPO / "config" / "config.yaml").read_text())["evaluation"]["tasks"]]
    overlay.write_text(
        yaml.safe_dump(
            {
                "evaluation": {
                    "tasks": [*tasks, "sciq"],
                    "local_data": {"sciq": {"test": "mydata/sciq_test.jsonl"}},
                }
            }
        )
    )
    out = snakemake(repo, "-n", "--configfile", "tiny.yaml", str(overlay))
    counts, wildcards = scheduled(out)
    # cognate's evaluation (the one model configured), its suite scores, and its pairs with
    # its compressed variants (they read its samples file); no build, no derived model's
    # evaluation, no EvoMerge
    pairs = [w for w in wildcards if w.startswith("baseline=cognate, candidate=")]
    assert counts == {
        "evaluate_model": 1,
        "score_suite": len(tiny["evaluation"]["suites"]),
        "compare_models": len(pairs),
        "report": 1,
        "history": 1,
        "all": 1,
    }, out[-3000:]
    job = out.split("rule evaluate_model:", 1)[1].split("wildcards:", 1)[0]
    assert "mydata/sciq_test.jsonl" in job, job  # an input: changing the data reruns it
    ours = ("model=cognate,", "baseline=cognate,")
    assert all(w.startswith(ours) or w == "model=cognate" for w in wildcards), wildcards
