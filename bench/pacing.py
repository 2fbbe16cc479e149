"""Pacing at 1x: how late our replay server sends each frame, while another process keeps a core busy.

Our server (:func:`bench.replay.serve_recorded`, core 0) plays the replay dataset at ``speed=1`` for
``cfg.pacing_seconds`` to one client (core 1). For every frame sent, its send time minus its scheduled time (the
recorded spacing), in milliseconds, counted from the least late frame (so never negative: a first frame that went
out late does not make the others look early); the note also gives the figures counted from the first frame.

The figure must not depend on who else runs on the machine, so the bench makes the load itself: a spinning
process (:func:`busy_core`) pinned to core 1, the client's core, for the whole run. The server's core is its
own, as in every replay figure; the spinner stands for a strategy or a notebook running beside the replay.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.frames import Workload
from bench.machine import kill_if_running, pin, proc_cpu_seconds
from bench.replay import replay_data, serve_recorded
from bench.report import Config, Figure, percentile

__all__ = ["BUSY_CORE", "busy_core", "run"]

BUSY_CORE = 1
"""The core the spinner keeps busy (the client's; the server runs on core 0)."""
TARGET_MS = 5.0


@contextmanager
def busy_core(cpu: int = BUSY_CORE) -> Iterator[subprocess.Popen[bytes]]:
    """A process spinning on ``cpu`` (unpinned where taskset is missing) for the duration of the block."""
    proc = subprocess.Popen([*pin(cpu), sys.executable, "-c", "while True: pass"])
    try:
        yield proc
    finally:
        kill_if_running(proc)


def run(cfg: Config, tmp: Path, wl: Workload, log: Any) -> tuple[list[Figure], dict[str, Any]]:
    sub, dataset, _ = replay_data(cfg, tmp, wl)
    seconds = cfg.pacing_seconds
    rate = len(sub) / max(1e-9, sub.times[-1] - sub.times[0])
    expect = min(len(sub), max(2, int(seconds * rate)))
    seconds = min(seconds, expect / rate)  # a shorter dataset plays for less
    with busy_core() as spinner:
        cpu0 = proc_cpu_seconds(spinner.pid)
        p = serve_recorded(tmp, "rpace", dataset, wl.items, 1, expect, speed=1.0, timeout=seconds + 120)
        busy = proc_cpu_seconds(spinner.pid) - cpu0
    errs = p["server"].get("pacing_errors_s", [])
    offset = 1000 * p["server"].get("pacing_offset_s", 0.0)
    detail: dict[str, Any] = {"frames": len(errs), "seconds": seconds, "source": p["server"]["source"],
                              "busy_core": BUSY_CORE if pin(BUSY_CORE) else None, "spinner_cpu_s": busy}
    if not errs:
        return [Figure("replay", "pacing error at 1x", None, "ms", note="not measured: " + str(p["server"]))], detail
    ms = [1000 * e for e in errs]
    first = [m + offset for m in ms]  # counted from the first frame
    p50, p99, p999 = percentile(ms, 0.5), percentile(ms, 0.99), percentile(ms, 0.999)
    detail.update({"p50_ms": p50, "p99_ms": p99, "p999_ms": p999, "max_ms": max(ms), "min_ms": min(ms),
                   "from_first_frame": {"p50_ms": percentile(first, 0.5), "p99_ms": percentile(first, 0.99),
                                        "max_ms": max(first), "min_ms": min(first)}})
    log(f"  pacing at 1x over {len(ms):,} frames ({seconds:.0f} s, a spinner on core {BUSY_CORE} used {busy:.1f} "
        f"CPU s): p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(ms):.2f} ms (from the first frame: p50 "
        f"{percentile(first, 0.5):.2f} ms, p99 {percentile(first, 0.99):.2f} ms)")
    fig = Figure("replay", f"pacing error at 1x, p99, other core busy ({len(ms):,} frames, {seconds:.0f} s)", p99,
                 "ms", note=f"p50 {p50:.2f} ms, p99.9 {p999:.2f} ms, max {max(ms):.2f} ms; send time - scheduled "
                            f"time, from the least late frame (from the first: p50 {percentile(first, 0.5):.2f} ms, "
                            f"p99 {percentile(first, 0.99):.2f} ms); a spinning process on core {BUSY_CORE}")
    return [fig.check_at_most(TARGET_MS, f"<= {TARGET_MS:g} ms")], detail
