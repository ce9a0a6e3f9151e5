"""forgebench's own history detection as the calibration sees it: one run at a time.

Why a thin adapter: the figures must come from the functions the workflow calls, so this
only reads their output. ``incremental_states`` is the state the workflow would have
reported as each run arrived (one causal pass; equal to ``current_state`` on every
prefix, ``log_scale`` fixed so both read the same scale), and ``correct_across_metrics``
is the cross-metric correction of one run's metrics.

An alarm is a change episode at the run that confirmed it, whatever its size verdict
(regression, improvement or shift below threshold), and each later step that extended it
(located where that step began: the user is told again); the anchors have no threshold, so
counting confirmed changes keeps the comparison like for like. Suspected changes are not
alarms: they are what the confirmation rule exists to filter.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from forgebench.harness.calibration.anchors import Alarms, reports


def _detection() -> ModuleType:
    """The detection module the history rule uses (forgebench.stats.detection)."""
    return importlib.import_module("forgebench.stats.detection")


def _options(cfg: Mapping[str, Any], threshold: float) -> dict[str, Any]:
    return {
        "threshold": float(threshold),
        "higher_is_better": False,
        "confirm_runs": int(cfg.get("confirm_runs", 2)),
        "log_scale": True,
    }


def describe(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What the rows' params say about the detector."""
    d = _detection()
    return {
        "detector": "forgebench",
        "function": f"{d.__name__}.incremental_states",
        "confirm_runs": int(cfg.get("confirm_runs", 2)),
        "alarm": "confirmed change (any size verdict)",
    }


def alarms(
    y: np.ndarray, *, check_at: int | None, cfg: Mapping[str, Any], threshold: float
) -> Alarms:
    """The confirmed changes of one history, each at the run count that confirmed it, and
    the starts of those confirmed once the series had ``check_at`` runs."""
    states = _detection().incremental_states(y, **_options(cfg, threshold))
    first: dict[int, int] = {}
    confirmed_by: dict[int, int] = {}
    for st in states:
        change = st.change
        if st.new and change is not None and change.confirmed is not None:
            first.setdefault(int(change.start), st.index + 1)
            confirmed_by.setdefault(int(change.start), int(change.confirmed) + 1)
            if change.updated == st.index and change.increment_start is not None:
                # a step that extended an earlier episode alarms too, where it began
                first.setdefault(int(change.increment_start), st.index + 1)
                confirmed_by.setdefault(int(change.increment_start), st.index + 1)
    at = None
    if check_at is not None:
        at = tuple(sorted(i for i, t in confirmed_by.items() if t <= check_at))
    return Alarms(reports(first), at)


def family_regressions(
    ys: np.ndarray, *, warmup: int, cfg: Mapping[str, Any], threshold: float, alpha: float
) -> dict[bool, np.ndarray]:
    """Per run after ``warmup``: did any of the metrics (rows of ``ys``) read
    "regression", with the cross-metric correction (True) and without it (False)?"""
    d = _detection()
    states = [d.incremental_states(y, **_options(cfg, threshold)) for y in ys]
    runs = ys.shape[1]
    out = {True: np.zeros(runs - warmup, bool), False: np.zeros(runs - warmup, bool)}
    for t in range(warmup, runs):
        at = [s[t] for s in states]
        verdicts = [st.verdict for st in at]
        p = [st.p_value if st.new else np.nan for st in at]
        corrected = d.correct_across_metrics(p, verdicts, alpha=alpha)
        out[False][t - warmup] = d.REGRESSION in verdicts
        out[True][t - warmup] = d.REGRESSION in corrected
    return out
