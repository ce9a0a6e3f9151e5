"""Figures for the report. Matplotlib with the Agg backend: no display, deterministic PNGs.

Every function takes tables (sorted here, so input order never changes a picture), writes
fixed-size PNGs without a Software stamp and returns :class:`Figure` records, so the report
can place each figure in its suite's section and ``snakemake --report`` can file it under a
category. Functions whose metrics are absent write nothing and return an empty list.

Each function first plans its figures (names and the few arrays each one shows) and then
draws them with a module-level ``_draw_*`` function. Given a ``jobs`` list, a function only
plans: it appends a :class:`FigureJob` per figure and returns the records, and
:func:`submit` or :func:`draw` renders the collected jobs later, in a process pool if
given one (the report does this on every core it has). A figure is drawn by the same
code from the same data wherever it is drawn, so the PNGs are byte-identical either way.

File names are ``<kind>_<suite>_<rest>.png`` with ``kind`` from :data:`KINDS` and the suite
without underscores, so rules/report.smk can recover kind and suite from the name alone.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from scipy import stats as sps

from forgebench.atomic import atomic_path
from forgebench.runner import is_job_case
from forgebench.stats.vocabulary import is_failure

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
    "workers": ("Scaling", "throughput and p99 against workers and threads: means with t CIs"),
    "tradeoff": ("Trade-offs", "approximate search: recall against exact, and its latency"),
    "fitness": ("EvoMerge fitness", "fitness of every individual by generation, with CIs"),
    "trend": ("History", "per-run medians over the stored history"),
}

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_FIGSIZE = (7.0, 4.2)
_DPI = 100
#: Figures per task when :func:`draw` uses a process pool: enough to keep the pickling
#: and hand-over cheap beside ~0.1 s of drawing each, few enough to balance the workers.
_BATCH = 4


@dataclass(frozen=True)
class Figure:
    """One written PNG and where it belongs in the report."""

    path: Path
    kind: str
    suite: str
    title: str
    caption: str
    benchmark: str = ""


def is_latency_metric(metric: str, unit: str) -> bool:
    """Latency-like metrics: seconds, named like a latency (rtt, latency, *_latency, ...)."""
    return unit == "s" and any(name in metric for name in LATENCY_METRICS)


def _scenario(params: str, case: str) -> str:
    return str(json.loads(params).get("scenario", case))


def _name(kind: str, suite: str, *parts: str) -> str:
    rest = _SAFE.sub("_", "_".join(parts)).strip("_") or "all"
    return f"{kind}_{_SAFE.sub('-', suite.replace('_', '-'))}_{rest}.png"


#: (upper limit of a typical value in seconds, unit, scale): the unit a time axis shows.
_TIME_SCALES = ((1e-6, "ns", 1e9), (1e-3, "µs", 1e6), (1.0, "ms", 1e3), (math.inf, "s", 1.0))
#: Params that tell apart summary rows of one case, in the order they are tried.
_VARIANT_KEYS = ("rate", "users", "concurrency", "step", "scenario", "module", "seed", "size")


def time_scale(values_s: Iterable[float]) -> tuple[float, str]:
    """(scale, unit) for an axis of durations in seconds: the unit whose typical value
    (the median of the positive values) lies below 1000, so ticks read 200 µs, not 2e-4."""
    x = np.asarray([v for v in values_s if math.isfinite(v) and v > 0], dtype=float)
    typical = float(np.median(x)) if x.size else 1.0
    return next((scale, unit) for limit, unit, scale in _TIME_SCALES if typical < limit)


def _log_ticks(axis: Any, low: float, high: float) -> None:
    """Plain-number labels on a log axis, at 1-2-5 steps over a narrow range and at powers
    of ten over a wide one; minor ticks unlabelled, so labels never overlap."""
    span = high / low if low > 0 and high > 0 else math.inf
    subs = (1.0, 2.0, 5.0) if span < 200 else (1.0,)
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(ticker.LogLocator(base=10, subs=np.arange(2, 10) * 1.0))
    axis.set_minor_formatter(ticker.NullFormatter())


def _number_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def variant_labels(cases: Sequence[str], params: Sequence[Mapping[str, Any]]) -> list[str]:
    """A label per row: its case, and where several rows share a case, the params that
    tell them apart ("stress, rate 50/s")."""
    labels = list(cases)
    for case in sorted(set(cases)):
        idx = [i for i, c in enumerate(cases) if c == case]
        if len(idx) < 2:
            continue
        keys = sorted({k for i in idx for k in params[i]})
        differ = [
            k for k in keys if len({json.dumps(params[i].get(k), sort_keys=True) for i in idx}) > 1
        ]
        differ = [k for k in _VARIANT_KEYS if k in differ] + [
            k for k in differ if k not in _VARIANT_KEYS
        ]
        for i in idx:
            shown = []
            for key in differ[:1] if differ and differ[0] in ("rate", "users") else differ[:2]:
                value = params[i].get(key)
                text = f"{_number_text(value)}/s" if key == "rate" else _number_text(value)
                shown.append(text if key == "rate" else f"{key} {text}")
            labels[i] = f"{case}, {', '.join(shown)}" if shown else case
    return labels


@dataclass(frozen=True)
class FigureJob:
    """A planned figure: ``draw(**data)`` builds the matplotlib figure written to
    ``figure.path``. ``draw`` is a module-level function and ``data`` holds plain values
    and arrays, so the job can be pickled and drawn in another process."""

    figure: Figure
    draw: Callable[..., Any]
    data: dict[str, Any] = field(default_factory=dict)
    #: Values the figure plots (points, bars, curve steps); never 0 for a planned figure.
    n_points: int = 0


def _draw_one(job: FigureJob) -> None:
    fig = job.draw(**job.data)
    fig.tight_layout()
    # tight_layout leaves a placeholder layout engine on the figure, which makes savefig
    # lay out (draw) the whole figure once more before rendering it; the layout is done.
    fig.set_layout_engine(None)
    with atomic_path(job.figure.path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, metadata={"Software": None})
    plt.close(fig)


def _draw_batch(jobs: Sequence[FigureJob]) -> None:
    for job in jobs:
        _draw_one(job)


def submit(jobs: Sequence[FigureJob], executor: Executor | None = None) -> list[Future[None]]:
    """Start drawing planned figures in ``executor`` (a process pool), a few figures per
    task, and return the tasks' futures; without an executor, draw them here and now."""
    if executor is None:
        _draw_batch(jobs)
        return []
    return [executor.submit(_draw_batch, jobs[i : i + _BATCH]) for i in range(0, len(jobs), _BATCH)]


