"""The ceiling and the floor of any recorder: a bare websockets client (:mod:`bench.bare_client`, pinned to core 1)
receiving the lean sender's stream, as fast as TCP delivers it (frames/s) or paced (CPU % of one core)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.machine import kill_if_running, pin, proc_cpu_seconds, wait_for_file
from bench.report import Config
from bench.sender_process import Sender, sender_rate

__all__ = ["bare_cpu", "bare_receive"]


def bare_receive(cfg: Config, tmp: Path, wl_path: Path, items: list[str], seconds: float, tag: str,
                 client_module: str = "bench.bare_client") -> dict[str, Any]:
    """The ceiling: frames/s a bare websockets client (or ``client_module``, same options) receives from the lean
    sender."""
    sender = Sender(tmp, wl_path, tag, seconds=seconds, expect_items=len(items), close=True, loop=cfg.loop)
    stats_path = tmp / f"{tag}.client.json"
    client = subprocess.run(
        [*pin(1), sys.executable, "-m", client_module, "--url", sender.url, "--items", ",".join(items),
         "--stats", str(stats_path), "--loop", cfg.loop, "--timeout", str(seconds + 120)],
        capture_output=True, timeout=seconds + 180,
    )
    sender.finish()
    if client.returncode != 0:
        raise RuntimeError(f"{client_module} failed: {client.stderr.decode()[-2000:]}")
    conn = sender.stats()["connections"][0]
    got = json.loads(stats_path.read_text())["connections"][0]
    return {"rate": sender_rate(conn), "sent": conn["sent"], "received": got["received"]}


def bare_cpu(cfg: Config, tmp: Path, wl_path: Path, items: list[str], rate: float, seconds: float,
             tag: str) -> float:
    """CPU % of one core a bare websockets client uses to receive ``rate`` frames/s (the floor of any recorder)."""
    sender = Sender(tmp, wl_path, tag, rate=rate, seconds=seconds + 1.5, expect_items=len(items), close=True,
                     loop=cfg.loop)
    client = subprocess.Popen(
        [*pin(1), sys.executable, "-m", "bench.bare_client", "--url", sender.url, "--items", ",".join(items),
         "--stats", str(tmp / f"{tag}.client.json"), "--loop", cfg.loop, "--timeout", str(seconds + 120)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_file(sender.started, 60, client):
            raise RuntimeError("the bare client did not start receiving")
        time.sleep(1.0)
        a, ta = proc_cpu_seconds(client.pid), time.monotonic()
        time.sleep(seconds)
        b, tb = proc_cpu_seconds(client.pid), time.monotonic()
        client.wait(timeout=seconds + 120)
    finally:
        kill_if_running(client)
        sender.finish()
    return 100.0 * (b - a) / (tb - ta)
