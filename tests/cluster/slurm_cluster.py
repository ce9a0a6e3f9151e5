"""A real single-node SLURM cluster under one folder, for tests and for trying the profiles.

    python tests/cluster/slurm_cluster.py start DIR   # prints the env lines to `eval`
    python tests/cluster/slurm_cluster.py stop DIR

or, in Python (tests/test_slurm.py)::

    with SlurmCluster(tmp_dir) as cluster:
        subprocess.run([...], env=cluster.env())

It installs Debian's slurmctld, slurmd, slurm-client and munge when missing (needs root),
writes a munge key and a slurm.conf for this one node under DIR, starts munged, slurmctld
and slurmd on that config, and waits until `sinfo` shows the node idle. Nothing is written
outside DIR: clients find the cluster through SLURM_CONF, and DIR/bin/srun (first on PATH)
puts SLURM_CONF back for the nested `srun` of Snakemake's SLURM jobstep plugin, which
strips every SLURM_* variable. `stop` ends exactly the daemons it started, by the pids in
their pid files, and waits until they are gone.

Measured facts behind the settings: /work/shared/notes/slurm-on-one-machine.md and
docs/cluster.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
# executable -> Debian package that ships it
EXECUTABLES = {
    "munged": "munge",
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "sbatch": "slurm-client",
    "srun": "slurm-client",
    "squeue": "slurm-client",
    "sinfo": "slurm-client",
    "scancel": "slurm-client",
}
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PARTITION = "debug"
DAEMONS = ("munged", "slurmctld", "slurmd")  # start order; stopped in reverse
UNIX_SOCKET_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


class ClusterError(RuntimeError):
    """The cluster could not be installed, started or stopped; the message says why."""


def find_executable(name: str) -> str | None:
    """``name`` on PATH or in the system folders (sbin is often missing from PATH)."""
    return shutil.which(name) or shutil.which(name, path=SYSTEM_PATH)


def missing_packages() -> list[str]:
    return sorted({pkg for exe, pkg in EXECUTABLES.items() if find_executable(exe) is None})


def install_packages(log=print) -> None:
    """apt-get install the SLURM and munge packages that are missing (root only)."""
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise ClusterError(f"SLURM packages missing ({' '.join(missing)}) and not root")
    if shutil.which("apt-get") is None:
        raise ClusterError(f"SLURM packages missing ({' '.join(missing)}) and no apt-get")
    log(f"slurm_cluster: installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise ClusterError(
                f"{shlex.join(cmd)} failed ({proc.returncode}):\n{_tail(proc.stdout + proc.stderr)}"
            )
    still = missing_packages()
    if still:
        raise ClusterError(f"still missing after apt-get install: {' '.join(still)}")


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return f"--- last lines of {path} ---\n{_tail(text, lines)}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_line(slurmd: str) -> tuple[str, str]:
    """(node name, the `NodeName=...` line) of this machine from `slurmd -C`."""
    proc = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("NodeName=")]
    if proc.returncode != 0 or not lines:
        raise ClusterError(f"`slurmd -C` gave no node line:\n{proc.stdout}{proc.stderr}")
    line = lines[0].strip()
    name = line.split()[0].split("=", 1)[1]
    return name, line


def _process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _process_is(pid: int, name: str) -> bool:
    """The process ``pid`` runs the executable ``name`` (guards against a reused pid)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return Path(argv0).name == name


