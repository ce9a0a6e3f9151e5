"""knowledge/repair: detect, propose, gate and apply repairs on a generated medical graph
with known injected violations, then detect again; throughput as the graph grows.

Why this shape: the system this replaces reported a repair "recall" of 2.0 by counting
detections. Here every detection is matched against the injected identities
(forgebench.knowledge.scoring), look-alikes that break no rule are injected beside the
violations, and the detector (forgebench.knowledge.detector) reads only the store.

Per size (case suffix ``@<patients>``):

* ``detection_precision`` per kind (case ``<kind>@n``) and overall (``all@n``);
  ``detection_recall`` per kind and variant (``<kind>/<variant>@n``) and overall;
  ``lookalike_flag_rate`` per look-alike variant;
* ``proposal_validity``: share of a seeded sample of proposals that, applied in a
  savepoint, remove their target and add no detection of any kind;
* ``guardian_reject_rate`` (and apply and quarantine rates) over all proposals;
* ``residual_violation_rate``: share of injected violations still detected after the
  repairs; ``new_violations_after_repair``: detections that were not there before;
* throughput (case ``patients_<n>``): ``detection_time`` and ``detection_throughput``
  (store records per second) per repetition, the first a warm-up row, each repetition's
  result checked equal to the first (``mismatch`` otherwise); ``repair_time`` and
  ``repair_throughput`` (proposals per second through propose, gate and apply).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.knowledge import medical_graph as mg
from forgebench.knowledge import repair, scoring
from forgebench.knowledge.detector import detect
from forgebench.record import Recorder, status_for

BENCHMARK_VERSION = 1
SUITE = "knowledge"
NAME = "repair"
KEY = "suites.knowledge.benchmarks.repair"

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "sizes": [1000, 10000],
    "violation_rate": 0.01,
    "lookalike_rate": 0.005,
    "min_per_variant": 3,
    "max_per_variant": 50,
    "validity_sample": 20,
    "max_rows": 50,
    "repetitions": 3,
}


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    cfg = {k: v for k, v in cfg.items() if k not in ("model_dir", "datasets_dir")}
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ForgebenchError(f"{KEY}: unknown keys {unknown}; allowed: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **cfg}
    if not s["sizes"] or min(int(n) for n in s["sizes"]) < 100:
        raise ForgebenchError(f"{KEY}.sizes: need patient counts >= 100, got {s['sizes']}")
    return s


def per_variant(n: int, rate: float, s: Mapping[str, Any]) -> int:
    """Injections per variant: ``rate * patients / 3``, within [min, max]_per_variant."""
    return int(min(s["max_per_variant"], max(s["min_per_variant"], round(rate * n / 3))))


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    s = _settings(cfg)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    for n in sorted(int(x) for x in s["sizes"]):
        try:
            _one_size(rec, n, s, seed)
        except Exception as exc:  # a failed size is a failed row, the others still run
            log.exception("repair at %d patients failed", n)
            rec.add(
                f"patients_{n}",
                {"patients": n},
                "detection_throughput",
                "records/s",
                True,
                None,
                status=status_for(exc),
            )
    return rec.frame()


def _one_size(rec: Recorder, n: int, s: Mapping[str, Any], seed: int) -> None:
    rng = np.random.default_rng([seed, n])
    t0 = time.perf_counter()
    conn = mg.create_store()
    mg.generate(conn, mg.Sizes(patients=n), rng)
    nv, nl = per_variant(n, s["violation_rate"], s), per_variant(n, s["lookalike_rate"], s)
    truth = mg.inject(conn, nv, nl, rng)
    conn.execute("ANALYZE")
    records = mg.record_count(conn)
    params = {
        "patients": n,
        "records": records,
        "per_variant": nv,
        "lookalikes_per_variant": nl,
        "store": "sqlite",
    }
    rec.add(f"patients_{n}", params, "generation_time", "s", False, time.perf_counter() - t0)
    log.info(
        "%d patients: %d records, %d violations, %d look-alikes injected",
        n,
        records,
        len(truth.violations),
        len(truth.lookalikes),
    )
    # Detection, timed; every repetition must find the same set.
    case = f"patients_{n}"
    found = None
    for r in range(int(s["repetitions"]) + 1):
        t = time.perf_counter()
        det = detect(conn)
        dt = time.perf_counter() - t
        status = "ok" if found is None or det == found else "mismatch"
        found = det if found is None else found
        warm = r == 0
        rec.add(
            case, params, "detection_time", "s", False, dt, repetition=r, warmup=warm, status=status
        )
        rec.add(
            case,
            params,
            "detection_throughput",
            "records/s",
            True,
            records / dt,
            repetition=r,
            warmup=warm,
            status=status,
        )
    assert found is not None
    _score_detection(rec, n, params, found, truth)
    # Proposals, Guardian, repairs, detection again.
    proposals = [repair.propose(conn, d) for d in sorted(found, key=repr)]
    sample_rng = np.random.default_rng([seed, n, 1])
    k = min(int(s["validity_sample"]), len(proposals))
    sample = sample_rng.choice(len(proposals), size=k, replace=False) if k else []
    valid = [repair.is_valid_full(conn, proposals[i], found) for i in sample]
    t = time.perf_counter()
    decisions = repair.guardian(conn, proposals, found, max_rows=int(s["max_rows"]))
    conn.execute("BEGIN")
    for p, d in zip(proposals, decisions, strict=True):
        repair.carry_out(conn, p, d)
    conn.execute("COMMIT")
    repair_dt = time.perf_counter() - t
    after = detect(conn)
    allc = f"all@{n}"
    if valid:
        rec.add(allc, params, "proposal_validity", "ratio", True, float(np.mean(valid)))
    else:
        rec.add(allc, params, "proposal_validity", "ratio", True, None, status="skipped")
    total = max(1, len(decisions))
    for what in ("reject", "apply", "quarantine"):
        rec.add(
            allc,
            params,
            f"guardian_{what}_rate",
            "ratio",
            what != "reject",
            decisions.count(what) / total,
            status="ok" if decisions else "skipped",
        )
    residual = scoring.recall(after, truth.violations)
    rec.add(allc, params, "residual_violation_rate", "ratio", False, residual)
    rec.add(allc, params, "new_violations_after_repair", "count", False, len(after - found))
    rec.add(case, params, "repair_time", "s", False, repair_dt)
    rec.add(
        case,
        params,
        "repair_throughput",
        "proposals/s",
        True,
        len(proposals) / repair_dt if repair_dt > 0 else None,
        status="ok" if repair_dt > 0 else "skipped",
    )
    log.info(
        "%d patients: %d proposals (%d rejected), residual %.3f, repair %.2f s",
        n,
        len(proposals),
        decisions.count("reject"),
        residual,
        repair_dt,
    )
    conn.close()


def _score_detection(
    rec: Recorder, n: int, params: Mapping[str, Any], found: set, truth: mg.Injected
) -> None:
    def add(case: str, metric: str, value: float) -> None:
        ok = bool(np.isfinite(value))
        rec.add(
            case,
            params,
            metric,
            "ratio",
            metric != "lookalike_flag_rate",
            value if ok else None,
            status="ok" if ok else "skipped",
        )

    add(f"all@{n}", "detection_precision", scoring.precision(found, truth.violations))
    add(f"all@{n}", "detection_recall", scoring.recall(found, truth.violations))
    for kind in mg.KINDS:
        add(f"{kind}@{n}", "detection_precision", scoring.precision(found, truth.violations, kind))
        add(f"{kind}@{n}", "detection_recall", scoring.recall(found, truth.violations, kind))
    for (kind, variant), value in sorted(
        scoring.recall_by_variant(found, truth.violations).items()
    ):
        add(f"{kind}/{variant}@{n}", "detection_recall", value)
    for (kind, variant), value in sorted(
        scoring.flagged_by_variant(found, truth.lookalikes).items()
    ):
        add(f"{kind}/{variant}@{n}", "lookalike_flag_rate", value)
