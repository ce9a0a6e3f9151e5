"""knowledge/repair: detect, propose, gate and apply repairs on a generated medical graph
whose truth the generator keeps, then detect again; throughput as the graph grows.

Why this shape: the system this replaces reported a repair "recall" of 2.0 by counting
detections, and its successor's detector encoded exactly its injector's rules, so every
score was 1.0 by construction. Here the generator (forgebench.knowledge.medical_graph)
shares no code or threshold with the detectors (forgebench.knowledge.detector), puts
background noise in the clean graph and draws look-alikes from distributions; its truth
(what it meant, not a rule over the stored text) is what detections are matched against
(forgebench.knowledge.scoring). Two detectors are scored: ``rules_only`` (each field read
literally, expected to miss free-text dates, placeholder dosages, respelled statuses and
reordered or mistyped names) and ``rules_plus_context`` (the one the repairs use).

Per size (suffix ``@<patients>``; the rules-only detector's cases start ``rules_only:``):

* ``detection_precision`` per kind (case ``<kind>@n``) and overall (``all@n``);
  ``detection_recall`` per kind, per kind and variant (``<kind>/<variant>@n``) and
  overall; ``lookalike_flag_rate`` per look-alike variant; each with ``_ci_low`` and
  ``_ci_high`` rows, the exact (Clopper-Pearson) interval of its counts (in params);
  a share with nothing to count (precision of a detector that flagged nothing) is
  undefined: a skipped row, not a failure;
* ``correct_share_gain`` (case ``rules_plus_context_vs_rules_only@n``): on the same items
  (every true violation, look-alike and flagged key), the share the context detector gets
  right minus the rules-only detector's, with the exact paired interval and McNemar's
  exact p (forgebench.evaluation.paired.delta_interval; config's targets judge it);
* ``proposal_validity``: share of a seeded sample of proposals that, applied in a
  savepoint, remove their target and add no detection of any kind;
* ``guardian_reject_rate`` (and apply and quarantine rates) over all proposals;
* ``residual_violation_rate``: share of the true violations still detected after the
  repairs (blind to what the detector missed); ``unrepaired_violation_rate``: share of
  the true violations not repaired (missed, rejected or still detected), with its exact
  interval; ``repairs_of_non_violations``: rows changed for a detection the truth does not
  hold (the cost of a false positive); ``new_violations_after_repair``: detections that
  were not there before;
* throughput (case ``patients_<n>``): ``detection_time`` and ``detection_throughput``
  (store records per second, the context detector) per repetition, the first a warm-up
  row, each repetition's result checked equal to the first (``mismatch`` otherwise);
  ``repair_time`` and ``repair_throughput`` (proposals per second through propose, gate
  and apply: the timer starts before the first proposal is made).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from forgebench import stats
from forgebench.errors import ForgebenchError
from forgebench.evaluation.paired import delta_interval
from forgebench.knowledge import medical_graph as mg
from forgebench.knowledge import repair, scoring
from forgebench.knowledge.detector import detect
from forgebench.record import Recorder, status_for

BENCHMARK_VERSION = 2
CONTEXT, RULES = "rules_plus_context", "rules_only"
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
    "confidence": 0.95,
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
    truth = mg.generate(conn, mg.Sizes(patients=n), rng)
    nv, nl = per_variant(n, s["violation_rate"], s), per_variant(n, s["lookalike_rate"], s)
    truth = mg.inject(conn, nv, nl, rng, truth)
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
    conf = float(s["confidence"])
    rules_found = detect(conn, variant=RULES)
    _score_detection(rec, n, params, found, truth, conf, prefix="")
    _score_detection(rec, n, params, rules_found, truth, conf, prefix=f"{RULES}:")
    _record_gain(rec, n, params, rules_found, found, truth, conf)
    # Proposals, Guardian, repairs (timed together; the validity sample, a score, is not),
    # detection again.
    t = time.perf_counter()
    proposals = [repair.propose(conn, d) for d in sorted(found, key=repr)]
    propose_dt = time.perf_counter() - t
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
    repair_dt = propose_dt + time.perf_counter() - t
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
    repaired = {p.detection for p, d in zip(proposals, decisions, strict=True) if d != "reject"}
    left = [k for k in truth.violations if k not in repaired or k in after]
    wrong = len(repaired - set(truth.violations))  # applied or quarantined, yet no violation
    rec.add(allc, params, "repairs_of_non_violations", "count", False, wrong)
    _share_rows(
        rec,
        allc,
        {**params, "definition": "true violations not detected, rejected, or still detected"},
        "unrepaired_violation_rate",
        (len(left), len(truth.violations)),
        conf,
    )
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


def _share_rows(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    metric: str,
    counts: tuple[int, int],
    confidence: float,
) -> None:
    """A share k/n with its Clopper-Pearson interval; undefined (skipped) when n is 0."""
    k, n = counts
    higher = metric not in ("lookalike_flag_rate", "unrepaired_violation_rate")
    p = {**params, "k": k, "n": n, "interval": "Clopper-Pearson", "confidence": confidence}
    if n == 0:
        for suffix in ("", "_ci_low", "_ci_high"):
            rec.add(case, p, metric + suffix, "ratio", higher, None, status="skipped")
        return
    low, high = stats.proportion_ci(k, n, confidence)
    rec.add(case, p, metric, "ratio", higher, k / n)
    rec.add(case, p, metric + "_ci_low", "ratio", higher, low)
    rec.add(case, p, metric + "_ci_high", "ratio", higher, high)


def _score_detection(
    rec: Recorder,
    n: int,
    params: Mapping[str, Any],
    found: set,
    truth: mg.Injected,
    confidence: float,
    *,
    prefix: str,
) -> None:
    """Precision and recall per kind, recall per variant, look-alike flag rates."""
    p = {**params, "detector": RULES if prefix else CONTEXT}
    v = truth.violations

    def add(case: str, metric: str, counts: tuple[int, int]) -> None:
        _share_rows(rec, f"{prefix}{case}@{n}", p, metric, counts, confidence)

    add("all", "detection_precision", scoring.precision_counts(found, v))
    add("all", "detection_recall", scoring.recall_counts(found, v))
    for kind in mg.KINDS:
        add(kind, "detection_precision", scoring.precision_counts(found, v, kind))
        add(kind, "detection_recall", scoring.recall_counts(found, v, kind))
    for (kind, variant), counts in sorted(scoring.counts_by_variant(found, v).items()):
        add(f"{kind}/{variant}", "detection_recall", counts)
    for (kind, variant), counts in sorted(
        scoring.counts_by_variant(found, truth.lookalikes).items()
    ):
        add(f"{kind}/{variant}", "lookalike_flag_rate", counts)


def _record_gain(
    rec: Recorder,
    n: int,
    params: Mapping[str, Any],
    rules_found: set,
    context_found: set,
    truth: mg.Injected,
    confidence: float,
) -> None:
    """Rules plus context against rules only, paired on the same items."""
    gained, lost, items = scoring.paired_outcomes(
        rules_found, context_found, truth.violations, truth.lookalikes
    )
    delta, (low, high), p = delta_interval(gained, lost, items, confidence)
    gp = {
        **params,
        "baseline": RULES,
        "candidate": CONTEXT,
        "items": items,
        "gained": gained,
        "lost": lost,
        "interval": "exact paired (McNemar dual)",
        "confidence": confidence,
    }
    case = f"{CONTEXT}_vs_{RULES}@{n}"
    rec.add(case, gp, "correct_share_gain", "ratio", True, delta)
    rec.add(case, gp, "correct_share_gain_ci_low", "ratio", True, low)
    rec.add(case, gp, "correct_share_gain_ci_high", "ratio", True, high)
    rec.add(case, gp, "correct_share_gain_delta_p", "p", False, p)
    log.info(
        "%d patients: rules+context vs rules only %+.3f [%+.3f, %+.3f] on %d items, p %.2g",
        n,
        delta,
        low,
        high,
        items,
        p,
    )