class SlurmCluster:
    """munged + slurmctld + slurmd for this one machine, everything under ``root``."""

    def __init__(self, root: str | Path, *, start_timeout: float = 60, log=print) -> None:
        self.root = Path(root).resolve()
        self.start_timeout = start_timeout
        self.log = log
        self.conf = self.root / "slurm.conf"
        self.bin = self.root / "bin"
        self.munge_dir = self.root / "munge"
        self.munge_socket = self.munge_dir / "munge.socket"
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "log"
        self.node_name: str | None = None

    # -- paths ---------------------------------------------------------------------------
    def pid_file(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        return self.log_dir / f"{daemon}.log"

    # -- environment ---------------------------------------------------------------------
    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default os.environ) with SLURM_CONF and DIR/bin first on PATH."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        path = env.get("PATH") or SYSTEM_PATH
        env["PATH"] = os.pathsep.join([str(self.bin), path, "/usr/sbin", "/sbin"])
        return env

    def client(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sinfo, squeue, scontrol...) against this cluster."""
        exe = find_executable(args[0]) or args[0]
        return subprocess.run(
            [exe, *args[1:]], env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    # -- files -----------------------------------------------------------------------------
    def write_files(self) -> None:
        for folder in (self.root, self.bin, self.munge_dir, self.run_dir, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.munge_dir.chmod(0o700)  # munged refuses a socket folder others may write to
        for folder in ("state", "spool"):
            (self.root / folder).mkdir(mode=0o700, exist_ok=True)
        if len(str(self.munge_socket)) > UNIX_SOCKET_MAX:
            raise ClusterError(f"munge socket path too long for a unix socket: {self.munge_socket}")

        key = self.munge_dir / "munge.key"
        if not key.exists():
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(1024))

        slurmd = find_executable("slurmd")
        if slurmd is None:
            raise ClusterError("slurmd not installed")
        self.node_name, node = node_line(slurmd)
        self.conf.write_text(self.slurm_conf(node))

        srun = self.bin / "srun"
        srun.write_text(
            "#!/bin/sh\n"
            "# Snakemake's SLURM jobstep plugin strips every SLURM_* variable, SLURM_CONF too,\n"
            "# before its nested srun; put this cluster's config back and run the real srun.\n"
            f"SLURM_CONF={shlex.quote(str(self.conf))}\n"
            "export SLURM_CONF\n"
            f'exec {shlex.quote(find_executable("srun") or "/usr/bin/srun")} "$@"\n'
        )
        srun.chmod(0o755)

    def slurm_conf(self, node: str) -> str:
        r = self.root
        name, *hardware = node.split()
        ports = [free_port()]
        while len(ports) < 2:
            port = free_port()
            if port not in ports:
                ports.append(port)
        settings = {
            "ClusterName": "forgebench",
            "SlurmctldHost": f"{self.node_name}(127.0.0.1)",
            "SlurmctldPort": ports[0],
            "SlurmdPort": ports[1],
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            # no systemd, no cgroups on the CI machine
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none",
            "SchedulerType": "sched/backfill",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            "DefMemPerCPU": 1024,  # else a job without --mem takes the node's memory
            "MinJobAge": 300,  # finished jobs stay visible to squeue (no slurmdbd here)
            "ReturnToService": 2,
            "MpiDefault": "none",
            "MailProg": "/bin/true",
            "InactiveLimit": 0,
            "KillWait": 5,
            "SlurmctldTimeout": 30,
            "SlurmdTimeout": 60,
            "StateSaveLocation": r / "state",
            "SlurmdSpoolDir": r / "spool",
            "SlurmctldPidFile": self.pid_file("slurmctld"),
            "SlurmdPidFile": self.pid_file("slurmd"),
            "SlurmctldLogFile": self.log_file("slurmctld"),
            "SlurmdLogFile": self.log_file("slurmd"),
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
        }
        lines = [
            "# Written by tests/cluster/slurm_cluster.py: one node, everything under this folder.",
            *(f"{k}={v}" for k, v in settings.items()),
            " ".join([name, "NodeAddr=127.0.0.1", *hardware]),
            f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        return "\n".join(lines) + "\n"

    # -- daemons ---------------------------------------------------------------------------
    def _launch(self, daemon: str, args: list[str]) -> None:
        exe = find_executable(daemon)
        if exe is None:
            raise ClusterError(f"{daemon} not installed")
        pid_file = self.pid_file(daemon)
        pid_file.unlink(missing_ok=True)
        # The daemon forks into the background; its own output goes to its log file, and
        # the launcher's to DIR/log/DAEMON.launch (never a pipe: the daemon would hold it).
        with open(self.log_dir / f"{daemon}.launch", "w") as out:
            proc = subprocess.run(
                [exe, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                timeout=60,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            pid = self._read_pid(daemon)
            if pid is not None and _process_alive(pid):
                return
            if proc.returncode != 0:
                break
            time.sleep(0.1)
        raise ClusterError(
            f"{daemon} did not start (exit {proc.returncode}, pid file {pid_file}):\n"
            f"{_log_tail(self.log_dir / f'{daemon}.launch')}\n{_log_tail(self.log_file(daemon))}"
        )

    def _read_pid(self, daemon: str) -> int | None:
        try:
            text = self.pid_file(daemon).read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def running(self) -> dict[str, int]:
        """The daemons of this cluster that run now, by their pid files."""
        out = {}
        for daemon in DAEMONS:
            pid = self._read_pid(daemon)
            if pid is not None and _process_alive(pid) and _process_is(pid, daemon):
                out[daemon] = pid
        return out

    def start(self) -> SlurmCluster:
        started = time.monotonic()
        if self.running():
            raise ClusterError(f"a cluster already runs under {self.root}: {self.running()}")
        install_packages(self.log)
        self.write_files()
        try:
            self._launch(
                "munged",
                [
                    f"--socket={self.munge_socket}",
                    f"--key-file={self.munge_dir / 'munge.key'}",
                    f"--pid-file={self.pid_file('munged')}",
                    f"--log-file={self.log_file('munged')}",
                    f"--seed-file={self.munge_dir / 'munged.seed'}",
                    "--force",
                ],
            )
            self._launch("slurmctld", ["-f", str(self.conf), "-c"])
            self._launch("slurmd", ["-f", str(self.conf)])
            self.wait_idle()
        except BaseException:
            self.stop()
            raise
        self.log(
            f"slurm_cluster: node {self.node_name} idle under {self.root} "
            f"after {time.monotonic() - started:.1f} s"
        )
        return self

    def wait_idle(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        state = ""
        while time.monotonic() < deadline:
            for daemon in DAEMONS:
                pid = self._read_pid(daemon)
                if pid is None or not _process_alive(pid):
                    raise ClusterError(
                        f"{daemon} exited while the node came up:\n"
                        f"{_log_tail(self.log_file(daemon))}"
                    )
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc = self.client("sinfo", "-h", "-N", "-o", "%N %t", timeout=10)
                state = (proc.stdout + proc.stderr).strip()
                if proc.returncode == 0 and state.split()[-1:] == ["idle"]:
                    return
            time.sleep(0.3)
        raise ClusterError(
            f"node not idle after {self.start_timeout:.0f} s (sinfo: {state!r}):\n"
            f"{_log_tail(self.log_file('slurmctld'))}\n{_log_tail(self.log_file('slurmd'))}"
        )

    def stop(self, timeout: float = 20) -> None:
        """Cancel this cluster's jobs, then end its daemons by their pid files and wait."""
        running = self.running()
        if "slurmctld" in running:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.client("scancel", f"--partition={PARTITION}", timeout=10)
        for daemon in reversed(DAEMONS):
            pid = running.get(daemon)
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _process_alive(pid) and _process_is(pid, daemon):
                self.log(f"slurm_cluster: {daemon} ({pid}) ignored SIGTERM; sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while _process_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
            if _process_alive(pid):
                raise ClusterError(f"{daemon} ({pid}) still runs after SIGKILL")

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "env"])
    parser.add_argument("dir", type=Path, help="folder for config, keys, state, logs, pids")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for idle")
    args = parser.parse_args(argv)
    cluster = SlurmCluster(args.dir, start_timeout=args.timeout, log=_stderr)
    try:
        if args.action == "start":
            cluster.start()
        elif args.action == "stop":
            cluster.stop()
            _stderr(f"slurm_cluster: stopped under {cluster.root}")
            return 0
        elif args.action == "status":
            running = cluster.running()
            print(" ".join(f"{d}={p}" for d, p in running.items()) or "not running")
            return 0 if running else 1
    except ClusterError as exc:
        _stderr(f"slurm_cluster: error: {exc}")
        return 1
    # start and env: lines to `eval` in a shell
    print(f"export SLURM_CONF={shlex.quote(str(cluster.conf))}")
    print(f'export PATH={shlex.quote(str(cluster.bin))}:"$PATH"')
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
