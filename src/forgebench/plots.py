"""Figures for the report. Matplotlib with the Agg backend: no display, deterministic PNGs.

Every function takes tables (sorted here, so input order never changes a picture), writes
fixed-size PNGs without a Software stamp and returns :class:`Figure` records, so the report
can place each figure in its suite's section and ``snakemake --report`` can file it under a
category. Functions whose metrics are absent write nothing and return an empty list.

File names are ``<kind>_<suite>_<rest>.png`` with ``kind`` from :data:`KINDS` and the suite
without underscores, so rules/report.smk can recover kind and suite from the name alone.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats as sps

from forgebench.atomic import atomic_path
from forgebench.runner import is_job_case

LATENCY_METRICS = ("rtt", "latency")
ACCURACY_METRICS = ("acc", "acc_norm", "accuracy", "exact_match")
QUALITY_METRICS = (*ACCURACY_METRICS, "f1", "bleu", "rouge", "perplexity", "ppl", "quality")

# kind -> (category in the Snakemake report, what the figure shows)
KINDS: dict[str, tuple[str, str]] = {
    "cdf": ("Latency distributions", "empirical CDF of every successful operation"),
    "percentiles": ("Latency percentiles", "p50, p90 and p99 per case"),
    "ab": ("A vs B comparisons", "baseline and candidate values of a configured comparison"),
    "resources": ("Resource timelines", "RSS and CPU of a job over time"),
    "accuracy": ("Evaluation accuracy", "accuracy with confidence intervals against chance"),
    "compression": ("Compression", "compression ratio against quality"),
    "scaling": ("Scaling", "throughput against problem size: medians with their CIs"),
    "fitness": ("EvoMerge fitness", "fitness of every individual by generation, with CIs"),
    "trend": ("History", "per-run medians over the stored history"),
}

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_FIGSIZE = (7.0, 4.2)
_DPI = 100


@dataclass(frozen=True)
class Figure:
    """One written PNG and where it belongs in the report."""

    path: Path
    kind: str
    suite: str
    title: str
    caption: str


def is_latency_metric(metric: str, unit: str) -> bool:
    """Latency-like metrics: seconds, named like a latency (rtt, latency, *_latency, ...)."""
    return unit == "s" and any(name in metric for name in LATENCY_METRICS)


def _scenario(params: str, case: str) -> str:
    return str(json.loads(params).get("scenario", case))


def _name(kind: str, suite: str, *parts: str) -> str:
    rest = _SAFE.sub("_", "_".join(parts)).strip("_") or "all"
    return f"{kind}_{_SAFE.sub('-', suite.replace('_', '-'))}_{rest}.png"


class _Writer:
    """Saves figures into one folder under unique, deterministic names."""

    def __init__(self, plots_dir: str | Path) -> None:
        self.dir = Path(plots_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.used: set[str] = set()

    def save(self, fig: Any, kind: str, suite: str, parts: Sequence[str], title: str) -> Figure:
        name = _name(kind, suite, *parts)
        stem, n = name[:-4], 2
        while name in self.used:
            name, n = f"{stem}-{n}.png", n + 1
        self.used.add(name)
        path = self.dir / name
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=_DPI, metadata={"Software": None})
        plt.close(fig)
        return Figure(path, kind, suite, title, KINDS[kind][1])


def _measured(frame: pd.DataFrame) -> pd.DataFrame:
    """Non-warm-up rows outside the runner's job-level case."""
    if frame.empty:
        return frame
    return frame[~frame["warmup"].astype(bool) & ~frame["case"].map(is_job_case)]


def _ok_values(rows: pd.DataFrame) -> np.ndarray:
    return np.sort(rows.loc[rows["status"] == "ok", "value"].to_numpy(dtype=float))


