"""Load scenarios against the real service: load, stress, spike, endurance (MLPerf vocabulary).

Why: a service's latency at one comfortable load says little; the questions are how it
behaves with 1, 10, 100 users and at a target arrival rate (load), up to which rate it
meets its SLA (stress), how long it takes to recover from a sudden 10x burst (spike),
and whether its memory grows under a steady load (endurance). The definitions, and
how each becomes rows, are in ``forgebench.service.scenarios``; the generator and its
no-coordinated-omission open loop in ``forgebench.service.loadgen``.

One service process serves every scenario (in the order of ``SCENARIOS``), so the
endurance soak sees a server that has already been through the others.

With ``target_url`` set, nothing is started: the scenarios load that URL's
``target_paths`` (``forgebench.service.target``), a request is ok when it answers 2xx in
time, and the rows' params say ``"target": "external"``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.record import Recorder
from forgebench.service import scenarios
from forgebench.service.grades import SLA_MEAN_LATENCY_S
from forgebench.service.loadgen import HttpRequest, Limits, closed_loop, run_async
from forgebench.service.server import ServiceAddress, service_process
from forgebench.service.target import announce, external_target

BENCHMARK_VERSION = 1
SUITE = "service"
NAME = "load_scenarios"
KEY = "suites.service.benchmarks.load_scenarios"
SCENARIOS = ("load", "stress", "spike", "endurance")
LOADABLE = ("health", "status", "info", "db_page", "rag")
SETTLE_MAX_S = 30.0
#: Settling gives up after this many refused or reset attempts in a row (a service down).
SETTLE_MAX_FAILURES = 20

log = logging.getLogger(__name__)


def check_config(cfg: Mapping[str, Any]) -> None:
    """Config mistakes surface before a server starts (or a foreign one is loaded)."""
    external_target(cfg, KEY)
    chosen = list(cfg["scenarios"])
    if not chosen or any(s not in SCENARIOS for s in chosen):
        raise ForgebenchError(
            f"{KEY}.scenarios: {chosen} must be a non-empty subset of {list(SCENARIOS)}"
        )
    if cfg["endpoint"] not in LOADABLE:
        raise ForgebenchError(f"{KEY}.endpoint: {cfg['endpoint']!r} is not one of {LOADABLE}")
    stress = cfg["stress"]
    if float(stress["factor"]) <= 1 or float(stress["max_rate"]) < float(stress["start_rate"]):
        raise ForgebenchError(
            f"{KEY}.stress: needs factor > 1 and max_rate >= start_rate, got {dict(stress)}"
        )


def settle(addr: ServiceAddress, requests: Sequence[HttpRequest], cfg: Mapping[str, Any]) -> float:
    """Wait until the service answers one request within the SLA mean again.

    Work queued by an earlier scenario (requests whose client gave up still run in the
    server's threads) would otherwise be charged to the next one. Single requests, one at a
    time, until one succeeds under ``SLA_MEAN_LATENCY_S`` or ``SETTLE_MAX_S`` passes, or
    ``SETTLE_MAX_FAILURES`` in a row find nothing to connect to (a service that is down
    does not settle; its next scenario's rows record that); not recorded, only logged.
    """
    t0 = time.perf_counter()
    limits = Limits(0.0, 1, float(cfg["timeout_s"]) + 1.0, float(cfg["timeout_s"]))
    failures = 0
    while time.perf_counter() - t0 < SETTLE_MAX_S and failures < SETTLE_MAX_FAILURES:
        res = run_async(closed_loop(addr.host, addr.port, requests[:1], 1, limits,
                                    **addr.client_options()))  # fmt: skip
        if res.n_ok and res.latencies_s()[0] < SLA_MEAN_LATENCY_S:
            break
        status = res.status[0] if res.n else "ok"
        unreachable = status.startswith("error:") and not status.startswith("error:HTTP")
        failures = failures + 1 if unreachable else 0
        if unreachable:
            time.sleep(0.05)
    waited = time.perf_counter() - t0
    if failures >= SETTLE_MAX_FAILURES:
        log.warning("service unreachable after %.2f s of settling; going on", waited)
    else:
        log.info("service settled in %.2f s", waited)
    return waited


def measure(cfg: Mapping[str, Any], *, seed: int, addr: ServiceAddress) -> pd.DataFrame:
    """Run the configured scenarios against a running service (``target_url``'s paths
    when the section names one, else the built-in ``endpoint``)."""
    target = external_target(cfg, KEY)
    extra: dict[str, Any] = {}
    if target is None:
        endpoint = str(cfg["endpoint"])
        requests = scenarios.endpoint_requests(endpoint, addr, cfg, seed)
    else:
        endpoint = "external"
        requests = target.requests()
        extra = {**target.params(), "paths": list(target.paths)}
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    steps = {
        "load": scenarios.run_load,
        "stress": scenarios.run_stress,
        "spike": scenarios.run_spike,
        "endurance": scenarios.run_endurance,
    }
    chosen = [s for s in SCENARIOS if s in cfg["scenarios"]]
    for i, name in enumerate(chosen, 1):
        if i > 1:
            settle(addr, requests, cfg)
        log.info("[%d/%d] scenario %s on %s", i, len(chosen), name, endpoint)
        steps[name](rec, addr, requests, cfg, seed=seed, endpoint=endpoint, extra=extra)
    return rec.frame()


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Start the service, run the scenarios, always stop it; or load ``target_url``."""
    check_config(cfg)
    target = external_target(cfg, KEY)
    if target is not None:
        addr = target.address()
        announce(target, addr, float(cfg["timeout_s"]), KEY)
        return measure(cfg, seed=seed, addr=addr)
    settings = scenarios.server_settings(cfg, seed, rag=cfg["endpoint"] == "rag")
    with service_process(
        settings, startup_timeout_s=float(cfg["startup_timeout_s"]), key=KEY
    ) as addr:
        log.info("service listening on %s (pid %d)", addr.url, addr.pid)
        return measure(cfg, seed=seed, addr=addr)
