"""The service as a supervised group: uvicorn's process supervisor with N workers on one port.

Why: a worker crash is survivable only where something restarts the worker while the
others keep serving. ``python -m forgebench.service.supervisor --workers N --settings JSON``
binds 127.0.0.1 (``--port``, 0 for a free one), prints ``PORT <n>`` and runs uvicorn's
``Multiprocess`` supervisor: N spawned worker processes share the listening socket, and a
worker that dies is replaced within about half a second (uvicorn checks every 0.5 s).
Each worker builds its own app (``service.app.create_app``) from the settings in
:data:`SETTINGS_ENV`, in a folder under :data:`WORKDIR_ENV`, and then writes
``ready-<pid>`` there, so the parent knows when each one (and each replacement) serves.

The supervisor runs in its own session (process group): the whole server is killed with
one ``killpg``. Nothing restarts the supervisor itself; the fault benchmark does that, as a
process manager (systemd, a container runtime) would.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from forgebench.network.echo_server import _read_port, child_env
from forgebench.service.server import listening_socket, uvicorn_options, wait_ready

SETTINGS_ENV = "FORGEBENCH_SERVICE_SETTINGS"
WORKDIR_ENV = "FORGEBENCH_SERVICE_WORKDIR"


def app_factory() -> Callable[..., Any]:
    """A worker's app (uvicorn calls this in each worker: ``factory=True``)."""
    from forgebench.service.app import create_app

    base = os.environ[WORKDIR_ENV]
    app = create_app(json.loads(os.environ[SETTINGS_ENV]), workdir=Path(tempfile.mkdtemp(dir=base)))
    Path(base, f"ready-{os.getpid()}").touch()
    return app


def main(argv: list[str] | None = None) -> int:
    """Bind, print the port, supervise the workers until SIGTERM/SIGINT."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sock = listening_socket(args.host, args.port)
    config = uvicorn.Config(
        "forgebench.service.supervisor:app_factory",
        factory=True,
        workers=args.workers,
        **uvicorn_options(),
    )
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    Multiprocess(config, sockets=[sock]).run()
    return 0


class SupervisedService:
    """The parent side: start the group, find its workers, kill them, stop it whatever happens."""

    def __init__(self, settings: dict[str, Any], workdir: Path, workers: int) -> None:
        self.settings = settings
        self.workdir = workdir
        self.workers = workers
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        #: CPU seconds of every group killed or stopped so far (supervisor, its live
        #: workers and the workers it reaped), read just before the kill or stop.
        self.cpu_s = 0.0

    def start(self, timeout_s: float) -> None:
        """Start the group (on the same port as before after a kill); wait until it answers."""
        env = child_env()
        env[SETTINGS_ENV] = json.dumps(self.settings)
        env[WORKDIR_ENV] = str(self.workdir)
        cmd = [
            sys.executable,
            "-m",
            "forgebench.service.supervisor",
            "--workers",
            str(self.workers),
            "--port",
            str(self.port),
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True
        )
        port = _read_port(self.proc, timeout_s)
        if port is None:
            raise RuntimeError("the supervisor did not report its port")
        self.port = port
        why = wait_ready("127.0.0.1", port, timeout_s)
        if why is not None:
            raise RuntimeError(f"the supervised service did not answer GET /health ({why})")

    def worker_pids(self) -> list[int]:
        """The live workers that have built their app (a ``ready-<pid>`` file)."""
        import psutil

        if self.proc is None:
            return []
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [
            c.pid
            for c in children
            if (self.workdir / f"ready-{c.pid}").exists()
            and c.is_running()
            and c.status() != psutil.STATUS_ZOMBIE
        ]

    def wait_workers(self, timeout_s: float, exclude: tuple[int, ...] = ()) -> list[int]:
        """Wait until every worker serves (none of ``exclude`` among them); their pids."""
        deadline = time.monotonic() + timeout_s
        while True:
            pids = [p for p in self.worker_pids() if p not in exclude]
            if len(pids) >= self.workers or time.monotonic() > deadline:
                return pids
            time.sleep(0.02)

    def group_cpu_s(self) -> float:
        """CPU seconds of the running group: supervisor, live workers, reaped workers."""
        import psutil

        if self.proc is None:
            return 0.0
        total = 0.0
        with suppress(psutil.NoSuchProcess):
            top = psutil.Process(self.proc.pid)
            procs = [top, *top.children(recursive=True)]
            for proc in procs:
                with suppress(psutil.NoSuchProcess):
                    t = proc.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
        return total

    def kill_all(self, *, count_cpu: bool = True) -> int:
        """SIGKILL the whole group (supervisor and workers) and reap the supervisor; the
        ``perf_counter_ns`` just before the kill (its CPU is read before that)."""
        if self.proc is None:
            return time.perf_counter_ns()
        if count_cpu:
            self.cpu_s += self.group_cpu_s()
        killed_ns = time.perf_counter_ns()
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return killed_ns

    def stop(self) -> None:
        """SIGTERM the supervisor (it stops its workers), then SIGKILL whatever is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.cpu_s += self.group_cpu_s()
            self.proc.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.kill_all(count_cpu=False)
        self.proc = None


if __name__ == "__main__":
    sys.exit(main())
