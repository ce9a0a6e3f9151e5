"""Evaluation suites (suites/<name>.yaml): which lm-eval tasks they need and their score.

A suite carries the original system's objectives (its fitness is their mean, here with
optional weights) and its named task groups. Every name resolves to one lm-eval task and
the metric its score uses: our ``fb_<dataset>`` tasks over prepared offline data, or a
built-in lm-eval task whose data only the Hugging Face Hub has (mmlu, mmlu_stem,
truthfulqa_mc2, mathqa, drop). Without ``allow_online`` those are "unavailable", by name,
and a suite missing an objective is "incomplete": its mean over the objectives it has,
shown beside the list of what is missing. Nothing is ever filled in for a missing task.

The score's confidence interval carries every objective's own uncertainty: each objective
gets its exact interval (``samples.document_interval``: Clopper-Pearson for 0/1 values)
at level ``1 - alpha / J`` for J objectives, and the score's bounds are the weighted means
of their bounds (Bonferroni; ``weighted_score_ci``). A bootstrap over the pooled
documents treated an objective scored 0/20 (HumanEval of a small model) as certainly 0.

Chance follows the task rule per objective (``samples.chance_levels``): the higher of the
uniform and the majority-class baseline of its evaluated documents; the suite's chance is
their weighted mean.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgebench.config import load_yaml
from forgebench.errors import ForgebenchError
from forgebench.evaluation.samples import chance_levels, document_interval
from forgebench.record import Recorder

SUITES_DIR = Path(__file__).resolve().parents[3] / "suites"
SUITE_NAMES = ("coding", "general", "logic", "math", "writing")
SUITE_RECORD = "eval"
#: 2: exact per-objective intervals (Bonferroni) and chance with the majority class.
SUITE_VERSION = 2
OFFLINE_PREFIX = "fb_"


@dataclass(frozen=True)
class TaskRef:
    """One lm-eval task and the metric (with its filter) a score reads from it."""

    task: str
    metric: str
    filter: str = "none"

    @property
    def offline(self) -> bool:
        """Our tasks (``fb_*``) read prepared local data; the rest need the Hub."""
        return self.task.startswith(OFFLINE_PREFIX)


# Default task and metric of every name the original suites use. Metrics follow what
# lm-eval's task configs report and the Open LLM Leaderboard reads: length-normalised
# accuracy (acc_norm) for ARC, HellaSwag, PIQA and MathQA, whose answers differ in length;
# plain accuracy for BoolQ, WinoGrande (partial scoring) and MMLU; mc2 for TruthfulQA
# ("acc" in lm-eval's truthfulqa_mc2); exact match after GSM8K's first filter
# (strict-match, "#### <number>"); pass@1 for the code tasks; F1 for DROP.
CATALOG: dict[str, TaskRef] = {
    "arc_easy": TaskRef("fb_arc_easy", "acc_norm"),
    "arc_challenge": TaskRef("fb_arc_challenge", "acc_norm"),
    "hellaswag": TaskRef("fb_hellaswag", "acc_norm"),
    "piqa": TaskRef("fb_piqa", "acc_norm"),
    "winogrande": TaskRef("fb_winogrande", "acc"),
    "boolq": TaskRef("fb_boolq", "acc"),
    "gsm8k": TaskRef("fb_gsm8k", "exact_match", "strict-match"),
    "humaneval": TaskRef("fb_humaneval", "pass@1", "create_test"),
    "mbpp": TaskRef("fb_mbpp", "pass_at_1"),
    "mmlu": TaskRef("mmlu", "acc"),
    "mmlu_stem": TaskRef("mmlu_stem", "acc"),
    "truthfulqa_mc": TaskRef("truthfulqa_mc2", "acc"),
    "mathqa": TaskRef("mathqa", "acc_norm"),
    "drop": TaskRef("drop", "f1"),
}


@dataclass(frozen=True)
class Objective:
    """A named part of a suite's score."""

    name: str
    ref: TaskRef
    weight: float = 1.0