def _cdf_points(n: int, body: int = 2000, tail: int = 500) -> np.ndarray:
    """Indices of a sorted sample worth drawing: evenly spaced through the body, every
    value of the slowest tail (where the interesting part of a latency CDF is), first and
    last always. A 700-pixel figure cannot show more, and 10^5 steps per curve are slow."""
    if n <= body + tail:
        return np.arange(n)
    spaced = np.linspace(0, n - 1, body).round().astype(int)
    return np.unique(np.concatenate([spaced, np.arange(n - tail, n)]))


def latency_cdfs(frame: pd.DataFrame, plots_dir: str | Path) -> list[Figure]:
    """One CDF figure per benchmark scenario of every latency metric, a curve per case.

    Warm-up rows are excluded; failed operations are not latencies, so they are counted
    in the legend instead of being plotted.
    """
    writer = _Writer(plots_dir)
    sel = _measured(frame)
    if sel.empty:
        return []
    sel = sel[[is_latency_metric(m, u) for m, u in zip(sel["metric"], sel["unit"], strict=True)]]
    if sel.empty:
        return []
    sel = sel.assign(
        scenario=[_scenario(p, c) for p, c in zip(sel["params"], sel["case"], strict=True)]
    )
    figures = []
    for (suite, benchmark, metric, scenario), group in sel.groupby(
        ["suite", "benchmark", "metric", "scenario"], sort=True
    ):
        fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
        plotted = False
        for case, rows in group.groupby("case", sort=True):
            ok = _ok_values(rows) * 1e6
            failed = int((rows["status"] != "ok").sum())
            if len(ok) == 0:
                continue
            y = np.arange(1, len(ok) + 1) / len(ok)
            keep = _cdf_points(len(ok))
            ax.step(ok[keep], y[keep], where="post", label=f"{case} (n={len(ok)}, failed={failed})")
            plotted = True
        if not plotted:
            plt.close(fig)
            continue
        ax.set_xscale("log")
        ax.set_xlabel(f"{metric} (µs, log scale)")
        ax.set_ylabel("fraction of operations ≤ x")
        title = f"{suite}/{benchmark}: {scenario}"
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        parts = (
            [benchmark, scenario] if metric in LATENCY_METRICS else [benchmark, metric, scenario]
        )
        figures.append(writer.save(fig, "cdf", suite, parts, title))
    return figures


def percentile_bars(summary: pd.DataFrame, plots_dir: str | Path) -> list[Figure]:
    """p50/p90/p99 bars per case of each latency metric, from the summary table; the p50
    bar carries the bootstrap CI of the median as its error bar."""
    writer = _Writer(plots_dir)
    if summary.empty or "p50" not in summary:
        return []
    latency = pd.Series(
        [is_latency_metric(m, u) for m, u in zip(summary["metric"], summary["unit"], strict=True)],
        index=summary.index,
        dtype=bool,
    )
    sel = summary[~summary["case"].map(is_job_case) & (summary["n_ok"] > 0) & latency]
    figures = []
    for (suite, benchmark, metric), group in sel.groupby(
        ["suite", "benchmark", "metric"], sort=True
    ):
        group = group.sort_values(["case", "params"])
        labels = list(group["case"])
        x = np.arange(len(labels))
        width = 0.27
        fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * len(labels) + 2), 4.2), dpi=_DPI)
        for i, (col, colour) in enumerate((("p50", "C0"), ("p90", "C1"), ("p99", "C3"))):
            values = group[col].to_numpy(dtype=float) * 1e6
            err = None
            if col == "p50":
                low = group["ci_low"].to_numpy(dtype=float) * 1e6
                high = group["ci_high"].to_numpy(dtype=float) * 1e6
                err = np.nan_to_num(np.vstack([values - low, high - values]), nan=0.0)
                err = np.clip(err, 0.0, None)
            ax.bar(x + (i - 1) * width, values, width, yerr=err, capsize=2, label=col, color=colour)
        ax.set_yscale("log")
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"{metric} (µs, log scale)")
        title = f"{suite}/{benchmark}: {metric} percentiles"
        ax.set_title(title)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
        figures.append(writer.save(fig, "percentiles", suite, [benchmark, metric], title))
    return figures