def draw(jobs: Sequence[FigureJob], executor: Executor | None = None) -> None:
    """Draw and write planned figures (see :func:`submit`); return when every PNG is written."""
    for future in submit(jobs, executor):
        future.result()


class _Writer:
    """Plans figures into one folder under unique, deterministic names; :meth:`done` draws
    them, or hands them to the caller's ``jobs`` list to be drawn with :func:`draw`."""

    def __init__(self, plots_dir: str | Path, jobs: list[FigureJob] | None = None) -> None:
        self.dir = Path(plots_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.used: set[str] = set()
        self.jobs = jobs
        self.planned: list[FigureJob] = []

    def add(
        self,
        kind: str,
        suite: str,
        parts: Sequence[str],
        title: str,
        draw_fn: Callable[..., Any],
        /,
        benchmark: str | None = None,
        *,
        n_points: int,
        **data: Any,
    ) -> None:
        """Plan one figure; ``benchmark`` (default: the first name part) is the one it
        shows, so the report can give each benchmark one figure on its main page. A figure
        with nothing to plot (``n_points`` 0) is not planned: no empty axes, ever."""
        if n_points <= 0:
            return
        name = _name(kind, suite, *parts)
        stem, n = name[:-4], 2
        while name in self.used:
            name, n = f"{stem}-{n}.png", n + 1
        self.used.add(name)
        bench = benchmark if benchmark is not None else (parts[0] if parts else "")
        figure = Figure(self.dir / name, kind, suite, title, KINDS[kind][1], str(bench))
        self.planned.append(FigureJob(figure, draw_fn, data, int(n_points)))

    def done(self) -> list[Figure]:
        if self.jobs is None:
            draw(self.planned)
        else:
            self.jobs.extend(self.planned)
        return [job.figure for job in self.planned]


def _per_distinct(fn: Callable[..., Any], *columns: pd.Series) -> list[Any]:
    """``fn`` of each row's values in ``columns``, called once per distinct combination:
    raw tables repeat a few names and params over 10^5 rows."""
    codes = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        column_codes, uniques = pd.factorize(column, use_na_sentinel=False)
        codes = codes * max(len(uniques), 1) + column_codes
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    values = [fn(*(column.iat[i] for column in columns)) for i in first]
    return [values[i] for i in inverse.reshape(-1)]


def _measured(frame: pd.DataFrame) -> pd.DataFrame:
    """Non-warm-up rows outside the runner's job-level case."""
    if frame.empty:
        return frame
    job_case = np.array(_per_distinct(is_job_case, frame["case"]), dtype=bool)
    return frame[~frame["warmup"].astype(bool).to_numpy() & ~job_case]


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


def latency_cdfs(
    frame: pd.DataFrame, plots_dir: str | Path, *, jobs: list[FigureJob] | None = None
) -> list[Figure]:
    """One CDF figure per benchmark scenario of every latency metric, a curve per case.

    Warm-up rows are excluded; failed operations are not latencies, so they are counted
    in the legend instead of being plotted.
    """
    writer = _Writer(plots_dir, jobs)
    sel = _measured(frame)
    if sel.empty:
        return []
    sel = sel[np.array(_per_distinct(is_latency_metric, sel["metric"], sel["unit"]), dtype=bool)]
    if sel.empty:
        return []
    sel = sel.assign(scenario=_per_distinct(_scenario, sel["params"], sel["case"]))
    for (suite, benchmark, metric, scenario), group in sel.groupby(
        ["suite", "benchmark", "metric", "scenario"], sort=True
    ):
        curves = []
        ok_of = {case: _ok_values(rows) for case, rows in group.groupby("case", sort=True)}
        scale, unit = time_scale(np.concatenate(list(ok_of.values())))
        for case, rows in group.groupby("case", sort=True):
            ok = ok_of[case] * scale
            failed = int(sum(is_failure(st) for st in rows["status"]))
            if len(ok) == 0:
                continue
            y = np.arange(1, len(ok) + 1) / len(ok)
            keep = _cdf_points(len(ok))
            curves.append((ok[keep], y[keep], f"{case} (n={len(ok)}, failed={failed})"))
        if not curves:
            continue
        title = f"{suite}/{benchmark}: {scenario}"
        parts = (
            [benchmark, scenario] if metric in LATENCY_METRICS else [benchmark, metric, scenario]
        )
        writer.add(
            "cdf", suite, parts, title, _draw_cdf,
            curves=curves, metric=metric, unit=unit, title=title,
            n_points=sum(len(x) for x, _, _ in curves),
        )  # fmt: skip
    return writer.done()


def _draw_cdf(
    curves: Sequence[tuple[np.ndarray, np.ndarray, str]], metric: str, unit: str, title: str
) -> Any:
    fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
    for x, y, label in curves:
        ax.step(x, y, where="post", label=label)
    ax.set_xscale("log")
    low = min(float(np.min(x)) for x, _, _ in curves if len(x))
    high = max(float(np.max(x)) for x, _, _ in curves if len(x))
    _log_ticks(ax.xaxis, low, high)
    ax.set_xlabel(f"{metric} ({unit}, log scale)")
    ax.set_ylabel("fraction of operations ≤ x")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def percentile_bars(
    summary: pd.DataFrame, plots_dir: str | Path, *, jobs: list[FigureJob] | None = None
) -> list[Figure]:
    """p50/p90/p99 bars per case of each latency metric, from the summary table; the p50
    bar carries the bootstrap CI of the median as its error bar."""
    writer = _Writer(plots_dir, jobs)
    if summary.empty or "p50" not in summary:
        return []
    latency = pd.Series(
        [is_latency_metric(m, u) for m, u in zip(summary["metric"], summary["unit"], strict=True)],
        index=summary.index,
        dtype=bool,
    )
    sel = summary[~summary["case"].map(is_job_case) & (summary["n_ok"] > 0) & latency]
    for (suite, benchmark, metric), group in sel.groupby(
        ["suite", "benchmark", "metric"], sort=True
    ):
        params = [json.loads(p) for p in group["params"]]
        order = sorted(
            range(len(group)),
            key=lambda i: (
                str(group["case"].iloc[i]),
                *(
                    float(params[i][k]) if isinstance(params[i].get(k), int | float) else -1.0
                    for k in ("step", "rate", "users")
                ),
                str(group["params"].iloc[i]),
            ),
        )
        group = group.iloc[order]
        params = [params[i] for i in order]
        scale, unit = time_scale(group["p50"].to_numpy(dtype=float))
        bars = []
        for col, colour in (("p50", "C0"), ("p90", "C1"), ("p99", "C3")):
            values = group[col].to_numpy(dtype=float) * scale
            err = None
            if col == "p50":
                low = group["ci_low"].to_numpy(dtype=float) * scale
                high = group["ci_high"].to_numpy(dtype=float) * scale
                err = np.nan_to_num(np.vstack([values - low, high - values]), nan=0.0)
                err = np.clip(err, 0.0, None)
            bars.append((col, colour, values, err))
        title = f"{suite}/{benchmark}: {metric} percentiles"
        labels = variant_labels(list(group["case"]), params)
        counts = [int(n) for n in group["n_ok"]]
        writer.add(
            "percentiles", suite, [benchmark, metric], title, _draw_percentiles,
            labels=[f"{label} (n={n})" for label, n in zip(labels, counts, strict=True)],
            bars=bars, metric=metric, unit=unit, title=title,
            n_points=int(np.isfinite(bars[0][2]).sum()),
        )  # fmt: skip
    return writer.done()


def _draw_percentiles(
    labels: list[str],
    bars: Sequence[tuple[str, str, np.ndarray, np.ndarray | None]],
    metric: str,
    unit: str,
    title: str,
) -> Any:
    """Grouped bars, horizontal once there are more cases than fit under a 7-inch axis;
    a log axis only where the values span more than 30×, with plain-number ticks."""
    horizontal = len(labels) > 6
    x = np.arange(len(labels))
    width = 0.27
    size = (7.0, max(3.0, 0.42 * len(labels) + 1.4)) if horizontal else _FIGSIZE
    fig, ax = plt.subplots(figsize=size, dpi=_DPI)
    values = np.concatenate([v[np.isfinite(v) & (v > 0)] for _, _, v, _ in bars])
    log = values.size > 0 and float(values.max()) / float(values.min()) > 30
    for i, (col, colour, vals, err) in enumerate(bars):
        if horizontal:
            pos = x - (i - 1) * width  # p50 on top within each group
            ax.barh(pos, vals, width, xerr=err, capsize=2, label=col, color=colour)
        else:
            ax.bar(x + (i - 1) * width, vals, width, yerr=err, capsize=2, label=col, color=colour)
    value_axis = ax.xaxis if horizontal else ax.yaxis
    if log:
        (ax.set_xscale if horizontal else ax.set_yscale)("log")
        _log_ticks(value_axis, float(values.min()), float(values.max()))
    label = f"{metric} ({unit}{', log scale' if log else ''})"
    if horizontal:
        ax.set_yticks(x, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.grid(True, axis="x", which="major", alpha=0.3)
    else:
        ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.grid(True, axis="y", which="major", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    return fig


def comparison_boxes(
    frame: pd.DataFrame,
    comparisons: pd.DataFrame,
    plots_dir: str | Path,
    *,
    jobs: list[FigureJob] | None = None,
) -> list[Figure]:
    """A box plot per configured comparison: baseline against candidate, successful
    non-warm-up values only, each side's failed operations (errors, timeouts,
    mismatches) counted in the title. A comparison without successful values on both
    sides has nothing to draw and gets no figure (its verdict says why)."""
    writer = _Writer(plots_dir, jobs)
    if comparisons.empty or frame.empty:
        return []
    comps = comparisons[comparisons["kind"] == "comparison"].sort_values("name")
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
            failed.append(int(sum(is_failure(st) for st in rows["status"])))
        if not all(len(side) for side in sides):
            continue
        unit = str(sel["unit"].iloc[0]) if len(sel) else ""
        if unit == "s":
            scale, unit = time_scale(np.concatenate(sides))
            sides = [side * scale for side in sides]
        labels = [
            f"{comp['baseline']}\n(baseline, n={len(sides[0])})",
            f"{comp['candidate']}\n(candidate, n={len(sides[1])})",
        ]
        title = (
            f"{comp['name']}: {comp['verdict']}\n"
            f"failed operations: baseline {failed[0]}, candidate {failed[1]}"
        )
        writer.add(
            "ab", str(comp["suite"]), [str(comp["name"])], title, _draw_ab,
            benchmark=str(comp["benchmark"]), sides=sides, labels=labels, title=title,
            ylabel=f"{comp['metric']} ({unit})" if unit else str(comp["metric"]),
            n_points=sum(len(side) for side in sides),
        )  # fmt: skip
    return writer.done()


def _draw_ab(sides: Sequence[np.ndarray], labels: list[str], ylabel: str, title: str) -> Any:
    fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
    ax.boxplot(list(sides), positions=[1, 2], widths=0.5, showfliers=True)
    ax.set_xticks([1, 2], labels, fontsize=8)
    ax.set_xlim(0.4, 2.6)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def resource_timelines(
    resources: Mapping[tuple[str, str], pd.DataFrame],
    plots_dir: str | Path,
    *,
    jobs: list[FigureJob] | None = None,
) -> list[Figure]:
    """Per job: RSS (MiB) and CPU (% of one core, summed over the process tree) against
    seconds since the job started, from its sampler table."""
    writer = _Writer(plots_dir, jobs)
    for suite, benchmark in sorted(resources):
        table = resources[(suite, benchmark)]
        rss = table[table["metric"] == "rss_bytes"].sort_values("t_s", kind="stable")
        cpu = table[table["metric"] == "cpu_percent"].sort_values("t_s", kind="stable")
        if rss.empty and cpu.empty:
            continue
        title = f"{suite}/{benchmark}: resources over time"
        writer.add(
            "resources", suite, [benchmark], title, _draw_resources,
            rss=(rss["t_s"].to_numpy(), (rss["value"] / 2**20).to_numpy()),
            cpu=(cpu["t_s"].to_numpy(), cpu["value"].to_numpy()),
            title=title, n_points=len(rss) + len(cpu),
        )  # fmt: skip
    return writer.done()


def _draw_resources(
    rss: tuple[np.ndarray, np.ndarray], cpu: tuple[np.ndarray, np.ndarray], title: str
) -> Any:
    fig, (ax_rss, ax_cpu) = plt.subplots(2, 1, figsize=(7.0, 5.0), dpi=_DPI, sharex=True)
    ax_rss.plot(*rss, color="C0", marker=".", markersize=3)
    ax_rss.set_ylabel("RSS (MiB)")
    ax_rss.grid(True, alpha=0.3)
    ax_cpu.plot(*cpu, color="C1", marker=".", markersize=3)
    ax_cpu.set_ylabel("CPU (%)")
    ax_cpu.set_xlabel("seconds since the job started")
    ax_cpu.grid(True, alpha=0.3)
    ax_rss.set_title(title)
    return fig


def _accuracy_interval(
    values: np.ndarray, n_items: float | None, confidence: float
) -> tuple[float, float, str]:
    """(low, high, how): Student's t over repeated values (the repetitions are the units);
    for a single value that is a share of ``n_items`` documents, the exact binomial
    (Clopper-Pearson) interval; NaN bounds without either."""
    from forgebench import stats

    if len(values) >= 2:
        low, high = stats.mean_ci(values, confidence)
        return low, high, "t over repetitions"
    if len(values) == 1 and n_items is not None and n_items >= 1:
        n = round(n_items)
        k = min(n, max(0, round(float(values[0]) * n)))
        low, high = stats.proportion_ci(k, n, confidence)
        return low, high, "Clopper-Pearson"
    return math.nan, math.nan, ""


def _first_ok(rows: pd.DataFrame, metric: str) -> float | None:
    values = rows.loc[(rows["metric"] == metric) & (rows["status"] == "ok"), "value"]
    return float(values.iloc[0]) if len(values) and math.isfinite(values.iloc[0]) else None


def _number_param(params: Mapping[str, Any], *names: str) -> float | None:
    for name in names:
        value = params.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def accuracy_plots(
    frame: pd.DataFrame,
    plots_dir: str | Path,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    jobs: list[FigureJob] | None = None,
) -> list[Figure]:
    """Accuracy (metrics in :data:`ACCURACY_METRICS`, unit ``fraction``) per case with its
    confidence interval, against the case's chance level.

    The interval is the case's recorded one (``<metric>_ci_low``/``_ci_high`` rows), else
    Clopper-Pearson over the documents it was measured on (an ``n_docs`` row of the case,
    or ``n_docs``/``n_items`` in its params), else Student's t over repetitions. Chance is
    the case's ``chance_acc`` row, else ``chance`` in its params. A figure with no value
    is not drawn. ``n_resamples`` and ``seed`` are accepted for older callers (no
    bootstrap is needed)."""
    del n_resamples, seed
    writer = _Writer(plots_dir, jobs)
    everything = _measured(frame)
    if everything.empty:
        return []
    sel = everything[
        everything["metric"].isin(ACCURACY_METRICS) & (everything["unit"] == "fraction")
    ]
    for (suite, benchmark, metric), group in sel.groupby(
        ["suite", "benchmark", "metric"], sort=True
    ):
        cases = sorted(group["case"].unique())
        same = everything[(everything["suite"] == suite) & (everything["benchmark"] == benchmark)]
        rows_of = []  # per case: (point with its xerr or None, failed count, chance or None)
        hows = set()
        for case in cases:
            rows = group[group["case"] == case]
            mine = same[same["case"] == case]
            values = _ok_values(rows)
            params = json.loads(rows["params"].iloc[0])
            failed = int(sum(is_failure(st) for st in rows["status"]))
            point = None
            if len(values):
                mean = float(np.mean(values))
                low = _first_ok(mine, f"{metric}_ci_low")
                high = _first_ok(mine, f"{metric}_ci_high")
                how = "recorded (Clopper-Pearson)"
                if low is None or high is None:
                    n_items = _first_ok(mine, "n_docs") or _number_param(
                        params, "n_docs", "n_items"
                    )
                    low, high, how = _accuracy_interval(values, n_items, confidence)
                finite = math.isfinite(low) and math.isfinite(high)
                if finite:
                    hows.add(how)
                xerr = [[max(mean - low, 0.0)], [max(high - mean, 0.0)]] if finite else None
                point = (mean, xerr)
            chance = _first_ok(mine, "chance_acc")
            if chance is None:
                chance = _number_param(params, "chance")
            rows_of.append((point, failed, chance))
        if not any(point is not None for point, _, _ in rows_of):
            continue
        interval = (
            f"{confidence:.0%} CI: {', '.join(sorted(hows))}" if hows else "no interval recorded"
        )
        title = f"{suite}/{benchmark}: {metric}"
        writer.add(
            "accuracy", suite, [benchmark, metric], title, _draw_accuracy,
            cases=cases, rows=rows_of, xlabel=f"{metric} ({interval})", title=title,
            n_points=sum(point is not None for point, _, _ in rows_of),
        )  # fmt: skip
    return writer.done()


def _draw_accuracy(
    cases: list[str],
    rows: Sequence[tuple[tuple[float, Any] | None, int, float | None]],
    xlabel: str,
    title: str,
) -> Any:
    fig, ax = plt.subplots(figsize=(7.0, max(2.5, 0.45 * len(cases) + 1.5)), dpi=_DPI)
    chance_drawn = False
    for y, (point, failed, chance) in enumerate(rows):
        if point is not None:
            mean, xerr = point
            ax.errorbar(mean, y, xerr=xerr, fmt="o", color="C0", capsize=3)
        if failed:
            ax.annotate(f"{failed} failed", (0.0, y), fontsize=7, color="C3")
        if chance is not None:
            ax.plot(
                [chance, chance],
                [y - 0.35, y + 0.35],
                color="C3",
                linestyle="--",
                label=None if chance_drawn else "chance",
            )
            chance_drawn = True
    ax.set_yticks(range(len(cases)), cases, fontsize=8)
    ax.set_ylim(-0.6, len(cases) - 0.4)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    if chance_drawn:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def accuracy_overview(
    rows: Sequence[Mapping[str, Any]],
    plots_dir: str | Path,
    *,
    suite: str,
    confidence: str = "95%",
    jobs: list[FigureJob] | None = None,
) -> list[Figure]:
    """Every task of an evaluation in one figure: a row per task, a point per model with
    its interval (``low``/``high``, as the report's table shows it) and the task's chance
    level as a dashed mark. ``rows`` are dicts with task, model, value, low, high, chance;
    without a finite value nothing is drawn."""
    writer = _Writer(plots_dir, jobs)
    shown = [r for r in rows if math.isfinite(float(r["value"]))]
    if not shown:
        return []
    tasks = sorted({str(r["task"]) for r in shown})
    models = sorted({str(r["model"]) for r in shown})
    points = []
    for r in shown:
        low, high, value = float(r["low"]), float(r["high"]), float(r["value"])
        err = (
            [[max(value - low, 0.0)], [max(high - value, 0.0)]]
            if math.isfinite(low) and math.isfinite(high)
            else None
        )
        points.append((tasks.index(str(r["task"])), models.index(str(r["model"])), value, err))
    chances = {}
    for r in shown:
        chance = r.get("chance")
        if chance is not None and math.isfinite(float(chance)):
            chances.setdefault(tasks.index(str(r["task"])), float(chance))
    title = f"{suite}: primary metric per task and model ({confidence} interval) against chance"
    writer.add(
        "accuracy", suite, ["tasks"], title, _draw_accuracy_overview,
        benchmark="", tasks=tasks, models=models, points=points,
        chances=sorted(chances.items()), title=title, n_points=len(points),
    )  # fmt: skip
    return writer.done()


def _draw_accuracy_overview(
    tasks: list[str],
    models: list[str],
    points: Sequence[tuple[int, int, float, Any]],
    chances: Sequence[tuple[int, float]],
    title: str,
) -> Any:
    per_task = max(0.3, 0.09 * len(models) + 0.12)
    fig, ax = plt.subplots(figsize=(8.0, max(2.6, per_task * len(tasks) + 1.3)), dpi=_DPI)
    spread = 0.7 / max(len(models), 1)
    offsets = [(i - (len(models) - 1) / 2) * spread for i in range(len(models))]
    drawn: set[int] = set()
    for t, m, value, err in points:
        ax.errorbar(
            value, t + offsets[m], xerr=err, fmt="o", color=f"C{m % 10}", capsize=2,
            markersize=4, label=None if m in drawn else models[m],
        )  # fmt: skip
        drawn.add(m)
    for i, (t, chance) in enumerate(chances):
        ax.plot(
            [chance, chance], [t - 0.45, t + 0.45], color="black", linestyle="--",
            linewidth=1, label="chance" if i == 0 else None,
        )  # fmt: skip
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    ax.set_ylim(len(tasks) - 0.5, -0.5)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("share of documents (interval as in the table)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return fig


def compression_plots(
    summary: pd.DataFrame, plots_dir: str | Path, *, jobs: list[FigureJob] | None = None
) -> list[Figure]:
    """Median compression ratio (x) against the median of each quality metric (y), a point
    per case, with the medians' CIs as error bars; only where both metrics exist."""
    writer = _Writer(plots_dir, jobs)
    if summary.empty or "median" not in summary:
        return []
    sel = summary[~summary["case"].map(is_job_case) & (summary["n_ok"] > 0)]
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
                points = []
                for case in cases:
                    r, v = ratio.loc[case], q.loc[case]
                    points.append((r["median"], v["median"], _err(r), _err(v), case))
                title = f"{suite}/{benchmark}: {ratio_metric} against {q_metric}"
                writer.add(
                    "compression", suite, [benchmark, q_metric], title, _draw_compression,
                    points=points, xlabel=f"{ratio_metric} (median)",
                    ylabel=f"{q_metric} (median, {q['unit'].iloc[0]})", title=title,
                    n_points=len(points),
                )  # fmt: skip
    return writer.done()


def _draw_compression(
    points: Sequence[tuple[Any, Any, Any, Any, str]], xlabel: str, ylabel: str, title: str
) -> Any:
    fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
    for x, y, xerr, yerr, case in points:
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3)
        ax.annotate(case, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    return fig


#: A case named for the size it ran at: ``patients_1000`` -> ("patients", 1000).
_SIZED_CASE = re.compile(r"^(?P<what>[A-Za-z]+)_(?P<n>\d+)$")


def scaling_plots(
    summary: pd.DataFrame, plots_dir: str | Path, *, jobs: list[FigureJob] | None = None
) -> list[Figure]:
    """Throughput metrics against problem size, log-log: one figure per benchmark, a line
    per throughput metric, the median of each size with its CI. Sizes come from cases
    named ``<what>_<n>``; the x axis reads the ``records`` param (the store's true size)
    where every size has it, else ``n``. Needs at least two sizes with a value."""
    writer = _Writer(plots_dir, jobs)
    if summary.empty or "median" not in summary:
        return []
    sized = summary["case"].str.match(_SIZED_CASE.pattern) & summary["metric"].str.contains(
        "throughput"
    )
    sel = summary[sized & (summary["n_ok"] > 0)]
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
        lines = []
        for metric, rows in group.groupby("metric", sort=True):
            rows = rows.sort_values("x")
            y = rows["median"].to_numpy(dtype=float)
            low = rows["ci_low"].to_numpy(dtype=float)
            high = rows["ci_high"].to_numpy(dtype=float)
            err = np.clip(np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0), 0.0, None)
            unit = str(rows["unit"].iloc[0])
            label = f"{metric} ({unit}, n={int(rows['n_ok'].min())}+ per size)"
            lines.append((rows["x"].to_numpy(), y, err, label))
        title = f"{suite}/{benchmark}: throughput against size"
        writer.add(
            "scaling", suite, [benchmark], title, _draw_scaling, lines=lines, title=title,
            xlabel="store records (log scale)" if use_records else f"{what} (log scale)",
            n_points=sum(len(x) for x, _, _, _ in lines),
        )  # fmt: skip
    return writer.done()


def _draw_scaling(
    lines: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, str]], xlabel: str, title: str
) -> Any:
    fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
    for i, (x, y, err, label) in enumerate(lines):
        ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, color=f"C{i % 10}", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("median throughput (log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


_ANN_CASE = re.compile(r"^ann_(?:ef(?P<ef>\d+)|exact)$")


def ann_tradeoff_plots(
    summary: pd.DataFrame, plots_dir: str | Path, *, jobs: list[FigureJob] | None = None
) -> list[Figure]:
    """HNSW's latency-recall trade-off (rag/retrieval's ``ann_*`` cases): per efSearch, the
    median top-10 search latency with its CI against recall@10 of the exact top 10 with
    its CI, and exact search at recall 1 for scale. Needs two efSearch settings."""
    writer = _Writer(plots_dir, jobs)
    if summary.empty or "median" not in summary:
        return []
    ann = summary[summary["case"].str.match(_ANN_CASE.pattern) & (summary["n_ok"] > 0)]
    for (suite, benchmark), group in ann.groupby(["suite", "benchmark"], sort=True):
        values = group.set_index(["case", "metric"])["median"].to_dict()
        lat = group[group["metric"] == "search_latency"].set_index("case")
        points = []
        for case in sorted(lat.index):
            ef = _ANN_CASE.match(case).group("ef")  # type: ignore[union-attr]
            if ef is None:
                continue
            recall = values.get((case, "ann_recall_at_10_mean"))
            if recall is None:
                continue
            low = values.get((case, "ann_recall_at_10_mean_ci_low"), recall)
            high = values.get((case, "ann_recall_at_10_mean_ci_high"), recall)
            row = lat.loc[case]
            latency = (float(row["median"]), float(row["ci_low"]), float(row["ci_high"]))
            points.append((int(ef), *latency, float(recall), float(low), float(high)))
        if len(points) < 2:
            continue
        points.sort()
        exact = lat.loc["ann_exact", "median"] if "ann_exact" in lat.index else None
        title = f"{suite}/{benchmark}: HNSW recall@10 against exact, and its latency"
        writer.add(
            "tradeoff", suite, [benchmark, "hnsw"], title, _draw_ann_tradeoff, points=points,
            exact_s=None if exact is None else float(exact), title=title,
            n_points=len(points),
        )  # fmt: skip
    return writer.done()


def _draw_ann_tradeoff(
    points: Sequence[tuple[int, float, float, float, float, float, float]],
    exact_s: float | None,
    title: str,
) -> Any:
    fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
    scale, unit = time_scale([p[1] for p in points] + ([exact_s] if exact_s else []))
    x = np.array([p[1] for p in points]) * scale
    xerr = np.clip(np.vstack([x - np.array([p[2] for p in points]) * scale,
                              np.array([p[3] for p in points]) * scale - x]), 0, None)  # fmt: skip
    y = np.array([p[4] for p in points])
    yerr = np.clip(np.vstack([y - [p[5] for p in points], [p[6] for p in points] - y]), 0, None)
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o-", capsize=3, color="C0", label="HNSW")
    for (ef, *_), xi, yi in zip(points, x, y, strict=True):
        ax.annotate(f"efSearch {ef}", (xi, yi), textcoords="offset points", xytext=(5, -12),
                    fontsize=8)  # fmt: skip
    if exact_s is not None:
        ax.plot([exact_s * scale], [1.0], "s", color="C3", label="exact (recall 1 by definition)")
    ax.set_xlabel(f"median top-10 search latency ({unit})")
    ax.set_ylabel("recall@10 against exact (mean, CI)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def fitness_plots(
    individuals: pd.DataFrame, plots_dir: str | Path, *, jobs: list[FigureJob] | None = None
) -> list[Figure]:
    """Per suite/benchmark: every individual's fitness at its generation with its CI
    (points spread a little sideways so equal generations stay apart), and the best
    fitness so far as a line. ``individuals`` has columns suite, benchmark, generation,
    name, fitness, ci_low, ci_high (forgebench.report builds it); generation -1 holds the
    seed models, drawn as the best seed's level; failed ones (NaN fitness) are counted in
    the title."""
    writer = _Writer(plots_dir, jobs)
    if individuals.empty:
        return []
    for (suite, benchmark), group in individuals.groupby(["suite", "benchmark"], sort=True):
        group = group.sort_values(["generation", "name"], kind="stable")
        finite = np.isfinite(group["fitness"].to_numpy(dtype=float))
        seeds = group[finite & (group["generation"] < 0).to_numpy()]
        group = group[(group["generation"] >= 0).to_numpy()]
        ok = group[np.isfinite(group["fitness"].to_numpy(dtype=float))]
        points = []
        for _gen, rows in ok.groupby("generation", sort=True):
            n = len(rows)
            offsets = (np.arange(n) - (n - 1) / 2) * (0.5 / max(n, 1))
            y = rows["fitness"].to_numpy(dtype=float)
            low = rows["ci_low"].to_numpy(dtype=float)
            high = rows["ci_high"].to_numpy(dtype=float)
            err = np.clip(np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0), 0.0, None)
            points.append((rows["generation"].to_numpy(dtype=float) + offsets, y, err))
        best = None
        if len(ok):
            cummax = ok.groupby("generation", sort=True)["fitness"].max().cummax()
            best = (cummax.index.to_numpy(), cummax.to_numpy())
        failed = len(group) - len(ok)
        if not points and not len(seeds):
            continue  # nothing measured: no empty axes
        gens = sorted(group["generation"].unique())
        title = f"{suite}/{benchmark}: fitness by generation" + (
            f"\n{failed} individuals failed" if failed else ""
        )
        writer.add(
            "fitness", suite, [benchmark], title, _draw_fitness,
            best_seed=float(seeds["fitness"].max()) if len(seeds) else None,
            points=points, best=best, gens=gens, title=title,
            n_points=sum(len(y) for _, y, _ in points) + (1 if len(seeds) else 0),
        )  # fmt: skip
    return writer.done()


def _draw_fitness(
    best_seed: float | None,
    points: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    best: tuple[np.ndarray, np.ndarray] | None,
    gens: list[Any],
    title: str,
) -> Any:
    fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
    if best_seed is not None:
        ax.axhline(best_seed, color="C2", linestyle="--", label="best seed model")
    for x, y, err in points:
        ax.errorbar(
            x, y, yerr=err, fmt="o", capsize=2, color="C0", alpha=0.8, markersize=4,
        )  # fmt: skip
    if best is not None:
        ax.plot(best[0], best[1], "-", color="C3", label="best so far")
    if best is not None or best_seed is not None:
        ax.legend(fontsize=8, loc="best")
    ax.set_xticks(gens, [str(int(g)) for g in gens])
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (CI)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    return fig


def _err(row: pd.Series) -> list[list[float]] | None:
    low, mid, high = float(row["ci_low"]), float(row["median"]), float(row["ci_high"])
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return [[max(mid - low, 0.0)], [max(high - mid, 0.0)]]


@functools.lru_cache(maxsize=4096)
def _median_ci_ranks(n: int, confidence: float) -> tuple[int | None, int | None]:
    """Ranks in a sorted sample of ``n`` values of the bounds of the median's
    ``scipy.stats.quantile_test`` interval (None where it is NaN). The interval is a pair
    of order statistics whose ranks depend on n and the level alone, so scipy is asked
    once per n (on the ranks themselves) instead of once per group (1 ms each)."""
    ranks = np.arange(n, dtype=float)
    ci = sps.quantile_test(ranks, q=0.0, p=0.5).confidence_interval(confidence)
    return tuple(int(b) if math.isfinite(b) else None for b in (ci.low, ci.high))  # type: ignore[return-value]


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
            low, high = _median_ci_ranks(len(values), confidence)
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
                    "ci_low": float(values[low]) if low is not None else math.nan,
                    "ci_high": float(values[high]) if high is not None else math.nan,
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
    jobs: list[FigureJob] | None = None,
) -> list[Figure]:
    """Per suite/benchmark/metric: each case's per-run median with its CI over the stored
    runs, and a dashed line at every run where a change was detected for that case; none
    until two runs are stored.

    ``changes`` has columns suite, benchmark, case, metric, run_id (the run where the
    change starts); ``highlight`` maps run ids to labels (e.g. baseline, current).
    """
    writer = _Writer(plots_dir, jobs)
    if medians.empty:
        return []
    runs = medians[["run_index", "run_id"]].drop_duplicates().sort_values("run_index")
    if len(runs) < 2:  # one point per figure shows no trend (a first run drew ~600 such)
        return []
    run_pos = dict(zip(runs["run_id"], runs["run_index"], strict=True))
    every = max(1, math.ceil(len(runs) / 20))  # at most ~20 labels, marked runs always
    labels = [
        f"{r[:8]}\n{highlight[r]}"
        if highlight and r in highlight
        else (r[:8] if i % every == 0 else "")
        for i, r in enumerate(runs["run_id"])
    ]
    ticks = list(runs["run_index"])
    xlim = (-0.5, max(runs["run_index"]) + 0.5)
    for (suite, benchmark, metric), group in medians.groupby(
        ["suite", "benchmark", "metric"], sort=True
    ):
        unit = str(group["unit"].iloc[0])
        scale, shown_unit = (
            time_scale(group["median"].to_numpy(dtype=float)) if unit == "s" else (1.0, unit)
        )
        lines = []
        here = changes[
            (changes["suite"] == suite)
            & (changes["benchmark"] == benchmark)
            & (changes["metric"] == metric)
        ]
        for case, rows in group.groupby("case", sort=True):
            rows = rows.sort_values("run_index")
            y = rows["median"].to_numpy(dtype=float) * scale
            low = rows["ci_low"].to_numpy(dtype=float) * scale
            high = rows["ci_high"].to_numpy(dtype=float) * scale
            err = np.clip(np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0), 0.0, None)
            mine = here[here["case"].isin([case, ""])]
            marks = [run_pos[run_id] for run_id in sorted(set(mine["run_id"]) & set(run_pos))]
            lines.append((rows["run_index"].to_numpy(), y, err, case, marks))
        positive = group["median"].to_numpy(dtype=float)
        title = f"{suite}/{benchmark}: {metric} over history"
        writer.add(
            "trend", suite, [benchmark, metric], title, _draw_trend,
            lines=lines, ticks=ticks, labels=labels, xlim=xlim,
            # cases orders of magnitude apart stay readable
            log=bool((positive > 0).all() and positive.max() / positive.min() > 20),
            ylabel=f"{metric} median ({shown_unit})" if shown_unit else f"{metric} median",
            title=title, n_points=sum(int(np.isfinite(y).sum()) for _, y, _, _, _ in lines),
        )  # fmt: skip
    return writer.done()


