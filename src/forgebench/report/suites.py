"""A section per suite: its verdicts, a compact table of headline metrics, its warnings
counted by kind, at most one figure per benchmark, and a linked page with every row.

Why: the summary has a row per (benchmark, case, params, metric), thousands on the
default run, most of them single figures (a size, a count, an accuracy) that carried a
200-character "one sample" warning each. The main page shows what a reader acts on;
pages/<suite>.html keeps every row, with each warning named by its kind.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench import plots, record, stats
from forgebench.report.cells import is_bound_metric
from forgebench.report.format import finite, format_value, shorten
from forgebench.runner import is_job_case

#: Instability warnings (stats.instability_warnings) by kind: (kind, pattern, meaning).
WARNING_KINDS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("no successful value", re.compile(r"^No samples"), "nothing was measured successfully"),
    (
        "few samples",
        re.compile(r"^Only \d+ sample"),
        "fewer than 20 repeated measurements: high percentiles are interpolated from the "
        "largest few and intervals are wide",
    ),
    (
        "high spread",
        re.compile(r"^The (standard deviation|median absolute deviation)"),
        "spread above 10% of the typical value: the measurement looks unstable",
    ),
    (
        "below timer resolution",
        re.compile(r"^The shortest value"),
        "values shorter than 1 µs: timer resolution and call overhead dominate",
    ),
    (
        "negative durations",
        re.compile(r"negative duration"),
        "the clock is not monotonic or a start/stop pair was swapped",
    ),
    (
        "identical values",
        re.compile(r"^All \d+ values are identical"),
        "every value equal: the timer may be too coarse",
    ),
    (
        "outliers kept",
        re.compile(r"outliers \(modified z-score"),
        "values with a modified z-score above 3.5, kept in every statistic",
    ),
)
#: Headline metrics per benchmark beyond those a comparison or target names.
HEADLINE_METRICS = 4
#: Headline rows per benchmark; the linked page has the rest.
HEADLINE_ROWS = 8
_LATENCY_FIRST = ("rtt", "latency")
_QUALITY = ("recall", "mrr", "ndcg", "accuracy", "acc", "precision", "f1", "score", "pass")
#: Figure kinds in the order one is chosen as a benchmark's figure on the main page.
MAIN_FIGURE_ORDER = ("fitness", "scaling", "accuracy", "compression", "percentiles", "ab", "cdf")
#: Params preferred to tell apart rows of one case and metric (then any that differ).
_VARIANT_KEYS = ("scenario", "rate", "users", "concurrency", "step", "module", "seed", "size")


def exact_unit(unit: str) -> bool:
    """True when one value in ``unit`` is an exact figure (a count, a size, a share of
    items: stats.is_exact_unit), so noise warnings do not apply to it."""
    return stats.is_exact_unit(str(unit or ""))


def warning_kind(text: str) -> str:
    """The kind of one instability warning ("other" for one not in :data:`WARNING_KINDS`)."""
    return next((kind for kind, pattern, _ in WARNING_KINDS if pattern.search(text)), "other")


def applicable_warnings(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A summary row's warnings that apply to it, as (kind, sentence).

    A single value (no repetition) and a value in an exact unit (a count, a size, an
    accuracy over items) are not samples of a noisy measurement: sample-size, spread and
    outlier warnings do not apply to them. "No successful value" applies only where
    something failed (a planned skip is not a warning)."""
    texts = json.loads(row["warnings"]) if isinstance(row.get("warnings"), str) else []
    single = int(row.get("n_ok", 0)) <= 1 or exact_unit(str(row.get("unit", "")))
    out = []
    for text in texts:
        kind = warning_kind(text)
        if kind == "no successful value":
            if int(row.get("n_failed", 0)) > 0:
                out.append((kind, text))
        elif not single:
            out.append((kind, text))
    return out


def _variant(params: Mapping[str, Any], differing: Sequence[str]) -> str:
    shown = []
    for key in differing[:2]:
        value = params.get(key)
        text = f"{value:g}" if isinstance(value, float) else str(value)
        shown.append(f"{key} {shorten(text, 24)}")
    return ", ".join(shown)


def variants(summary: pd.DataFrame) -> list[str]:
    """Per summary row: the params that tell it apart from other rows of the same
    benchmark, case and metric ("" where the row is the only one)."""
    labels = [""] * len(summary)
    if summary.empty:
        return labels
    groups: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
    keys = zip(
        summary["suite"], summary["benchmark"], summary["case"], summary["metric"], strict=True
    )
    for i, key in enumerate(keys):
        groups[key].append(i)
    params = list(summary["params"])
    for idx in groups.values():
        if len(idx) < 2:
            continue
        parsed = [json.loads(params[i]) for i in idx]
        names = sorted({k for p in parsed for k in p})
        differ = [
            k for k in names if len({json.dumps(p.get(k), sort_keys=True) for p in parsed}) > 1
        ]
        differ = [k for k in _VARIANT_KEYS if k in differ] + [
            k for k in differ if k not in _VARIANT_KEYS
        ]
        for i, p in zip(idx, parsed, strict=True):
            labels[i] = _variant(p, differ)
    return labels


