"""A TCP echo server that runs as its own process, so client and server never share a GIL.

Run ``python -m forgebench.network.echo_server --host 127.0.0.1 --port 0``: it binds
(port 0 picks a free ephemeral port), prints ``PORT <n>`` on stdout, flushes, and echoes
until SIGTERM/SIGINT or until its stdin closes (so it dies with the process that piped
it). One thread per connection with blocking sockets and TCP_NODELAY: the simplest
server, whose cost is part of what echo_latency measures.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from forgebench.errors import ForgebenchError

RECV_BUFFER_BYTES = 256 * 1024
#: Test-only (config testing.planted_delay_s): seconds of busy work the server adds to
#: every echo, a regression planted on purpose so a test can prove the gate catches it.
PLANTED_DELAY_ENV = "FORGEBENCH_PLANTED_DELAY_S"


def _planted_work(seconds: float) -> None:
    """Spin the CPU for ``seconds``: real work in the server's path, as a slower build is."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def serve_connection(conn: socket.socket) -> None:
    """Echo exactly the bytes received on ``conn`` until the peer closes or resets."""
    buf = bytearray(RECV_BUFFER_BYTES)
    view = memoryview(buf)
    planted = float(os.environ.get(PLANTED_DELAY_ENV) or 0.0)
    with conn:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            recv_into = conn.recv_into
            sendall = conn.sendall
            while True:
                n = recv_into(view)
                if not n:
                    return
                if planted:
                    _planted_work(planted)
                sendall(view[:n])
        except OSError:
            return  # a reset or abort by the client ends only this connection


def accept_loop(listener: socket.socket, stop: threading.Event) -> None:
    """Accept connections and hand each to its own daemon thread."""
    try:
        while not stop.is_set():
            conn, _ = listener.accept()
            threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()
    except OSError:
        pass
    finally:
        stop.set()


def _watch_stdin(stop: threading.Event) -> None:
    # os.read, not sys.stdin: a daemon thread blocked inside the buffered reader would
    # make interpreter shutdown abort on the reader's lock.
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    stop.set()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT or stdin EOF; print the bound port first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free ephemeral port")
    parser.add_argument(
        "--ignore-stdin",
        action="store_true",
        help="do not stop when stdin closes (for running detached, e.g. with </dev/null)",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    listener = socket.create_server((args.host, args.port), backlog=socket.SOMAXCONN)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    threading.Thread(target=accept_loop, args=(listener, stop), daemon=True).start()
    if not args.ignore_stdin:
        threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    stop.wait()  # a signal handler runs even while the main thread waits here
    listener.close()  # connection threads are daemons: they end with the process
    return 0


def child_env() -> dict[str, str]:
    """The environment for a server subprocess: it must import this very forgebench."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _read_port(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return None  # the server exited before printing its port
        data += chunk
    line = data.split(b"\n", 1)[0].decode(errors="replace").strip()
    parts = line.split()
    if len(parts) == 2 and parts[0] == "PORT" and parts[1].isdigit():
        return int(parts[1])
    return None


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Terminate ``proc``, wait, and kill it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)


@contextmanager
def echo_server_process(
    host: str = "127.0.0.1", timeout_s: float = 10.0
) -> Iterator[tuple[str, int]]:
    """Start the echo server as a subprocess; yield ``(host, port)``; always stop it.

    Raises ForgebenchError with the server's stderr if it does not print its port within
    ``timeout_s``.
    """
    cmd = [sys.executable, "-m", "forgebench.network.echo_server", "--host", host, "--port", "0"]
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile, env=child_env()
        )
        try:
            port = _read_port(proc, timeout_s)
            if port is None:
                stop_process(proc)
                errfile.seek(0)
                stderr = errfile.read().decode(errors="replace").strip()
                raise ForgebenchError(
                    f"the echo server ({' '.join(cmd)}) did not report its port within "
                    f"{timeout_s:g} s (exit code {proc.returncode}); its stderr:\n{stderr}"
                )
            yield host, port
        finally:
            stop_process(proc)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with suppress(OSError):
                        pipe.close()


if __name__ == "__main__":
    sys.exit(main())