def comparison_boxes(
    frame: pd.DataFrame, comparisons: pd.DataFrame, plots_dir: str | Path
) -> list[Figure]:
    """A box plot per configured comparison: baseline against candidate, successful
    non-warm-up values only, each side's failed operations counted in the title."""
    writer = _Writer(plots_dir)
    if comparisons.empty or frame.empty:
        return []
    comps = comparisons[comparisons["kind"] == "comparison"].sort_values("name")
    figures = []
    for comp in comps.to_dict("records"):
        sel = frame[
            (frame["suite"] == comp["suite"])
            & (frame["benchmark"] == comp["benchmark"])
            & (frame["metric"] == comp["metric"])
            & ~frame["warmup"].astype(bool)
        ]
        sides, failed = [], []
        for role in ("baseline", "candidate"):
            rows = sel[sel["case"] == comp[role]]
            sides.append(_ok_values(rows))
            failed.append(int((rows["status"] != "ok").sum()))
        unit = str(sel["unit"].iloc[0]) if len(sel) else ""
        fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
        labels = [
            f"{comp['baseline']}\n(baseline, n={len(sides[0])})",
            f"{comp['candidate']}\n(candidate, n={len(sides[1])})",
        ]
        present = [i for i, values in enumerate(sides) if len(values)]
        if present:
            ax.boxplot(
                [sides[i] for i in present],
                positions=[i + 1 for i in present],
                widths=0.5,
                showfliers=True,
            )
        ax.set_xticks([1, 2], labels, fontsize=8)
        ax.set_xlim(0.4, 2.6)
        ax.set_ylabel(f"{comp['metric']} ({unit})" if unit else str(comp["metric"]))
        title = (
            f"{comp['name']}: {comp['verdict']}\n"
            f"failed operations: baseline {failed[0]}, candidate {failed[1]}"
        )
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        figures.append(writer.save(fig, "ab", str(comp["suite"]), [str(comp["name"])], title))
    return figures


def resource_timelines(
    resources: Mapping[tuple[str, str], pd.DataFrame], plots_dir: str | Path
) -> list[Figure]:
    """Per job: RSS (MiB) and CPU (% of one core, summed over the process tree) against
    seconds since the job started, from its sampler table."""
    writer = _Writer(plots_dir)
    figures = []
    for suite, benchmark in sorted(resources):
        table = resources[(suite, benchmark)]
        rss = table[table["metric"] == "rss_bytes"].sort_values("t_s", kind="stable")
        cpu = table[table["metric"] == "cpu_percent"].sort_values("t_s", kind="stable")
        if rss.empty and cpu.empty:
            continue
        fig, (ax_rss, ax_cpu) = plt.subplots(2, 1, figsize=(7.0, 5.0), dpi=_DPI, sharex=True)
        ax_rss.plot(rss["t_s"], rss["value"] / 2**20, color="C0", marker=".", markersize=3)
        ax_rss.set_ylabel("RSS (MiB)")
        ax_rss.grid(True, alpha=0.3)
        ax_cpu.plot(cpu["t_s"], cpu["value"], color="C1", marker=".", markersize=3)
        ax_cpu.set_ylabel("CPU (%)")
        ax_cpu.set_xlabel("seconds since the job started")
        ax_cpu.grid(True, alpha=0.3)
        title = f"{suite}/{benchmark}: resources over time"
        ax_rss.set_title(title)
        figures.append(writer.save(fig, "resources", suite, [benchmark], title))
    return figures


