"""The one place for the statistical settings every verdict uses.

``config/config.yaml``'s ``statistics:`` section overrides these; every module reads
them through :class:`Settings` rather than keeping its own copy of a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

CONFIDENCE = 0.95
ALPHA = 0.05
#: Smallest relative change that counts as a change (0.05 = 5%).
PRACTICAL_THRESHOLD = 0.05
#: Largest share of failed operations a target or comparison tolerates.
ERROR_BUDGET = 0.01
BOOTSTRAP_RESAMPLES = 2000
#: Other processes' CPU (percent of one core, mean over a job) above which the timings
#: of that job are flagged "noisy": shown, but not failing the gate by default.
NOISY_FOREIGN_CPU_PERCENT = 25.0
#: Fewest independent units (rows, repetitions or runs) per side or per target before a
#: verdict is attempted; below them the verdict is "inconclusive" and says so. Interval
#: existence can demand more: an order-statistic interval of the median needs 6 values at
#: 95%, of p99 about 300 for its upper bound.
MIN_UNITS = {
    "comparison": 3,  # per side
    "target": 3,
    "survival": 3,  # runs per side of a Kaplan-Meier comparison
}


@dataclass(frozen=True)
class Settings:
    """Statistical settings of one run, from ``statistics:`` in the config."""

    confidence: float = CONFIDENCE
    alpha: float = ALPHA
    practical_threshold: float = PRACTICAL_THRESHOLD
    error_budget: float = ERROR_BUDGET
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES
    noisy_foreign_cpu_percent: float = NOISY_FOREIGN_CPU_PERCENT
    metric_thresholds: Mapping[str, float] = field(default_factory=dict)
    min_units: Mapping[str, int] = field(default_factory=lambda: dict(MIN_UNITS))

    @classmethod
    def from_config(cls, statistics: Mapping[str, Any] | None) -> Settings:
        """Settings from a ``statistics:`` mapping; unknown keys are errors."""
        cfg = dict(statistics or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"statistics: unknown key(s) {unknown}; known: {sorted(known)}")
        min_units = dict(MIN_UNITS)
        min_units.update({k: int(v) for k, v in (cfg.pop("min_units", None) or {}).items()})
        out = cls(
            **{k: v for k, v in cfg.items() if k != "metric_thresholds"},
            metric_thresholds=dict(cfg.get("metric_thresholds") or {}),
            min_units=min_units,
        )
        out.validate()
        return out

    def validate(self) -> None:
        """ValueError naming the first setting out of range."""
        for name in ("confidence", "alpha"):
            if not 0.0 < float(getattr(self, name)) < 1.0:
                raise ValueError(f"statistics.{name} must be in (0, 1)")
        if not 0.0 <= self.practical_threshold < 1.0:
            raise ValueError("statistics.practical_threshold must be in [0, 1)")
        if not 0.0 <= self.error_budget < 1.0:
            raise ValueError("statistics.error_budget must be in [0, 1)")
        for key, value in self.metric_thresholds.items():
            if key.count("/") != 2 or not 0.0 <= float(value) < 1.0:
                raise ValueError(
                    f"statistics.metric_thresholds: {key!r}: {value!r} needs a "
                    "'suite/benchmark/metric' key and a value in [0, 1)"
                )
        unknown = sorted(set(self.min_units) - set(MIN_UNITS))
        if unknown:
            raise ValueError(f"statistics.min_units: unknown kind(s) {unknown}")
        if any(int(v) < 1 for v in self.min_units.values()):
            raise ValueError("statistics.min_units: every minimum must be at least 1")

    def threshold(self, suite: str, benchmark: str, metric: str) -> float:
        """The practical threshold of one metric: its ``metric_thresholds`` entry, else the
        run's ``practical_threshold``."""
        value = self.metric_thresholds.get(f"{suite}/{benchmark}/{metric}")
        return float(self.practical_threshold if value is None else value)

    def min_n(self, kind: str) -> int:
        """The minimum number of units of a verdict kind (see :data:`MIN_UNITS`)."""
        return int(self.min_units[kind])

    def describe(self) -> dict[str, Any]:
        """Plain values for run.json and the report's "how verdicts are decided"."""
        return {
            "confidence": self.confidence,
            "alpha": self.alpha,
            "practical_threshold": self.practical_threshold,
            "metric_thresholds": dict(self.metric_thresholds),
            "error_budget": self.error_budget,
            "min_units": dict(self.min_units),
            "noisy_foreign_cpu_percent": self.noisy_foreign_cpu_percent,
        }


def z_value(confidence: float) -> float:
    """Two-sided normal quantile of a confidence level (1.96 at 0.95)."""
    from scipy import stats as _sps

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(_sps.norm.ppf(0.5 + confidence / 2.0))
