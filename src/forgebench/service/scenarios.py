"""Load scenarios (load, stress, spike, endurance) and how a run becomes rows.

Every scenario is open- or closed-loop runs of ``forgebench.service.loadgen`` against one
endpoint. Rows per run: one ``latency`` row per request (from its scheduled send time;
failures as failed rows), ``latency_p50``/``_p90``/``_p99`` over every request (a timeout
counted at least its timeout; ``censored`` where the percentile falls among timeouts, its
value then a lower bound) with ``censored_requests``, ``error_rate`` per window of
``window_s`` (so the error-rate SLA has a confidence interval over windows),
``throughput``, ``achieved_rate``,
``generator_cpu`` and the original's ``grade``. A run whose generator was saturated has
its ``throughput`` row marked ``error:GeneratorSaturated``: it is not the server's limit.

Scenario definitions:

* **stress**: open-loop steps from ``start_rate`` multiplied by ``factor`` up to
  ``max_rate``; a step meets the SLA when the bootstrap CIs of its mean latency and its
  error share both meet it (forgebench.stats.check_target). The ramp stops at the first
  step that does not (inconclusive counts as not met) or whose generator saturated.
  ``max_rate_meeting_sla`` is the highest target rate met; ``censored`` when the ramp
  ended without breaking (the limit is above it).
* **spike**: Poisson arrivals at ``rate``, then ``multiplier`` x ``rate`` for ``spike_s``,
  then ``rate`` again. The pre-spike level is the p95 of the plateau before the spike
  (its first second left out). Recovery time is the time from the spike's end to the
  start of the first 1-s window (sliding by ``step_s``) whose p95 is within
  ``tolerance`` of that level; failed requests enter windows at the timeout (a failure
  is no faster than a timeout). ``censored`` at the last window start if never.
* **endurance**: a soak at ``rate`` after ``warmup_s``; the server process's RSS is
  sampled by forgebench.sampler, whose least-squares growth (MB/hour) and CI are
  recorded and checked against the SLA. CPython grows its heap in arenas of
  ``growth_granularity_mb``, so a soak shorter than the time the SLA rate needs to grow
  one arena cannot tell a leak from one arena: its verdict is "inconclusive".
  ``soak_needed_s`` is the soak whose interval would decide the SLA at 80% power, from
  this soak's RSS noise (``sampler.soak_needed``), never below that arena's time.

Against a user's own service (``forgebench.service.target``) every scenario runs alike,
with ``extra`` params on every row (``"target": "external"``, the URL, the ok rule); the
endurance soak's server memory rows are ``unavailable`` there, since that process is not
ours to sample.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forgebench import stats
from forgebench.network.echo_latency import WallClock
from forgebench.record import Recorder
from forgebench.sampler import ResourceSampler, soak_needed
from forgebench.service import grades
from forgebench.service.loadgen import (
    HttpRequest,
    Limits,
    RunResult,
    closed_loop,
    open_loop,
    piecewise_schedule,
    poisson_schedule,
    run_async,
)
from forgebench.service.server import ServiceAddress

log = logging.getLogger(__name__)

#: Why a server figure is missing for a user's own service (kept in the rows' params).
NOT_OURS = "external target: its process is not ours to sample"
SATURATED = "error:GeneratorSaturated"
#: Percentiles of every request a run records (``latency_p<q>``), timeouts censored.
RUN_PERCENTILES = (50, 90, 99)


# ------------------------------------------------------------------------------ rows


def add_request_rows(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    res: RunResult,
    clock: WallClock,
    *,
    repetition: int = 0,
    warmup: bool = False,
    metric: str = "latency",
) -> None:
    """One ``metric`` row per request: end minus scheduled send time, or NaN if failed."""
    lat = res.latencies_s().tolist()
    add = rec.add
    at = clock.at
    for i, (sched, status) in enumerate(zip(res.sched_ns, res.status, strict=True)):
        add(
            case,
            params,
            metric,
            "s",
            False,
            lat[i] if status == "ok" else math.nan,
            repetition=repetition,
            sample=i,
            warmup=warmup,
            status=status,
            started_at=at(sched),
        )


def window_error_rates(res: RunResult, window_s: float) -> list[float]:
    """Failed share of the requests scheduled in each window of ``window_s`` (empty ones
    left out)."""
    if not res.n:
        return []
    t = (np.asarray(res.sched_ns, np.int64) - min(res.sched_ns)) * 1e-9
    idx = np.floor(t / window_s).astype(np.int64)
    failed = ~res.ok_mask()
    total = np.bincount(idx)
    bad = np.bincount(idx, weights=failed.astype(float), minlength=total.size)
    return [float(b / n) for b, n in zip(bad, total, strict=True) if n]


def add_run_rows(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    res: RunResult,
    clock: WallClock,
    *,
    window_s: float,
    repetition: int = 0,
) -> str:
    """Run-level rows (error rate per window, rates, generator CPU, grade); returns the grade."""
    started = clock.at(res.start_ns)
    for i, rate in enumerate(window_error_rates(res, window_s)):
        rec.add(case, params, "error_rate", "fraction", False, rate, repetition=repetition,
                sample=i, started_at=started)  # fmt: skip
    if res.n:  # the share over all requests, with its exact interval (stats.proportion_ci)
        n_failed = int((~res.ok_mask()).sum())
        low, high = stats.proportion_ci(n_failed, res.n)
        for metric, value in (
            ("error_share", n_failed / res.n),
            ("error_share_ci_low", low),
            ("error_share_ci_high", high),
        ):
            rec.add(case, {**params, "requests": res.n, "failed": n_failed}, metric, "fraction",
                    False, value, repetition=repetition, started_at=started)  # fmt: skip
    add_percentile_rows(rec, case, params, res, clock, repetition=repetition)
    thr_status = _commonest(res) if not res.n_ok else SATURATED if res.saturated else "ok"
    rec.add(case, params, "throughput", "requests/s", True,
            res.throughput if thr_status == "ok" else math.nan,
            repetition=repetition, status=thr_status, started_at=started)  # fmt: skip
    achieved_status = "ok" if math.isfinite(res.achieved_rate) else "error:TooFewRequests"
    rec.add(case, params, "achieved_rate", "requests/s", True, res.achieved_rate,
            repetition=repetition, started_at=started, status=achieved_status)  # fmt: skip
    rec.add(case, params, "generator_cpu", "percent", False, res.cpu_percent,
            repetition=repetition, started_at=started)  # fmt: skip
    ok = res.ok_mask()
    lat = res.latencies_s()[ok]
    mean = float(lat.mean()) if lat.size else math.nan
    name = grades.grade(mean, ok.mean() if res.n else math.nan)
    rec.add(case, {**params, "grade": name}, "grade", "grade", True,
            float(grades.grade_value(name)), repetition=repetition, started_at=started)  # fmt: skip
    return name


def add_percentile_rows(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    res: RunResult,
    clock: WallClock,
    *,
    repetition: int = 0,
) -> None:
    """``latency_p<q>`` over every request of the run and ``censored_requests``: a timed-out
    request counts at least its timeout, so a percentile that falls among the timeouts is a
    ``censored`` row whose value is that lower bound (the per-request ``latency`` rows keep
    timeouts as failed rows, and a summary of them sees only the requests that answered)."""
    if not res.n:
        return
    _, censored = res.censored_latencies_s()
    n_censored = int(censored.sum())
    at = clock.at(res.start_ns)
    counted = {**params, "requests": res.n, "censored": n_censored}
    for q in RUN_PERCENTILES:
        value, is_censored = res.percentile(q)
        rec.add(case, counted, f"latency_p{q}", "s", False, value, repetition=repetition,
                status="censored" if is_censored else "ok", started_at=at)  # fmt: skip
    rec.add(case, counted, "censored_requests", "requests", False, n_censored,
            repetition=repetition, started_at=at)  # fmt: skip


def _commonest(res: RunResult) -> str:
    fails = res.failures()
    return max(fails, key=fails.__getitem__) if fails else "error:NoRequests"


def describe(res: RunResult) -> str:
    """One log line's worth: counts, failures, rates, p50/p99, generator CPU."""

    def pct(q: float) -> str:  # of every request; ">=" where timeouts censor it
        value, censored = res.percentile(q)
        return f"{'>=' if censored else ''}{value * 1e3:.2f}" if res.n else "n/a"

    p50, p99 = pct(50), pct(99)
    fails = res.failures()
    return (
        f"{res.n_ok} ok, {res.n - res.n_ok} failed{f' {fails}' if fails else ''}; "
        f"{res.throughput:.0f} ok/s (sent {res.achieved_rate:.0f}/s"
        + (f", target {res.target_rate:g}/s" if res.target_rate else "")
        + f"); p50 {p50} ms p99 {p99} ms; generator CPU {res.cpu_percent:.0f}%"
        + (" SATURATED" if res.saturated else "")
        + f"; {res.connections} connections; stopped: {res.stop_reason}"
    )