def _accuracy_interval(
    values: np.ndarray, params: Mapping[str, Any], confidence: float, seed: int, n_resamples: int
) -> tuple[float, float]:
    """Bootstrap CI of the mean over repeated values; for a single value, the Wilson
    interval when params says over how many items (``n_items``) it was measured."""
    from forgebench import stats

    if len(values) >= 2:
        return stats.bootstrap_ci(
            values, "mean", confidence=confidence, n_resamples=n_resamples, seed=seed
        )
    n_items = params.get("n_items")
    if len(values) == 1 and isinstance(n_items, int) and n_items > 0:
        k = round(float(values[0]) * n_items)
        ci = sps.binomtest(k, n_items).proportion_ci(confidence_level=confidence, method="wilson")
        return float(ci.low), float(ci.high)
    return (math.nan, math.nan)


def accuracy_plots(
    frame: pd.DataFrame,
    plots_dir: str | Path,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[Figure]:
    """Accuracy (metrics in :data:`ACCURACY_METRICS`, unit ``fraction``) per case with its
    confidence interval, against the chance level in the case's params (``chance``)."""
    writer = _Writer(plots_dir)
    sel = _measured(frame)
    if sel.empty:
        return []
    sel = sel[sel["metric"].isin(ACCURACY_METRICS) & (sel["unit"] == "fraction")]
    figures = []
    for (suite, benchmark, metric), group in sel.groupby(
        ["suite", "benchmark", "metric"], sort=True
    ):
        cases = sorted(group["case"].unique())
        fig, ax = plt.subplots(figsize=(7.0, max(2.5, 0.45 * len(cases) + 1.5)), dpi=_DPI)
        chance_drawn = False
        for y, case in enumerate(cases):
            rows = group[group["case"] == case]
            values = _ok_values(rows)
            params = json.loads(rows["params"].iloc[0])
            failed = int((rows["status"] != "ok").sum())
            if len(values):
                mean = float(np.mean(values))
                low, high = _accuracy_interval(values, params, confidence, seed, n_resamples)
                xerr = (
                    [[max(mean - low, 0.0)], [max(high - mean, 0.0)]]
                    if math.isfinite(low) and math.isfinite(high)
                    else None
                )
                ax.errorbar(mean, y, xerr=xerr, fmt="o", color="C0", capsize=3)
            if failed:
                ax.annotate(f"{failed} failed", (0.0, y), fontsize=7, color="C3")
            chance = params.get("chance")
            if isinstance(chance, int | float):
                ax.plot(
                    [chance, chance],
                    [y - 0.35, y + 0.35],
                    color="C3",
                    linestyle="--",
                    label=None if chance_drawn else "chance",
                )
                chance_drawn = True
        ax.set_yticks(range(len(cases)), cases, fontsize=8)
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(f"{metric} ({confidence:.0%} CI)")
        title = f"{suite}/{benchmark}: {metric}"
        ax.set_title(title)
        ax.grid(True, axis="x", alpha=0.3)
        if chance_drawn:
            ax.legend(fontsize=8, loc="lower right")
        figures.append(writer.save(fig, "accuracy", suite, [benchmark, metric], title))
    return figures


def compression_plots(summary: pd.DataFrame, plots_dir: str | Path) -> list[Figure]:
    """Median compression ratio (x) against the median of each quality metric (y), a point
    per case, with the medians' CIs as error bars; only where both metrics exist."""
    writer = _Writer(plots_dir)
    if summary.empty or "median" not in summary:
        return []
    sel = summary[~summary["case"].map(is_job_case) & (summary["n_ok"] > 0)]
    figures = []
    for (suite, benchmark), group in sel.groupby(["suite", "benchmark"], sort=True):
        ratio_metrics = sorted(m for m in group["metric"].unique() if "compression_ratio" in m)
        quality = sorted(
            m
            for m in group["metric"].unique()
            if m in QUALITY_METRICS or m.split("_")[0] in QUALITY_METRICS
        )
        for ratio_metric in ratio_metrics:
            ratio = group[group["metric"] == ratio_metric].set_index("case")
            for q_metric in quality:
                q = group[group["metric"] == q_metric].set_index("case")
                cases = sorted(set(ratio.index) & set(q.index))
                if not cases:
                    continue
                fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
                for case in cases:
                    r, v = ratio.loc[case], q.loc[case]
                    xerr = _err(r)
                    yerr = _err(v)
                    ax.errorbar(r["median"], v["median"], xerr=xerr, yerr=yerr, fmt="o", capsize=3)
                    ax.annotate(
                        case,
                        (r["median"], v["median"]),
                        fontsize=7,
                        xytext=(4, 4),
                        textcoords="offset points",
                    )
                ax.set_xlabel(f"{ratio_metric} (median)")
                ax.set_ylabel(f"{q_metric} (median, {q['unit'].iloc[0]})")
                title = f"{suite}/{benchmark}: {ratio_metric} against {q_metric}"
                ax.set_title(title, fontsize=10)
                ax.grid(True, alpha=0.3)
                figures.append(writer.save(fig, "compression", suite, [benchmark, q_metric], title))
    return figures


#: A case named for the size it ran at: ``patients_1000`` -> ("patients", 1000).
_SIZED_CASE = re.compile(r"^(?P<what>[A-Za-z]+)_(?P<n>\d+)$")


def scaling_plots(summary: pd.DataFrame, plots_dir: str | Path) -> list[Figure]:
    """Throughput metrics against problem size, log-log: one figure per benchmark, a line
    per throughput metric, the median of each size with its CI. Sizes come from cases
    named ``<what>_<n>``; the x axis reads the ``records`` param (the store's true size)
    where every size has it, else ``n``. Needs at least two sizes with a value."""
    writer = _Writer(plots_dir)
    if summary.empty or "median" not in summary:
        return []
    sized = summary["case"].str.match(_SIZED_CASE.pattern) & summary["metric"].str.contains(
        "throughput"
    )
    sel = summary[sized & (summary["n_ok"] > 0)]
    figures = []
    for (suite, benchmark), group in sel.groupby(["suite", "benchmark"], sort=True):
        params = [json.loads(p) for p in group["params"]]
        use_records = all(isinstance(p.get("records"), int | float) for p in params)
        what = _SIZED_CASE.match(str(group["case"].iloc[0])).group("what")  # type: ignore[union-attr]
        x = [
            float(p["records"]) if use_records else float(_SIZED_CASE.match(c).group("n"))  # type: ignore[union-attr]
            for p, c in zip(params, group["case"], strict=True)
        ]
        group = group.assign(x=x)
        if group["x"].nunique() < 2:
            continue
        fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
        for i, (metric, rows) in enumerate(group.groupby("metric", sort=True)):
            rows = rows.sort_values("x")
            y = rows["median"].to_numpy(dtype=float)
            low = rows["ci_low"].to_numpy(dtype=float)
            high = rows["ci_high"].to_numpy(dtype=float)
            err = np.clip(np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0), 0.0, None)
            unit = str(rows["unit"].iloc[0])
            ax.errorbar(
                rows["x"], y, yerr=err, fmt="o-", capsize=3, color=f"C{i % 10}",
                label=f"{metric} ({unit}, n={int(rows['n_ok'].min())}+ per size)",
            )  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("store records (log scale)" if use_records else f"{what} (log scale)")
        ax.set_ylabel("median throughput (log scale)")
        title = f"{suite}/{benchmark}: throughput against size"
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        figures.append(writer.save(fig, "scaling", suite, [benchmark], title))
    return figures


