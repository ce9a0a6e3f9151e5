"""One cgroup per sandbox slot run: memory and process limits over every process of the run,
frozen and killed as a unit, removal confirmed by the kernel (rmdir), not by a sweep count.

cgroup v2 is used where the host delegates its ``memory`` and ``pids`` controllers to us;
otherwise v1 with the ``memory``, ``pids`` and ``freezer`` hierarchies (as on hosts and CI
runners that mount them v1 and leave v2 empty). ``SlotCgroup.create`` returns None where
neither is writable; the sandbox then falls back to per-process rlimits and a uid sweep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

V1_CONTROLLERS = ("memory", "pids", "freezer")
PARENT = "forgebench-sandbox"


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(fstype, mount point, root inside the hierarchy, options) of each cgroup mount."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            parts, rparts = left.split(), right.split()
            if rparts and rparts[0] in ("cgroup", "cgroup2"):
                opts = set(rparts[2].split(",")) if len(rparts) > 2 else set()
                out.append((rparts[0], parts[4], parts[3], opts))
    return out


def _own_paths() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path."""
    out = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else [""]:
                out[name] = path
    return out


def _under(mount: str, mount_root: str, own: str) -> Path:
    rel = os.path.relpath(own, mount_root) if own.startswith(mount_root) else "."
    return (Path(mount) / rel / PARENT).resolve()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _parents() -> tuple[str, dict[str, Path]] | None:
    """("v2", {"": dir}) or ("v1", {controller: dir}) with the parent dirs created, or None."""
    own = _own_paths()
    mounts = _mounts()
    for fstype, point, root, _ in mounts:
        if fstype != "cgroup2":
            continue
        base = Path(point) / os.path.relpath(own.get("", "/"), root)
        try:
            have = set((base / "cgroup.controllers").read_text().split())
            if not {"memory", "pids"} <= have:
                continue
            parent = (base / PARENT).resolve()
            _write(base / "cgroup.subtree_control", "+memory +pids")
            parent.mkdir(exist_ok=True)
            _write(parent / "cgroup.subtree_control", "+memory +pids")
            return "v2", {"": parent}
        except OSError:
            continue
    dirs = {}
    for fstype, point, root, opts in mounts:
        for ctl in V1_CONTROLLERS:
            if fstype == "cgroup" and ctl in opts and ctl not in dirs:
                dirs[ctl] = _under(point, root, own.get(ctl, "/"))
    if set(dirs) != set(V1_CONTROLLERS):
        return None
    try:
        for path in dirs.values():
            path.mkdir(exist_ok=True)
    except OSError:
        return None
    return "v1", dirs


_cached: list = []


def hierarchy() -> tuple[str, dict[str, Path]] | None:
    """The cgroup layout this host offers (probed once per process)."""
    if not _cached:
        _cached.append(_parents())
    return _cached[0]


@dataclass
class SlotCgroup:
    """The cgroup(s) of one run: ``dirs`` maps controller (v1) or "" (v2) to its directory."""

    version: str
    dirs: dict[str, Path]
    killed: set[int] = field(default_factory=set)

    @classmethod
    def create(cls, name: str, memory_bytes: int, max_pids: int) -> SlotCgroup | None:
        """Make the slot's cgroup with its limits, or None where the host offers none."""
        found = hierarchy()
        if found is None:
            return None
        version, parents = found
        dirs = {ctl: parent / name for ctl, parent in parents.items()}
        try:
            for path in dirs.values():
                path.mkdir()
            slot = cls(version, dirs)
            if version == "v2":
                d = dirs[""]
                _write(d / "memory.max", str(memory_bytes))
                if (d / "memory.swap.max").exists():
                    _write(d / "memory.swap.max", "0")
                _write(d / "pids.max", str(max_pids))
            else:
                mem = dirs["memory"]
                _write(mem / "memory.limit_in_bytes", str(memory_bytes))
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    _write(mem / "memory.memsw.limit_in_bytes", str(memory_bytes))
                _write(dirs["pids"] / "pids.max", str(max_pids))
        except OSError:
            for path in dirs.values():
                with contextlib.suppress(OSError):
                    path.rmdir()
            return None
        return slot

    def add(self, pid: int) -> None:
        """Move ``pid`` (before it forks) into every hierarchy of the slot."""
        for path in self.dirs.values():
            _write(path / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.dirs.values():
            with contextlib.suppress(FileNotFoundError):
                found |= {int(p) for p in (path / "cgroup.procs").read_text().split()}
        return found

    def _freeze(self, frozen: bool, deadline: float) -> None:
        if self.version == "v2":
            _write(self.dirs[""] / "cgroup.freeze", "1" if frozen else "0")
            want, state = f"frozen {int(frozen)}", self.dirs[""] / "cgroup.events"
        else:
            _write(self.dirs["freezer"] / "freezer.state", "FROZEN" if frozen else "THAWED")
            want, state = "FROZEN" if frozen else "THAWED", self.dirs["freezer"] / "freezer.state"
        while want not in state.read_text() and time.monotonic() < deadline:
            time.sleep(0.005)

    def kill(self, spare: int | None = None, wait_s: float = 10.0) -> int:
        """Freeze, SIGKILL every process but ``spare`` (it reaps the jail's init), thaw.

        Returns how many processes were sent SIGKILL (each counted once per run)."""
        deadline = time.monotonic() + wait_s
        self._freeze(True, deadline)
        count = 0
        for pid in self.pids() - {spare}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                count += pid not in self.killed
                self.killed.add(pid)
        self._freeze(False, deadline)
        return count

    def wait_empty(self, wait_s: float) -> bool:
        """True once the kernel reports no process left in the slot (polled up to ``wait_s``)."""
        deadline = time.monotonic() + wait_s
        while self.pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def peak_memory_bytes(self) -> int | None:
        """The kernel's high-water mark of the slot's memory (all its processes)."""
        path = (
            self.dirs[""] / "memory.peak"
            if self.version == "v2"
            else self.dirs["memory"] / "memory.max_usage_in_bytes"
        )
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        """Processes the kernel killed for reaching the slot's memory limit."""
        path = (
            self.dirs[""] / "memory.events"
            if self.version == "v2"
            else self.dirs["memory"] / "memory.oom_control"
        )
        with contextlib.suppress(OSError, ValueError):
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self) -> bool:
        """rmdir every directory; True once none exists (the kernel accepted the removal)."""
        for path in self.dirs.values():
            with contextlib.suppress(FileNotFoundError, OSError):
                path.rmdir()
        return not any(path.exists() for path in self.dirs.values())
