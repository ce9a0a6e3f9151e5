"""Config keys both database benchmarks share: backends, the PostgreSQL DSN, sizes, timeout.

Checked before any data is generated or server contacted, so a mistake costs nothing and
the message names the key to fix (``suites.database.benchmarks.<name>.<key>``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from forgebench.database.backends import BACKENDS
from forgebench.database.dataset import Sizes
from forgebench.errors import ForgebenchError
from forgebench.record import utcnow

SUITE = "database"


def case_name(backend: str, variant: str) -> str:
    """A case of the database suite: ``sqlite_n_plus_one``, ``postgres_pooled``, ..."""
    return f"{backend}_{variant}"


def config_key(benchmark: str, key: str) -> str:
    """The dotted path of ``key`` in the workflow config, for messages."""
    return f"suites.{SUITE}.benchmarks.{benchmark}.{key}"


@dataclass(frozen=True)
class Common:
    """The shared keys, checked."""

    backends: tuple[str, ...]
    postgres_dsn: str
    sizes: Sizes
    timeout_s: float


def common(cfg: Mapping[str, Any], benchmark: str) -> Common:
    """Read and check the shared keys of ``benchmark``'s config section."""
    backends = tuple(cfg["backends"])
    unknown = [b for b in backends if b not in BACKENDS]
    if not backends or unknown or len(set(backends)) != len(backends):
        raise ForgebenchError(
            f"{config_key(benchmark, 'backends')}: {list(backends)} must be a non-empty list of "
            f"distinct backends from {list(BACKENDS)}"
        )
    dsn = str(cfg.get("postgres_dsn") or "").strip()
    if "postgres" in backends and not dsn:
        raise ForgebenchError(
            f"{config_key(benchmark, 'postgres_dsn')} is empty but backends lists postgres; "
            "set it to a libpq DSN such as 'host=127.0.0.1 port=5432 dbname=bench user=bench "
            "password=...' or remove postgres from backends"
        )
    raw = cfg["sizes"]
    sizes = Sizes(int(raw["users"]), int(raw["posts"]), int(raw["comments"]))
    if sizes.users < 1 or sizes.posts < 0 or sizes.comments < 0:
        raise ForgebenchError(
            f"{config_key(benchmark, 'sizes')}: {sizes} needs users >= 1, posts >= 0, comments >= 0"
        )
    if sizes.comments and not sizes.posts:
        raise ForgebenchError(
            f"{config_key(benchmark, 'sizes')}: comments need posts to belong to (posts >= 1)"
        )
    timeout_s = float(cfg["timeout_s"])
    if not timeout_s > 0:
        raise ForgebenchError(f"{config_key(benchmark, 'timeout_s')} must be > 0, got {timeout_s}")
    return Common(backends, dsn, sizes, timeout_s)


def positive(cfg: Mapping[str, Any], benchmark: str, key: str, minimum: int = 1) -> int:
    """``cfg[key]`` as an integer of at least ``minimum``, or ForgebenchError naming it."""
    value = int(cfg[key])
    if value < minimum:
        raise ForgebenchError(f"{config_key(benchmark, key)} must be >= {minimum}, got {value}")
    return value


class WallClock:
    """Maps ``perf_counter_ns`` readings to UTC wall time for ``started_at``."""

    def __init__(self) -> None:
        self.wall: datetime = utcnow()
        self.perf = time.perf_counter_ns()

    def at(self, t_ns: int) -> datetime:
        return self.wall + timedelta(microseconds=(t_ns - self.perf) / 1000)
