"""The overview: the overall verdict, then every verdict that needs a person, by name.

Why: a reader (or a CI job's log) must see on one screen what failed and by how much,
not a count of verdicts. Every target and comparison of this run and every history
verdict is sorted into one group: needs attention (not met, regression, failed,
suspected regression), inconclusive, not measurable at this budget (declared, with the
reason), not measured, not comparable, and fine (met, no change, improvement), shown in
that order. Also here: the verdict counts, the rule statements and the optimization audit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from forgebench import stats
from forgebench.report.cells import is_bound_metric
from forgebench.report.format import (
    finite,
    format_change,
    format_interval,
    format_value,
    pair,
    shorten,
)
from forgebench.report.history import RUN_RULES, History
from forgebench.stats import vocabulary as V

_STATISTICS_DEFAULTS = stats.Settings().describe() | {
    "bootstrap_resamples": stats.Settings().bootstrap_resamples
}
SETTINGS_KEYS = frozenset(_STATISTICS_DEFAULTS)

#: Verdict -> overview group, in the order the groups are shown.
GROUPS: dict[str, tuple[str, ...]] = {
    "attention": (V.NOT_MET, V.REGRESSION, V.FAILED, V.SUSPECTED_REGRESSION),
    "inconclusive": (V.INCONCLUSIVE, V.UNDETERMINED),
    "not measurable": (V.NOT_MEASURABLE,),
    "not measured": (V.NOT_MEASURED,),
    "not comparable": (V.NOT_COMPARABLE,),
    "fine": (
        V.MET,
        V.NO_CHANGE,
        V.IMPROVEMENT,
        V.SUSPECTED_IMPROVEMENT,
        V.SHIFT_BELOW_THRESHOLD,
        "no significant change",
    ),
}
_GROUP_OF = {v: g for g, verdicts in GROUPS.items() for v in verdicts}
_ORDER = {v: i for i, v in enumerate(v for vs in GROUPS.values() for v in vs)}
#: Kinds of verdict, in the order they are listed within a group.
KINDS = ("target", "comparison", "vs baseline run", "history")
#: Rows of the attention table shown before "and N more" (the overview fits one screen).
ATTENTION_ROWS = 12
#: Characters of a reason shown in the overview; the whole text is in the cell's title.
REASON_CHARS = 110


def statistics_with_defaults(statistics: Mapping[str, Any]) -> dict[str, Any]:
    """The configured statistics section over the stats defaults."""
    return {**_STATISTICS_DEFAULTS, **statistics}


def group_of(verdict: str) -> str:
    """The overview group of a verdict word ("other" for a word outside the vocabulary)."""
    return _GROUP_OF.get(str(verdict), "other")


def units(summary: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """(suite, benchmark, metric) -> unit, from the summary table."""
    if summary.empty:
        return {}
    return {
        (s, b, m): u
        for s, b, m, u in zip(
            summary["suite"], summary["benchmark"], summary["metric"], summary["unit"], strict=True
        )
    }


def _flag(row: Mapping[str, Any], key: str) -> bool:
    value = row.get(key)
    return bool(value) if value is not None and not pd.isna(value) else False


def _noise(row: Mapping[str, Any]) -> str:
    """Why a verdict may be noise: other processes loaded the machine while it was made
    (the workflow's ``noisy`` flag, as forgebench gate reads it); "" otherwise."""
    if not _flag(row, "noisy"):
        return ""
    load = row.get("foreign_cpu_percent")
    return (
        f"made while other processes used {float(load):.0f}% CPU"
        if finite(load)
        else "made while other processes loaded the machine"
    )


def _count(value: Any) -> str:
    """A count, or "—" where there is none (a comparison declared not measurable)."""
    return str(int(value)) if finite(value) else "—"


def comparison_row(v: Mapping[str, Any], unit: str) -> dict[str, Any]:
    """One configured comparison, formatted."""
    lo, hi = pair(v.get("improvement_ci"))
    if lo is None:
        lo, hi = v.get("improvement_ci_low"), v.get("improvement_ci_high")
    return {
        "name": v["name"],
        "suite": v["suite"],
        "where": f"{v['suite']}/{v['benchmark']}",
        "metric": v["metric"],
        "baseline": f"{v['baseline']}: {format_value(v.get('median_baseline'), unit)}",
        "candidate": f"{v['candidate']}: {format_value(v.get('median_candidate'), unit)}",
        "improvement": format_change(v.get("improvement")),
        "ci": format_interval(lo, hi),
        "speedup": format_value(v.get("speedup"), "x") if finite(v.get("speedup")) else "—",
        "p": format_value(v.get("p_value", v.get("mannwhitney_p")), ""),
        "n": f"{_count(v.get('n_baseline'))} / {_count(v.get('n_candidate'))}",
        "failed": f"{_count(v.get('n_failed_baseline'))} / {_count(v.get('n_failed_candidate'))}",
        "family": v.get("family") if isinstance(v.get("family"), str) else "",
        "verdict": v["verdict"],
        "reason": str(v.get("reason", "")),
        "noisy": _noise(v),
        "gate": _flag(v, "gate"),
    }


def target_suite(t: Mapping[str, Any], comparisons: pd.DataFrame) -> str | None:
    """The suite a target belongs to: its own, or its comparison's."""
    if isinstance(t.get("suite"), str):
        return t["suite"]
    if isinstance(t.get("comparison"), str) and len(comparisons):
        match = comparisons[comparisons["name"] == t["comparison"]]
        if len(match):
            return str(match["suite"].iloc[0])
    return None


def target_row(t: Mapping[str, Any], unit: str) -> dict[str, Any]:
    """One configured target, formatted."""
    statistic = t["statistic"]
    fmt = format_change if statistic == "improvement" else (lambda x: format_value(x, unit))
    if isinstance(t.get("comparison"), str):
        what = f"improvement of comparison {t['comparison']!r}"
    elif isinstance(t.get("benchmark"), str):
        what = f"{statistic} of {t['suite']}/{t['benchmark']} {t['case']} {t['metric']}"
    else:
        what = f"{statistic} (no benchmark in this workflow measures it)"
    threshold = (
        format_change(t["threshold"])
        if statistic == "improvement"
        else format_value(t["threshold"], unit)
    )
    return {
        "name": t["name"],
        "benchmark": t.get("benchmark") if isinstance(t.get("benchmark"), str) else None,
        "case": t.get("case") if isinstance(t.get("case"), str) else None,
        "metric": t.get("metric") if isinstance(t.get("metric"), str) else None,
        "what": what,
        "condition": f"{statistic} {t['op']} {threshold}",
        "estimate": fmt(t.get("estimate")) if finite(t.get("estimate")) else "—",
        "ci": format_interval(t.get("ci_low"), t.get("ci_high"), fmt),
        "verdict": t["verdict"],
        "evidence": str(t.get("evidence", "")),
        "noisy": _noise(t),
        "gate": _flag(t, "gate"),
    }


def verdict_rows(
    verdicts: pd.DataFrame, summary: pd.DataFrame
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every comparison and every target of this run, formatted, each with its suite."""
    unit_of = units(summary)
    comps = verdicts[verdicts["kind"] == "comparison"] if len(verdicts) else verdicts
    targs = verdicts[verdicts["kind"] == "target"] if len(verdicts) else verdicts
    comp_rows = [
        comparison_row(v, unit_of.get((v["suite"], v["benchmark"], v["metric"]), ""))
        for v in comps.to_dict("records")
    ]
    target_rows = []
    for t in targs.to_dict("records"):
        unit = unit_of.get((t.get("suite"), t.get("benchmark"), t.get("metric")), "")
        target_rows.append({**target_row(t, unit), "suite": target_suite(t, comps)})
    return comp_rows, target_rows


def _item(kind: str, name: str, estimate: str, ci: str, verdict: str, **more: str) -> dict:
    reason = str(more.pop("reason", "") or "")
    return {
        "kind": kind,
        "name": name,
        "estimate": estimate,
        "ci": ci,
        "verdict": verdict,
        "group": group_of(verdict),
        "reason": reason,
        "reason_short": shorten(reason, REASON_CHARS),
        "condition": more.pop("condition", ""),
        "suite": more.pop("suite", "") or "",
        "noisy": more.pop("noisy", ""),
        "gate": bool(more.pop("gate", False)),
    }


def _history_items(history: History) -> list[dict[str, Any]]:
    items = []
    for kind, frame in (("vs baseline run", history.baseline), ("history", history.regressions)):
        if frame is None or frame.empty or "verdict" not in frame:
            continue
        for r in frame.to_dict("records"):
            if is_bound_metric(str(r.get("metric", ""))):
                continue  # another metric's interval row: its verdict follows that metric's
            lo, hi = r.get("improvement_ci_low"), r.get("improvement_ci_high")
            if lo is None and hi is None:
                lo, hi = pair(r.get("improvement_ci"))
            unit = str(r.get("unit") or "")
            levels = ""
            if finite(r.get("level_before")) and finite(r.get("level_current")):
                levels = (
                    f"{format_value(r['level_before'], unit)} → "
                    f"{format_value(r['level_current'], unit)}"
                )
            items.append(
                _item(
                    kind,
                    f"{r.get('suite', '?')}/{r.get('benchmark', '?')} {r.get('case', '')} "
                    f"{r.get('metric', '')}".strip(),
                    format_change(r.get("improvement")),
                    format_interval(lo, hi),
                    str(r["verdict"]),
                    reason=str(r.get("reason", "") or ""),
                    condition=levels,
                    suite=str(r.get("suite", "")),
                    noisy=_noise(r),
                )
            )
    return items


def overview(
    comp_rows: Sequence[Mapping[str, Any]],
    target_rows: Sequence[Mapping[str, Any]],
    history: History,
) -> dict[str, Any]:
    """Every verdict of this run sorted into its overview group (see :data:`GROUPS`).

    Targets and comparisons are listed by name in every group; history verdicts by name
    where they need attention, and counted elsewhere (pages/history.html lists them)."""
    items = [
        _item(
            "target",
            t["name"],
            t["estimate"],
            t["ci"],
            t["verdict"],
            reason=t["evidence"],
            condition=t["condition"],
            suite=t.get("suite") or "",
            noisy=t.get("noisy", ""),
            gate=t.get("gate", False),
        )
        for t in target_rows
    ] + [
        _item(
            "comparison",
            c["name"],
            c["improvement"],
            c["ci"],
            c["verdict"],
            reason=c["reason"],
            condition=f"{c['candidate']} vs {c['baseline']}",
            suite=c["suite"],
            noisy=c.get("noisy", ""),
            gate=c.get("gate", False),
        )
        for c in comp_rows
    ]
    hist = _history_items(history)
    items += [i for i in hist if i["group"] == "attention"]
    # This run's targets and comparisons (what the overall verdict is about) before the
    # history's verdicts; within each, failures and misses before suspicions.
    items.sort(
        key=lambda i: (
            i["kind"] in KINDS[2:],
            _ORDER.get(i["verdict"], len(_ORDER)),
            KINDS.index(i["kind"]),
            i["name"],
        )
    )
    groups: dict[str, list[dict[str, Any]]] = {g: [] for g in (*GROUPS, "other")}
    for item in items:
        groups[item["group"]].append(item)
    attention = groups.pop("attention")
    history_counts = Counter(i["group"] for i in hist if i["group"] != "attention")
    return {
        "attention": attention[:ATTENTION_ROWS],
        "attention_more": attention[ATTENTION_ROWS:],
        "n_attention": len(attention),
        "groups": [
            {"name": name, "entries": rows, "n_history": history_counts.get(name, 0)}
            for name, rows in groups.items()
            if rows or history_counts.get(name, 0)
        ],
        "n_history_verdicts": len(hist),
    }


def overall_line(
    overall: Mapping[str, Any],
    not_measured: Sequence[str],
    not_measurable: Sequence[str] = (),
) -> str:
    """The audit's overall verdict in one sentence, naming the targets left out of it."""
    share = overall["share_met"]
    text = (
        f"Overall: {overall['verdict']}. {overall['met']} of {overall['measured']} measured "
        f"targets met"
        + (f" ({share:.0%})" if finite(share) else "")
        + f"; PASSED needs at least {overall['pass_share']:.0%} met, and inconclusive counts "
        "as not met."
    )
    if not_measurable:
        text += (
            " Not measurable at this budget (declared before the run), left out of the "
            f"share: {', '.join(not_measurable)}."
        )
    if not_measured:
        return text + f" Not measured, left out of the share: {', '.join(not_measured)}."
    return text + " Every other audited target was measured."


def verdict_counts(
    verdicts: pd.DataFrame,
    baseline: pd.DataFrame | None = None,
    regressions: pd.DataFrame | None = None,
) -> dict[str, dict]:
    """Counts of each verdict, by kind: comparison and target (this run), baseline
    comparison and regression detection (the history rule's tables, when present)."""
    counts: dict[str, dict[str, int]] = {}
    if not verdicts.empty:
        for kind, group in verdicts.groupby("kind", sort=True):
            counts[str(kind)] = {str(k): n for k, n in sorted(Counter(group["verdict"]).items())}
    for kind, frame in (("baseline comparison", baseline), ("regression detection", regressions)):
        if frame is not None and not frame.empty and "verdict" in frame:
            verdict = frame["verdict"].astype(str)
            counts[kind] = dict(sorted(Counter(verdict).items()))
    return counts


def audit_rows(table: pd.DataFrame, unit_of: Mapping[tuple[str, str, str], str]) -> list[dict]:
    """The optimization audit's rows (every target on a comparison), formatted."""
    rows = []
    for a in table.to_dict("records"):
        unit = unit_of.get((a["suite"], a["benchmark"], a["metric"]), "")
        measured = isinstance(a.get("suite"), str)
        rows.append(
            {
                "optimization": a["optimization"],
                "where": f"{a['suite']}/{a['benchmark']} {a['metric']}" if measured else "—",
                "baseline": f"{a['baseline']}: {format_value(a['median_baseline'], unit)}"
                if measured
                else "—",
                "candidate": f"{a['candidate']}: {format_value(a['median_candidate'], unit)}"
                if measured
                else "—",
                "improvement": format_change(a["improvement"]),
                "ci": format_interval(a["improvement_ci_low"], a["improvement_ci_high"]),
                "failed": f"{int(a['n_failed_baseline'])} / {int(a['n_failed_candidate'])}"
                if measured
                else "—",
                "comparison_verdict": a["comparison_verdict"] or "—",
                "target": a["target"],
                "verdict": a["target_verdict"],
            }
        )
    return rows


def rule_statements(
    statistics: Mapping[str, Any],
    families: Sequence[str],
    baseline_families: Sequence[str],
    run_info: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """How every verdict in the report is decided, in words, with this run's settings;
    the history rule's own statements (in run.json) replace or follow the generic ones."""
    settings = stats.Settings.from_config(
        {k: v for k, v in statistics.items() if k in SETTINGS_KEYS}
    )
    threshold, alpha, confidence = (
        settings.practical_threshold,
        settings.alpha,
        settings.confidence,
    )
    minimum = settings.min_units
    fams = ", ".join(f"“{f}”" for f in families) or "none in this run"
    base_fams = ", ".join(f"“{f}”" for f in baseline_families)
    rules = [
        (
            "Comparison",
            "One estimand, one interval: the ratio candidate / baseline of a typical value "
            "on the log scale (Hodges-Lehmann with the Mann-Whitney or signed-rank interval "
            "when rows are the independent units; Welch or paired t over per-repetition "
            "medians when repetitions hold several rows). An improvement (regression) needs "
            f"the whole {confidence:.0%} interval of the improvement above +{threshold:.0%} "
            f"(below −{threshold:.0%}; per metric where statistics.metric_thresholds says); "
            f"“no change” needs it inside ±{threshold:.0%}; otherwise “inconclusive”, as is "
            f"any side with fewer than {minimum['comparison']} units. The p-value shown is "
            "the interval's dual (the change is not beyond the threshold), so they cannot "
            "disagree. “undetermined”: the data cannot carry a ratio.",
        ),
        (
            "Failed",
            "Failures are errors, timeouts and mismatches; skipped, unavailable (a planned "
            "departure) and censored (a run stopped at its budget) rows are by design and "
            "never count. A comparison is “failed” when the candidate's failure rate is "
            "significantly above the baseline's (Fisher exact) or its Clopper-Pearson "
            f"interval lies above the error budget of {settings.error_budget:.1%}; it then "
            "publishes no speed figure. Failures are counted, never turned into values.",
        ),
        (
            "Target",
            f"A target is met only when its whole {confidence:.0%} interval satisfies it and "
            "its failures are within the error budget; not met when the whole interval "
            "violates it or its failures are over budget; inconclusive when the interval "
            "straddles the threshold or cannot exist at this n (quantiles use order "
            "statistics, proportions Clopper-Pearson, means and repetitions Student's t; "
            f"fewer than {minimum['target']} units decide nothing); not measured without "
            "rows; “not measurable at this budget” when declared so in config before the run.",
        ),
        (
            "Families",
            "The comparisons of one suite form a family: Benjamini-Hochberg selects at "
            f"alpha = {alpha:g} on the interval's dual p-values, and every member is then "
            "judged on its false-coverage-adjusted interval at level 1 − max(R, 1)·alpha/m "
            f"(Benjamini-Yekutieli). Families in this run: {fams}."
            + (f" Families against the baseline run: {base_fams}." if base_fams else ""),
        ),
        (
            "Not comparable",
            "Against a stored baseline run, a metric is “not comparable” (and gets no "
            "verdict) when its benchmark version differs, or when the machine differs (host "
            "or CPU model) unless cross-machine comparison was asked for.",
        ),
        (
            "Overall",
            "The optimization audit passes when at least 80% of its measured targets are "
            "met; inconclusive counts as not met; targets not measured or not measurable at "
            "this budget are left out of the share and listed.",
        ),
    ]
    for key, name in RUN_RULES.items():
        text = (run_info or {}).get(key)
        if isinstance(text, str) and text:
            rules = [r for r in rules if r[0] != name] + [(name, text)]
    return rules
