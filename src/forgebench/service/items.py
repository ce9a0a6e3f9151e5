"""The service's write endpoint: ``POST /api/v1/items?key=<k>`` stores the body under ``k``.

Why: availability and recovery say whether the service answers after a crash; data
integrity says whether what it *acknowledged* before the crash is still there. The store is
one SQLite file shared by every worker process, in WAL mode with ``synchronous`` as set
(FULL by default: the WAL is fsynced at every commit, so a committed write survives a
process kill and a power loss). The honest endpoint answers 201 only after its
transaction committed.

``ack_before_commit`` (tests and planted-defect runs only) is the classic lost-write
defect: the write is queued in memory, answered 201 at once and committed by a background
thread every ``commit_delay_s``. A worker killed between the answer and that commit loses
acknowledged writes, which the fault benchmark's integrity check (``service.faults``) must
report as ``mismatch`` rows.

With ``dsn`` set the store is a PostgreSQL table instead (``table``, made if missing),
each commit under the session's ``synchronous_commit`` (``on`` by default: the answer waits
for the WAL flush). A request whose connection the server dropped (a database restart)
retries once on a fresh connection (the upsert is idempotent); if that fails too it is
answered 503, so the service recovers by itself once the database is back.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
SYNCHRONOUS_COMMIT = ("on", "off", "local", "remote_write", "remote_apply")
MAX_VALUE_BYTES = 65536
UPSERT = (
    "INSERT INTO {} (key, value) VALUES (%s, %s) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)


def connect(path: str | Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection to the items file in WAL mode with ``synchronous`` set; the table made."""
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    return conn


def read_items(path: str | Path) -> dict[str, str]:
    """Every stored item, read from the file as a fresh reader (after the server stopped)."""
    conn = sqlite3.connect(path, timeout=30.0)
    try:
        return dict(conn.execute("SELECT key, value FROM items").fetchall())
    finally:
        conn.close()


def connect_postgres(dsn: str, table: str, synchronous_commit: str = "on") -> Any:
    """An autocommit psycopg connection with ``synchronous_commit`` set; the table made."""
    import psycopg
    from psycopg import sql

    if synchronous_commit not in SYNCHRONOUS_COMMIT:
        raise ValueError(f"synchronous_commit must be one of {SYNCHRONOUS_COMMIT}")
    conn = psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=2,
        options=f"-c synchronous_commit={synchronous_commit}",
    )
    conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, value TEXT NOT NULL)").format(
            sql.Identifier(table)
        )
    )
    return conn


def read_postgres_items(dsn: str, table: str) -> dict[str, str]:
    """Every stored item of ``table``, read on a fresh connection (after the server stopped)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, connect_timeout=10) as conn:
        rows = conn.execute(sql.SQL("SELECT key, value FROM {}").format(sql.Identifier(table)))
        return dict(rows.fetchall())


def drop_postgres_table(dsn: str, table: str) -> None:
    """Remove a benchmark's items table (its rows were read first)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


class _Store:
    """One connection per request thread; the deferred queue for ``ack_before_commit``."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.path = str(cfg.get("path") or "")
        self.dsn = str(cfg.get("dsn") or "")
        self.table = str(cfg.get("table") or "items")
        self.synchronous_commit = str(cfg.get("synchronous_commit", "on"))
        self.synchronous = str(cfg.get("synchronous", "FULL")).upper()
        self.ack_before_commit = bool(cfg.get("ack_before_commit", False))
        self.commit_delay_s = float(cfg.get("commit_delay_s", 0.5))
        self._local = threading.local()
        self._connect().close()  # the table exists before any request
        self._queue: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        if self.ack_before_commit:
            threading.Thread(target=self._flush_forever, daemon=True).start()

    def _connect(self) -> Any:
        if self.dsn:
            return connect_postgres(self.dsn, self.table, self.synchronous_commit)
        return connect(self.path, self.synchronous)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _drop_conn(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with suppress(Exception):
                conn.close()

    def _write(self, rows: list[tuple[str, str]]) -> None:
        """One transaction for ``rows`` on this thread's connection."""
        conn = self._conn()
        if not self.dsn:
            with conn:
                conn.execute("BEGIN")
                conn.executemany("INSERT OR REPLACE INTO items (key, value) VALUES (?, ?)", rows)
            return
        from psycopg import sql

        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql.SQL(UPSERT).format(sql.Identifier(self.table)), rows)

    def put(self, key: str, value: str) -> bool:
        """Commit one item; False when the database could not be reached (PostgreSQL: a
        dropped connection is retried once on a fresh one)."""
        if not self.dsn:
            self._conn().execute(
                "INSERT OR REPLACE INTO items (key, value) VALUES (?, ?)", (key, value)
            )
            return True
        import psycopg

        for _ in range(2):
            try:
                self._write([(key, value)])
                return True
            except psycopg.OperationalError:
                self._drop_conn()
        return False

    def defer(self, key: str, value: str) -> None:
        with self._lock:
            self._queue.append((key, value))

    def _flush_forever(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.commit_delay_s):
            with self._lock:
                batch, self._queue = self._queue, []
            if batch:
                try:
                    self._write(batch)  # one transaction per batch
                except Exception:  # the planted defect loses the batch; it keeps running
                    self._drop_conn()


def items_routes(cfg: Mapping[str, Any] | None) -> list[Route]:
    """The write endpoint's route when the settings name an items file or DSN, else none."""
    if not cfg or not (cfg.get("path") or cfg.get("dsn")):
        return []
    store = _Store(cfg)

    async def put_item(request: Request) -> Response:
        key = request.query_params.get("key", "")
        body = await request.body()
        if not key or len(body) > MAX_VALUE_BYTES:
            return JSONResponse({"error": "need a key and a body under 64 KiB"}, status_code=400)
        value = body.decode("utf-8", errors="replace")
        if store.ack_before_commit:
            store.defer(key, value)  # the planted defect: answered before any commit
        elif not await run_in_threadpool(store.put, key, value):
            return JSONResponse({"error": "the database is unavailable"}, status_code=503)
        return JSONResponse({"key": key, "stored": True}, status_code=201)

    return [Route("/api/v1/items", put_item, methods=["POST"])]
