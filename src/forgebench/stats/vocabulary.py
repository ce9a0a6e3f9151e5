"""The words of every verdict and which row statuses count as failures.

One vocabulary for the workflow, the report, the CLI and the calibration benchmark.
A failure is work that should have succeeded and did not (an error, a timeout, a wrong
answer); a by-design status is a row the experiment planned (a peer that left on
schedule, a value its metric leaves undefined, a run stopped at its budget). Only
failures count against error budgets and in failure totals.
"""

from __future__ import annotations

OK = "ok"
#: Statuses the experiment plans: never counted as failures.
BY_DESIGN_STATUSES = ("skipped", "unavailable", "censored")
#: Statuses that are failures besides every ``error:<Class>``.
FAILURE_STATUSES = ("timeout", "mismatch")

# Comparison verdicts (candidate against baseline).
IMPROVEMENT = "improvement"
REGRESSION = "regression"
NO_CHANGE = "no change"
INCONCLUSIVE = "inconclusive"
FAILED = "failed"
UNDETERMINED = "undetermined"
NOT_COMPARABLE = "not comparable"
NOT_MEASURABLE = "not measurable at this budget"
COMPARISON_VERDICTS = (
    IMPROVEMENT,
    REGRESSION,
    NO_CHANGE,
    INCONCLUSIVE,
    FAILED,
    UNDETERMINED,
    NOT_MEASURABLE,
)

# History verdicts (a metric over the stored runs), besides the comparison words.
SUSPECTED_REGRESSION = "suspected regression"
SUSPECTED_IMPROVEMENT = "suspected improvement"
SHIFT_BELOW_THRESHOLD = "shift below threshold"
HISTORY_VERDICTS = (
    *COMPARISON_VERDICTS,
    NOT_COMPARABLE,
    SUSPECTED_REGRESSION,
    SUSPECTED_IMPROVEMENT,
    SHIFT_BELOW_THRESHOLD,
)

# Target verdicts.
MET = "met"
NOT_MET = "not met"
NOT_MEASURED = "not measured"
TARGET_VERDICTS = (MET, NOT_MET, INCONCLUSIVE, NOT_MEASURED, NOT_MEASURABLE)

# Failure-rate verdicts against an error budget.
WITHIN_BUDGET = "within budget"
OVER_BUDGET = "over budget"
BUDGET_VERDICTS = (WITHIN_BUDGET, OVER_BUDGET, INCONCLUSIVE)


def is_failure(status: str) -> bool:
    """True for statuses that are failures: ``error:*``, ``timeout``, ``mismatch``."""
    return status in FAILURE_STATUSES or str(status).startswith("error:")


def status_kind(status: str) -> str:
    """``"ok"``, ``"failure"`` or ``"by design"``; ValueError for an unknown status."""
    if status == OK:
        return "ok"
    if is_failure(status):
        return "failure"
    if status in BY_DESIGN_STATUSES:
        return "by design"
    raise ValueError(f"unknown status {status!r}")