def _draw_trend(
    lines: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, str, list[Any]]],
    ticks: list[Any],
    labels: list[str],
    xlim: tuple[float, float],
    log: bool,
    ylabel: str,
    title: str,
) -> Any:
    fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
    for i, (x, y, err, case, marks) in enumerate(lines):
        colour = f"C{i % 10}"
        ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, color=colour, label=case)
        for pos in marks:
            ax.axvline(pos - 0.5, color=colour, linestyle="--", alpha=0.8)
            ax.annotate(
                f"change ({case})",
                (pos - 0.5, 0.98),
                xycoords=("data", "axes fraction"),
                xytext=(-3, 0),
                textcoords="offset points",
                fontsize=7,
                rotation=90,
                va="top",
                ha="right",
                color=colour,
            )
    if log:
        ax.set_yscale("log")
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_xlim(*xlim)
    ax.set_xlabel("stored run (oldest first)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


def remove_stale(plots_dir: str | Path, keep: Iterable[Figure]) -> None:
    """Delete figures of an earlier build that this build did not write, so the folder
    holds exactly the figures index.html shows (Snakemake empties it itself; the CLI's
    rebuild into an existing folder does not)."""
    keep_names = {f.path.name for f in keep}
    pattern = re.compile(rf"^({'|'.join(KINDS)})_.+\.png$")
    for path in sorted(Path(plots_dir).glob("*.png")):
        if pattern.match(path.name) and path.name not in keep_names:
            path.unlink()
