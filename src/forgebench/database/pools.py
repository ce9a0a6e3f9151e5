"""Connection pools behind one interface: psycopg_pool for PostgreSQL, a small one for SQLite.

Why a pool of our own for SQLite: the standard library has none, and the comparison needs
the same shape on both backends: a fixed number of connections opened before timing,
lent to one thread at a time, waited for when all are out.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from forgebench.database.backends import Target
from forgebench.errors import ForgebenchError
from forgebench.record import status_for


class Pool(Protocol):
    """What the pooling benchmark uses of a pool."""

    def connection(self) -> contextlib.AbstractContextManager[Any]: ...

    def close(self) -> None: ...


class SimplePool:
    """``size`` connections opened up front and lent from a LIFO queue (thread-safe).

    ``connection()`` waits up to ``timeout_s`` for a free one and raises TimeoutError after
    that. A connection is returned to the pool whatever happened while it was lent, since
    a failed SQLite statement leaves its connection usable.
    """

    def __init__(self, connect: Callable[[], Any], size: int, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        try:
            for _ in range(size):
                conn = connect()
                self._all.append(conn)
                self._idle.put(conn)
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        try:
            conn = self._idle.get(timeout=self.timeout_s)
        except queue.Empty:
            raise TimeoutError(f"no pooled connection free within {self.timeout_s:g} s") from None
        try:
            yield conn
        finally:
            self._idle.put(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


class PsycopgPool:
    """psycopg_pool.ConnectionPool of fixed size, filled before it is used."""

    def __init__(self, target: Target, size: int, timeout_s: float, key: str) -> None:
        from psycopg_pool import ConnectionPool, PoolTimeout

        self._pool = ConnectionPool(
            target.conninfo,
            kwargs=target.connect_kwargs,
            min_size=size,
            max_size=size,
            timeout=timeout_s,
            open=False,
            name="forgebench",
        )
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except PoolTimeout as exc:
            self._pool.close()
            raise ForgebenchError(
                f"{key}: the connection pool could not open {size} connections within "
                f"{timeout_s:g} s ({exc}); check the server's max_connections"
            ) from None

    def connection(self) -> contextlib.AbstractContextManager[Any]:
        return self._pool.connection()

    def close(self) -> None:
        self._pool.close()


def open_pool(target: Target, size: int, timeout_s: float, key: str) -> Pool:
    """The pool for ``target``'s backend, its ``size`` connections open."""
    if target.backend == "postgres":
        return PsycopgPool(target, size, timeout_s, key)
    return SimplePool(target.connect, size, timeout_s)


_TIMEOUTS = ("PoolTimeout", "QueryCanceled", "ConnectionTimeout")


def query_status(exc: BaseException) -> str:
    """Status of a failed query: waiting too long for a pool, connection or statement is a
    ``timeout``; anything else ``error:<Class>``."""
    if type(exc).__name__ in _TIMEOUTS:
        return "timeout"
    return status_for(exc)
