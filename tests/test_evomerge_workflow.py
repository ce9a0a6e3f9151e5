"""EvoMerge inside the workflow: plans, merges and fitness jobs in Snakemake's DAG.

Unit tests check the stage logic on tiny merged models and hand-written score files; the
end-to-end test kills a real run during generation 1 and proves the rerun finishes the
evolution without redoing anything of generation 0.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from conftest import SHARED_DATASETS
from tiny_models import make_tiny_llama

from forgebench import record
from forgebench.errors import ForgebenchError
from forgebench.evaluation.samples import write_samples
from forgebench.evaluation.suites import load_suite
from forgebench.evomerge import stages
from forgebench.evomerge.genome import Genome
from forgebench.runner import run_measured

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"

EVO = {
    "enabled": True,
    "seeds": ["cognate", "cognate-s2"],
    "population": 2,
    "generations": 2,
    "elitism": 1,
    "tournament_size": 2,
    "fitness_suite": "logic",
}


def evo_config(**over: object) -> dict:
    return {
        "seed": 3,
        "models": {"cognate": {"source": "build"}, "cognate-s2": {"source": "build"}},
        "evaluation": {"enabled": True},
        "evomerge": {**EVO, **over},
    }


# --------------------------------------------------------------------------- unit tests


def test_names_inputs_and_hooks_follow_the_config() -> None:
    cfg = evo_config(population=4, generations=3)
    assert stages.generation_children(cfg, 0) == [f"evo-g0-i{i}" for i in range(4)]
    assert stages.generation_children(cfg, 2) == [f"evo-g2-i{i}" for i in range(3)]
    assert len(stages.individuals(cfg)) == 4 + 3 + 3
    fm = stages.fitness_models(cfg)
    assert list(fm)[:2] == ["cognate", "cognate-s2"] and set(map(tuple, fm.values())) == {
        ("logic",)
    }
    assert stages.plan_inputs(cfg, 0) == {}
    p2 = stages.plan_inputs(cfg, 2)
    assert p2["previous"] == "results/evomerge/gen1/plan.json"
    assert p2["scores"] == [f"results/raw/suites/evo-g1-i{i}/logic.parquet" for i in range(3)]
    inputs = stages.summary_inputs(cfg)
    assert len(inputs["evals"]) == 10 and len(inputs["samples"]) == 12  # one job per model
    assert stages.raw_outputs(cfg) == [stages.EVOLUTION_RAW]
    off = evo_config(enabled=False)
    assert stages.individuals(off) == [] and stages.fitness_models(off) == {}
    assert stages.raw_outputs(off) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"evomerge": {**EVO, "seeds": ["cognate", "nope"]}}, "evomerge.seeds.1"),
        ({"evomerge": {**EVO, "elitism": 2}}, "evomerge.elitism"),
        ({"evomerge": {**EVO, "tournament_size": 3}}, "evomerge.tournament_size"),
        ({"evomerge": {**EVO, "export_as": "cognate"}}, "evomerge.export_as"),
        ({"evaluation": {"enabled": False}}, "evaluation.enabled"),
        (
            {
                "models": {
                    "cognate": {"source": "build"},
                    "cognate-s2": {"source": "build", "architecture": {"hidden_size": 8}},
                }
            },
            "architecture",
        ),
    ],
)
def test_check_config_names_the_key_to_fix(change: dict, message: str) -> None:
    stages.check_config(evo_config())
    with pytest.raises(ForgebenchError, match=message):
        stages.check_config({**evo_config(), **change})


def write_score(path: Path, model: str, value: float, status: str = "ok") -> None:
    rec = record.Recorder("eval", "suite_logic", 1)
    v = value if status == "ok" else math.nan
    rec.add(model, {}, "score", "fraction", True, v, status=status)
    rec.add(
        model, {}, "score_ci_low", "fraction", True, v - 0.1 if status == "ok" else v, status=status
    )
    rec.add(
        model,
        {},
        "score_ci_high",
        "fraction",
        True,
        v + 0.1 if status == "ok" else v,
        status=status,
    )
    record.write_measurements(rec, path, {})


def test_plans_chain_generations_through_fitness_files(tmp_path: Path) -> None:
    cfg = evo_config(population=3, elitism=1)
    p0 = stages.plan_job(cfg, 0, seed=5, out=tmp_path / "gen0.json")
    assert [c["name"] for c in p0["children"]] == ["evo-g0-i0", "evo-g0-i1", "evo-g0-i2"]
    assert p0["elites"] == [] and all(c["parents"] == [] for c in p0["children"])
    scores = []
    for name, value, status in (
        ("evo-g0-i0", 0.3, "ok"),
        ("evo-g0-i1", 0.6, "ok"),
        ("evo-g0-i2", 0.9, "error:Boom"),
    ):
        scores.append(tmp_path / f"{name}.parquet")
        write_score(scores[-1], name, value, status)
    p1 = stages.plan_job(
        cfg, 1, seed=5, out=tmp_path / "gen1.json", previous=tmp_path / "gen0.json", scores=scores
    )
    # the failed individual (NaN fitness) is never the elite; the elite keeps its fitness
    assert [e["name"] for e in p1["elites"]] == ["evo-g0-i1"]
    assert p1["elites"][0]["fitness"]["value"] == pytest.approx(0.6)
    assert [c["name"] for c in p1["children"]] == ["evo-g1-i0", "evo-g1-i1"]
    assert all(set(c["parents"]) <= {"evo-g0-i0", "evo-g0-i1", "evo-g0-i2"} for c in p1["children"])
    # reruns are identical (same seed, same fitness): an interrupted run replans the same
    again = stages.plan_job(
        cfg, 1, seed=5, out=tmp_path / "again.json", previous=tmp_path / "gen0.json", scores=scores
    )
    assert again == p1
    assert (tmp_path / "again.json").read_text() == (tmp_path / "gen1.json").read_text()


def test_genome_parents_are_the_seeds_the_merge_reads() -> None:
    seeds = ["a", "b", "c"]
    g = Genome("linear", (0.5, 0.0, 0.2), 0.5, (1, 2), 0.3)
    assert stages.genome_parents(g, seeds) == ["a", "c"]
    assert stages.genome_parents(Genome("slerp", (1, 1, 1), 0.5, (2, 0), 0.3), seeds) == ["c", "a"]
    ties = Genome("ties", (0.5, 0.0, 0.2), 0.5, (1, 2), 0.3)
    assert stages.genome_parents(ties, seeds) == ["b", "a", "c"]


def test_merge_job_writes_a_model_and_a_failed_merge_is_a_failed_row(tmp_path: Path) -> None:
    seeds = [make_tiny_llama(tmp_path / f"s{i}", seed=i, hidden=16, layers=1) for i in range(2)]
    cfg = evo_config()
    plan = stages.make_plan(cfg, 0, seed=1)
    frame = run_measured(
        lambda: stages.merge_individual(plan, "evo-g0-i0", seeds, tmp_path / "m", seed=1),
        suite=stages.SUITE,
        name=stages.MERGE_BENCHMARK,
        version=stages.VERSION,
        config={"seed": 1},
        measurements_path=tmp_path / "m.parquet",
        resources_path=tmp_path / "m.resources.parquet",
        job_subject="evo-g0-i0",
    )
    assert (tmp_path / "m" / "model.safetensors").is_file()
    row = frame[frame["metric"] == "merge_time"].iloc[0]
    assert row["status"] == "ok" and row["value"] > 0
    span = stages.job_span(tmp_path / "m.parquet", "evo-g0-i0")
    assert span is not None and span.duration_s >= row["value"] and span.peak_rss > 0
    assert (span.end - span.start).total_seconds() == pytest.approx(span.duration_s, abs=1e-5)
    # a seed folder without weights: the merge fails, as a row, and leaves a marker
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((seeds[0] / "config.json").read_text())
    out = stages.merge_individual(plan, "evo-g0-i1", [seeds[0], broken], tmp_path / "f", seed=1)
    assert out["status"].iloc[0].startswith("error:") and math.isnan(out["value"].iloc[0])
    assert (tmp_path / "f" / stages.FAILED_MARKER).is_file()


def fake_samples(root: Path, model: str, rng: np.random.Generator, p: float) -> None:
    """Per-document rows of every logic task for ``model``: 12 shared documents each, in
    one samples table as the model's evaluation job writes it."""
    frames = []
    for obj in load_suite("logic").objectives:
        n = 12
        correct = rng.random(n) < p
        frame = pd.DataFrame(
            {
                "model": model,
                "task": obj.ref.task,
                "subtask": obj.ref.task,
                "doc_id": np.arange(n),
                "doc_hash": [f"{obj.ref.task}-{i}" for i in range(n)],
                "prompt_hash": "x",
                "filter": obj.ref.filter,
                "metric": obj.ref.metric,
                "value": correct.astype(float),
                "correct": correct,
                "target": "0",
                "n_choices": 4,
            }
        )
        frames.append(frame)
    write_samples(
        pd.concat(frames, ignore_index=True), root / stages.EVAL_SAMPLES.format(model=model), {}
    )


