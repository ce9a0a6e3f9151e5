"""How much data a verdict needs: the budget behind "not measurable at this budget".

A declaration that a figure cannot be decided at the default budget states what would
decide it, computed from noise measured beforehand rather than guessed.
"""

from __future__ import annotations

import math

from scipy import stats as _sps

from forgebench.stats.defaults import CONFIDENCE, PRACTICAL_THRESHOLD


def units_needed(
    noise_sd_log: float,
    *,
    threshold: float = PRACTICAL_THRESHOLD,
    confidence: float = CONFIDENCE,
    power: float = 0.8,
    sides: int = 2,
) -> int:
    """Independent units per side for a comparison's interval to decide at ``power``.

    With noise ``noise_sd_log`` (standard deviation of one unit's log value), the
    interval of the log ratio has half-width ``z * sd * sqrt(sides / n)``; a true change
    of twice the threshold is then called, and a true zero is called "no change", with
    probability ``power`` once ``n >= sides * ((z_a + z_b) * sd / log(1 + t))**2``
    (normal approximation; ``sides=1`` for a single-sample target)."""
    if noise_sd_log <= 0 or not 0 < threshold < 1:
        raise ValueError("need noise_sd_log > 0 and a threshold in (0, 1)")
    z_a = float(_sps.norm.ppf(0.5 + confidence / 2.0))
    z_b = float(_sps.norm.ppf(power))
    margin = math.log1p(threshold)
    return max(2, math.ceil(sides * ((z_a + z_b) * noise_sd_log / margin) ** 2))