@dataclass(frozen=True)
class Suite:
    """A suite file: objectives (the score) and groups (named task lists, reported too)."""

    name: str
    description: str
    objectives: tuple[Objective, ...]
    groups: dict[str, tuple[Objective, ...]] = field(default_factory=dict)

    def members(self) -> list[Objective]:
        """Objectives first, then group members not already listed, each name once."""
        seen: dict[str, Objective] = {o.name: o for o in self.objectives}
        for members in self.groups.values():
            for m in members:
                seen.setdefault(m.name, m)
        return list(seen.values())


def _entry(raw: Any, where: str) -> Objective:
    """An objective or group member: a name, or a mapping with overrides of the catalog."""
    spec = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ForgebenchError(f"{where}: expected a name or {{name: ..}}, got {raw!r}")
    unknown = set(spec) - {"name", "task", "metric", "filter", "weight"}
    if unknown:
        raise ForgebenchError(
            f"{where}: unknown keys {sorted(unknown)}; allowed: name, task, metric, filter, weight"
        )
    name = spec["name"]
    base = CATALOG.get(name)
    if base is None and "task" not in spec:
        raise ForgebenchError(
            f"{where}: {name!r} is not a known task name ({', '.join(sorted(CATALOG))}); "
            "give its lm-eval task and metric (task:, metric:)"
        )
    task = str(spec.get("task", base.task if base else ""))
    metric = str(spec.get("metric", base.metric if base else "acc"))
    filt = str(spec.get("filter", base.filter if base and "task" not in spec else "none"))
    weight = float(spec.get("weight", 1.0))
    if not weight > 0 or not math.isfinite(weight):
        raise ForgebenchError(f"{where}: weight of {name!r} must be a positive number")
    return Objective(name, TaskRef(task, metric, filt), weight)


def load_suite(name: str | Path, suites_dir: Path | None = None) -> Suite:
    """Read ``suites/<name>.yaml`` (or a path), checking every entry."""
    path = (
        Path(name) if str(name).endswith(".yaml") else (suites_dir or SUITES_DIR) / f"{name}.yaml"
    )
    return _load_suite_file(path.resolve(), str(name))


@functools.lru_cache(maxsize=64)
def _load_suite_file(path: Path, name: str) -> Suite:
    """Parsed once per process: the workflow asks for a suite's tasks for every job it plans."""
    if not path.is_file():
        raise ForgebenchError(
            f"suite {str(name)!r}: no file {path}; known suites: {', '.join(SUITE_NAMES)} "
            "(config key evaluation.suites)"
        )
    doc = load_yaml(path) or {}
    where = str(path)
    objectives = tuple(
        _entry(o, f"{where}: objectives[{i}]") for i, o in enumerate(doc.get("objectives") or [])
    )
    if not objectives:
        raise ForgebenchError(f"{where}: a suite needs at least one objective")
    names = [o.name for o in objectives]
    if len(set(names)) != len(names):
        raise ForgebenchError(f"{where}: objectives repeat a name: {names}")
    by_name = {o.name: o for o in objectives}
    groups = {
        str(g): tuple(
            (by_name.get(m) if isinstance(m, str) else None) or _entry(m, f"{where}: groups.{g}")
            for m in members
        )
        for g, members in (doc.get("groups") or {}).items()
    }
    return Suite(
        str(doc.get("name", path.stem)), str(doc.get("description", "")), objectives, groups
    )


def load_suites(names: Iterable[str | Suite], suites_dir: Path | None = None) -> list[Suite]:
    """Suites by name (or already loaded)."""
    return [n if isinstance(n, Suite) else load_suite(n, suites_dir) for n in names]


def tasks_for(
    suites: Iterable[str | Suite],
    *,
    allow_online: bool,
    suites_dir: Path | None = None,
    local: Iterable[str] = (),
) -> list[str]:
    """The distinct lm-eval tasks the suites need (objectives and groups), each once, sorted.

    Tasks whose data only the Hub has are left out unless ``allow_online``; the suite
    score reports them as unavailable. ``local``: built-in tasks given local data
    (config ``evaluation.local_data``), which run offline like ours.
    """
    local = set(local)
    refs = {m.ref.task: m.ref for s in load_suites(suites, suites_dir) for m in s.members()}
    return sorted(t for t, ref in refs.items() if allow_online or ref.offline or t in local)