def fitness_plots(individuals: pd.DataFrame, plots_dir: str | Path) -> list[Figure]:
    """Per suite/benchmark: every individual's fitness at its generation with its CI
    (points spread a little sideways so equal generations stay apart), and the best
    fitness so far as a line. ``individuals`` has columns suite, benchmark, generation,
    name, fitness, ci_low, ci_high (forgebench.report builds it); generation -1 holds the
    seed models, drawn as the best seed's level; failed ones (NaN fitness) are counted in
    the title."""
    writer = _Writer(plots_dir)
    if individuals.empty:
        return []
    figures = []
    for (suite, benchmark), group in individuals.groupby(["suite", "benchmark"], sort=True):
        group = group.sort_values(["generation", "name"], kind="stable")
        finite = np.isfinite(group["fitness"].to_numpy(dtype=float))
        seeds = group[finite & (group["generation"] < 0).to_numpy()]
        group = group[(group["generation"] >= 0).to_numpy()]
        ok = group[np.isfinite(group["fitness"].to_numpy(dtype=float))]
        fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
        if len(seeds):
            ax.axhline(
                float(seeds["fitness"].max()), color="C2", linestyle="--", label="best seed model"
            )
        for _gen, rows in ok.groupby("generation", sort=True):
            n = len(rows)
            offsets = (np.arange(n) - (n - 1) / 2) * (0.5 / max(n, 1))
            y = rows["fitness"].to_numpy(dtype=float)
            low = rows["ci_low"].to_numpy(dtype=float)
            high = rows["ci_high"].to_numpy(dtype=float)
            err = np.clip(np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0), 0.0, None)
            ax.errorbar(
                rows["generation"].to_numpy(dtype=float) + offsets, y, yerr=err, fmt="o",
                capsize=2, color="C0", alpha=0.8, markersize=4,
            )  # fmt: skip
        if len(ok):
            best = ok.groupby("generation", sort=True)["fitness"].max().cummax()
            ax.plot(best.index, best.to_numpy(), "-", color="C3", label="best so far")
        if len(ok) or len(seeds):
            ax.legend(fontsize=8, loc="best")
        failed = len(group) - len(ok)
        gens = sorted(group["generation"].unique())
        ax.set_xticks(gens, [str(int(g)) for g in gens])
        ax.set_xlabel("generation")
        ax.set_ylabel("fitness (CI)")
        title = f"{suite}/{benchmark}: fitness by generation" + (
            f"\n{failed} individuals failed" if failed else ""
        )
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        figures.append(writer.save(fig, "fitness", suite, [benchmark], title))
    return figures


