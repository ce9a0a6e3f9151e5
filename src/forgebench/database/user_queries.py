"""Your own read-only queries against your own PostgreSQL, instead of the synthetic schema.

Why: the N+1 benchmark measures a query pattern on data it generates; a user wants the
latency of *their* queries on *their* database. With ``query_file`` set in the
``n_plus_one`` section, that benchmark creates nothing and runs the file's statements
against ``postgres_dsn``.

The file holds one statement per block, each block opened by a ``-- name: <label>`` line;
an optional ``-- params: <JSON list or object>`` line in the block gives the statement's
parameters, written as psycopg expects them (``%s`` with a list, ``%(name)s`` with an
object; a literal ``%`` is then ``%%``)::

    -- name: active_users
    SELECT id, name FROM users WHERE active
    -- name: orders_of_user
    -- params: [42]
    SELECT * FROM orders WHERE user_id = %s

Choices worth knowing:

* **Read-only, twice.** A statement must be one ``SELECT`` (or ``WITH ... SELECT``) with no
  writing keyword outside strings and comments; anything else stops the run before any
  connection, naming the block. And every connection runs with
  ``default_transaction_read_only=on``, so the server itself refuses a write that got past
  the check (a data-modifying CTE, ``nextval``).
* **Rows.** Per query (case ``query:<label>``) and execution: ``latency`` (execute and fetch
  every row, s) and ``rows`` (the result's row count). Executions are interleaved rounds
  in a seeded order, warm-up rounds kept and flagged. The first successful execution's row
  count is the reference: a later one with a different count is ``mismatch`` (the data
  changed under the benchmark, or the query is not deterministic).
* **Failures are rows.** A failed execution is a row with its status (``timeout`` past
  ``timeout_s``, ``error:<Class>``) and the session is reopened. A database that cannot be
  reached gives one failed row per query, not a crash: the benchmark's other results and
  the report still come out.
* Params name the query, a hash of its text and the server (host, port, database; never
  the password), with ``"target": "external"``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgebench.database.settings import SUITE, WallClock, config_key, positive
from forgebench.errors import ForgebenchError
from forgebench.outage import OUTAGE_STATUS, OutageGuard, OutageLimits
from forgebench.record import Recorder, status_for

_NAME_RE = re.compile(r"^\s*--\s*name:\s*(.*?)\s*$", re.IGNORECASE)
_PARAMS_RE = re.compile(r"^\s*--\s*params:\s*(.*?)\s*$", re.IGNORECASE)
_LABEL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
#: What can write or lock inside a SELECT or WITH: a data-modifying CTE, SELECT INTO (a
#: new table) and row locks. Looked for outside strings, quoted identifiers and comments.
_WRITES = re.compile(
    r"\bFOR\s+(UPDATE|NO\s+KEY\s+UPDATE|KEY\s+SHARE|SHARE)\b|\b(INSERT|UPDATE|DELETE|MERGE|INTO)\b",
    re.IGNORECASE,
)
_TIMEOUTS = ("QueryCanceled", "ConnectionTimeout")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserQuery:
    """One block of the query file."""

    label: str
    sql: str
    params: list[Any] | dict[str, Any] | None
    line: int  # where its ``-- name:`` line is, for messages

    @property
    def digest(self) -> str:
        """A short hash of the statement and its params: a changed query is a new one."""
        text = self.sql + "\0" + json.dumps(self.params, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def strip_sql(sql: str) -> str:
    """``sql`` with comments, string literals and quoted identifiers blanked out, so
    keywords and semicolons can be looked for in the statement's own words only."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            out.append(" ")
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(" ")
        elif c in "'\"":
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote: an escaped one
                        j += 2
                        continue
                    break
                if c == "'" and sql[j] == "\\" and i > 0 and sql[i - 1] in "eE":
                    j += 2  # E'...' strings take backslash escapes
                    continue
                j += 1
            i = j + 1
            out.append(" '' " if c == "'" else ' "x" ')
        elif c == "$" and (m := re.match(r"\$([A-Za-z_]\w*)?\$", sql[i:])):
            tag = m.group(0)
            j = sql.find(tag, i + len(tag))
            i = n if j < 0 else j + len(tag)
            out.append(" '' ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def check_read_only(query: UserQuery, key: str) -> None:
    """ForgebenchError unless ``query`` is one SELECT (or WITH ... SELECT) that writes nothing."""
    words = strip_sql(query.sql).strip()
    where = f"{key}: query {query.label!r} (line {query.line})"
    if ";" in words.rstrip().rstrip(";"):
        raise ForgebenchError(
            f"{where} holds more than one statement; give each its own '-- name:' block"
        )
    first = re.match(r"[\s(]*([A-Za-z]+)", words)
    verb = first.group(1).upper() if first else ""
    if verb not in ("SELECT", "WITH"):
        raise ForgebenchError(
            f"{where} starts with {verb or words[:20]!r}: only read-only SELECT statements "
            "(or WITH ... SELECT) are run against your database, never a write"
        )
    bad = _WRITES.search(words)
    if bad:
        raise ForgebenchError(
            f"{where} contains {' '.join(bad.group(0).upper().split())!r}: only read-only "
            "SELECT statements are run against your database (no writes, SELECT INTO or row "
            "locks)"
        )


def parse_query_file(path: str | Path, key: str) -> list[UserQuery]:
    """The file's queries, checked; ForgebenchError naming ``key`` for a missing or empty
    file, a malformed block or a statement that is not a read-only SELECT."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ForgebenchError(
            f"{key}: {str(path)!r} is not a file (looked at {p.resolve()}; a relative path is "
            "taken from the directory the run starts in)"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ForgebenchError(f"{key}: cannot read {p} as UTF-8 text: {exc}") from None
    blocks: list[tuple[str, int, list[str], list[str]]] = []  # label, line, sql, params lines
    for lineno, line in enumerate(text.splitlines(), 1):
        if m := _NAME_RE.match(line):
            blocks.append((m.group(1), lineno, [], []))
        elif not blocks:
            if line.strip() and not line.strip().startswith("--"):
                raise ForgebenchError(
                    f"{key}: {p} line {lineno} holds SQL before the first '-- name: <label>' "
                    "line; open every query with one"
                )
        elif m := _PARAMS_RE.match(line):
            blocks[-1][3].append(m.group(1))
        else:
            blocks[-1][2].append(line)
    if not blocks:
        raise ForgebenchError(
            f"{key}: {p} holds no queries; write each as a block opened by a line "
            "'-- name: <label>' followed by one SELECT statement"
        )
    queries: list[UserQuery] = []
    for label, lineno, sql_lines, param_lines in blocks:
        where = f"{key}: {p} line {lineno}"
        if not _LABEL_RE.match(label):
            raise ForgebenchError(
                f"{where}: label {label!r} must be 1-100 letters, digits, '_', '.' or '-'"
            )
        if any(q.label == label for q in queries):
            raise ForgebenchError(f"{where}: label {label!r} is used twice")
        sql = "\n".join(sql_lines).strip().rstrip(";").strip()
        if not strip_sql(sql).strip():
            raise ForgebenchError(f"{where}: query {label!r} has no statement")
        if len(param_lines) > 1:
            raise ForgebenchError(f"{where}: query {label!r} has more than one '-- params:' line")
        params = None
        if param_lines:
            try:
                params = json.loads(param_lines[0])
            except ValueError as exc:
                raise ForgebenchError(
                    f"{where}: the params of {label!r} are not JSON ({exc}); give a list such "
                    'as [42, "x"] for %s placeholders or an object for %(name)s ones'
                ) from None
            if not isinstance(params, list | dict):
                raise ForgebenchError(
                    f"{where}: the params of {label!r} must be a JSON list or object, got "
                    f"{param_lines[0]!r}"
                )
        query = UserQuery(label, sql, params, lineno)
        check_read_only(query, key)
        queries.append(query)
    return queries


def read_only_kwargs(dsn: str, timeout_s: float) -> dict[str, Any]:
    """psycopg.connect keywords: autocommit, timeouts, and every transaction read-only
    (added to any ``options`` the DSN already has)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        existing = str(conninfo_to_dict(dsn).get("options") or "")
    except Exception:  # an unparsable DSN fails at connect, as a row
        existing = ""
    ours = f"-c default_transaction_read_only=on -c statement_timeout={round(timeout_s * 1000)}"
    return {
        "autocommit": True,
        "connect_timeout": max(1, round(timeout_s)),
        "options": f"{existing} {ours}".strip(),
    }


def server_label(dsn: str) -> str:
    """host, port and database of ``dsn`` for params (never the password)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable DSN>"
    return " ".join(f"{k}={parts[k]}" for k in ("host", "port", "dbname") if parts.get(k))


def row_status(exc: BaseException) -> str:
    """``timeout`` for a statement or connect timeout, else ``error:<Class>``."""
    if type(exc).__name__ in _TIMEOUTS:
        return "timeout"
    return status_for(exc)


@dataclass(frozen=True)
class Plan:
    """The checked config of a user-query run."""

    queries: list[UserQuery]
    dsn: str
    executions: int
    warmup: int
    timeout_s: float
    outage: OutageLimits = field(default_factory=OutageLimits)


def plan(cfg: Mapping[str, Any], benchmark: str) -> Plan:
    """Check ``benchmark``'s section in query-file mode, before any connection."""
    dsn = str(cfg.get("postgres_dsn") or "").strip()
    if not dsn:
        raise ForgebenchError(
            f"{config_key(benchmark, 'postgres_dsn')} is empty but query_file is set; give the "
            "DSN of the PostgreSQL database your queries read, e.g. 'host=127.0.0.1 "
            "port=5432 dbname=app user=reader password=...'"
        )
    timeout_s = float(cfg["timeout_s"])
    if not timeout_s > 0:
        raise ForgebenchError(f"{config_key(benchmark, 'timeout_s')} must be > 0, got {timeout_s}")
    return Plan(
        queries=parse_query_file(str(cfg["query_file"]), config_key(benchmark, "query_file")),
        dsn=dsn,
        executions=positive(cfg, benchmark, "executions"),
        warmup=positive(cfg, benchmark, "warmup", minimum=0),
        timeout_s=timeout_s,
        outage=OutageLimits.from_config(cfg),
    )


class _Session:
    """One read-only connection, opened on first use and reopened after any error."""

    def __init__(self, dsn: str, kwargs: Mapping[str, Any]) -> None:
        self.dsn = dsn
        self.kwargs = dict(kwargs)
        self.conn: Any = None
        self.rows = -1
        self.last_error = ""

    def open(self) -> str:
        """Connect unless connected: ``ok`` or the failure's status (``last_error`` says why)."""
        import psycopg

        if self.conn is None:
            try:
                self.conn = psycopg.connect(self.dsn, **self.kwargs)
            except Exception as exc:
                self.last_error = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
                return row_status(exc)
        return "ok"

    def run(self, query: UserQuery) -> tuple[int, int, str]:
        """(start ns, elapsed ns, status) of one execution; the row count in ``self.rows``."""
        self.rows = -1
        t0 = time.perf_counter_ns()
        status = self.open()
        if status != "ok":
            return t0, 0, status
        try:
            with self.conn.cursor() as cur:
                t0 = time.perf_counter_ns()
                cur.execute(query.sql, query.params)
                rows = cur.fetchall() if cur.description is not None else []
                elapsed = time.perf_counter_ns() - t0
            self.rows = len(rows)
            return t0, elapsed, "ok"
        except Exception as exc:
            log.debug("query %s failed: %s", query.label, exc)
            self.last_error = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
            self.close()
            return t0, 0, row_status(exc)

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # a broken connection may fail to close; dropped anyway
                log.debug("closing a failed connection: %s", exc)


def measure(p: Plan, rec: Recorder, *, seed: int, benchmark: str) -> None:
    """Interleaved rounds of every query; two rows per execution (see the module doc)."""
    server = server_label(p.dsn)
    params = {
        q.label: {
            "target": "external",
            "query": q.label,
            "query_hash": q.digest,
            "database": server,
            "read_only": True,
        }
        for q in p.queries
    }
    clock = WallClock()
    session = _Session(p.dsn, read_only_kwargs(p.dsn, p.timeout_s))
    reference: dict[str, int] = {}
    statuses: dict[str, Counter[str]] = {q.label: Counter() for q in p.queries}
    latencies: dict[str, list[float]] = {q.label: [] for q in p.queries}
    rng = np.random.default_rng(seed)
    guard = OutageGuard(p.outage, f"{benchmark} on {server}")
    rounds = p.warmup + p.executions
    t0 = time.perf_counter_ns()
    status = session.open()
    if status != "ok":
        # The server cannot be reached (or refuses the login): one failed row per query
        # says so, and the run goes on to write them rather than crash.
        log.error("%s: cannot connect to %s: %s; every query gets a failed row",
                  config_key(benchmark, "postgres_dsn"), server, session.last_error)  # fmt: skip
        for q in p.queries:
            for metric, unit in (("latency", "s"), ("rows", "count")):
                rec.add(f"query:{q.label}", params[q.label], metric, unit, False, math.nan,
                        status=status, started_at=clock.at(t0))  # fmt: skip
        return
    try:
        for rnd in range(rounds):
            warmup = rnd < p.warmup
            for idx in rng.permutation(len(p.queries)):
                q = p.queries[idx]
                if guard.tripped:  # the server is gone: planned, not attempted
                    t0, elapsed, status, count = time.perf_counter_ns(), 0, OUTAGE_STATUS, 0
                else:
                    t0, elapsed, status = session.run(q)
                    count = session.rows
                    took_s = (time.perf_counter_ns() - t0) * 1e-9
                    guard.record(status == "ok", took_s)  # mismatch is judged after
                if status == "ok":
                    ref = reference.setdefault(q.label, count)
                    if count != ref:
                        status = "mismatch"
                        log.warning("%s: %d rows in round %d, %d before", q.label, count, rnd, ref)
                ok = status == "ok"
                case = f"query:{q.label}"
                for metric, unit, value in (
                    ("latency", "s", elapsed * 1e-9),
                    ("rows", "count", float(count)),
                ):
                    rec.add(case, params[q.label], metric, unit, False,
                            value if ok else math.nan, repetition=rnd, warmup=warmup,
                            status=status, started_at=clock.at(t0))  # fmt: skip
                if not warmup:
                    statuses[q.label][status] += 1
                    if ok:
                        latencies[q.label].append(elapsed * 1e-9)
    finally:
        session.close()
    for q in p.queries:
        lat = latencies[q.label]
        failed = {s: n for s, n in statuses[q.label].items() if s != "ok"}
        log.log(logging.WARNING if failed else logging.INFO,
                "query:%s: %d ok%s; median %s; %s rows", q.label, len(lat),
                f", failed {failed}" if failed else "",
                f"{np.median(lat) * 1e3:.3f} ms" if lat else "n/a",
                reference.get(q.label, "n/a"))  # fmt: skip


def run(cfg: Mapping[str, Any], *, seed: int, benchmark: str, version: int) -> pd.DataFrame:
    """Check the query file and settings, then measure; rows of ``database/<benchmark>``."""
    p = plan(cfg, benchmark)
    log.info("%d queries from %s against %s: %d rounds (%d warm-up), read-only",
             len(p.queries), cfg["query_file"], server_label(p.dsn), p.warmup + p.executions,
             p.warmup)  # fmt: skip
    rec = Recorder(SUITE, benchmark, version)
    measure(p, rec, seed=seed, benchmark=benchmark)
    return rec.frame()
