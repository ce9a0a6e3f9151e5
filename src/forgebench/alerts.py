"""Threshold alerts while a job runs, on its live figures.

Why: a job that leaks memory or a load run whose requests start failing should be noticed
while it runs, not when its table is read an hour later. The resource sampler already
rewrites a live JSON file every second (``forgebench.sampler``, ``live_path``); an
:class:`AlertWatcher` thread polls that file and the load runs in flight in this process
(``forgebench.service.loadgen.RunResult`` registers itself with :func:`track_load_run`)
and compares each figure with the configured thresholds (``alerts:`` in the config).

A threshold is crossed when its figure is above ``above`` on every poll for ``for_s``
seconds (0: the first poll above it). An alert then fires once, and again only after the
figure went back to or below the threshold:

* a WARNING line through ``logging`` (the job's log) and, when the job's stderr was
  redirected to its log (``scripts/run_benchmark.py``), the same line on the original
  stderr, the console Snakemake runs in;
* a row in the job's record (case ``job``, metric ``threshold_alert``, status
  ``error:ThresholdAlert``, the figure, threshold and time in its params): an alert is a
  failure of the job's health, counted like any other failed row;
* with ``webhook_url`` set, a JSON POST of the alert to that URL from a short-lived thread
  (its delivery, or why it failed, goes into the row's params).

Figures: every numeric key of the sampler's live file (``cpu_percent`` of the process tree
in % of one core, ``rss_bytes``, ``peak_rss_bytes``, ``num_threads``, ...) and
``error_rate``, the failed share of the requests the tracked load runs completed since
the last judgement, judged once at least ``min_requests`` have completed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Protocol

from forgebench.errors import ForgebenchError

log = logging.getLogger(__name__)

ALERT_METRIC = "threshold_alert"
ALERT_STATUS = "error:ThresholdAlert"
ERROR_RATE = "error_rate"


class _LoadRun(Protocol):
    status: list[str]


# serial -> weak reference (a run is an unhashable dataclass); a collected run drops out.
_RUNS: dict[int, weakref.ref[Any]] = {}
_RUNS_LOCK = threading.Lock()
_SERIALS = itertools.count()


def track_load_run(run: _LoadRun) -> None:
    """Let watchers in this process read ``run.status`` (appended as requests complete)."""
    key = next(_SERIALS)

    def forget(_: object) -> None:
        with _RUNS_LOCK:
            _RUNS.pop(key, None)

    with _RUNS_LOCK:
        _RUNS[key] = weakref.ref(run, forget)


def _tracked_runs() -> list[tuple[int, Any]]:
    with _RUNS_LOCK:
        refs = list(_RUNS.items())
    return [(key, run) for key, run in ((k, ref()) for k, ref in refs) if run is not None]


@dataclass(frozen=True)
class Threshold:
    """A figure (``metric``) that must stay at or below ``above``, judged over ``for_s``."""

    metric: str
    above: float
    for_s: float = 0.0

    @classmethod
    def from_config(cls, item: Mapping[str, Any]) -> Threshold:
        return cls(str(item["metric"]), float(item["above"]), float(item.get("for_s", 0.0)))


@dataclass
class Alert:
    """One crossing: what, how high, when (seconds since the watcher started), delivery."""

    job: str
    metric: str
    value: float
    threshold: float
    for_s: float
    t_s: float
    unix_time: float
    webhook: str = "not configured"

    def line(self) -> str:
        return (
            f"ALERT {self.job}: {self.metric} = {self.value:.6g} above {self.threshold:.6g}"
            + (f" for {self.for_s:g} s" if self.for_s else "")
            + f" at t = {self.t_s:.1f} s"
        )


@dataclass
class _ErrorWindow:
    """Completed requests of the tracked load runs not yet judged."""

    seen: dict[int, int] = field(default_factory=dict)  # run serial -> statuses counted
    n: int = 0
    failed: int = 0

    def update(self, min_requests: int) -> float | None:
        for key, run in _tracked_runs():
            statuses = run.status
            end = len(statuses)
            start = self.seen.get(key, 0)
            if end > start:
                new = statuses[start:end]
                self.n += len(new)
                self.failed += sum(1 for s in new if s != "ok")
                self.seen[key] = end
        if self.n < min_requests:
            return None
        rate = self.failed / self.n
        self.n = self.failed = 0
        return rate


class AlertWatcher:
    """Polls the live figures of a running job and fires alerts (see the module docstring).

    Use as a context manager around the job; ``alerts`` lists what fired. An empty
    threshold list starts no thread.
    """

    def __init__(
        self,
        thresholds: Sequence[Threshold],
        *,
        job: str,
        live_path: str | None = None,
        webhook_url: str | None = None,
        poll_s: float = 0.5,
        webhook_timeout_s: float = 2.0,
        min_requests: int = 20,
    ) -> None:
        if not poll_s > 0:
            raise ForgebenchError(f"alerts.poll_s: must be > 0, got {poll_s}")
        self.thresholds = list(thresholds)
        self.job = job
        self.live_path = live_path
        self.webhook_url = webhook_url or None
        self.poll_s = float(poll_s)
        self.webhook_timeout_s = float(webhook_timeout_s)
        self.min_requests = int(min_requests)
        self.alerts: list[Alert] = []
        self._over_since: dict[Threshold, float] = {}
        self._fired: set[Threshold] = set()
        self._errors = _ErrorWindow()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._posts: list[threading.Thread] = []
        self._t0 = time.monotonic()

    def __enter__(self) -> AlertWatcher:
        self._t0 = time.monotonic()
        # requests completed before this job are not its figures
        self._errors.seen = {key: len(r.status) for key, r in _tracked_runs()}
        if self.thresholds:
            self._thread = threading.Thread(target=self._run, name="forgebench-alerts", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + self.webhook_timeout_s + 1.0
        for post in self._posts:
            post.join(max(0.0, deadline - time.monotonic()))

    def figures(self) -> dict[str, float]:
        """The latest live figures: the sampler's live file and the load runs' error rate."""
        out: dict[str, float] = {}
        if self.live_path is not None:
            try:
                with open(self.live_path, encoding="utf-8") as fh:
                    doc = json.load(fh)
            except (OSError, ValueError):
                doc = {}  # not written yet, or already removed
            for key, value in doc.items():
                if isinstance(value, int | float) and key not in ("pid", "updated_unix"):
                    out[key] = float(value)
        rate = self._errors.update(self.min_requests)
        if rate is not None:
            out[ERROR_RATE] = rate
        return out

    def check(self) -> list[Alert]:
        """Judge every threshold against the current figures; return the alerts fired."""
        figures = self.figures()
        now = time.monotonic()
        fired = []
        for th in self.thresholds:
            value = figures.get(th.metric)
            if value is None or not math.isfinite(value):
                continue  # no figure this poll: neither crossed nor cleared
            if value <= th.above:
                self._over_since.pop(th, None)
                self._fired.discard(th)
                continue
            since = self._over_since.setdefault(th, now)
            if th in self._fired or now - since < th.for_s:
                continue
            self._fired.add(th)
            alert = Alert(self.job, th.metric, value, th.above, th.for_s, now - self._t0,
                          time.time())  # fmt: skip
            self._fire(alert)
            fired.append(alert)
        return fired

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception as exc:  # an alerting bug must not kill the benchmark
                log.error("alert check failed: %r", exc)

    def _fire(self, alert: Alert) -> None:
        self.alerts.append(alert)
        line = alert.line()
        log.warning(line)
        if sys.__stderr__ is not None and sys.stderr is not sys.__stderr__:
            with contextlib.suppress(OSError):
                print(line, file=sys.__stderr__, flush=True)  # the console, beside the log
        if self.webhook_url is not None:
            alert.webhook = "pending"
            post = threading.Thread(target=self._post, args=(alert,), daemon=True)
            self._posts.append(post)
            post.start()

    def _post(self, alert: Alert) -> None:
        assert self.webhook_url is not None
        doc = {k: v for k, v in asdict(alert).items() if k != "webhook"}  # being decided
        body = json.dumps({"alert": doc, "text": alert.line()}).encode()
        request = urllib.request.Request(
            self.webhook_url, data=body, method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.webhook_timeout_s) as resp:
                alert.webhook = f"delivered: HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            alert.webhook = f"refused: HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            alert.webhook = f"failed: {type(exc).__name__}: {exc}"
        if not alert.webhook.startswith("delivered"):
            log.warning("alert webhook %s: %s", self.webhook_url, alert.webhook)

    def add_rows(self, rec: Any, case: str) -> None:
        """One failed row per alert in ``rec`` (a ``forgebench.record.Recorder``)."""
        for i, alert in enumerate(self.alerts):
            params = {k: v for k, v in asdict(alert).items() if k != "job"}
            rec.add(case, params, ALERT_METRIC, "count", False, math.nan, sample=i,
                    status=ALERT_STATUS)  # fmt: skip


def watcher_from_config(
    cfg: Mapping[str, Any] | None, *, job: str, live_path: str | None
) -> AlertWatcher:
    """An :class:`AlertWatcher` from the config's ``alerts`` section (absent: no thresholds)."""
    cfg = dict(cfg or {})
    return AlertWatcher(
        [Threshold.from_config(t) for t in cfg.get("thresholds", [])],
        job=job,
        live_path=live_path,
        webhook_url=cfg.get("webhook_url"),
        poll_s=float(cfg.get("poll_s", 0.5)),
        webhook_timeout_s=float(cfg.get("webhook_timeout_s", 2.0)),
        min_requests=int(cfg.get("min_requests", 20)),
    )