def test_paired_suite_delta_is_the_fitness_difference(tmp_path: Path) -> None:
    """The pooled, weighted paired delta equals the difference of suite scores, even
    with unequal document counts per objective; per-objective rows come beside it."""
    from forgebench.evaluation.suites import score_suite_files

    rng = np.random.default_rng(0)
    fake_samples(tmp_path, "a", rng, 0.3)
    fake_samples(tmp_path, "b", rng, 0.6)
    # drop documents of one objective so that the counts differ
    path = tmp_path / stages.EVAL_SAMPLES.format(model="b")
    from forgebench.evaluation.samples import read_samples

    s = read_samples(path)
    write_samples(s[(s["task"] != "fb_boolq") | (s["doc_id"] < 5)], path, {})
    suite = load_suite("logic")
    scores = {}
    for m in ("a", "b"):
        tasks = [o.ref.task for o in suite.objectives]
        recs = []
        for t in tasks:
            rec = record.Recorder("eval", t, 1)
            rec.add(m, {}, "acc", "fraction", True, 0.5)
            recs.append(tmp_path / f"{m}-{t}.parquet")
            record.write_measurements(rec, recs[-1], {})
        samples = [tmp_path / stages.EVAL_SAMPLES.format(model=m)]
        # model a is scored on the same five boolq documents as b: drop the rest too
        if m == "a":
            s = read_samples(samples[0])
            write_samples(s[(s["task"] != "fb_boolq") | (s["doc_id"] < 5)], samples[0], {})
        rows, _ = score_suite_files(
            suite,
            m,
            recs,
            samples,
            out_record=tmp_path / f"{m}.pq",
            out_table=tmp_path / f"{m}.t.pq",
            allow_online=False,
        )
        scores[m] = float(rows.loc[rows["metric"] == "score", "value"].iloc[0])
    pair = stages.paired_rows(
        suite.objectives, "a", "b", tmp_path, confidence=0.95, n_resamples=200, seed=0
    )
    by = pair[pair["case"] == stages.BEST_CASE].set_index("metric")["value"]
    assert by["score_delta"] == pytest.approx(scores["b"] - scores["a"], abs=1e-12)
    assert by["score_delta_ci_low"] <= by["score_delta"] <= by["score_delta_ci_high"]
    assert by["score_items"] == 12 * 3 + 5
    assert {f"{stages.BEST_CASE}:{o.name}" for o in suite.objectives} <= set(pair["case"])
    assert set(pair["suite"]) == {"evomerge"} and set(pair["benchmark"]) == {"evolution"}
    checked = stages._check_delta(pair, scores["b"] - scores["a"] + 0.01)
    bad = checked[(checked["case"] == stages.BEST_CASE) & (checked["metric"] == "score_delta")]
    assert bad["status"].iloc[0] == "mismatch"