def unavailable_tasks(
    suites: Iterable[str | Suite],
    *,
    allow_online: bool,
    suites_dir: Path | None = None,
    local: Iterable[str] = (),
) -> list[str]:
    """Tasks the suites name that cannot run offline (empty when going online is allowed)."""
    if allow_online:
        return []
    refs = {m.ref.task for s in load_suites(suites, suites_dir) for m in s.members()}
    return sorted(t for t in refs - set(local) if not t.startswith(OFFLINE_PREFIX))


# ------------------------------------------------------------------------------ scores


@dataclass
class PartScore:
    """The score of one objective or group member for one model."""

    name: str
    ref: TaskRef
    weight: float
    status: str
    reason: str = ""
    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    chance: float = math.nan
    chance_uniform: float = math.nan
    chance_majority: float = math.nan

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def score(self) -> float:
        return float(np.mean(self.values)) if self.ok else math.nan


def _part(
    obj: Objective, records: pd.DataFrame, samples: pd.DataFrame, allow_online: bool
) -> PartScore:
    ref = obj.ref
    part = PartScore(obj.name, ref, obj.weight, "unavailable")
    # A built-in task given local data (evaluation.local_data) has rows though not fb_*.
    rec = records[records["benchmark"] == ref.task] if len(records) else records
    if rec.empty and not ref.offline and not allow_online:
        part.reason = (
            f"{ref.task} has no offline data; set datasets.allow_online: true to read it "
            "from the Hugging Face Hub, or give its files in evaluation.local_data"
        )
        return part
    if rec.empty:
        part.reason = f"{ref.task} was not evaluated (no measurement record)"
        return part
    if not (rec["status"] == "ok").any():
        failed = rec[rec["status"] != "ok"].iloc[0]
        part.status = str(failed["status"])
        part.reason = f"{ref.task} failed: {failed['params']}"
        return part
    sel = samples[
        (samples["task"] == ref.task)
        & (samples["metric"] == ref.metric)
        & (samples["filter"] == ref.filter)
    ]
    values = sel["value"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        have = sorted(
            set(samples.loc[samples["task"] == ref.task, ["metric", "filter"]].itertuples(False))
        )
        part.status = "error:MetricNotFound"
        part.reason = (
            f"{ref.task} has no per-document {ref.metric!r} (filter {ref.filter!r}); "
            f"it logged {have}"
        )
        return part
    part.status, part.values = "ok", values
    levels = chance_levels(sel)
    part.chance = levels["chance_acc"]
    part.chance_uniform = levels["chance_uniform"]
    part.chance_majority = levels["chance_majority"]
    return part


def weighted_score_ci(
    parts: Sequence[PartScore], *, confidence: float
) -> tuple[float, tuple[float, float]]:
    """Weighted mean of the parts' means and its interval, which carries each part's own.

    Each of the J available parts gets its exact interval (``part_ci``) at level
    ``1 - (1 - confidence) / J``; the score's interval is the weighted mean of their bounds
    (as ``stats.intervals.union_ci``). All J intervals cover at once with probability at least
    ``confidence`` (Bonferroni), and then the weighted mean lies between those bounds: the
    coverage holds for any number of documents per part, a part scored 0/20 included
    (its upper bound is then 0.2-0.3, not 0). It is conservative: no averaging out across
    parts, and the per-part level is higher.
    """
    parts = [p for p in parts if p.ok]
    if not parts:
        return math.nan, (math.nan, math.nan)
    weights = np.array([p.weight for p in parts], dtype=float) / sum(p.weight for p in parts)
    observed = float(np.dot(weights, [p.score for p in parts]))
    level = 1.0 - (1.0 - confidence) / len(parts)
    low, high = np.array([part_ci(p, level) for p in parts]).T
    return observed, (float(np.dot(weights, low)), float(np.dot(weights, high)))


def part_ci(part: PartScore, confidence: float) -> tuple[float, float]:
    """One part's interval of its mean (``samples.document_interval``: Clopper-Pearson for
    0/1 values); NaN for a part with no values."""
    if not part.ok:
        return (math.nan, math.nan)
    low, high, _ = document_interval(part.values, part.ref.metric, confidence)
    return low, high


def score_suite(
    suite: Suite,
    model: str,
    records: pd.DataFrame,
    samples: pd.DataFrame,
    *,
    allow_online: bool,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The suite's score for ``model``: (measurement rows, one-row-per-part table).

    ``records`` are the model's task measurement rows (benchmark = task), ``samples`` its
    per-document rows (forgebench.evaluation.samples) with a ``task`` column. Rows go to
    suite "eval", benchmark ``suite_<name>``, case ``model``: ``score`` with
    ``score_ci_low``/``score_ci_high`` (``weighted_score_ci``), ``chance`` where every
    objective is multiple choice (the weighted mean of the objectives' chance levels, with
    ``chance_uniform`` and ``chance_majority`` beside it), one ``objective.<name>`` row per
    objective with ``.ci_low``/``.ci_high`` and ``.chance`` (a failed status for a missing
    one) and ``group.<name>`` per group. ``score`` params say whether the suite is
    complete and list what is missing. ``n_resamples`` and ``seed`` are accepted and
    unused: every interval here is exact or a union of exact ones.
    """
    members = suite.members()
    parts = {m.name: _part(m, records, samples, allow_online) for m in members}
    objectives = [parts[o.name] for o in suite.objectives]
    missing = [p.name for p in objectives if not p.ok]
    score, ci = weighted_score_ci(objectives, confidence=confidence)
    available = [p for p in objectives if p.ok]
    chances = {
        key: _weighted([p.weight for p in available], [getattr(p, key) for p in available])
        for key in ("chance", "chance_uniform", "chance_majority")
    }
    chance = chances["chance"]
    rec = Recorder(SUITE_RECORD, f"suite_{suite.name}", SUITE_VERSION)
    head = {
        "suite": suite.name,
        "complete": not missing,
        "missing": missing,
        "objectives": {p.name: p.weight for p in objectives},
        "confidence": confidence,
    }
    status = "ok" if available else "unavailable"
    rec.add(model, head, "score", "fraction", True, score, status=status)
    rec.add(model, head, "score_ci_low", "fraction", True, ci[0], status=_finite(ci[0], status))
    rec.add(model, head, "score_ci_high", "fraction", True, ci[1], status=_finite(ci[1], status))
    for key, value in chances.items():
        if math.isfinite(value):
            rec.add(model, head, key, "fraction", True, value)
    rec.add(model, head, "objectives_missing", "count", False, float(len(missing)))
    table: list[dict[str, Any]] = []
    table.append(
        _table_row(
            model,
            suite.name,
            "suite",
            suite.name,
            None,
            score,
            ci,
            chance,
            status,
            "" if not missing else f"incomplete: missing {', '.join(missing)}",
            sum(p.values.size for p in available),
        )
    )
    for p in parts.values():
        pci = part_ci(p, confidence)
        params = {
            "task": p.ref.task,
            "metric": p.ref.metric,
            "filter": p.ref.filter,
            "weight": p.weight,
            "n_docs": int(p.values.size),
            "reason": p.reason,
        }
        kind = "objective" if p.name in {o.name for o in suite.objectives} else "member"
        if kind == "objective":
            rec.add(
                model, params, f"objective.{p.name}", "fraction", True, p.score, status=p.status
            )
            rec.add(
                model,
                params,
                f"objective.{p.name}.ci_low",
                "fraction",
                True,
                pci[0],
                status=_finite(pci[0], p.status),
            )
            rec.add(
                model,
                params,
                f"objective.{p.name}.ci_high",
                "fraction",
                True,
                pci[1],
                status=_finite(pci[1], p.status),
            )
            for key in ("chance", "chance_uniform", "chance_majority"):
                value = getattr(p, key)
                if math.isfinite(value):
                    rec.add(model, params, f"objective.{p.name}.{key}", "fraction", True, value)
        table.append(
            _table_row(
                model,
                suite.name,
                kind,
                p.name,
                p,
                p.score,
                pci,
                p.chance,
                p.status,
                p.reason,
                int(p.values.size),
            )
        )
    for g, group_members in suite.groups.items():
        gparts = [parts[m.name] for m in group_members]
        gmissing = [p.name for p in gparts if not p.ok]
        gok = [p.score for p in gparts if p.ok]
        value = float(np.mean(gok)) if gok else math.nan
        params = {
            "members": [p.name for p in gparts],
            "complete": not gmissing,
            "missing": gmissing,
        }
        gstatus = "ok" if gok else "unavailable"
        rec.add(model, params, f"group.{g}", "fraction", True, value, status=gstatus)
        table.append(
            _table_row(
                model,
                suite.name,
                "group",
                g,
                None,
                value,
                (math.nan, math.nan),
                math.nan,
                gstatus,
                "" if not gmissing else f"incomplete: missing {', '.join(gmissing)}",
                sum(p.values.size for p in gparts if p.ok),
            )
        )
    return rec.frame(), pd.DataFrame(table)


def _weighted(weights: Sequence[float], values: Sequence[float]) -> float:
    """Weighted mean; NaN when there is nothing or any value is NaN."""
    if not values or not all(math.isfinite(v) for v in values):
        return math.nan
    return float(np.dot(weights, values) / sum(weights))


def _finite(value: float, status: str) -> str:
    if status != "ok":
        return status
    return "ok" if math.isfinite(value) else "error:UndefinedInterval"


def _table_row(
    model: str,
    suite: str,
    kind: str,
    name: str,
    part: PartScore | None,
    score: float,
    ci: tuple[float, float],
    chance: float,
    status: str,
    reason: str,
    n_docs: int,
) -> dict[str, Any]:
    return {
        "model": model,
        "suite": suite,
        "kind": kind,
        "name": name,
        "task": part.ref.task if part else "",
        "metric": part.ref.metric if part else "",
        "filter": part.ref.filter if part else "",
        "weight": part.weight if part else math.nan,
        "status": status,
        "reason": reason,
        "n_docs": n_docs,
        "score": score,
        "score_ci_low": ci[0],
        "score_ci_high": ci[1],
        "chance": chance,
        # Above chance only when the whole interval is: a near-chance model shows as such.
        "above_chance": bool(math.isfinite(ci[0]) and math.isfinite(chance) and ci[0] > chance),
    }


def score_suite_files(
    suite: str | Suite,
    model: str,
    record_paths: Sequence[str | Path],
    sample_paths: Sequence[str | Path],
    *,
    out_record: str | Path,
    out_table: str | Path,
    allow_online: bool,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    provenance: Mapping[str, Any] | None = None,
    write_record: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``score_suite`` over the evaluation files of one model; writes the suite's measurement
    rows (``out_record``, unless the caller writes them: ``write_record=False``) and its
    per-part table (``out_table``)."""
    from forgebench.evaluation.samples import empty_samples, read_samples
    from forgebench.record import concat_measurements, write_derived_table, write_measurements

    spec = suite if isinstance(suite, Suite) else load_suite(suite)
    records = concat_measurements(record_paths)
    frames = [read_samples(p) for p in sample_paths]
    samples = pd.concat(frames, ignore_index=True) if frames else empty_samples()
    rows, table = score_suite(
        spec,
        model,
        records,
        samples,
        allow_online=allow_online,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )
    prov = {
        **dict(provenance or {}),
        "suite": spec.name,
        "model": model,
        "tasks": sorted({o.ref.task for o in spec.objectives}),
        "records": [str(p) for p in record_paths],
    }
    if write_record:
        rows = write_measurements(rows, out_record, prov)
    write_derived_table(
        table, out_table, {"kind": "suite_score", "suite": spec.name, "model": model}
    )
    return rows, table
