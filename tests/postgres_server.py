"""A throwaway PostgreSQL server under one temporary folder, for the database tests.

    with postgres_server() as server:
        psycopg.connect(server.dsn)            # role "forgebench", password auth, TCP
        psycopg.connect(server.dsn_with(password="wrong"))

It uses Debian's binaries (package ``postgresql``: /usr/lib/postgresql/<major>/bin/initdb,
pg_ctl), runs them as the ``postgres`` OS user when started by root (PostgreSQL refuses
to run as root), listens only on 127.0.0.1 on a free port with its unix socket inside the
folder, and requires a SCRAM password for TCP logins, so a wrong password fails for real.
The cluster is stopped with ``pg_ctl stop -m fast`` and the folder removed whatever
happens. ``find_binaries`` returns None where PostgreSQL is not installed, so a test can
skip (which fails under CI=true, where tools/setup.sh --test installs it).

Also a command line, to try the benchmarks by hand::

    python tests/postgres_server.py            # prints the DSN, stops on Enter
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLE = "forgebench"
DATABASE = "forgebench"
OS_USER = "postgres"
START_TIMEOUT_S = 60
_SESSION_ATTR = "_forgebench_postgres_server"


class PostgresServerError(RuntimeError):
    """The server could not be initialised, started or stopped; the message says why."""


@dataclass(frozen=True)
class Binaries:
    initdb: str
    pg_ctl: str
    psql: str


@dataclass(frozen=True)
class Server:
    """A running server: its DSN for the test role and what is needed to reach it."""

    host: str
    port: int
    password: str
    socket_dir: str
    data_dir: str = ""
    log_path: str = ""
    pg_ctl: str = ""

    @property
    def dsn(self) -> str:
        return self.dsn_with()

    def dsn_with(self, **changes: object) -> str:
        """The DSN with some keywords changed (``password="wrong"``, ``port=1``)."""
        parts: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "dbname": DATABASE,
            "user": ROLE,
            "password": self.password,
        }
        parts.update(changes)
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def restart_command(self, mode: str = "fast") -> list[str]:
        """argv that restarts this server (``pg_ctl restart -m <mode>``: ``immediate`` is a
        crash; the start reuses the first start's options, the log stays this server's)."""
        return _as_server_user(
            [self.pg_ctl, "-D", self.data_dir, "-l", self.log_path, "-m", mode, "-w", "restart"]
        )


def find_binaries() -> Binaries | None:
    """Debian's newest installed PostgreSQL binaries, or None."""

    def major(path: str) -> float:
        try:
            return float(Path(path).parts[-3])
        except (ValueError, IndexError):
            return 0.0

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major, reverse=True):
        bindir = Path(initdb).parent
        pg_ctl, psql = bindir / "pg_ctl", bindir / "psql"
        psql_path = str(psql) if psql.exists() else shutil.which("psql")
        if pg_ctl.exists() and psql_path:
            return Binaries(str(initdb), str(pg_ctl), psql_path)
    initdb, pg_ctl, psql = (shutil.which(n) for n in ("initdb", "pg_ctl", "psql"))
    if initdb and pg_ctl and psql:
        return Binaries(initdb, pg_ctl, psql)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    """``cmd`` run as the postgres OS user when we are root, as is otherwise."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", OS_USER, "--", *cmd]
    return ["su", OS_USER, "-s", "/bin/sh", "-c", " ".join(map(_quote, cmd))]


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _run(cmd: list[str], what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    proc = subprocess.run(
        _as_server_user(cmd),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        cwd="/",
    )
    if proc.returncode != 0:
        raise PostgresServerError(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )


def _chown_to_server_user(path: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        raise PostgresServerError(
            f"running as root but there is no {OS_USER!r} OS user to run PostgreSQL as "
            "(Debian's postgresql package creates it)"
        ) from None
    for p in (path, *path.rglob("*")):
        os.chown(p, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def postgres_server(binaries: Binaries | None = None) -> Iterator[Server]:
    """Start a fresh cluster; yield the running server; always stop it and remove its files."""
    binaries = binaries or find_binaries()
    if binaries is None:
        raise PostgresServerError("PostgreSQL binaries not found (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="forgebench-pg-"))
    data, sockets, log = root / "data", root / "sock", root / "server.log"
    sockets.mkdir()
    password = secrets.token_hex(16)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    os.chmod(root, 0o755)
    _chown_to_server_user(root)
    port = _free_port()
    started = False
    try:
        _run(
            [
                binaries.initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ],
            "initdb",
        )
        pwfile.unlink()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        started = True  # from here on, stop whatever happens (pg_ctl may have started it)
        _run(
            [binaries.pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "start"],
            "pg_ctl start",
        )
        # Superuser over the unix socket (trust) to create the test role and its database.
        sql = (
            f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}';"
            f"CREATE DATABASE {DATABASE} OWNER {ROLE};"
        )
        for statement in sql.rstrip(";").split(";"):
            _run(
                [
                    binaries.psql,
                    "-h",
                    str(sockets),
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qc",
                    statement,
                ],
                "creating the test role and database",
            )
        yield Server(
            "127.0.0.1", port, password, str(sockets), str(data), str(log), binaries.pg_ctl
        )
    except PostgresServerError as exc:
        if log.exists():
            raise PostgresServerError(f"{exc}\nserver log:\n{log.read_text()}") from None
        raise
    finally:
        try:
            if started:
                _stop(binaries, data)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def session_server(config: Any) -> Server:
    """One server for the whole pytest session, stopped when the session ends.

    ``config`` is pytest's Config: the server is kept on it and its stop registered with
    ``config.add_cleanup``, so test modules that each ask for it share one server.
    """
    server = getattr(config, _SESSION_ATTR, None)
    if server is None:
        stack = contextlib.ExitStack()
        try:
            server = stack.enter_context(postgres_server())
        except BaseException:
            stack.close()
            raise
        config.add_cleanup(stack.close)
        setattr(config, _SESSION_ATTR, server)
    return server


def _stop(binaries: Binaries, data: Path) -> None:
    """``pg_ctl stop -m fast``; if that fails, ``-m immediate``; never raises."""
    for mode in ("fast", "immediate"):
        with contextlib.suppress(PostgresServerError, subprocess.TimeoutExpired):
            _run([binaries.pg_ctl, "-D", str(data), "-m", mode, "-w", "stop"], f"stop ({mode})")
            return


if __name__ == "__main__":
    with postgres_server() as running:
        print(running.dsn, flush=True)
        with contextlib.suppress(EOFError, KeyboardInterrupt):
            input("PostgreSQL is running; press Enter to stop it\n")
