"""A running :mod:`bench.sender` subprocess (the lean sender, pinned to core 0), as the record and replay
benchmarks drive it."""

from __future__ import annotations

import json
import subprocess
import sys
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kiwoom_tape.schemas.protocol import WS_PATH

from bench.machine import pin, wait_for_file

__all__ = ["TIMEOUT_MARGIN_S", "Sender", "sender_rate"]

TIMEOUT_MARGIN_S = 600.0
"""The sender gives up this long after its sending time (logins, the PING echo, a slow reader): it had a fixed
900 s before, which cut the record section's 30-minute memory run to 15 minutes with no sign of it but its stats."""


class Sender:
    """A running :mod:`bench.sender` subprocess."""

    def __init__(self, tmp: Path, wl_path: Path | Sequence[Path], tag: str, *, mode: str = "raw", rate: float = 0.0,
                 seconds: float = 5.0, expect_items: int = 200, connections: int = 1, close: bool = False,
                 max_frames: int = 0, loop: str = "asyncio", batch: int = 0, tokens: bool = False) -> None:
        """``wl_path``: one workload for every connection, or one per group of items (``bench.sender --frames``);
        ``tokens``: also answer ``POST /oauth2/token`` (a ``record --keys`` fetches a token per key)."""
        self.ready = tmp / f"{tag}.port"
        self.stats_path = tmp / f"{tag}.sender.json"
        self.started = tmp / f"{tag}.started"
        self.log = open(tmp / f"{tag}.sender.log", "wb")  # noqa: SIM115 - closed in finish()
        paths = [wl_path] if isinstance(wl_path, Path) else list(wl_path)
        cmd = [*pin(0), sys.executable, "-m", "bench.sender", *(a for p in paths for a in ("--frames", str(p))),
               "--ready-file",
               str(self.ready), "--stats", str(self.stats_path), "--started-file", str(self.started),
               "--mode", mode, "--rate", str(rate), "--duration", str(seconds), "--expect-items",
               str(expect_items), "--connections", str(connections), "--max-frames", str(max_frames),
               "--loop", loop, "--timeout", f"{seconds + TIMEOUT_MARGIN_S:.0f}"]
        if batch:
            cmd += ["--batch", str(batch)]
        if close:
            cmd.append("--close")
        if tokens:
            cmd.append("--tokens")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_for_file(self.ready, 60, self.proc):
            self.finish()
            raise RuntimeError(f"bench.sender did not start (see {self.log.name})")
        self.port = int(self.ready.read_text())

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"

    def stats(self) -> dict[str, Any]:
        """What the sender did; RuntimeError if it gave up (``--timeout``) before every connection was done."""
        data: dict[str, Any] = json.loads(self.stats_path.read_text())
        if data.get("timed_out"):
            raise RuntimeError(f"bench.sender timed out before the run was over (see {self.log.name})")
        return data

    def send_ns(self) -> array[int]:
        a = array("q")
        with open(str(self.stats_path) + ".send_ns", "rb") as f:
            a.frombytes(f.read())
        return a

    def finish(self, timeout: float = 60) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def sender_rate(conn: dict[str, Any]) -> float:
    """Frames/s from the first send until the PING echo proved everything was read."""
    span = (conn["t_echo_ns"] - conn["t_first_ns"]) / 1e9
    return conn["sent"] / span if span > 0 and conn["t_echo_ns"] else float("nan")