def _count(value: Any) -> str:
    return str(int(value)) if finite(value) else "0"


def summary_rows(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """Every non-job summary row, formatted, with the warnings that apply to it."""
    rows = []
    labels = variants(summary)
    for s, variant in zip(summary.to_dict("records"), labels, strict=True):
        if is_job_case(s["case"]):  # shown per job in the resources table
            continue
        unit = s["unit"]
        has = s["n_ok"] > 0
        warnings = applicable_warnings(s)
        rows.append(
            {
                "suite": s["suite"],
                "benchmark": s["benchmark"],
                "where": f"{s['suite']}/{s['benchmark']} v{s['benchmark_version']}",
                "case": s["case"],
                "variant": variant,
                "metric": s["metric"],
                "unit": unit,
                "n_ok": s["n_ok"],
                "n_failed": s["n_failed"],
                "failures": ", ".join(f"{k}: {n}" for k, n in json.loads(s["failures"]).items()),
                "median": format_value(s.get("median"), unit) if has else "—",
                "median_value": float(s["median"]) if has else None,
                "ci_low_value": float(s["ci_low"]) if has and finite(s.get("ci_low")) else None,
                "ci_high_value": float(s["ci_high"]) if has and finite(s.get("ci_high")) else None,
                "ci": (
                    f"[{format_value(s['ci_low'], unit)}, {format_value(s['ci_high'], unit)}]"
                    if has and finite(s.get("ci_low"))
                    else "—"
                ),
                "p90": format_value(s.get("p90"), unit) if has and s["n_ok"] > 1 else "—",
                "p99": format_value(s.get("p99"), unit) if has and s["n_ok"] > 1 else "—",
                "mean": format_value(s.get("mean"), unit) if has else "—",
                "mad": format_value(s.get("mad"), unit) if has and s["n_ok"] > 1 else "—",
                "outliers": f"{_count(s.get('n_outliers_mad'))} / {_count(s.get('n_outliers_iqr'))}"
                if has and s["n_ok"] > 1
                else "—",
                "warnings": [text for _, text in warnings],
                "warning_pairs": [{"kind": k, "text": t} for k, t in warnings],
                "warning_kinds": sorted({kind for kind, _ in warnings}),
                "bound": is_bound_metric(str(s["metric"])),
            }
        )
    return rows


def format_summary(summary: pd.DataFrame) -> list[str]:
    """The summary as text lines for a terminal, with pyperf-style warnings under a case
    (only the warnings that apply: none on a single value or an exact count)."""
    lines = []
    for s in summary_rows(summary):
        variant = f" ({s['variant']})" if s["variant"] else ""
        lines.append(
            f"{s['where']} {s['case']}{variant} {s['metric']}: median {s['median']} CI "
            f"{s['ci']}, p90 {s['p90']}, p99 {s['p99']} (n={s['n_ok']}, failed={s['n_failed']})"
        )
        lines.extend(f"  WARNING: {w}" for w in s["warnings"])
    return lines


def warning_lines(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One line per warning kind with the number of rows it applies to, where it applies."""
    counts: Counter[str] = Counter()
    where: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        for kind in r["warning_kinds"]:
            counts[kind] += 1
            where[kind].append(f"{r['benchmark']} {r['case']} {r['metric']}")
    meaning = {kind: text for kind, _, text in WARNING_KINDS}
    order = [k for k, _, _ in WARNING_KINDS] + ["other"]
    return [
        {
            "kind": kind,
            "count": counts[kind],
            "meaning": meaning.get(kind, "see the full table"),
            "examples": shorten("; ".join(where[kind][:3]), 160),
        }
        for kind in order
        if counts[kind]
    ]


def _first(metrics: Sequence[str], test: Any) -> list[str]:
    return [m for m in metrics if test(m)][:1]


def headline_metrics(
    metrics: Sequence[str], units: Mapping[str, str], named: set[str]
) -> list[str]:
    """A benchmark's headline metrics: those a comparison or target names, then its main
    latency, quality and throughput metric, at most :data:`HEADLINE_METRICS` in all."""
    metrics = sorted(m for m in metrics if not is_bound_metric(m))
    chosen = [m for m in metrics if m in named]
    latency = [m for m in metrics if plots.is_latency_metric(m, units.get(m, ""))]
    chosen += [m for m in _LATENCY_FIRST if m in latency][:1] or latency[:1]
    chosen += _first(metrics, lambda m: m.lower().startswith(_QUALITY))
    chosen += _first(metrics, lambda m: "throughput" in m or str(units.get(m, "")).endswith("/s"))
    chosen = list(dict.fromkeys(chosen))
    return (chosen or metrics[:1])[: max(HEADLINE_METRICS, len([m for m in chosen if m in named]))]


def headline_rows(
    rows: Sequence[Mapping[str, Any]], named: Mapping[str, set[str]]
) -> list[dict[str, Any]]:
    """The headline table of one suite: per benchmark, its headline metrics' rows (at
    most :data:`HEADLINE_ROWS`), each marked where the benchmark has more."""
    by_bench: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if not r["bound"]:
            by_bench[r["benchmark"]].append(r)
    out = []
    for bench in sorted(by_bench):
        mine = by_bench[bench]
        units = {r["metric"]: r["unit"] for r in mine}
        wanted = headline_metrics(list(units), units, named.get(bench, set()))
        chosen = [r for m in wanted for r in mine if r["metric"] == m]
        for i, r in enumerate(chosen[:HEADLINE_ROWS]):
            out.append(
                {
                    **r,
                    "first": i == 0,
                    "more": len(mine) - min(len(chosen), HEADLINE_ROWS) if i == 0 else 0,
                }
            )
    return out


def named_metrics(
    comparisons: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]], suite: str
) -> dict[str, set[str]]:
    """benchmark -> the metrics this run's comparisons and targets name in ``suite``."""
    named: dict[str, set[str]] = defaultdict(set)
    for entry in (*comparisons, *targets):
        if entry.get("suite") == suite and isinstance(entry.get("benchmark"), str):
            named[entry["benchmark"]].add(str(entry.get("metric")))
    return named


def split_figures(
    figures: Sequence[plots.Figure], headline: Mapping[str, Sequence[str]] | None = None
) -> tuple[list[plots.Figure], list[plots.Figure]]:
    """(main, more): at most one figure per benchmark for the main page, chosen by
    :data:`MAIN_FIGURE_ORDER` (a headline metric's figure first), the rest collapsed."""
    headline = headline or {}
    by_bench: dict[str, list[plots.Figure]] = defaultdict(list)
    for f in figures:
        by_bench[f.benchmark].append(f)
    main, more = [], []
    for bench in sorted(by_bench):
        mine = by_bench[bench]

        def rank(f: plots.Figure, _bench: str = bench) -> tuple[int, int, str]:
            kind = MAIN_FIGURE_ORDER.index(f.kind) if f.kind in MAIN_FIGURE_ORDER else 99
            wanted = [*headline.get(_bench, ())[:1], *_LATENCY_FIRST]
            stem = f.path.stem.split("_", 2)[-1]  # <benchmark>_<metric or scenario>
            named = next(
                (i for i, m in enumerate(wanted) if stem in (f"{_bench}_{m}", _bench)),
                len(wanted),
            )
            return kind, named, f.path.name

        ordered = sorted(mine, key=rank)
        main.append(ordered[0])
        more.extend(ordered[1:])
    return main, more


def resource_rows(paths: Sequence[str]) -> list[dict[str, str]]:
    """Per job: the sampler's peaks and memory growth, as stored in each file's provenance."""
    rows = []
    for path in paths:
        prov = record.read_provenance(path)
        res = prov.get("resources", {})
        bench = prov.get("benchmark", {})
        ci = res.get("memory_growth_ci") or (None, None)
        name = str(bench.get("name", Path(path).stem))
        if bench.get("job_subject"):
            name = f"{name} ({bench['job_subject']})"
        rows.append(
            {
                "suite": str(bench.get("suite", "?")),
                "where": f"{bench.get('suite', '?')}/{name}",
                "duration": format_value(res.get("duration_s"), "s"),
                "peak_rss": f"{format_value(res.get('peak_rss_bytes'), 'bytes')} "
                f"({res.get('peak_rss_source', '?')})",
                "cpu": f"{format_value(res.get('cpu_percent_mean'), '%')} mean, "
                f"{format_value(res.get('cpu_percent_max'), '%')} max",
                "growth": f"{format_value(res.get('memory_growth_mb_per_hour'), 'MB/h')} "
                f"[{format_value(ci[0], 'MB/h')}, {format_value(ci[1], 'MB/h')}]",
                "samples": str(res.get("n_samples", "—")),
            }
        )
    return rows
