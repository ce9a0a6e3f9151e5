"""Helpers shared by the knowledge benchmarks: config access, per-item rows with a mean and
its interval (exact for 0/1 items), and the embedding model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forgebench.errors import ForgebenchError
from forgebench.evaluation.samples import mean_interval
from forgebench.record import Recorder


def require_dir(cfg: Mapping[str, Any], name: str, key: str) -> Path:
    """The injected folder ``cfg[name]``, or a ForgebenchError naming the key."""
    value = str(cfg.get(name) or "")
    if not value or not Path(value).is_dir():
        raise ForgebenchError(f"{key}.{name}: {value!r} is not a folder")
    return Path(value)


def record_items(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    metric: str,
    values: Sequence[float],
    cfg: Mapping[str, Any],
    seed: int,
    *,
    unit: str = "ratio",
    higher_is_better: bool = True,
    min_items: int | None = None,
) -> None:
    """One row per item (NaN = undefined for that item, a skipped row), then the mean over
    the defined items and its interval (``samples.mean_interval``): Clopper-Pearson where
    the items are 0/1 (hits, passes: a bootstrap of all misses said [0, 0]), else the
    percentile bootstrap. A mean over fewer than ``min_items`` defined items is not
    reported (its rows are "skipped", by design, with the count in params): too few items
    to decide. ``min_items`` defaults to ``cfg["min_items"]`` (else 1)."""
    arr = np.asarray(values, dtype=float)
    for i, v in enumerate(arr):
        ok = bool(np.isfinite(v))
        rec.add(
            case,
            params,
            metric,
            unit,
            higher_is_better,
            v if ok else None,
            sample=i,
            status="ok" if ok else "skipped",
        )
    good = arr[np.isfinite(arr)]
    min_items = int(cfg.get("min_items", 1) if min_items is None else min_items)
    if good.size < max(1, min_items):
        short = {**params, "defined_items": int(good.size), "min_items": int(min_items)}
        for suffix in ("_mean", "_ci_low", "_ci_high"):
            rec.add(case, short, metric + suffix, unit, higher_is_better, None, status="skipped")
        return
    low, high, _ = mean_interval(
        good,
        confidence=float(cfg.get("confidence", 0.95)),
        n_resamples=int(cfg.get("bootstrap_resamples", 2000)),
        seed=seed,
    )
    rec.add(case, params, metric + "_mean", unit, higher_is_better, float(good.mean()))
    rec.add(case, params, metric + "_ci_low", unit, higher_is_better, low)
    rec.add(case, params, metric + "_ci_high", unit, higher_is_better, high)


def load_embedder(cfg: Mapping[str, Any]) -> Any:
    """The offline all-MiniLM-L6-v2 of forgebench.rag.embedder."""
    from forgebench.rag.embedder import Embedder

    emb = Embedder.load(batch_size=int(cfg.get("embed_batch_size", 64)))
    emb.set_threads(int(cfg.get("torch_threads", 0)))
    return emb
