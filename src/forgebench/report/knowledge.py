"""The knowledge section: headline metrics of the knowledge benchmarks with their
intervals (and the repair benchmark's throughput by graph size).

Why: these benchmarks score items against known answers; the mean over items with its
interval is the figure to read, not the thousands of per-item rows behind it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from forgebench.report.cells import Cells
from forgebench.report.format import finite, format_interval, format_value, fraction

# Knowledge benchmarks' headline metrics (the mean over items where there is one), in order;
# a name ending in "@" takes every k.
KNOWLEDGE_HEADLINES: dict[str, tuple[str, ...]] = {
    "creativity": (
        *("rat_accuracy@1", "rat_accuracy@5", "hit_rate@", "precision@"),
        # surprise on every item (forgebench.knowledge.surprise); the surprise of the
        # correct bridges alone rests on the few hits and is no headline
        *("rat_unexpectedness@", "unexpectedness@", "rat_serendipity@", "serendipity@"),
        *("guardian_pass_rate", "hidden_link_auc", "hidden_link_precision@"),
    ),
    "personalization": ("MAP", "NDCG@10", "Recall@20", "token_cost_delta"),
    "repair": (
        *("detection_precision", "detection_recall", "proposal_validity"),
        *("guardian_reject_rate", "residual_violation_rate", "new_violations_after_repair"),
        *("detection_throughput", "repair_throughput"),
    ),
}
# Cases of knowledge/repair in the headline table: overall and throughput per size.
_REPAIR_CASES = re.compile(r"^(all@\d+|patients_\d+)$")


def _headline_metrics(wanted: Sequence[str], metrics: set[str]) -> list[str]:
    """The recorded names of the headline metrics: ``<m>_mean`` where the per-item rows
    were summarised so, else ``<m>``; names ending in "@" take every k."""
    out = []
    for name in wanted:
        bases = sorted(
            {m.removesuffix("_mean") for m in metrics if m.startswith(name)}
            if name.endswith("@")
            else {name}
        )
        for base in bases:
            if base.endswith(("_ci_low", "_ci_high")):
                continue
            if f"{base}_mean" in metrics:
                out.append(f"{base}_mean")
            elif base in metrics:
                out.append(base)
    return list(dict.fromkeys(out))


def _items(cells: Cells, key: tuple[str, str, str, str]) -> int:
    """How many items a figure rests on: for a mean over items, its defined per-item rows
    (the mean's own row is one row), else the row's own count."""
    base = (*key[:3], key[3].removesuffix("_mean"))
    if key[3].endswith("_mean") and base in cells.rows:
        return int(cells.rows[base]["n_ok"])
    return int(cells.rows[key]["n_ok"])


def knowledge_section(cells: Cells) -> dict[str, Any] | None:
    """Headline metrics of the knowledge benchmarks, each with its interval."""
    rows = []
    for bench, wanted in KNOWLEDGE_HEADLINES.items():
        for case in cells.cases("knowledge", bench):
            if bench == "repair" and not _REPAIR_CASES.match(case):
                continue
            for metric in _headline_metrics(wanted, cells.metrics("knowledge", bench, case)):
                key = ("knowledge", bench, case, metric)
                unit = cells.unit(key)
                fmt = fraction if unit == "ratio" else (lambda x, u=unit: format_value(x, u))
                low, high, how = cells.interval(key)
                rows.append(
                    {
                        "benchmark": bench,
                        "case": case,
                        "metric": metric.removesuffix("_mean")
                        + (" (mean)" if metric.endswith("_mean") else ""),
                        "value": fmt(cells.value(key))
                        if finite(cells.value(key))
                        else cells.status(key),
                        "ci": format_interval(low, high, fmt),
                        "how": how or "—",
                        "n": str(_items(cells, key)),
                    }
                )
    return {"rows": rows} if rows else None
