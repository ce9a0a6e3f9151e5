"""Run the service under uvicorn as its own process, so the load generator never shares its GIL.

``python -m forgebench.service.server --settings JSON`` builds the app (database file,
RAG pipeline), binds 127.0.0.1 on a free port (port 0), prints ``PORT <n>`` and serves
with uvicorn (httptools parser, uvloop loop when installed) until SIGTERM/SIGINT or until
its stdin closes (it dies with the process that piped it).

:func:`service_process` is the parent side: start, wait for the port, check readiness with
``GET /health`` answering 200, yield the address and the server's pid (the soak samples
that process's memory), and stop it whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl as ssl_lib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from forgebench.errors import ForgebenchError
from forgebench.network.echo_server import _read_port, child_env, stop_process


@dataclass(frozen=True)
class ServiceAddress:
    """Where a service listens, and its process id when the benchmark started it.

    ``pid`` is None for a user's own service (``forgebench.service.target``): its process
    is not ours, so nothing tied to it (memory, CPU) is measured. ``base_path`` prefixes
    every request path; ``ssl`` is set for https; ``host_header`` is the URL's authority.
    """

    host: str
    port: int
    pid: int | None
    scheme: str = "http"
    base_path: str = ""
    host_header: str | None = None
    ssl: ssl_lib.SSLContext | None = field(default=None, compare=False, repr=False)

    @property
    def external(self) -> bool:
        """A service the benchmark did not start (a user's own)."""
        return self.pid is None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{self.host_header or f'{host}:{self.port}'}{self.base_path}"

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of ``loadgen.closed_loop``/``open_loop`` for this address."""
        return {"ssl": self.ssl, "host_header": self.host_header}


def _loop_impl() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _http_impl() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening, inheritable TCP socket (port 0: any free one), as both the
    single-process server and the multi-worker supervisor hand it to uvicorn."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(socket.SOMAXCONN)
    sock.set_inheritable(True)
    return sock


def uvicorn_options() -> dict[str, Any]:
    """The uvicorn settings every served process of the service uses."""
    return {
        "loop": _loop_impl(),
        "http": _http_impl(),
        "lifespan": "off",
        "access_log": False,
        "log_level": "warning",
        "backlog": socket.SOMAXCONN,
        "timeout_keep_alive": 60,
        "timeout_graceful_shutdown": 2,
    }


def main(argv: list[str] | None = None) -> int:
    """Build the app, bind, print the port, serve until told to stop."""
    import uvicorn

    from forgebench.service.app import create_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="{}", help="JSON settings (see app.py)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ignore-stdin", action="store_true")
    args = parser.parse_args(argv)
    settings = json.loads(args.settings)
    with tempfile.TemporaryDirectory(prefix="forgebench-service-") as tmp:
        from pathlib import Path

        app = create_app(settings, workdir=Path(tmp))
        sock = listening_socket(args.host, args.port)
        config = uvicorn.Config(app, **uvicorn_options())
        server = uvicorn.Server(config)
        if not args.ignore_stdin:

            def watch_stdin() -> None:
                with suppress(OSError):
                    while os.read(0, 65536):
                        pass
                server.should_exit = True

            threading.Thread(target=watch_stdin, daemon=True).start()
        print(f"PORT {sock.getsockname()[1]}", flush=True)
        server.run(sockets=[sock])
    return 0


def wait_ready(host: str, port: int, timeout_s: float) -> str | None:
    """Poll ``GET /health`` until it answers 200; None when ready, else the last problem."""
    deadline = time.monotonic() + timeout_s
    problem = "no attempt"
    request = f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2.0) as sock:
                sock.sendall(request)
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                return None
            problem = f"answered {data[:40]!r}"
        except OSError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)
    return problem


@contextmanager
def service_process(
    settings: Mapping[str, Any],
    *,
    host: str = "127.0.0.1",
    startup_timeout_s: float = 120.0,
    key: str = "service",
) -> Iterator[ServiceAddress]:
    """Start the service in its own process; yield its address and pid; always stop it.

    Raises ForgebenchError (naming ``key``) with the server's stderr when it does not
    announce its port or answer ``/health`` within ``startup_timeout_s``.
    """
    cmd = [
        sys.executable,
        "-m",
        "forgebench.service.server",
        "--host",
        host,
        "--port",
        "0",
        "--settings",
        json.dumps(dict(settings)),
    ]
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile, env=child_env()
        )
        try:
            t0 = time.monotonic()
            port = _read_port(proc, startup_timeout_s)
            problem = None
            if port is None:
                problem = "did not report its port"
            else:
                left = max(1.0, startup_timeout_s - (time.monotonic() - t0))
                why = wait_ready(host, port, left)
                if why is not None:
                    problem = f"did not answer GET /health with 200 ({why})"
            if problem is not None:
                stop_process(proc)
                errfile.seek(0)
                stderr = errfile.read().decode(errors="replace").strip()[-4000:]
                raise ForgebenchError(
                    f"{key}: the service {problem} within {startup_timeout_s:g} s "
                    f"(exit code {proc.returncode}); its stderr:\n{stderr}"
                )
            assert port is not None
            yield ServiceAddress(host, port, proc.pid)
        finally:
            stop_process(proc)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with suppress(OSError):
                        pipe.close()


if __name__ == "__main__":
    sys.exit(main())
