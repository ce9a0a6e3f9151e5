"""Where the data set lives for one run: a fresh SQLite file, or a fresh PostgreSQL schema.

Why a new file or schema each run: runs never see each other's tables, and a failed run
leaves nothing behind (the SQLite file's folder and the PostgreSQL schema are removed
whatever happens). The PostgreSQL schema's name is unique per run (process id and a random
suffix; the suffix only avoids collisions and plays no part in any measurement), and every
connection the benchmarks open, pooled or not, reaches it through ``search_path``.

A ``Target`` is what the benchmarks need from a backend: a way to open a new connection
(autocommit, so each query stands alone) and the placeholder of its SQL dialect.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgebench.database.dataset import Dataset
from forgebench.errors import ForgebenchError

BACKENDS = ("sqlite", "postgres")

log = logging.getLogger(__name__)

TABLES = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE posts (id INTEGER PRIMARY KEY, "
    "user_id INTEGER NOT NULL REFERENCES users (id), title TEXT NOT NULL)",
    "CREATE TABLE comments (id INTEGER PRIMARY KEY, "
    "post_id INTEGER NOT NULL REFERENCES posts (id), body TEXT NOT NULL)",
)
INDEXES = (
    "CREATE INDEX posts_user_id ON posts (user_id)",
    "CREATE INDEX comments_post_id ON comments (post_id)",
)


@dataclass
class Target:
    """One loaded backend: ``connect()`` opens a new autocommit connection to the data."""

    backend: str
    placeholder: str  # "?" for sqlite3, "%s" for psycopg
    connect: Callable[[], Any]
    # Largest number of bound parameters one statement may carry.
    max_params: int
    # PostgreSQL only: what a psycopg_pool.ConnectionPool needs to open the same connections.
    conninfo: str = ""
    connect_kwargs: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- SQLite


def _sqlite_connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    # isolation_level=None: autocommit, as psycopg's autocommit=True; check_same_thread off
    # so a pool may hand one connection to different threads (one at a time).
    return sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)


def load_sqlite(path: Path, data: Dataset) -> None:
    """Create the three tables in a new SQLite file, insert ``data``, index and ANALYZE."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for ddl in TABLES:
            conn.execute(ddl)
        conn.executemany("INSERT INTO users VALUES (?, ?)", data.user_rows())
        conn.executemany("INSERT INTO posts VALUES (?, ?, ?)", data.post_rows())
        conn.executemany("INSERT INTO comments VALUES (?, ?, ?)", data.comment_rows())
        for ddl in INDEXES:
            conn.execute(ddl)
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


@contextlib.contextmanager
def sqlite_target(data: Dataset, timeout_s: float) -> Iterator[Target]:
    """A fresh SQLite file holding ``data`` in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="forgebench-db-") as tmp:
        path = Path(tmp) / "bench.sqlite3"
        load_sqlite(path, data)
        probe = _sqlite_connect(path, timeout_s)
        try:
            max_params = probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        finally:
            probe.close()
        log.info("sqlite: loaded %s into %s", data.sizes, path)
        yield Target(
            backend="sqlite",
            placeholder="?",
            connect=lambda: _sqlite_connect(path, timeout_s),
            max_params=max_params,
        )


# ------------------------------------------------------------------------- PostgreSQL


def redacted_dsn(dsn: str) -> str:
    """The DSN without its password, for messages (key=value form)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:  # an unparsable DSN: say so without echoing it (it may hold a secret)
        return "<unparsable DSN>"
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in sorted(parts.items())) or "<empty DSN>"


def _one_line(exc: BaseException) -> str:
    return re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__


def connect_postgres(dsn: str, key: str, **kwargs: Any) -> Any:
    """A psycopg connection, or ForgebenchError naming the config ``key`` and the reason.

    Covers a DSN that does not parse, a server that does not answer and a rejected login
    (wrong password, unknown role or database): the message is one line, without the
    password.
    """
    import psycopg

    try:
        return psycopg.connect(dsn, **kwargs)
    except (psycopg.Error, ValueError) as exc:
        raise ForgebenchError(
            f"{key}: could not connect to PostgreSQL ({redacted_dsn(dsn)}): {_one_line(exc)}; "
            "give a reachable server and valid credentials, or leave postgres out of backends"
        ) from None