# ---------------------------------------------------------------------- the workflow


def snakemake_cmd(workdir: Path, cfg: Path, *targets: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--cores",
        "2",
        "--directory",
        str(workdir),
        *targets,
        "--configfile",
        str(cfg),
    ]


def tiny_evo_config(path: Path) -> Path:
    """tests/configs/tiny.yaml cut to what the evolution needs: two tiny seeds, the logic
    suite on three documents per task, no benchmark suites."""
    base = yaml.safe_load(TINY.read_text())
    cognate = base["models"]["cognate"]
    cognate["training"] = {**cognate["training"], "time_budget_s": 3, "max_steps": 5}
    cfg = {
        "seed": base["seed"],
        "sampler": base["sampler"],
        "statistics": base["statistics"],
        "datasets": {"mirror": str(SHARED_DATASETS)},
        "models": {"cognate": cognate, "cognate-s2": {**copy.deepcopy(cognate), "init_seed": 2}},
        "evaluation": {**base["evaluation"], "suites": ["logic"], "subset_size": 3},
        "evomerge": {**EVO, "methods": ["linear", "slerp", "ties", "dare_ties"], "subset_size": 3},
        "suites": {},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def outputs_of(log: str) -> set[str]:
    """Output files of the jobs a Snakemake run started (its `output:` lines)."""
    return {
        p.strip()
        for line in log.splitlines()
        if line.strip().startswith("output:")
        for p in line.split(":", 1)[1].split(",")
    }


@pytest.mark.workflow
def test_killed_evolution_resumes_without_redoing_generation_0(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cfg = tiny_evo_config(tmp_path / "evo.yaml")
    work = tmp_path / "work"
    work.mkdir()
    gen1_merge = work / stages.MERGE_RAW.format(model="evo-g1-i0")
    log1 = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        snakemake_cmd(work, cfg, stages.EVOLUTION_RAW),
        stdout=log1,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 900
    while not gen1_merge.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    # Killed as hard as it gets, during generation 1: its merge is written, its fitness
    # jobs are queued or running.
    jobs = psutil.Process(first.pid).children(recursive=True)
    os.killpg(first.pid, signal.SIGKILL)
    for job in jobs:  # a job in a session of its own outlives the group kill
        with contextlib.suppress(psutil.NoSuchProcess):
            job.kill()
    first.wait()
    log1.close()
    first_log = (tmp_path / "first.log").read_text()
    assert gen1_merge.exists(), first_log[-3000:]
    assert not (work / stages.EVOLUTION_RAW).exists()
    gen0 = [
        work / p
        for m in ["evo-g0-i0", "evo-g0-i1"]
        for p in [
            stages.MERGE_RAW.format(model=m),
            stages.SUITE_RAW.format(model=m, suite="logic"),
            stages.EVAL_RAW.format(model=m),
        ]
    ]
    before = {p: p.stat().st_mtime_ns for p in gen0}
    unlock = subprocess.run(
        snakemake_cmd(work, cfg, "--unlock"), capture_output=True, text=True, env=env, timeout=300
    )
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    rerun = subprocess.run(
        snakemake_cmd(work, cfg, stages.EVOLUTION_RAW, "--rerun-incomplete"),
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-4000:]
    assert {p: p.stat().st_mtime_ns for p in gen0} == before
    redone = outputs_of(log)
    assert not [p for p in redone if "evo-g0" in p], redone
    assert stages.EVAL_RAW.format(model="evo-g1-i0") in redone, redone
    # the evolution finished: its record, lineage, table and the exported best
    frame = record.read_measurements(work / stages.EVOLUTION_RAW)
    cases = set(frame["case"])
    assert {"gen0:evo-g0-i0", "gen0:evo-g0-i1", "gen1:evo-g1-i0"} <= cases
    assert len([c for c in cases if c.startswith("gen1:evo-g0")]) == 1  # the carried elite
    wall = frame[(frame["case"] == "evolution") & (frame["metric"] == "wall_time")].iloc[0]
    assert wall["status"] == "ok" and wall["value"] > 0
    assert {"score_delta", "score_delta_ci_low", "score_delta_ci_high"} <= set(
        frame.loc[frame["case"] == stages.BEST_CASE, "metric"]
    )
    lineage = json.loads((work / stages.LINEAGE).read_text())
    best = lineage["best"]["name"]
    assert best in lineage["individuals"]
    exported = work / "results" / "models" / "evomerge-best"
    assert (exported / "model.safetensors").read_bytes() == (
        work / "results" / "models" / best / "model.safetensors"
    ).read_bytes()
    table = pd.read_parquet(work / stages.TABLE)
    assert len(table) == 2 + 2 and table["merge_time_s"].gt(0).all()
