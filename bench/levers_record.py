"""A/B runs of the recorder's levers (issue 14): each lever on and off in the same run, interleaved, medians.

Lever ``writer-thread``: the store encodes and writes its Parquet row groups in a writer thread
(``kiwoom_tape.recorder.parquet_parts.WRITE_THREAD``) or on the receive path. Measured two ways:

- in-process: frames/s through ``Store.add_received`` (what ``record`` calls), no socket, by CPU time
  of the process (both threads) and by wall time;
- subprocess: the real ``record`` (pinned to core 1, as ``python -m bench`` runs it) taking the lean
  sender's stream at the max rate (:func:`bench.record_run.record_run`), lossless max rate.

::

    python -m bench.levers_record --out bench/results/writer-thread-2026-12-02.json --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench.record_run as record_run_mod
from bench.frames import Workload, make_workload
from bench.machine import machine_info
from bench.report import Config, median

__all__ = ["main", "store_add_received"]


def store_add_received(wl: Workload, thread: bool) -> dict[str, float]:
    """Frames/s through ``Store.add_received`` in-process (no socket), by CPU time and by wall time."""
    from kiwoom_tape.recorder.store import Store

    with tempfile.TemporaryDirectory(prefix="kiwoom-bench-lever-") as d:
        store = Store(d, "20261123T000000Z-bench2", write_thread=thread)
        store.open()
        ns = time.time_ns()
        c, w = time.process_time(), time.perf_counter()
        try:
            for data in wl.frames:
                store.add_received(ns, data)
        finally:
            store.close()
        cpu, wall = time.process_time() - c, time.perf_counter() - w
    return {"cpu_fps": len(wl.frames) / cpu, "wall_fps": len(wl.frames) / wall}


def _record_cmd(thread: bool) -> list[str]:
    code = ("from kiwoom_tape.recorder import parquet_parts as p; "
            f"p.WRITE_THREAD = {thread!r}; from kiwoom_tape.recorder.cli import main; main()")
    return [sys.executable, "-c", code]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=40_000, help="0D rows of the workload")
    ap.add_argument("--seconds", type=float, default=15.0, help="each subprocess run at the max rate")
    ap.add_argument("--skip-subprocess", action="store_true")
    ap.add_argument("--skip-inprocess", action="store_true")
    ap.add_argument("--unpinned", action="store_true",
                    help="run record on any core (python -m bench pins it to core 1, the sender to core 0)")
    args = ap.parse_args(argv)
    wl = make_workload(args.rows)
    res: dict[str, Any] = {"lever": "writer-thread", "workload": wl.summary(), "load_before": os.getloadavg(),
                           "machine": machine_info(), "inprocess": {"on": [], "off": []},
                           "subprocess": {"on": [], "off": []}}
    res["record_pinned_to_core_1"] = not args.unpinned
    for k in range(0 if args.skip_inprocess else args.repeats):  # interleaved: off, on, off, on ...
        for thread in (False, True):
            r = store_add_received(wl, thread)
            res["inprocess"]["on" if thread else "off"].append(r)
            print(f"in-process run {k + 1} thread={thread}: {r['cpu_fps']:,.0f} frames/s CPU, "
                  f"{r['wall_fps']:,.0f} wall", flush=True)
    if not args.skip_subprocess:
        cfg = Config.make(False)
        if args.unpinned:
            setattr(record_run_mod, "pin", lambda cpu: [])  # noqa: B010 - record_run imported pin by name
        with tempfile.TemporaryDirectory(prefix="kiwoom-bench-levers-") as d:
            tmp = Path(d)
            wl_path = tmp / "workload.pkl"
            wl.save(wl_path)
            for k in range(args.repeats):
                for thread in (False, True):
                    record_run_mod._record_cmd = lambda t=thread: _record_cmd(t)  # type: ignore[misc]
                    r = record_run_mod.record_run(cfg, tmp, wl_path, wl, rate=0.0, seconds=args.seconds,
                                                  tag=f"lever{k}{int(thread)}")
                    r.pop("rss_samples", None)
                    res["subprocess"]["on" if thread else "off"].append(r)
                    print(f"record run {k + 1} thread={thread}: {r['rate']:,.0f} frames/s, lost {r['lost']}, "
                          f"max delay {r['delay_max_s']:.2f} s, lossless {r['lossless']}", flush=True)
    summary: dict[str, Any] = {}
    for where, key in (("inprocess", "cpu_fps"), ("inprocess", "wall_fps"), ("subprocess", "rate")):
        on = [r[key] for r in res[where]["on"]]
        off = [r[key] for r in res[where]["off"]]
        if on and off:
            summary[f"{where}.{key}"] = {"off_median": median(off), "on_median": median(on),
                                         "on_over_off": median(on) / median(off)}
    res["summary"] = summary
    res["load_after"] = os.getloadavg()
    args.out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
