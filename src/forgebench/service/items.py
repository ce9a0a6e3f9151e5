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
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
MAX_VALUE_BYTES = 65536


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


class _Store:
    """One connection per request thread; the deferred queue for ``ack_before_commit``."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.path = str(cfg["path"])
        self.synchronous = str(cfg.get("synchronous", "FULL")).upper()
        self.ack_before_commit = bool(cfg.get("ack_before_commit", False))
        self.commit_delay_s = float(cfg.get("commit_delay_s", 0.5))
        self._local = threading.local()
        connect(self.path, self.synchronous).close()  # the table exists before any request
        self._queue: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        if self.ack_before_commit:
            threading.Thread(target=self._flush_forever, daemon=True).start()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, self.synchronous)
        return conn

    def put(self, key: str, value: str) -> None:
        """Commit one item (autocommit: the INSERT is its own transaction)."""
        self._conn().execute(
            "INSERT OR REPLACE INTO items (key, value) VALUES (?, ?)", (key, value)
        )

    def defer(self, key: str, value: str) -> None:
        with self._lock:
            self._queue.append((key, value))

    def _flush_forever(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.commit_delay_s):
            with self._lock:
                batch, self._queue = self._queue, []
            if batch:
                conn = self._conn()
                with conn:  # one transaction per batch
                    conn.execute("BEGIN")
                    conn.executemany(
                        "INSERT OR REPLACE INTO items (key, value) VALUES (?, ?)", batch
                    )


def items_routes(cfg: Mapping[str, Any] | None) -> list[Route]:
    """The write endpoint's route when the settings name an items file, else none."""
    if not cfg or not cfg.get("path"):
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
        else:
            await run_in_threadpool(store.put, key, value)
        return JSONResponse({"key": key, "stored": True}, status_code=201)

    return [Route("/api/v1/items", put_item, methods=["POST"])]
