"""EvoMerge as workflow stages: file names, each generation's plan, merges and the summary.

The evolution lives in the DAG through files. Generation g's plan
(results/evomerge/gen<g>/plan.json: elites with their fitness, children with genomes and
parents) is a job whose inputs are generation g-1's plan and its children's suite-score
files; a merge job reads its generation's plan and the seed models; fitness is the
evaluation stage's own (model, task) and (model, suite) jobs, so every individual is
scored on the same documents as every other model. An interrupted evolution therefore
resumes where it stopped: finished merges and evaluations are up to date and not redone.

Fitness is the suite's score row (suite "eval", benchmark ``suite_<name>``, case = model,
metrics ``score``, ``score_ci_low``, ``score_ci_high``). Merge time and peak memory are the
merge job's own job rows (forgebench.runner); the evolution's wall time is the span of its
merge and fitness jobs from their job rows.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.evomerge.evolution import (
    Individual,
    children_per_generation,
    individual_name,
    initial_population,
    next_generation,
)
from forgebench.evomerge.genome import Genome
from forgebench.workflow import EVAL_RAW, EVAL_SAMPLES, MODEL_DIR, SUITE_RAW

log = logging.getLogger(__name__)

SUITE = "evomerge"
MERGE_BENCHMARK = "merge"
EVOLUTION_BENCHMARK = "evolution"
VERSION = 1
MODEL_PATTERN = r"evo-g[0-9]+-i[0-9]+"  # names individual_name gives (merge rule's outputs)
BEST_CASE = "best_vs_parent"  # the paired rows of the fittest individual and its best parent
EVOLUTION_CASE = "evolution"

PLAN = "results/evomerge/gen{generation}/plan.json"
LINEAGE = "results/evomerge/lineage.json"
TABLE = "results/evomerge/individuals.parquet"
MERGE_RAW = "results/raw/evomerge/merge/{model}.parquet"
EVOLUTION_RAW = "results/raw/evomerge/evolution.parquet"
EVOLUTION_RESOURCES = "results/raw/evomerge/evolution.resources.parquet"
FAILED_MARKER = "merge_failed.json"  # in a model folder whose merge failed (no weights)

# Keys that decide a generation's individuals (the plan rule's params: a change replans;
# `generations` does not, so a longer evolution reuses the generations it has).
PLAN_KEYS = (
    "seeds",
    "population",
    "mutation_rate",
    "crossover_rate",
    "elitism",
    "tournament_size",
    "methods",
    "fitness_suite",
)
DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "seeds": ["cognate", "cognate-s2", "cognate-s3"],
    "population": 4,
    "generations": 2,
    "mutation_rate": 0.1,
    "crossover_rate": 0.7,
    "elitism": 1,
    "tournament_size": 2,
    "methods": ["linear", "slerp", "ties", "dare_ties"],
    "fitness_suite": "logic",
    "export_as": "evomerge-best",
    "subset_size": None,
}


# ----------------------------------------------------------------------- config and names


def section(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``evomerge:`` section with the schema's defaults under it."""
    return {**DEFAULTS, **dict(config.get("evomerge") or {})}


def enabled(config: Mapping[str, Any]) -> bool:
    return bool(section(config)["enabled"])


def plan_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """What decides the individuals: a change to any of these replans every generation."""
    sec = section(config)
    return {k: sec[k] for k in PLAN_KEYS}


def generation_children(config: Mapping[str, Any], generation: int) -> list[str]:
    """Names of the individuals bred (merged and evaluated) in ``generation``."""
    n = children_per_generation(section(config), generation)
    return [individual_name(generation, i) for i in range(n)]


def individuals(config: Mapping[str, Any]) -> list[str]:
    """Every individual the evolution merges and evaluates, in generation order."""
    if not enabled(config):
        return []
    gens = int(section(config)["generations"])
    return [name for g in range(gens) for name in generation_children(config, g)]


