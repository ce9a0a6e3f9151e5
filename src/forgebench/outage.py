"""One rule for every benchmark that drives a server: stop when the server has gone away.

Without it a benchmark keeps issuing its planned work against a dead server, each attempt
waiting out its timeout: PostgreSQL stopped mid-run turned a 55 s pooling job into 5.5
minutes, and the default settings into hours. The rule (``OutageGuard``):

* a failing streak is the failures since the last success, across every worker of the
  benchmark and across its phases (a success anywhere ends it);
* the guard trips when the streak reaches ``max_consecutive_failures`` failures or has
  lasted ``max_failing_s`` seconds of wall clock, whichever comes first;
* once tripped it stays tripped: the benchmark stops issuing work to that server, records
  every planned operation it did not attempt as a row with status ``OUTAGE_STATUS`` (a
  failure, so nothing is dropped and no verdict is drawn from the survivors) and finishes.

A planned fault (a worker killed on purpose, a restart under test) is exempt: failures
inside ``planned_fault(up_to_s)`` do not count until the window has lasted ``up_to_s``;
past that the outage counts as any other.

The limits are configured once, under the top-level ``outage:`` config key
(config/schema.yaml), and reach each server-driving benchmark as its ``outage`` setting.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from forgebench.errors import ForgebenchError

log = logging.getLogger(__name__)

#: Status of an operation planned but not attempted because the server was gone.
OUTAGE_STATUS = "error:Outage"
#: The config key the limits live under, and which a benchmark's ``cfg`` receives.
CONFIG_KEY = "outage"


@dataclass(frozen=True)
class OutageLimits:
    """When a failing streak counts as an outage (defaults as in config/schema.yaml)."""

    max_consecutive_failures: int = 20
    max_failing_s: float = 15.0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> OutageLimits:
        """The limits in a benchmark's ``cfg`` (its ``outage`` entry), else the defaults."""
        section = dict((cfg or {}).get(CONFIG_KEY) or {})
        unknown = sorted(set(section) - set(cls.__dataclass_fields__))
        if unknown:
            raise ForgebenchError(f"config key {CONFIG_KEY!r}: unknown setting(s) {unknown}")
        limits = cls(**section)
        if limits.max_consecutive_failures < 1 or not limits.max_failing_s > 0:
            raise ForgebenchError(
                f"config key {CONFIG_KEY!r}: max_consecutive_failures must be >= 1 and "
                f"max_failing_s > 0, got {limits}"
            )
        return limits


class OutageGuard:
    """The consecutive-failure rule for one server, shared by every worker thread."""

    def __init__(
        self,
        limits: OutageLimits,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.what = what
        self._clock = clock
        self._lock = threading.Lock()
        #: Failures since the last success (0: none). A hot loop may skip ``record(True)``
        #: while it is 0: that call would change nothing.
        self.streak = 0
        self._streak_started: float | None = None
        self._exempt_until: float | None = None
        self._tripped_reason: str | None = None
        #: True once the server is taken to be gone: attempt no more work against it (a
        #: plain attribute: read before every operation, it must cost next to nothing).
        self.tripped = False

    @property
    def reason(self) -> str | None:
        """Why the guard tripped (for the log), or None."""
        return self._tripped_reason

    def record(self, ok: bool, took_s: float = 0.0) -> bool:
        """Count one attempted operation, which took ``took_s`` seconds (a failing streak
        starts when its first failed attempt began, not when it ended, so an attempt that
        waited out a long timeout counts its wait); False when no more should be attempted.

        A success with no failing streak takes no lock (it runs after every timed
        operation of a benchmark, so it must cost next to nothing)."""
        if ok:
            if self.streak:
                with self._lock:
                    self.streak, self._streak_started = 0, None
            return not self.tripped
        with self._lock:
            now = self._clock()
            if self._exempt_until is not None and now < self._exempt_until:
                return not self.tripped  # inside a planned fault: not an outage (yet)
            if self._streak_started is None:
                self._streak_started = now - max(0.0, took_s)
            self.streak += 1
            lasted = now - self._streak_started
            if not self.tripped and (
                self.streak >= self.limits.max_consecutive_failures
                or lasted >= self.limits.max_failing_s
            ):
                self._tripped_reason = (
                    f"{self.streak} consecutive failures over {lasted:.1f} s (limits: "
                    f"{self.limits.max_consecutive_failures} failures or "
                    f"{self.limits.max_failing_s:g} s; config key {CONFIG_KEY!r})"
                )
                self.tripped = True
                log.warning(
                    "%s: server taken to be gone after %s; the rest of its work is recorded "
                    "as %s rows, not attempted",
                    self.what,
                    self._tripped_reason,
                    OUTAGE_STATUS,
                )
            return not self.tripped

    @contextlib.contextmanager
    def planned_fault(self, up_to_s: float) -> Iterator[None]:
        """A window of planned failures (a fault injected on purpose): they do not count
        for up to ``up_to_s`` seconds from now; later failures count as usual."""
        with self._lock:
            self._exempt_until = self._clock() + up_to_s
            self.streak, self._streak_started = 0, None
        try:
            yield
        finally:
            with self._lock:
                self._exempt_until = None
