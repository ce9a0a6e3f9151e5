"""Statistics: the only place in forgebench that decides a verdict.

One module per kind of question (docs/verdicts.md is the rule book):

* :mod:`.defaults`: confidence, alpha, practical threshold, error budget, minimum sizes;
* :mod:`.vocabulary`: verdict words, and which statuses are failures;
* :mod:`.descriptive`: summaries of one sample;
* :mod:`.intervals`: Clopper-Pearson, order-statistic quantile and t intervals;
* :mod:`.shift` and :mod:`.comparison`: candidate against baseline, families;
* :mod:`.targets`: a figure and its failures against a target;
* :mod:`.counts`: paired 0/1 outcomes (flip rate, McNemar);
* :mod:`.survival`: right-censored times (Kaplan-Meier);
* :mod:`.detection` and :mod:`.changepoint`: a metric over the history of runs;
* :mod:`.power`: the data a verdict needs (for "not measurable at this budget");
* :mod:`.resampling`: the seeded bootstrap, where no exact interval exists.

Small pure functions on arrays; everything random is seeded.
"""

from __future__ import annotations

from forgebench.stats import detection
from forgebench.stats.changepoint import (
    CHANGE_POINT_METHOD,
    ROLLING_Z_METHOD,
    ChangePoints,
    change_point_critical_value,
    change_points,
    rolling_zscore,
)
from forgebench.stats.comparison import (
    VERDICTS,
    Comparison,
    benjamini_hochberg,
    compare,
    compare_family,
    failure_check,
    selected_count,
)
from forgebench.stats.counts import flip_rate, mcnemar
from forgebench.stats.defaults import Settings
from forgebench.stats.descriptive import (
    Summary,
    instability_warnings,
    mad,
    outliers_iqr,
    outliers_mad,
    percentile,
    summarize,
)
from forgebench.stats.intervals import (
    batch_means_ci,
    censored_quantile,
    mean_ci,
    min_n_for_quantile,
    proportion_ci,
    quantile_ci,
    quantile_ranks,
)
from forgebench.stats.power import units_needed
from forgebench.stats.resampling import bootstrap_ci, paired_bootstrap
from forgebench.stats.survival import (
    CONF_TYPES,
    KaplanMeier,
    SurvivalComparison,
    check_survival_target,
    kaplan_meier,
    km_median,
    km_median_bounds,
    km_median_ratio_ci,
)
from forgebench.stats.targets import (
    TARGET_VERDICTS,
    budget_verdict,
    check_target,
    is_exact_unit,
    overall_verdict,
    statistic_interval,
    with_failures,
)

__all__ = [
    "CHANGE_POINT_METHOD",
    "CONF_TYPES",
    "ROLLING_Z_METHOD",
    "TARGET_VERDICTS",
    "VERDICTS",
    "ChangePoints",
    "Comparison",
    "KaplanMeier",
    "Settings",
    "Summary",
    "SurvivalComparison",
    "batch_means_ci",
    "benjamini_hochberg",
    "bootstrap_ci",
    "budget_verdict",
    "censored_quantile",
    "change_point_critical_value",
    "change_points",
    "check_survival_target",
    "check_target",
    "compare",
    "compare_family",
    "detection",
    "failure_check",
    "flip_rate",
    "instability_warnings",
    "is_exact_unit",
    "kaplan_meier",
    "km_median",
    "km_median_bounds",
    "km_median_ratio_ci",
    "mad",
    "mcnemar",
    "mean_ci",
    "min_n_for_quantile",
    "outliers_iqr",
    "outliers_mad",
    "overall_verdict",
    "paired_bootstrap",
    "percentile",
    "proportion_ci",
    "quantile_ci",
    "quantile_ranks",
    "rolling_zscore",
    "selected_count",
    "statistic_interval",
    "summarize",
    "units_needed",
    "with_failures",
]
