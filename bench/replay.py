"""Replay: frames/s our server delivers at ``--speed max`` to 1 and 10 clients, and its pacing at 1x.

The dataset is the workload stored as ``record`` stores it (:func:`bench.storage.store_workload`). Our
server (:mod:`bench.replay_server`: ``kiwoom_tape.replay.server.serve`` + ``kiwoom_tape.replay.recorded.RecordedSource``
with
``speed=None``) runs pinned to core 0, the clients (:mod:`bench.bare_client`, every connection in one
process, each registering all 200 items) on core 1. The ceiling is a bare websockets server sending the
same frames with the library's ``send`` (:mod:`bench.sender` ``--mode lib``) to the same clients.
The rate is every frame received by every client over the time from the first to the last.

Pacing: the same server at ``speed=1`` for a while; for every frame sent to the first client, its send
time minus its scheduled time (the recorded spacing), in milliseconds, counted from the least late frame
(so never negative: a first frame that went out late does not make the others look early). The note also
gives the figures counted from the first frame, as they were measured before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from kiwoom_tape.schemas.protocol import WS_PATH

from bench.frames import Workload
from bench.machine import kill_if_running, pin, wait_for_file
from bench.record import _Sender
from bench.report import Config, Figure, median
from bench.storage import store_workload

__all__ = ["run"]


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


def _ours(tmp: Path, tag: str, dataset: Path, items: list[str], connections: int, expect: int,
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


def _ceiling(cfg: Config, tmp: Path, tag: str, wl_path: Path, items: list[str], connections: int,
             expect: int) -> dict[str, Any]:
    sender = _Sender(tmp, wl_path, tag, mode="lib", seconds=3600, max_frames=expect, expect_items=len(items),
                     connections=connections, close=True, loop=cfg.loop)
    try:
        got = _clients(tmp, tag, sender.url, items, connections, expect, 600)
    finally:
        sender.finish()
    return got


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))] if v else float("nan")


def run(cfg: Config, tmp: Path, wl: Workload, log: Any) -> tuple[list[Figure], dict[str, Any]]:
    n = min(cfg.replay_frames, len(wl))
    sub = Workload(wl.frames[:n], wl.rows_0d[:n], wl.rows_0e[:n], wl.times[:n], wl.items)
    dataset = tmp / "replay-data"
    store_workload(dataset, sub)
    wl_path = tmp / "replay-wl.pkl"
    sub.save(wl_path)
    items = wl.items
    detail: dict[str, Any] = {"frames": n}
    figs: list[Figure] = []
    source = "?"
    for conns in (1, 10):
        ours, ceil = [], []
        for k in range(cfg.repeats):
            c = _ceiling(cfg, tmp, f"rceil{conns}-{k}", wl_path, items, conns, n)
            o = _ours(tmp, f"rours{conns}-{k}", dataset, items, conns, n)
            source = o["server"]["source"]
            ceil.append(c["rate"])
            ours.append(o["rate"])
            log(f"  {conns} client(s) run {k + 1}: ours {o['rate']:,.0f} frames/s (complete {o['complete']}), "
                f"bare websockets server {c['rate']:,.0f} frames/s")
        detail[f"clients_{conns}"] = {"ours": ours, "ceiling": ceil}
        figs.append(Figure("replay", f"replay --speed max, {conns} client{'s' if conns > 1 else ''} (aggregate)",
                           median(ours), "frames/s", median(ceil), runs=ours,
                           note=f"source: {source}; ceiling runs {[round(x) for x in ceil]}").check_ratio(0.80))
    # Pacing at 1x.
    seconds = cfg.pacing_seconds
    rate = len(sub) / max(1e-9, sub.times[-1] - sub.times[0])
    expect = min(n, max(2, int(seconds * rate)))
    p = _ours(tmp, "rpace", dataset, items, 1, expect, speed=1.0, timeout=seconds + 120)
    errs = p["server"].get("pacing_errors_s", [])
    offset = 1000 * p["server"].get("pacing_offset_s", 0.0)
    detail["pacing"] = {"frames": len(errs), "seconds": seconds, "source": p["server"]["source"]}
    if errs:
        ms = [1000 * e for e in errs]
        first = [m + offset for m in ms]  # counted from the first frame
        detail["pacing"].update({"p50_ms": _pct(ms, 0.5), "p99_ms": _pct(ms, 0.99), "max_ms": max(ms),
                                 "min_ms": min(ms), "from_first_frame": {
                                     "p50_ms": _pct(first, 0.5), "p99_ms": _pct(first, 0.99),
                                     "max_ms": max(first), "min_ms": min(first)}})
        log(f"  pacing at 1x over {len(ms):,} frames ({seconds:.0f} s): p50 {_pct(ms, 0.5):.2f} ms, "
            f"p99 {_pct(ms, 0.99):.2f} ms, max {max(ms):.2f} ms (from the first frame: p50 "
            f"{_pct(first, 0.5):.2f} ms, p99 {_pct(first, 0.99):.2f} ms, max {max(first):.2f} ms)")
        figs.append(Figure("replay", f"pacing error at 1x, p99 ({len(ms):,} frames, {seconds:.0f} s)",
                           _pct(ms, 0.99), "ms",
                           note=f"p50 {_pct(ms, 0.5):.2f} ms, max {max(ms):.2f} ms; send time - scheduled time, "
                                f"from the least late frame (from the first: p50 {_pct(first, 0.5):.2f} ms, "
                                f"p99 {_pct(first, 0.99):.2f} ms)")
                    .check_at_most(5.0, "<= 5 ms"))
    else:
        figs.append(Figure("replay", "pacing error at 1x", None, "ms", note="not measured: " + str(p["server"])))
    return figs, detail