def _err(row: pd.Series) -> list[list[float]] | None:
    low, mid, high = float(row["ci_low"]), float(row["median"]), float(row["ci_high"])
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return [[max(mid - low, 0.0)], [max(high - mid, 0.0)]]


def run_medians(
    runs: Iterable[tuple[str, pd.DataFrame]], *, confidence: float = 0.95
) -> pd.DataFrame:
    """Per stored run and suite/benchmark/case/metric: the median of the successful,
    non-warm-up values with its distribution-free order-statistic CI
    (``scipy.stats.quantile_test``; NaN below ~6 values). Cheap on long histories, where
    a bootstrap per run and metric would dominate the report's time.

    ``runs`` is ``(run_id, rows)`` in history order; the result keeps that order as
    ``run_index``.
    """
    out = []
    for index, (run_id, rows) in enumerate(runs):
        sel = _measured(rows)
        sel = sel[sel["status"] == "ok"]
        for (suite, benchmark, case, metric, unit), group in sel.groupby(
            ["suite", "benchmark", "case", "metric", "unit"], sort=True
        ):
            values = np.sort(group["value"].to_numpy(dtype=float))
            median = float(np.median(values))
            ci = sps.quantile_test(values, q=median, p=0.5).confidence_interval(confidence)
            out.append(
                {
                    "run_index": index,
                    "run_id": run_id,
                    "suite": suite,
                    "benchmark": benchmark,
                    "case": case,
                    "metric": metric,
                    "unit": unit,
                    "n_ok": len(values),
                    "median": median,
                    "ci_low": float(ci.low),
                    "ci_high": float(ci.high),
                }
            )
    columns = ["run_index", "run_id", "suite", "benchmark", "case", "metric", "unit", "n_ok"]
    return pd.DataFrame(out, columns=[*columns, "median", "ci_low", "ci_high"])