def sla_verdict(
    res: RunResult, *, resamples: int, seed: int, confidence: float = 0.95
) -> tuple[str, str]:
    """The two SLAs (mean latency, error share) on their intervals, combined: "met" only
    if both are met, "not met" if either is not, else "inconclusive". The error share's
    interval is Clopper-Pearson; the mean latency's comes from batch means over the run in
    request order (consecutive requests are correlated). ``resamples``/``seed`` are kept
    for callers and unused: nothing here is drawn."""
    del resamples, seed
    ok = res.ok_mask()
    lat = res.latencies_s()[ok]
    if not res.n:
        return "not measured", "no requests"
    n_failed = int((~ok).sum())
    err_ci = stats.proportion_ci(n_failed, int(res.n), confidence)
    err = stats.check_target(*err_ci, op="<", threshold=grades.SLA_ERROR_RATE)
    if lat.size >= 2:
        lat_ci = stats.batch_means_ci(lat, confidence)
        latv = stats.check_target(*lat_ci, op="<", threshold=grades.SLA_MEAN_LATENCY_S)
    else:
        lat_ci, latv = (math.nan, math.nan), "not met"
    verdicts = (latv, err)
    if all(v == "met" for v in verdicts):
        verdict = "met"
    elif any(v in ("not met", "not measured") for v in verdicts):
        verdict = "not met"
    else:
        verdict = "inconclusive"
    why = (
        f"mean latency CI {lat_ci[0] * 1e3:.2f}-{lat_ci[1] * 1e3:.2f} ms: {latv}; "
        f"error share CI {err_ci[0]:.4f}-{err_ci[1]:.4f}: {err}"
    )
    return verdict, why


