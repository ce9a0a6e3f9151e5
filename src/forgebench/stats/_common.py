"""Input checks and formatting shared by the statistics modules (private)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np


def _sample(values: Any, name: str = "values", *, allow_empty: bool = False) -> np.ndarray:
    """``values`` as a 1-D float array; ValueError on NaN/inf, other shapes or emptiness."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: at least one value is needed")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf); "
            "drop failed measurements before computing statistics"
        )
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_resamples(n_resamples: int) -> None:
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")


def _plain(value: Any) -> Any:
    """Builtin-typed copy for ``as_dict`` (tuples become lists so YAML/JSON/pandas take them)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fmt(value: float, unit: str = "") -> str:
    text = f"{value:.4g}"
    return f"{text} {unit}".rstrip()


def _pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def _bool_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans (or 0/1)")
        arr = arr.astype(bool)
    return arr


def _quiet(fn: Callable[[], Any]) -> Any:
    """Run a scipy test with its numerical warnings silenced (its NaN result says enough)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn()