def check_postgres(dsn: str, key: str, timeout_s: float) -> None:
    """Connect once and close: a bad DSN fails before any data is generated or measured."""
    connect_postgres(dsn, key, connect_timeout=max(1, round(timeout_s))).close()


def _connect_kwargs(schema: str, timeout_s: float) -> dict[str, Any]:
    return {
        "autocommit": True,
        "connect_timeout": max(1, round(timeout_s)),
        "options": f"-c search_path={schema} -c statement_timeout={round(timeout_s * 1000)}",
    }


def load_postgres(conn: Any, schema: str, data: Dataset) -> None:
    """Create ``schema`` with the three tables, COPY ``data`` in, index and ANALYZE."""
    from psycopg import sql

    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        for ddl in TABLES:
            conn.execute(ddl)
        with conn.cursor() as cur:
            for table, rows in (
                ("users", data.user_rows()),
                ("posts", data.post_rows()),
                ("comments", data.comment_rows()),
            ):
                with cur.copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))) as cp:
                    for row in rows:
                        cp.write_row(row)
        for ddl in INDEXES:
            conn.execute(ddl)
    conn.execute(sql.SQL("ANALYZE {}.users").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("ANALYZE {}.posts").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("ANALYZE {}.comments").format(sql.Identifier(schema)))


def drop_schema(conn: Any, schema: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextlib.contextmanager
def postgres_target(dsn: str, data: Dataset, key: str, timeout_s: float) -> Iterator[Target]:
    """A fresh schema holding ``data`` on the server at ``dsn``; dropped afterwards.

    Connection problems raise ForgebenchError naming ``key`` (the config key of the DSN).
    """
    import os

    schema = f"forgebench_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    kwargs = _connect_kwargs(schema, timeout_s)
    admin = connect_postgres(dsn, key, autocommit=True, connect_timeout=kwargs["connect_timeout"])
    try:
        try:
            load_postgres(admin, schema, data)
        except Exception as exc:
            raise ForgebenchError(
                f"{key}: connected to PostgreSQL ({redacted_dsn(dsn)}) but could not create "
                f"and load schema {schema}: {_one_line(exc)}; the role needs CREATE on the "
                "database"
            ) from exc
        log.info("postgres: loaded %s into schema %s", data.sizes, schema)
        # Every later connection goes through the same check, so a login that works once
        # but not with these options still names the key.
        connect_postgres(dsn, key, **kwargs).close()
        yield Target(
            backend="postgres",
            placeholder="%s",
            connect=lambda: _psycopg_connect(dsn, kwargs),
            max_params=65535,  # the protocol's limit on bind parameters per statement
            conninfo=dsn,
            connect_kwargs=kwargs,
        )
    finally:
        try:
            drop_schema(admin, schema)
        except Exception as exc:  # the run's own error matters more; say what is left over
            log.warning("postgres: could not drop schema %s: %s", schema, _one_line(exc))
        finally:
            admin.close()


def _psycopg_connect(dsn: str, kwargs: dict[str, Any]) -> Any:
    import psycopg

    return psycopg.connect(dsn, **kwargs)


@contextlib.contextmanager
def open_target(
    backend: str, data: Dataset, *, dsn: str, dsn_key: str, timeout_s: float
) -> Iterator[Target]:
    """The loaded ``backend`` for one benchmark run."""
    if backend == "sqlite":
        with sqlite_target(data, timeout_s) as target:
            yield target
    elif backend == "postgres":
        with postgres_target(dsn, data, dsn_key, timeout_s) as target:
            yield target
    else:
        raise ForgebenchError(f"unknown database backend {backend!r}; known: {list(BACKENDS)}")