# ------------------------------------------------------------------------- scenarios


def _open(
    addr: ServiceAddress,
    requests: Sequence[HttpRequest],
    schedule: np.ndarray,
    cfg: Mapping[str, Any],
    *,
    rate: float | None,
    seed: int,
) -> RunResult:
    return run_async(
        open_loop(
            addr.host,
            addr.port,
            requests,
            schedule,
            float(cfg["timeout_s"]),
            target_rate=rate,
            max_connections=int(cfg["max_connections"]),
            seed=seed,
            **addr.client_options(),
        )
    )


def run_load(
    rec: Recorder,
    addr: ServiceAddress,
    requests: Sequence[HttpRequest],
    cfg: Mapping[str, Any],
    *,
    seed: int,
    endpoint: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Closed-loop user levels, then open-loop Poisson rates; each its own case."""
    limits = Limits(
        float(cfg["min_duration_s"]),
        int(cfg["min_queries"]),
        float(cfg["max_duration_s"]),
        float(cfg["timeout_s"]),
    )
    window_s = float(cfg["window_s"])
    for users in cfg["load"]["users"]:
        case = f"load_closed_{users}u"
        params = {"scenario": "load", "mode": "closed", "users": users, "endpoint": endpoint,
                  **(extra or {})}  # fmt: skip
        clock = WallClock()
        res = run_async(closed_loop(addr.host, addr.port, requests, int(users), limits, seed=seed,
                                    **addr.client_options()))  # fmt: skip
        add_request_rows(rec, case, params, res, clock)
        name = add_run_rows(rec, case, params, res, clock, window_s=window_s)
        log.info("%s: %s; grade %s", case, describe(res), name)
    for rate in cfg["load"]["rates"]:
        case = f"load_open_{rate:g}rps"
        params = {"scenario": "load", "mode": "open", "rate": rate, "endpoint": endpoint,
                  **(extra or {})}  # fmt: skip
        schedule = poisson_schedule(float(rate), limits.min_duration_s, limits.min_queries, seed)
        clock = WallClock()
        res = _open(addr, requests, schedule, cfg, rate=float(rate), seed=seed)
        add_request_rows(rec, case, params, res, clock)
        name = add_run_rows(rec, case, params, res, clock, window_s=window_s)
        log.info("%s: %s; grade %s", case, describe(res), name)


def stress_rates(start: float, factor: float, maximum: float) -> list[float]:
    """``start, start*factor, ...`` up to ``maximum`` (at least one step)."""
    rates = [float(start)]
    while rates[-1] * factor <= maximum * (1 + 1e-9) and factor > 1:
        rates.append(rates[-1] * factor)
    return rates


def run_stress(
    rec: Recorder,
    addr: ServiceAddress,
    requests: Sequence[HttpRequest],
    cfg: Mapping[str, Any],
    *,
    seed: int,
    endpoint: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Ramp the open-loop rate until the SLA breaks; record the highest rate meeting it."""
    scfg = cfg["stress"]
    rates = stress_rates(float(scfg["start_rate"]), float(scfg["factor"]), float(scfg["max_rate"]))
    window_s = float(cfg["window_s"])
    best: float | None = None
    ended = "ramp reached max_rate without breaking the SLA"
    censored = True
    for step, rate in enumerate(rates):
        params = {"scenario": "stress", "rate": rate, "step": step, "endpoint": endpoint,
                  **(extra or {})}  # fmt: skip
        schedule = poisson_schedule(
            rate, float(scfg["step_duration_s"]), int(scfg["min_queries"]), seed + step
        )
        clock = WallClock()
        res = _open(addr, requests, schedule, cfg, rate=rate, seed=seed + step)
        add_request_rows(rec, "stress", params, res, clock, repetition=step)
        add_run_rows(rec, "stress", params, res, clock, window_s=window_s, repetition=step)
        verdict, why = sla_verdict(res, resamples=int(scfg["bootstrap_resamples"]), seed=seed)
        rec.add("stress", {**params, "sla_verdict": verdict}, "sla_met", "bool", True,
                1.0 if verdict == "met" else 0.0, repetition=step,
                started_at=clock.at(res.start_ns))  # fmt: skip
        log.info("stress step %d at %g/s: %s; SLA %s (%s)", step, rate, describe(res), verdict, why)
        if res.saturated:
            ended = f"generator saturated at {rate:g}/s (its limit, not the server's)"
            break
        if verdict != "met":
            ended, censored = f"SLA {verdict} at {rate:g}/s", False
            break
        best = rate
    params = {"scenario": "stress", "rates": rates, "ended": ended, **(extra or {})}
    if best is None and ended.startswith("SLA inconclusive"):
        # the first step's interval could not decide: the budget is too small, not a failure
        rec.add("stress", params, "max_rate_meeting_sla", "requests/s", True, math.nan,
                status="skipped")  # fmt: skip
    elif best is None:
        rec.add("stress", params, "max_rate_meeting_sla", "requests/s", True, math.nan,
                status="error:SlaBrokenAtFirstStep")  # fmt: skip
    else:
        rec.add("stress", params, "max_rate_meeting_sla", "requests/s", True, best,
                status="censored" if censored else "ok")  # fmt: skip
    log.info("stress: highest rate meeting the SLA %s (%s)", best, ended)


def sliding_p95(
    res: RunResult, timeout_s: float, start_s: float, stop_s: float, window_s: float, step_s: float
) -> list[tuple[float, float]]:
    """(window start, p95) of 1-s windows by scheduled time; failures count as the timeout."""
    t = (np.asarray(res.sched_ns, np.int64) - res.start_ns) * 1e-9
    lat = np.where(res.ok_mask(), res.latencies_s(), timeout_s)
    out = []
    w = start_s
    while w + window_s <= stop_s + 1e-9:
        sel = lat[(t >= w) & (t < w + window_s)]
        if sel.size:
            out.append((w, stats.percentile(sel, 95)))
        w += step_s
    return out


def run_spike(
    rec: Recorder,
    addr: ServiceAddress,
    requests: Sequence[HttpRequest],
    cfg: Mapping[str, Any],
    *,
    seed: int,
    endpoint: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Plateau, sudden ``multiplier`` x spike, plateau: the time until p95 recovers."""
    scfg = cfg["spike"]
    rate, mult = float(scfg["rate"]), float(scfg["multiplier"])
    pre, spike, post = float(scfg["pre_s"]), float(scfg["spike_s"]), float(scfg["post_s"])
    window, step, tol = 1.0, float(scfg["step_s"]), float(scfg["tolerance"])
    timeout_s = float(cfg["timeout_s"])
    schedule = piecewise_schedule([(pre, rate), (spike, rate * mult), (post, rate)], seed)
    params = {"scenario": "spike", "rate": rate, "multiplier": mult, "pre_s": pre,
              "spike_s": spike, "post_s": post, "endpoint": endpoint,
              **(extra or {})}  # fmt: skip
    clock = WallClock()
    res = _open(addr, requests, schedule, cfg, rate=rate, seed=seed)
    add_request_rows(rec, "spike", params, res, clock)
    add_run_rows(rec, "spike", params, res, clock, window_s=float(cfg["window_s"]))
    started = clock.at(res.start_ns)
    t = (np.asarray(res.sched_ns, np.int64) - res.start_ns) * 1e-9
    lat = np.where(res.ok_mask(), res.latencies_s(), timeout_s)
    base = lat[(t >= min(1.0, pre / 2)) & (t < pre)]
    peak = lat[(t >= pre) & (t < pre + spike)]
    if not base.size:
        rec.add("spike", params, "recovery_time", "s", False, math.nan,
                status="error:NoPreSpikeRequests", started_at=started)  # fmt: skip
        return
    level = stats.percentile(base, 95)
    rec.add("spike", params, "pre_spike_p95", "s", False, level, started_at=started)
    if peak.size:
        rec.add("spike", params, "spike_p95", "s", False, stats.percentile(peak, 95),
                started_at=started)  # fmt: skip
    end = pre + spike
    windows = sliding_p95(res, timeout_s, end, end + post, window, step)
    recovered = None
    for i, (w, p95) in enumerate(windows):
        rec.add("spike", params, "p95_window", "s", False, p95, sample=i, started_at=started)
        if recovered is None and p95 <= level * (1 + tol):
            recovered = w - end
    if recovered is None:
        last = windows[-1][0] - end if windows else 0.0
        rec.add("spike", params, "recovery_time", "s", False, last, status="censored",
                started_at=started)  # fmt: skip
    else:
        rec.add("spike", params, "recovery_time", "s", False, recovered, started_at=started)
    log.info(
        "spike %g/s x%g: %s; pre-spike p95 %.2f ms, spike p95 %.2f ms, recovery %s",
        rate, mult, describe(res), level * 1e3,
        stats.percentile(peak, 95) * 1e3 if peak.size else math.nan,
        f"{recovered:.2f} s" if recovered is not None else f"not within {post:g} s (censored)",
    )  # fmt: skip


def min_conclusive_s(cfg: Mapping[str, Any]) -> float:
    """Shortest soak whose growth verdict can be more than inconclusive (see module doc)."""
    return float(cfg["growth_granularity_mb"]) / grades.SLA_MEMORY_GROWTH_MB_PER_H * 3600.0


def add_soak_needed_row(
    rec: Recorder,
    params: Mapping[str, Any],
    points: list[tuple[float, float]],
    ecfg: Mapping[str, Any],
    *,
    started_at: Any = None,
) -> float:
    """``soak_needed_s``: the soak whose growth interval decides the SLA at 80% power, from
    this soak's measured RSS noise (``sampler.soak_needed``), never below one heap arena's
    time at the SLA rate (``min_conclusive_s``); its params say which bound ruled."""
    need = soak_needed(points, grades.SLA_MEMORY_GROWTH_MB_PER_H)
    floor = min_conclusive_s(ecfg)
    if need is None:
        rec.add("endurance", params, "soak_needed_s", "s", False, math.nan,
                status="error:TooFewSamples", started_at=started_at)  # fmt: skip
        return math.nan
    needed = max(need.needed_s, floor)
    p = {**params, "noise_needed_s": need.needed_s, "arena_floor_s": floor,
         "ruled_by": "noise" if need.needed_s > floor else "heap arena",
         "residual_sd_mb": need.residual_sd_mb, "lag1_autocorr": need.lag1_autocorr,
         "rss_samples": need.n, "effective_samples": need.n_eff,
         "sample_interval_s": need.interval_s}  # fmt: skip
    rec.add("endurance", p, "soak_needed_s", "s", False, needed, started_at=started_at)
    log.info("endurance: a decisive soak needs %.0f s (noise %.0f s: residual sd %.3f MB, "
             "lag-1 autocorrelation %.2f; heap arena %.0f s)", needed, need.needed_s,
             need.residual_sd_mb, need.lag1_autocorr, floor)  # fmt: skip
    return needed


def run_endurance(
    rec: Recorder,
    addr: ServiceAddress,
    requests: Sequence[HttpRequest],
    cfg: Mapping[str, Any],
    *,
    seed: int,
    endpoint: str,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Soak at a steady rate; the server's memory growth (MB/hour, CI) against the SLA."""
    ecfg = cfg["endurance"]
    rate, soak_s = float(ecfg["rate"]), float(ecfg["duration_s"])
    params = {"scenario": "endurance", "rate": rate, "duration_s": soak_s, "endpoint": endpoint,
              "sample_interval_s": float(ecfg["sample_interval_s"]), **(extra or {})}  # fmt: skip
    if float(ecfg["warmup_s"]) > 0:
        warm = poisson_schedule(rate, float(ecfg["warmup_s"]), 1, seed + 1)
        clock = WallClock()
        res = _open(addr, requests, warm, cfg, rate=rate, seed=seed + 1)
        add_request_rows(rec, "endurance", params, res, clock, warmup=True)
    schedule = poisson_schedule(rate, soak_s, 1, seed)
    clock = WallClock()
    if addr.external:
        return _endurance_without_server(rec, addr, requests, cfg, schedule, clock, params,
                                         rate=rate, seed=seed)  # fmt: skip
    with ResourceSampler(
        addr.pid, interval_s=float(ecfg["sample_interval_s"]), include_children=False, gpu=False
    ) as sampler:
        res = _open(addr, requests, schedule, cfg, rate=rate, seed=seed)
    summary = sampler.summary()
    add_request_rows(rec, "endurance", params, res, clock)
    add_run_rows(rec, "endurance", params, res, clock, window_s=float(cfg["window_s"]))
    started = clock.at(res.start_ns)
    slope, ci = summary["memory_growth_mb_per_hour"], summary["memory_growth_ci"]
    duration = float(summary["duration_s"])
    if slope is None or ci is None:
        verdict = "not measured"
        for metric in ("memory_growth", "memory_growth_ci_low", "memory_growth_ci_high"):
            rec.add("endurance", params, metric, "MB/hour", False, math.nan,
                    status="error:TooFewSamples", started_at=started)  # fmt: skip
    else:
        verdict = stats.check_target(
            ci[0], ci[1], op="<", threshold=grades.SLA_MEMORY_GROWTH_MB_PER_H
        )
        short = duration < min_conclusive_s(ecfg)
        if short:
            verdict = "inconclusive"
        p = {**params, "sla_verdict": verdict, "sampler_ci": [ci[0], ci[1]]}
        rec.add("endurance", p, "memory_growth", "MB/hour", False, slope, started_at=started)
        # A soak too short to tell a leak from one heap step leaves its interval undecided
        # (censored rows): a target on it is then inconclusive, whatever the sampler's fit.
        for metric, value in (("memory_growth_ci_low", ci[0]), ("memory_growth_ci_high", ci[1])):
            rec.add("endurance", p, metric, "MB/hour", False, math.nan if short else value,
                    status="censored" if short else "ok", started_at=started)  # fmt: skip
    rec.add("endurance", params, "soak_duration", "s", False, duration, started_at=started)
    add_soak_needed_row(rec, params, sampler.rss_points(), ecfg, started_at=started)
    rss = summary.get("peak_rss_bytes")
    if rss:
        rec.add("endurance", params, "server_peak_rss", "bytes", False, float(rss),
                started_at=started)  # fmt: skip
    log.info(
        "endurance %g/s for %.0f s: %s; server memory growth %s MB/h (95%% CI %s); SLA < %g "
        "MB/h: %s (a verdict needs >= %.0f s)",
        rate, duration, describe(res), f"{slope:.2f}" if slope is not None else "n/a",
        f"{ci[0]:.2f}..{ci[1]:.2f}" if ci else "n/a", grades.SLA_MEMORY_GROWTH_MB_PER_H,
        verdict, min_conclusive_s(ecfg),
    )  # fmt: skip
    return verdict


def _endurance_without_server(
    rec: Recorder,
    addr: ServiceAddress,
    requests: Sequence[HttpRequest],
    cfg: Mapping[str, Any],
    schedule: np.ndarray,
    clock: WallClock,
    params: Mapping[str, Any],
    *,
    rate: float,
    seed: int,
) -> str:
    """The soak against a service that is not ours: requests and rates as usual; the
    server's memory rows ``unavailable`` (its process cannot be sampled), not guessed."""
    res = _open(addr, requests, schedule, cfg, rate=rate, seed=seed)
    add_request_rows(rec, "endurance", params, res, clock)
    add_run_rows(rec, "endurance", params, res, clock, window_s=float(cfg["window_s"]))
    started = clock.at(res.start_ns)
    why = {**params, "unavailable": NOT_OURS}
    for metric, unit in (
        ("memory_growth", "MB/hour"),
        ("memory_growth_ci_low", "MB/hour"),
        ("memory_growth_ci_high", "MB/hour"),
        ("server_peak_rss", "bytes"),
    ):
        rec.add("endurance", why, metric, unit, False, math.nan, status="unavailable",
                started_at=started)  # fmt: skip
    rec.add("endurance", params, "soak_duration", "s", False, res.wall_s, started_at=started)
    log.info("endurance %g/s for %.0f s against %s: %s; server memory not measured (%s)",
             rate, res.wall_s, addr.url, describe(res), NOT_OURS)  # fmt: skip
    return "not measured"


# ------------------------------------------------------------------ server and endpoints

#: Endpoints a benchmark may load, by name; ``job`` is a two-step flow (responsiveness).
ENDPOINTS = ("health", "status", "info", "db_page", "rag", "job")


def server_settings(cfg: Mapping[str, Any], seed: int, *, rag: bool) -> dict[str, Any]:
    """The service's settings from a benchmark's config section (see ``service.app``)."""
    db = cfg["db"]
    rag_cfg = cfg.get("rag", {})
    pipeline = dict(rag_cfg.get("pipeline", {}))
    if "datasets_dir" in cfg:  # injected by the workflow: the prepared datasets
        pipeline["datasets_dir"] = str(Path(cfg["datasets_dir"]).resolve())
    # BM25-only queries need no embedding model: don't load one or embed every passage.
    pipeline.setdefault("dense", rag_cfg.get("mode", "bm25") != "bm25")
    return {
        "seed": seed,
        "db": {k: int(db[k]) for k in ("users", "posts", "comments", "page_size")},
        "rag": {
            "enabled": rag,
            "mode": rag_cfg.get("mode", "bm25"),
            "k": int(rag_cfg.get("k", 5)),
            "pipeline": pipeline,
        },
        "job_workers": int(cfg.get("job", {}).get("workers", 2)),
        "faults": [dict(f) for f in cfg.get("faults", [])],
    }


def _get_json(addr: ServiceAddress, path: str, timeout_s: float) -> tuple[int, Any]:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(addr.url + path, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def endpoint_requests(
    name: str, addr: ServiceAddress, cfg: Mapping[str, Any], seed: int
) -> list[HttpRequest]:
    """The request kinds sent to endpoint ``name``, each with what its answer must contain.

    ``db_page``: every page, each expecting the digest computed here from the database
    suite's generator (independently of the server). ``rag``: the pipeline's own question
    subset (fetched once from the service), each expecting hits. ``rag`` on a service
    whose pipeline could not be built still sends one request kind, so every request
    fails as 503 and is counted.
    """
    from urllib.parse import quote

    if name == "health":
        return [HttpRequest("GET", "/health", expect=b"ok", name=name)]
    if name == "status":
        return [HttpRequest("GET", "/status", expect=b'"status":"ok"', name=name)]
    if name == "info":
        return [HttpRequest("GET", "/api/v1/info", expect=b'"service":"forgebench"', name=name)]
    if name == "db_page":
        from forgebench.database.dataset import Sizes, generate
        from forgebench.service.app import page_digest

        db = cfg["db"]
        data = generate(Sizes(int(db["users"]), int(db["posts"]), int(db["comments"])), seed)
        size = int(db["page_size"])
        n_pages = -(-data.sizes.users // size)
        return [
            HttpRequest(
                "GET",
                f"/api/v1/db/page?page={p}",
                expect=f'"digest":"{page_digest(data.expected_page(p, size))}"'.encode(),
                name=name,
            )
            for p in range(n_pages)
        ]
    if name == "rag":
        code, doc = _get_json(addr, "/api/v1/rag/queries", float(cfg["timeout_s"]))
        queries = list(doc.get("queries", []))[: int(cfg["rag"]["max_request_queries"])]
        if code != 200 or not queries:
            log.warning("rag endpoint unavailable (%s %s): its requests will fail", code, doc)
            queries = ["unavailable"]
        return [
            HttpRequest("GET", f"/api/v1/rag?q={quote(q)}", expect=b'"hits":[[', name=name)
            for q in queries
        ]
    raise ValueError(f"no request builder for endpoint {name!r}")
