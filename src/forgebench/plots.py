"""Figures for the report. Matplotlib with the Agg backend: no display, deterministic PNGs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from forgebench.atomic import atomic_path

LATENCY_METRICS = ("rtt", "latency")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _scenario(params: str, case: str) -> str:
    return str(json.loads(params).get("scenario", case))


def latency_cdfs(frame: pd.DataFrame, plots_dir: str | Path) -> list[Path]:
    """One CDF figure per benchmark scenario of every latency metric, a curve per case.

    Warm-up rows are excluded; failed operations are not latencies, so they are counted
    in the legend instead of being plotted.
    """
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    sel = frame[frame["metric"].isin(LATENCY_METRICS) & ~frame["warmup"]].copy()
    if sel.empty:
        return []
    sel["scenario"] = [_scenario(p, c) for p, c in zip(sel["params"], sel["case"], strict=True)]
    written = []
    for (suite, benchmark, scenario), group in sel.groupby(
        ["suite", "benchmark", "scenario"], sort=True
    ):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
        for case, rows in group.groupby("case", sort=True):
            ok = np.sort(rows.loc[rows["status"] == "ok", "value"].to_numpy()) * 1e6
            failed = int((rows["status"] != "ok").sum())
            if len(ok) == 0:
                continue
            y = np.arange(1, len(ok) + 1) / len(ok)
            ax.step(ok, y, where="post", label=f"{case} (n={len(ok)}, failed={failed})")
        ax.set_xscale("log")
        ax.set_xlabel(f"{group['metric'].iloc[0]} (µs, log scale)")
        ax.set_ylabel("fraction of requests ≤ x")
        ax.set_title(f"{suite}/{benchmark}: {scenario}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        name = _SAFE.sub("_", f"cdf_{suite}_{benchmark}_{scenario}") + ".png"
        path = plots_dir / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written
