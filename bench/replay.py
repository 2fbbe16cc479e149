"""Replay: frames/s our server delivers at ``--speed max`` to 1 and 10 clients (its pacing at 1x: :mod:`bench.pacing`).

The dataset is the workload stored as ``record`` stores it (:func:`bench.storage.store_workload`). Our
server (:mod:`bench.replay_server`: ``kiwoom_tape.replay.server.serve`` + ``kiwoom_tape.replay.recorded.RecordedSource``
with
``speed=None``) runs pinned to core 0, the clients (:mod:`bench.bare_client`, every connection in one
process, each registering all 200 items) on core 1. The ceiling is the best a server on asyncio can do with
the same frames: a bare server (:mod:`bench.sender` ``--mode raw``) that writes them pre-framed, in the batches
our server writes (:data:`WRITE_BATCH` per ``transport.write``), to the same clients. A second row keeps the
older baseline: a bare websockets server sending each frame with the library's ``send`` (``--mode lib``).
The rate is every frame received by every client over the time from the first to the last.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from kiwoom_tape.replay.connections import Connections
from kiwoom_tape.schemas.protocol import WS_PATH

from bench.frames import Workload
from bench.machine import kill_if_running, pin, wait_for_file
from bench.report import Config, Figure, median
from bench.sender_process import Sender
from bench.storage import store_workload

__all__ = ["replay_data", "run", "serve_recorded"]

WRITE_BATCH = Connections.WRITE_BATCH
"""Frames our server writes at most per socket write, and the fair ceiling per ``transport.write``."""


def _clients(tmp: Path, tag: str, url: str, items: list[str], connections: int, expect: int,
             timeout: float) -> dict[str, Any]:
    stats = tmp / f"{tag}.clients.json"
    res = subprocess.run(
        [*pin(1), sys.executable, "-m", "bench.bare_client", "--url", url, "--items", ",".join(items), "--stats",
         str(stats), "--connections", str(connections), "--expect-frames", str(expect), "--timeout", str(timeout)],
        capture_output=True, timeout=timeout + 60,
    )
    if res.returncode != 0:
        raise RuntimeError(f"bench.bare_client failed: {res.stderr.decode()[-2000:]}")
    conns = json.loads(stats.read_text())["connections"]
    total = sum(c["received"] for c in conns)
    span = (max(c["t_last_ns"] for c in conns) - min(c["t_first_ns"] for c in conns)) / 1e9
    return {"received": total, "rate": total / span if span > 0 else float("nan"),
            "complete": all(c["received"] == expect for c in conns)}


def serve_recorded(tmp: Path, tag: str, dataset: Path, items: list[str], connections: int, expect: int,
          speed: float = 0.0, timeout: float = 600.0) -> dict[str, Any]:
    ready, stats = tmp / f"{tag}.port", tmp / f"{tag}.server.json"
    log = open(tmp / f"{tag}.server.log", "wb")  # noqa: SIM115 - closed below
    cmd = [*pin(0), sys.executable, "-m", "bench.replay_server", "--dataset", str(dataset), "--ready-file",
           str(ready), "--stats", str(stats), "--speed", str(speed), "--connections", str(connections),
           "--timeout", str(timeout)]
    if speed:
        cmd.append("--pacing")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_for_file(ready, 60, server):
            raise RuntimeError(f"bench.replay_server did not start (see {log.name})")
        url = f"ws://127.0.0.1:{int(ready.read_text())}{WS_PATH}"
        got = _clients(tmp, tag, url, items, connections, expect, timeout)
        server.wait(timeout=120)
    finally:
        kill_if_running(server)
        log.close()
    got["server"] = json.loads(stats.read_text())
    return got


def _baseline(cfg: Config, tmp: Path, tag: str, wl_path: Path, items: list[str], connections: int,
              expect: int, *, fair: bool) -> dict[str, Any]:
    """The same frames from :mod:`bench.sender`: pre-framed, :data:`WRITE_BATCH` per ``transport.write`` (``fair``,
    the ceiling), or one websockets ``send`` per frame (the per-``send`` baseline)."""
    sender = Sender(tmp, wl_path, tag, mode="raw" if fair else "lib", seconds=3600, max_frames=expect,
                    expect_items=len(items), connections=connections, close=True, loop=cfg.loop,
                    batch=WRITE_BATCH if fair else 0)
    try:
        got = _clients(tmp, tag, sender.url, items, connections, expect, 600)
    finally:
        sender.finish()
    return got


def replay_data(cfg: Config, tmp: Path, wl: Workload) -> tuple[Workload, Path, Path]:
    """The first ``cfg.replay_frames`` frames of ``wl``, their dataset as ``record`` stores it and their workload
    file (made once per run in ``tmp``)."""
    n = min(cfg.replay_frames, len(wl))
    sub = Workload(wl.frames[:n], wl.rows_0d[:n], wl.rows_0e[:n], wl.times[:n], wl.items)
    dataset = tmp / "replay-data"
    wl_path = tmp / "replay-wl.pkl"
    if not wl_path.exists():
        store_workload(dataset, sub)
        sub.save(wl_path)
    return sub, dataset, wl_path


def run(cfg: Config, tmp: Path, wl: Workload, log: Any) -> tuple[list[Figure], dict[str, Any]]:
    sub, dataset, wl_path = replay_data(cfg, tmp, wl)
    n = len(sub)
    items = wl.items
    detail: dict[str, Any] = {"frames": n}
    figs: list[Figure] = []
    source = "?"
    for conns in (1, 10):
        ours, fair, per_send, cpu_us = [], [], [], []
        for k in range(cfg.repeats):
            f = _baseline(cfg, tmp, f"rfair{conns}-{k}", wl_path, items, conns, n, fair=True)
            c = _baseline(cfg, tmp, f"rceil{conns}-{k}", wl_path, items, conns, n, fair=False)
            o = serve_recorded(tmp, f"rours{conns}-{k}", dataset, items, conns, n)
            source = o["server"]["source"]
            fair.append(f["rate"])
            per_send.append(c["rate"])
            ours.append(o["rate"])
            cpu_us.append(1e6 * o["server"]["cpu_s"] / max(1, o["server"]["frames_sent"]))
            log(f"  {conns} client(s) run {k + 1}: ours {o['rate']:,.0f} frames/s (complete {o['complete']}), "
                f"bare server writing {WRITE_BATCH} pre-framed per write {f['rate']:,.0f} frames/s (complete "
                f"{f['complete']}), bare websockets server, one send per frame {c['rate']:,.0f} frames/s")
        detail[f"clients_{conns}"] = {"ours": ours, "fair_ceiling": fair, "per_send": per_send,
                                      "server_cpu_us_per_frame_sent": cpu_us}
        label = f"replay --speed max, {conns} client{'s' if conns > 1 else ''} (aggregate)"
        figs.append(Figure("replay", label, median(ours), "frames/s", median(fair), runs=ours,
                           note=f"source: {source}; ceiling: a bare server writing the same frames pre-framed, "
                                f"{WRITE_BATCH} per transport.write, runs {[round(x) for x in fair]}; our server's CPU "
                                f"{median(cpu_us):.1f} µs per frame sent")
                    .check_ratio(0.80))
        per = Figure("replay", f"{label}, against one websockets send per frame", median(ours), "frames/s",
                     median(per_send), runs=ours, note=f"per-send baseline runs {[round(x) for x in per_send]}")
        per.ratio = per.value / per.ceiling if per.value is not None and per.ceiling else None
        figs.append(per)
    return figs, detail