def history_trends(
    medians: pd.DataFrame,
    changes: pd.DataFrame,
    plots_dir: str | Path,
    *,
    highlight: Mapping[str, str] | None = None,
) -> list[Figure]:
    """Per suite/benchmark/metric: each case's per-run median with its CI over the stored
    runs, and a dashed line at every run where a change was detected for that case.

    ``changes`` has columns suite, benchmark, case, metric, run_id (the run where the
    change starts); ``highlight`` maps run ids to labels (e.g. baseline, current).
    """
    writer = _Writer(plots_dir)
    if medians.empty:
        return []
    runs = medians[["run_index", "run_id"]].drop_duplicates().sort_values("run_index")
    run_pos = dict(zip(runs["run_id"], runs["run_index"], strict=True))
    figures = []
    for (suite, benchmark, metric), group in medians.groupby(
        ["suite", "benchmark", "metric"], sort=True
    ):
        unit = str(group["unit"].iloc[0])
        scale, shown_unit = (1e6, "µs") if unit == "s" else (1.0, unit)
        fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
        for i, (case, rows) in enumerate(group.groupby("case", sort=True)):
            rows = rows.sort_values("run_index")
            y = rows["median"].to_numpy(dtype=float) * scale
            low = rows["ci_low"].to_numpy(dtype=float) * scale
            high = rows["ci_high"].to_numpy(dtype=float) * scale
            err = np.clip(np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0), 0.0, None)
            colour = f"C{i % 10}"
            ax.errorbar(
                rows["run_index"], y, yerr=err, fmt="o-", capsize=3, color=colour, label=case
            )
            mine = changes[
                (changes["suite"] == suite)
                & (changes["benchmark"] == benchmark)
                & (changes["metric"] == metric)
                & changes["case"].isin([case, ""])
            ]
            for run_id in sorted(set(mine["run_id"]) & set(run_pos)):
                ax.axvline(run_pos[run_id] - 0.5, color=colour, linestyle="--", alpha=0.8)
                ax.annotate(
                    f"change ({case})",
                    (run_pos[run_id] - 0.5, 0.98),
                    xycoords=("data", "axes fraction"),
                    xytext=(-3, 0),
                    textcoords="offset points",
                    fontsize=7,
                    rotation=90,
                    va="top",
                    ha="right",
                    color=colour,
                )
        every = max(1, math.ceil(len(runs) / 20))  # at most ~20 labels, marked runs always
        labels = [
            f"{r[:8]}\n{highlight[r]}"
            if highlight and r in highlight
            else (r[:8] if i % every == 0 else "")
            for i, r in enumerate(runs["run_id"])
        ]
        positive = group["median"].to_numpy(dtype=float)
        if (positive > 0).all() and positive.max() / positive.min() > 20:
            ax.set_yscale("log")  # cases orders of magnitude apart stay readable
        ax.set_xticks(list(runs["run_index"]), labels, fontsize=7)
        ax.set_xlim(-0.5, max(runs["run_index"]) + 0.5)
        ax.set_xlabel("stored run (oldest first)")
        ax.set_ylabel(f"{metric} median ({shown_unit})" if shown_unit else f"{metric} median")
        title = f"{suite}/{benchmark}: {metric} over history"
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        figures.append(writer.save(fig, "trend", suite, [benchmark, metric], title))
    return figures


def remove_stale(plots_dir: str | Path, keep: Iterable[Figure]) -> None:
    """Delete figures of an earlier build that this build did not write, so the folder
    holds exactly the figures index.html shows (Snakemake empties it itself; the CLI's
    rebuild into an existing folder does not)."""
    keep_names = {f.path.name for f in keep}
    pattern = re.compile(rf"^({'|'.join(KINDS)})_.+\.png$")
    for path in sorted(Path(plots_dir).glob("*.png")):
        if pattern.match(path.name) and path.name not in keep_names:
            path.unlink()
