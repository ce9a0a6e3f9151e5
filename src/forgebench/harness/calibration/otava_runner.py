"""Apache Otava's E-divisive detection over series fed one run at a time (a subprocess).

Why a separate script: apache-otava 0.8.0 pins numpy 2.2.0 and scipy < 1.17, which
conflict with forgebench's pins, so it lives in its own virtual environment
(``tools/otava_env.sh``) and runs this file with that environment's interpreter. It
imports nothing from forgebench.

Protocol: JSON on stdin ``{"series": [[float, ...], ...], "settings": [{"window_len": 50,
"max_pvalue": 0.001, "min_magnitude": 0.0}, ...], "start": 10, "check_at": [t or null per
series]}``; JSON on stdout ``{"otava": VERSION, "results": [[{"first": [[index,
first_seen_at], ...], "at_check": [index, ...]} per setting] per series]}``: every
change-point index Otava reported while runs were appended one at a time, with the number
of runs in the series when it was first reported, and the change points it reported when
the series had ``check_at`` runs (how a spike looks once the next runs are in). A series
is analysed whole at
``start`` runs, then grown a run at a time through Otava's own incremental path (the one
``AnalyzedSeries.append`` uses: weak change points carried, only the tail recomputed).
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from typing import Any


def first_reports(
    series: list[float], setting: dict[str, Any], start: int, check_at: int | None = None
) -> dict[str, list[Any]]:
    """``[index, runs_seen]`` for every change point, at the first length that showed it,
    and the change points reported at length ``check_at``."""
    from otava.analysis import compute_change_points

    opts = {
        "window_len": int(setting.get("window_len", 50)),
        "max_pvalue": float(setting.get("max_pvalue", 0.001)),
        "min_magnitude": float(setting.get("min_magnitude", 0.0)),
    }
    seen: dict[int, int] = {}
    at_check: list[int] = []
    weak = None
    for t in range(min(start, len(series)), len(series) + 1):
        data = list(series[:t])
        if weak is None:
            points, weak = compute_change_points(data, **opts)
        else:
            points, weak = compute_change_points(data, new_data=1, old_weak_cp=weak, **opts)
        for cp in points:
            seen.setdefault(int(cp.index), t)
        if t == check_at:
            at_check = sorted(int(cp.index) for cp in points)
    return {"first": sorted([i, t] for i, t in seen.items()), "at_check": at_check}


def main() -> int:
    request = json.load(sys.stdin)
    start = int(request.get("start", 10))
    checks = request.get("check_at") or [None] * len(request["series"])
    results = [
        [
            first_reports(list(map(float, s)), setting, start, check)
            for setting in request["settings"]
        ]
        for s, check in zip(request["series"], checks, strict=True)
    ]
    json.dump({"otava": version("apache-otava"), "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