def fitness_models(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Models scored on the fitness suite for the evolution: the seeds (the parents of
    generation 0, so the best individual can be tested against them) and every
    individual. For workflow.derived_models."""
    if not enabled(config):
        return {}
    suite = section(config)["fitness_suite"]
    return {m: [suite] for m in [*section(config)["seeds"], *individuals(config)]}


def fitness_subset(config: Mapping[str, Any], model: str) -> int | None:
    """Documents per task of ``model``'s fitness evaluation when EvoMerge sets its own
    (``evomerge.subset_size``: the evaluation's per-task sizes are sized for the pretrained
    model); None for a model the evaluation stage lists itself, or without the key."""
    size = section(config)["subset_size"]
    if size is None or model in (config.get("evaluation") or {}).get("models", []):
        return None
    return int(size) if model in fitness_models(config) else None


def export_dir(config: Mapping[str, Any]) -> str:
    return MODEL_DIR.format(model=section(config)["export_as"])


def raw_outputs(config: Mapping[str, Any]) -> list[str]:
    """The evolution's measurement record (its .resources.parquet comes with it)."""
    return [EVOLUTION_RAW] if enabled(config) else []


def suite_tasks(config: Mapping[str, Any]) -> list[str]:
    """Tasks the fitness suite's score reads (the evaluation jobs of every individual)."""
    from forgebench.evaluation.suites import tasks_for

    return tasks_for(
        [section(config)["fitness_suite"]],
        allow_online=bool(config.get("datasets", {}).get("allow_online", False)),
    )


def seed_dirs(config: Mapping[str, Any]) -> list[str]:
    return [MODEL_DIR.format(model=s) for s in section(config)["seeds"]]


def plan_inputs(config: Mapping[str, Any], generation: int) -> dict[str, Any]:
    """Generation 0 plans from the config alone; generation g from g-1's plan and the
    suite scores of g-1's children (its elites' fitness is in g-1's plan)."""
    if generation == 0:
        return {}
    suite = section(config)["fitness_suite"]
    return {
        "previous": PLAN.format(generation=generation - 1),
        "scores": [
            SUITE_RAW.format(model=m, suite=suite)
            for m in generation_children(config, generation - 1)
        ],
    }


def summary_inputs(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Everything the summary reads: plans, merge records, the fitness jobs' records and
    samples of individuals and seeds, and the individuals' folders (for the export)."""
    sec = section(config)
    suite, names = sec["fitness_suite"], individuals(config)
    scored = [*sec["seeds"], *names]
    return {
        "plans": [PLAN.format(generation=g) for g in range(int(sec["generations"]))],
        "merges": [MERGE_RAW.format(model=m) for m in names],
        "scores": [SUITE_RAW.format(model=m, suite=suite) for m in scored],
        "evals": [EVAL_RAW.format(model=m) for m in names],
        "samples": [EVAL_SAMPLES.format(model=m) for m in scored],
        "models": [MODEL_DIR.format(model=m) for m in names],
    }


def check_config(config: Mapping[str, Any]) -> None:
    """What the schema cannot say: the seeds exist and can be merged, sizes fit together."""
    if not enabled(config):
        return
    sec = section(config)
    models = dict(config.get("models") or {})
    if not config.get("evaluation", {}).get("enabled", True):
        raise ForgebenchError(
            "evomerge.enabled: fitness is the evaluation stage's suite score, but "
            "evaluation.enabled is false; enable it or set evomerge.enabled: false"
        )
    for i, seed in enumerate(sec["seeds"]):
        if seed not in models:
            raise ForgebenchError(
                f"evomerge.seeds.{i}: {seed!r} is not a model under `models:`; "
                f"defined: {sorted(models)}"
            )
    built = [s for s in sec["seeds"] if models[s].get("source") == "build"]
    for key in ("architecture", "tokenizer"):
        shapes = {json.dumps(models[s].get(key) or {}, sort_keys=True) for s in built}
        if len(shapes) > 1:
            raise ForgebenchError(
                f"evomerge.seeds: the built seeds {built} differ in models.<name>.{key}; "
                "merged models need one architecture and one tokenizer (let them differ "
                "only in init_seed)"
            )
    if sec["elitism"] >= sec["population"]:
        raise ForgebenchError(
            f"evomerge.elitism: {sec['elitism']} elites leave no children in a population of "
            f"{sec['population']}; allowed: 0 .. population-1"
        )
    if sec["tournament_size"] > sec["population"]:
        raise ForgebenchError(
            f"evomerge.tournament_size: {sec['tournament_size']} is more than the population "
            f"({sec['population']})"
        )
    name = sec["export_as"]
    if name in models or name in sec["seeds"] or _is_individual(name):
        raise ForgebenchError(
            f"evomerge.export_as: {name!r} is already a model name (under `models:` or an "
            "individual's evo-g<g>-i<i>); choose another"
        )


def _is_individual(name: str) -> bool:
    import re

    return re.fullmatch(MODEL_PATTERN, name) is not None


# ----------------------------------------------------------------------------- fitness


@dataclass(frozen=True)
class Fitness:
    """A suite score with its interval; NaN with the status when it failed."""

    value: float
    ci_low: float
    ci_high: float
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "ok" and math.isfinite(self.value)

    def rank_value(self) -> float:
        return self.value if self.ok else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _json_float(self.value),
            "ci_low": _json_float(self.ci_low),
            "ci_high": _json_float(self.ci_high),
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Fitness:
        return cls(
            _float(d.get("value")), _float(d.get("ci_low")), _float(d.get("ci_high")), d["status"]
        )


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


#: The status of a suite score that lacks an objective: not a fitness (a failed task
#: leaves the mean of the others, which can rank an individual above its peers).
INCOMPLETE = "error:IncompleteSuite"


def read_fitness(path: str | Path, model: str, suite: str) -> Fitness:
    """The score rows score_suite wrote for ``model`` on ``suite``; a score whose suite
    is incomplete (an objective failed or is missing) is failed, status ``INCOMPLETE``,
    so it never ranks."""
    from forgebench.record import read_measurements

    frame = read_measurements(path)
    rows = frame[
        (frame["benchmark"] == f"suite_{suite}") & (frame["case"] == model) & ~frame["warmup"]
    ]

    def one(metric: str) -> tuple[float, str]:
        sel = rows[rows["metric"] == metric]
        if sel.empty:
            return math.nan, "unavailable"
        return float(sel["value"].iloc[0]), str(sel["status"].iloc[0])

    value, status = one("score")
    low, _ = one("score_ci_low")
    high, _ = one("score_ci_high")
    if status == "ok" and not math.isfinite(value):
        status = "error:NonFiniteScore"
    score = rows[rows["metric"] == "score"]
    if status == "ok" and not json.loads(score["params"].iloc[0]).get("complete", True):
        missing = json.loads(score["params"].iloc[0]).get("missing", [])
        log.warning("%s: %s suite incomplete (missing %s): not a fitness", model, suite, missing)
        status = INCOMPLETE
    return Fitness(value, low, high, status)


# ------------------------------------------------------------------------------- plans


def make_plan(
    config: Mapping[str, Any],
    generation: int,
    *,
    seed: int,
    previous: Mapping[str, Any] | None = None,
    fitness: Mapping[str, Fitness] | None = None,
) -> dict[str, Any]:
    """Generation ``generation``'s plan: elites (carried with their fitness) and children.

    ``previous`` is generation g-1's plan and ``fitness`` its children's scores; together
    they are g-1's whole population. Draws are seeded by (seed, generation) only.
    """
    sec = section(config)
    n_seeds = len(sec["seeds"])
    elites: list[dict[str, Any]] = []
    ranked: list[dict[str, Any]] = []
    if generation == 0:
        children = initial_population(sec, n_seeds, seed=seed)
    else:
        if previous is None or fitness is None:
            raise ValueError("a generation after the first needs the previous plan and fitness")
        pool: list[tuple[Individual, Fitness]] = [
            (Individual.from_dict(e), Fitness.from_dict(e["fitness"])) for e in previous["elites"]
        ]
        for c in previous["children"]:
            if c["name"] not in fitness:
                raise ForgebenchError(f"no fitness for {c['name']} of generation {generation - 1}")
            pool.append((Individual.from_dict(c), fitness[c["name"]]))
        carried, children = next_generation(
            sec, [(ind, f.rank_value()) for ind, f in pool], generation, seed=seed
        )
        by_name = {ind.name: f for ind, f in pool}
        elites = [{**e.to_dict(), "fitness": by_name[e.name].to_dict()} for e in carried]
        ranked = [
            {"name": ind.name, "generation": ind.generation, "fitness": f.to_dict()}
            for ind, f in pool
        ]
    return {
        "generation": generation,
        "seed": seed,
        "seeds": list(sec["seeds"]),
        "fitness_suite": sec["fitness_suite"],
        "previous_population": ranked,
        "elites": elites,
        "children": [c.to_dict() for c in children],
    }


def write_plan(plan: Mapping[str, Any], path: str | Path) -> None:
    from forgebench.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(plan, indent=2, sort_keys=True) + "\n")


def read_plan(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def plan_job(
    config: Mapping[str, Any],
    generation: int,
    *,
    seed: int,
    out: str | Path,
    previous: str | Path | None = None,
    scores: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Read generation g-1's plan and scores (g >= 1), write generation g's plan."""
    suite = section(config)["fitness_suite"]
    prev_plan = read_plan(previous) if previous is not None else None
    fitness = None
    if prev_plan is not None:
        names = [c["name"] for c in prev_plan["children"]]
        if len(names) != len(scores):
            raise ForgebenchError(
                f"generation {generation - 1} has {len(names)} children but {len(scores)} "
                "score files were given"
            )
        fitness = {n: read_fitness(p, n, suite) for n, p in zip(names, scores, strict=True)}
    plan = make_plan(config, generation, seed=seed, previous=prev_plan, fitness=fitness)
    write_plan(plan, out)
    for e in plan["elites"]:
        log.info(
            "generation %d: elite %s carried (fitness %s)", generation, e["name"], e["fitness"]
        )
    for c in plan["children"]:
        log.info(
            "generation %d: %s = %s from %s (%s)",
            generation,
            c["name"],
            Genome.from_dict(c["genome"]).describe(),
            c["parents"] or "the seeds",
            c["origin"],
        )
    return plan


# ------------------------------------------------------------------------------ merges


def merge_seed(seed: int, name: str) -> int:
    """DARE's drop seed for one individual: from the run's seed and the name only."""
    g, i = (int(x) for x in name.removeprefix("evo-g").split("-i"))
    return int(np.random.SeedSequence([seed, g, i]).generate_state(1)[0])


def find_child(plan: Mapping[str, Any], name: str) -> Individual:
    for c in plan["children"]:
        if c["name"] == name:
            return Individual.from_dict(c)
    names = [c["name"] for c in plan["children"]]
    raise ForgebenchError(f"{name} is not a child of generation {plan['generation']}: {names}")


def merge_individual(
    plan: Mapping[str, Any],
    name: str,
    seed_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    seed: int,
) -> pd.DataFrame:
    """Merge one individual into ``out_dir``; its ``merge_time`` row (a failed merge is a
    failed row, and the folder holds only merge_failed.json, so its evaluation fails
    and its fitness is NaN: it ranks below every measured individual)."""
    from forgebench.evomerge.merge import merge_config, run_merge
    from forgebench.record import Recorder, status_for, utcnow

    ind = find_child(plan, name)
    cfg = merge_config(ind.genome, seed_dirs)  # a ForgebenchError is a config problem: raise
    params = {
        "generation": ind.generation,
        "method": ind.genome.method,
        "genome": ind.genome.to_dict(),
        "describe": ind.genome.describe(),
        "parents": ind.parents,
        "origin": ind.origin,
    }
    import mergekit.merge  # noqa: F401 - imported before the clock: merge_time is the merge

    rec = Recorder(SUITE, MERGE_BENCHMARK, VERSION)
    out = Path(out_dir)
    started = utcnow()
    t0 = time.perf_counter()
    try:
        run_merge(cfg, out, seed=merge_seed(seed, name))
        if not (out / "config.json").is_file():
            raise ForgebenchError(f"mergekit wrote no config.json to {out}")
        status, reason = "ok", ""
    except ForgebenchError:
        raise
    except Exception as exc:  # every failure becomes a failed row
        status, reason = status_for(exc), f"{type(exc).__name__}: {exc}"
        log.exception("merge of %s failed", name)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / FAILED_MARKER).write_text(json.dumps({"name": name, "reason": reason}) + "\n")
    elapsed = time.perf_counter() - t0
    value = elapsed if status == "ok" else math.nan
    rec.add(
        name,
        {**params, "reason": reason},
        "merge_time",
        "s",
        False,
        value,
        status=status,
        started_at=started,
    )
    log.info("%s: %s in %.2f s (%s)", name, ind.genome.describe(), elapsed, status)
    return rec.frame()


# ----------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class JobSpan:
    """One measured job from its job rows: the stamp is written as the job finishes."""

    start: pd.Timestamp
    end: pd.Timestamp
    duration_s: float
    peak_rss: float


def job_span(path: str | Path, subject: str) -> JobSpan | None:
    """A job's span and peak memory from its record's job rows (forgebench.runner).

    The job rows are stamped (``started_at``) when the job's sampled block has ended, so
    that stamp is the job's end and the start is the stamp minus ``job_duration``.
    """
    from forgebench.record import read_measurements
    from forgebench.runner import job_case

    frame = read_measurements(path)
    rows = frame[frame["case"] == job_case(subject)]
    dur = rows[(rows["metric"] == "job_duration") & (rows["status"] == "ok")]
    if dur.empty:
        return None
    duration = float(dur["value"].iloc[0])
    end = pd.Timestamp(dur["started_at"].iloc[0])
    peak = rows.loc[(rows["metric"] == "peak_rss") & (rows["status"] == "ok"), "value"]
    return JobSpan(
        end - timedelta(seconds=duration),
        end,
        duration,
        float(peak.iloc[0]) if len(peak) else math.nan,
    )


def genome_parents(genome: Genome, seeds: Sequence[str]) -> list[str]:
    """The seeds a generation-0 merge reads (merge.merge_config's choice of models)."""
    if genome.method == "slerp":
        return [seeds[genome.pair[0]], seeds[genome.pair[1]]]
    used = [k for k, w in enumerate(genome.weights) if w > 0]
    if genome.method != "linear" and genome.pair[0] not in used:
        used = [genome.pair[0], *used]
    return [seeds[k] for k in used]


def best_parent(
    name: str,
    lineage: Mapping[str, Mapping[str, Any]],
    fitness: Mapping[str, Fitness],
    seeds: Sequence[str],
) -> str | None:
    """The fittest parent of ``name``: an individual of the generation before, or for
    generation 0 one of the seeds its merge read. None when no parent has a fitness."""
    ind = lineage[name]
    parents = ind["parents"] or genome_parents(Genome.from_dict(ind["genome"]), seeds)
    scored = [p for p in parents if p in fitness and fitness[p].ok]
    return max(scored, key=lambda p: fitness[p].value) if scored else None


def paired_rows(
    objectives: Sequence[Any],
    parent: str,
    best: str,
    root: Path,
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> pd.DataFrame:
    """``best`` against ``parent`` on the same documents (forgebench.evaluation.paired):
    one ``score`` comparison of the suite score, and one per objective.

    For the suite score each objective's per-document values are scaled by
    ``(w / sum w) * (N / n)`` (its weight, N paired documents in all, n its own), so the
    mean paired difference is exactly the difference of the two suite scores (the
    weighted mean of per-objective means), with a paired-bootstrap interval over the
    pooled documents."""
    from forgebench.evaluation.paired import KEY, compare_samples
    from forgebench.evaluation.samples import read_samples

    opts = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    frames, pooled_a, pooled_b = [], [], []
    counts: list[int] = []
    for obj in objectives:
        ref = obj.ref

        def select(model: str, ref: Any = ref) -> pd.DataFrame:
            s = read_samples(root / EVAL_SAMPLES.format(model=model))
            s = s[
                (s["task"] == ref.task) & (s["metric"] == ref.metric) & (s["filter"] == ref.filter)
            ]
            return s.dropna(subset=["value"]).drop_duplicates(KEY)

        a, b = select(parent), select(best)
        part = compare_samples(
            a, b, task=ref.task, baseline_name=parent, candidate_name=best, **opts
        )
        frames.append(part.assign(case=f"{BEST_CASE}:{obj.name}"))
        paired = a.merge(b[KEY], on=KEY)
        a, b = a.merge(paired[KEY], on=KEY), b.merge(paired[KEY], on=KEY)
        for side, out in ((a, pooled_a), (b, pooled_b)):
            out.append(
                side.assign(
                    subtask=obj.name + "/" + side["subtask"],
                    metric="score",
                    filter="none",
                    _w=obj.weight,
                )
            )
        counts.append(len(paired))
    n_total = sum(counts)
    w_total = sum(o.weight for o, n in zip(objectives, counts, strict=True) if n)
    if n_total:
        for side in (pooled_a, pooled_b):
            for k, (frame, n) in enumerate(zip(side, counts, strict=True)):
                if n:
                    scale = frame["_w"] / w_total * (n_total / n)
                    side[k] = frame.assign(value=frame["value"] * scale)
        a_all = pd.concat(pooled_a, ignore_index=True).drop(columns="_w")
        b_all = pd.concat(pooled_b, ignore_index=True).drop(columns="_w")
        suite_rows = compare_samples(
            a_all, b_all, task="suite", baseline_name=parent, candidate_name=best, **opts
        )
        frames.append(suite_rows.assign(case=BEST_CASE))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out.assign(suite=SUITE, benchmark=EVOLUTION_BENCHMARK, benchmark_version=VERSION)


def _fitness_rows(rec: Any, case: str, params: Mapping[str, Any], f: Fitness, metric: str) -> None:
    """``metric`` with its ``_ci_low``/``_ci_high`` rows; a failed score fails all three."""
    rec.add(
        case,
        params,
        metric,
        "fraction",
        True,
        f.value if f.ok else math.nan,
        status="ok" if f.ok else f.status,
    )
    for suffix, v in (("_ci_low", f.ci_low), ("_ci_high", f.ci_high)):
        ok = f.ok and math.isfinite(v)
        status = "ok" if ok else (f.status if not f.ok else "error:UndefinedInterval")
        rec.add(
            case, params, metric + suffix, "fraction", True, v if ok else math.nan, status=status
        )


def summarize(
    config: Mapping[str, Any],
    *,
    root: str | Path = ".",
    seed: int,
    confidence: float,
    n_resamples: int,
    lineage_path: str | Path,
    table_path: str | Path,
    export_to: str | Path,
) -> pd.DataFrame:
    """The evolution's record rows; writes the lineage, the per-individual table and the
    fittest individual's copy.

    Rows (suite ``evomerge``, benchmark ``evolution``): per individual per generation
    (case ``gen<g>:<name>``) ``fitness`` with ``fitness_ci_low``/``_ci_high`` and, where it
    was merged, ``merge_time``, ``merge_peak_rss``, ``fitness_time``,
    ``fitness_peak_rss``; per seed (``seed:<name>``) its fitness; per generation
    (``gen<g>``) ``best_fitness`` and ``mean_fitness``; the evolution (``evolution``)
    ``wall_time``, ``job_time``, ``best_fitness``; and ``best_vs_parent`` paired rows
    (``score_delta`` with its interval, p-value, flip rate, McNemar).
    """
    from forgebench.atomic import write_text_atomic
    from forgebench.evaluation.suites import load_suite
    from forgebench.record import Recorder, validate_measurements, write_derived_table

    root = Path(root)
    sec = section(config)
    suite_name, seeds = sec["fitness_suite"], list(sec["seeds"])
    tasks = suite_tasks(config)
    gens = int(sec["generations"])
    plans = [read_plan(root / PLAN.format(generation=g)) for g in range(gens)]
    names = individuals(config)
    fitness = {
        m: read_fitness(root / SUITE_RAW.format(model=m, suite=suite_name), m, suite_name)
        for m in [*seeds, *names]
    }
    lineage: dict[str, dict[str, Any]] = {}
    for plan in plans:
        for c in plan["children"]:
            lineage[c["name"]] = {**c, "describe": Genome.from_dict(c["genome"]).describe()}

    # Job spans: the merge, the individual's evaluation and its suite score.
    merge_span = {m: job_span(root / MERGE_RAW.format(model=m), m) for m in names}
    fit_spans = {
        m: [
            job_span(root / EVAL_RAW.format(model=m), m),
            job_span(root / SUITE_RAW.format(model=m, suite=suite_name), m),
        ]
        for m in names
    }

    rec = Recorder(SUITE, EVOLUTION_BENCHMARK, VERSION)
    table: list[dict[str, Any]] = []
    for plan in plans:
        g = int(plan["generation"])
        members = [(e, True) for e in plan["elites"]] + [(c, False) for c in plan["children"]]
        for ind, carried in members:
            name = ind["name"]
            genome = Genome.from_dict(ind["genome"])
            params = {
                "generation": g,
                "name": name,
                "born": int(ind["generation"]),
                "carried": carried,
                "origin": "elite" if carried else ind["origin"],
                "parents": ind["parents"],
                "mutated": ind["mutated"],
                "genome": genome.to_dict(),
                "describe": genome.describe(),
                "fitness_suite": suite_name,
            }
            case = f"gen{g}:{name}"
            f = fitness[name]
            _fitness_rows(rec, case, params, f, "fitness")
            ms, fs = merge_span.get(name), [s for s in fit_spans.get(name, []) if s]
            row = {
                **{k: params[k] for k in ("generation", "name", "born", "carried", "origin")},
                "parents": json.dumps(ind["parents"]),
                "mutated": json.dumps(ind["mutated"]),
                "method": genome.method,
                "weights": json.dumps(list(genome.weights)),
                "density": genome.density,
                "pair": json.dumps(list(genome.pair)),
                "t": genome.t,
                "genome": genome.describe(),
                # A failed fitness (an incomplete suite included) shows no number.
                "fitness": f.value if f.ok else math.nan,
                "fitness_ci_low": f.ci_low if f.ok else math.nan,
                "fitness_ci_high": f.ci_high if f.ok else math.nan,
                "fitness_status": f.status,
                "merge_time_s": ms.duration_s if ms else math.nan,
                "merge_peak_rss_bytes": ms.peak_rss if ms else math.nan,
                "fitness_time_s": sum(s.duration_s for s in fs) if fs else math.nan,
                "fitness_peak_rss_bytes": max((s.peak_rss for s in fs), default=math.nan),
            }
            table.append(row)
            if carried:
                continue  # merged and evaluated once, in the generation that bred it
            for metric, unit, value in (
                ("merge_time", "s", row["merge_time_s"]),
                ("merge_peak_rss", "bytes", row["merge_peak_rss_bytes"]),
                ("fitness_time", "s", row["fitness_time_s"]),
                ("fitness_peak_rss", "bytes", row["fitness_peak_rss_bytes"]),
            ):
                ok = math.isfinite(value)
                rec.add(
                    case,
                    params,
                    metric,
                    unit,
                    False,
                    value if ok else math.nan,
                    status="ok" if ok else "error:MissingJobRows",
                )
        gen_fit = [fitness[e["name"]] for e in plan["elites"]] + [
            fitness[c["name"]] for c in plan["children"]
        ]
        ok = [x for x in gen_fit if x.ok]
        gparams = {"generation": g, "population": len(gen_fit), "failed": len(gen_fit) - len(ok)}
        if ok:
            top = max(ok, key=lambda x: x.value)
            _fitness_rows(rec, f"gen{g}", gparams, top, "best_fitness")
            rec.add(
                f"gen{g}",
                gparams,
                "mean_fitness",
                "fraction",
                True,
                float(np.mean([x.value for x in ok])),
            )
        else:
            rec.add(
                f"gen{g}", gparams, "best_fitness", "fraction", True, math.nan, status="unavailable"
            )
    for s in seeds:
        _fitness_rows(
            rec, f"seed:{s}", {"name": s, "fitness_suite": suite_name}, fitness[s], "fitness"
        )

    # The fittest individual (over all generations), its best parent and the paired test.
    scored = [m for m in names if fitness[m].ok]
    best = max(scored, key=lambda m: fitness[m].value) if scored else None
    parent = best_parent(best, lineage, fitness, seeds) if best else None
    spans = [s for m in names for s in [merge_span[m], *fit_spans[m]] if s is not None]
    n_jobs = len(names) * 3  # merge, evaluation, suite score
    eparams = {
        "best": best,
        "best_parent": parent,
        "generations": gens,
        "population": sec["population"],
        "merges": len(names),
        "jobs": n_jobs,
        "jobs_with_rows": len(spans),
        "fitness_suite": suite_name,
        "failed": {m: fitness[m].status for m in [*seeds, *names] if not fitness[m].ok},
        "wall_time_from": "earliest merge/fitness job start to latest end (job rows)",
    }
    if spans and len(spans) == n_jobs:
        start, end = min(s.start for s in spans), max(s.end for s in spans)
        eparams["started"], eparams["ended"] = start.isoformat(), end.isoformat()
        rec.add(
            EVOLUTION_CASE,
            eparams,
            "wall_time",
            "s",
            False,
            (end - start).total_seconds(),
            started_at=start.to_pydatetime(),
        )
    else:
        rec.add(
            EVOLUTION_CASE,
            eparams,
            "wall_time",
            "s",
            False,
            math.nan,
            status="error:MissingJobRows",
        )
    rec.add(
        EVOLUTION_CASE, eparams, "job_time", "s", False, float(sum(s.duration_s for s in spans))
    )
    if best is not None:
        _fitness_rows(rec, EVOLUTION_CASE, eparams, fitness[best], "best_fitness")
    else:
        rec.add(
            EVOLUTION_CASE,
            eparams,
            "best_fitness",
            "fraction",
            True,
            math.nan,
            status="unavailable",
        )
    frames = [rec.frame()]
    if best is not None and parent is not None:
        suite = load_suite(suite_name)
        objectives = [o for o in suite.objectives if o.ref.task in tasks]
        pair = paired_rows(
            objectives,
            parent,
            best,
            root,
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
        )
        expected = fitness[best].value - fitness[parent].value
        pair = _check_delta(pair, expected)
        frames.append(pair)
    else:
        miss = Recorder(SUITE, EVOLUTION_BENCHMARK, VERSION)
        why = "no individual has a fitness" if best is None else f"no parent of {best} has one"
        for suffix in ("", "_ci_low", "_ci_high"):
            miss.add(
                BEST_CASE,
                {"best": best, "reason": why},
                f"score_delta{suffix}",
                "fraction",
                True,
                math.nan,
                status="unavailable",
            )
        frames.append(miss.frame())
    frame = validate_measurements(pd.concat(frames, ignore_index=True))

    doc = {
        "fitness_suite": suite_name,
        "seeds": {s: fitness[s].to_dict() for s in seeds},
        "generations": [
            {
                "generation": p["generation"],
                "elites": [e["name"] for e in p["elites"]],
                "children": [c["name"] for c in p["children"]],
            }
            for p in plans
        ],
        "individuals": {n: {**lineage[n], "fitness": fitness[n].to_dict()} for n in names},
        "best": {
            "name": best,
            "fitness": fitness[best].to_dict() if best else None,
            "best_parent": parent,
            "parent_fitness": fitness[parent].to_dict() if parent else None,
            "exported_as": str(export_to),
        },
    }
    write_text_atomic(lineage_path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    write_derived_table(
        pd.DataFrame(table),
        table_path,
        {"kind": "evomerge_individuals", "fitness_suite": suite_name},
    )
    export_best(root, best, Path(export_to), doc["best"])
    log.info(
        "best individual %s (%s) against its best parent %s",
        best,
        fitness[best].value if best else None,
        parent,
    )
    return frame


def _check_delta(pair: pd.DataFrame, expected: float) -> pd.DataFrame:
    """The paired delta of the suite score must equal the difference of the two fitness
    rows (same documents, same weighting); otherwise its rows are a ``mismatch``."""
    sel = (pair["case"] == BEST_CASE) & pair["metric"].str.startswith("score_delta")
    got = pair.loc[(pair["case"] == BEST_CASE) & (pair["metric"] == "score_delta"), "value"]
    if len(got) == 1 and math.isfinite(expected) and abs(float(got.iloc[0]) - expected) <= 1e-9:
        return pair
    log.error("paired suite delta %s differs from the fitness difference %s", list(got), expected)
    pair = pair.copy()
    pair.loc[sel, "status"] = "mismatch"
    pair.loc[sel, "value"] = math.nan
    return pair


def export_best(root: Path, best: str | None, out: Path, info: Mapping[str, Any]) -> None:
    """Copy the fittest individual's folder to ``out`` (with evomerge_best.json saying
    which it is); without one, ``out`` holds only that file."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if best is not None:
        shutil.copytree(root / MODEL_DIR.format(model=best), tmp)
    else:
        tmp.mkdir(parents=True)
    (tmp / "evomerge_best.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def individuals_frame(measurements: pd.DataFrame) -> pd.DataFrame:
    """Per individual per generation: suite, benchmark, generation, name, fitness, ci_low,
    ci_high (the columns forgebench.plots.fitness_plots reads) from the evolution's rows."""
    rows = measurements[
        (measurements["suite"] == SUITE)
        & (measurements["benchmark"] == EVOLUTION_BENCHMARK)
        & measurements["case"].str.match(r"^gen\d+:")
    ]
    out = []
    for case, g in rows.groupby("case", sort=False):
        by = {m: float(v) for m, v in zip(g["metric"], g["value"], strict=True)}
        gen, name = case.removeprefix("gen").split(":", 1)
        out.append(
            {
                "suite": SUITE,
                "benchmark": EVOLUTION_BENCHMARK,
                "generation": int(gen),
                "name": name,
                "fitness": by.get("fitness", math.nan),
                "ci_low": by.get("fitness_ci_low", math.nan),
                "ci_high": by.get("fitness_ci_high", math.nan),
            }
        )
    cols = ["suite", "benchmark", "generation", "name", "fitness", "ci_low", "ci_high"]
    return pd.DataFrame(out, columns=cols)
