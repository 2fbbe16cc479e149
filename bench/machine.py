"""The machine a benchmark ran on, and what a process costs: CPU time and memory from /proc."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGES",
    "loadavg",
    "machine_info",
    "pin",
    "proc_cpu_seconds",
    "proc_rss_bytes",
    "wait_for_file",
    "write_atomic",
]

PACKAGES = ("kiwoom-tape", "websockets", "msgspec", "pyarrow", "duckdb", "numpy", "click", "uvloop")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def pin(cpu: int) -> list[str]:
    """A ``taskset -c CPU`` command prefix, or nothing where taskset or a second core is missing."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > cpu:
        return ["taskset", "-c", str(cpu)]
    return []


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/PID/stat`` utime + stime)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def proc_rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in bytes (``VmRSS``, ``VmHWM`` of ``/proc/PID/status``)."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return rss, hwm


def wait_for_file(path: Path, timeout: float, proc: subprocess.Popen[Any] | None = None) -> bool:
    """Wait until ``path`` exists (False on timeout, or when ``proc`` exited first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if proc is not None and proc.poll() is not None:
            return path.exists()
        time.sleep(0.02)
    return False


def kill_if_running(proc: subprocess.Popen[Any]) -> None:
    """In a ``finally``: kill a benchmark subprocess that did not end by itself, and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``path`` whole: to a temporary name first, then renamed (a reader polling for it sees all or nothing)."""
    tmp = Path(str(path) + ".tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    tmp.rename(path)


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        res = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )
        return res.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "-"


def machine_info() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "mem_gib": round(_mem_total() / 2**30, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": _versions(),
        "commit": _git_commit(),
        "taskset": bool(pin(1)),
    }
