"""The original system's responsiveness grades and its two service SLAs, as data.

Grades are a label on two point figures of one endpoint, as the original defined them:
mean response time (successful requests) and success rate (all requests). They are
descriptive; verdicts with confidence intervals come from ``config/config.yaml``'s
targets through forgebench.stats. Recorded as the ordinal value of :data:`GRADES` (0 =
NEEDS_IMPROVEMENT ... 3 = EXCELLENT), so a higher grade is a higher number.
"""

from __future__ import annotations

import math

#: Grades from worst to best; a grade row's value is its index here.
GRADES = ("NEEDS_IMPROVEMENT", "ACCEPTABLE", "GOOD", "EXCELLENT")
#: (grade, mean response time must be under s, success rate must be over), best first.
GRADE_RULES = (
    ("EXCELLENT", 0.050, 0.95),
    ("GOOD", 0.100, 0.90),
    ("ACCEPTABLE", 0.200, 0.80),
)
#: SLA: API mean response time under 100 ms.
SLA_MEAN_LATENCY_S = 0.100
#: SLA: error rate under 0.1 %.
SLA_ERROR_RATE = 0.001
#: Endurance SLA: server memory growth under 1 MB/hour.
SLA_MEMORY_GROWTH_MB_PER_H = 1.0


def grade(mean_latency_s: float, success_rate: float) -> str:
    """The original's grade; no successful request (NaN mean) is NEEDS_IMPROVEMENT."""
    if not math.isfinite(mean_latency_s) or not math.isfinite(success_rate):
        return GRADES[0]
    for name, max_mean, min_success in GRADE_RULES:
        if mean_latency_s < max_mean and success_rate > min_success:
            return name
    return GRADES[0]


def grade_value(name: str) -> int:
    """The ordinal recorded for a grade (index in :data:`GRADES`)."""
    return GRADES.index(name)
