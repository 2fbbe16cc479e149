"""What one frame costs the store, in-process: pure 0D, pure 0B and mixed 0B+0D frames, fast path against general.

``python -m bench.mixed_frames [--frames N] [--repeats R] [--items K] [--json PATH]`` prints a table (and with
``--json`` writes it, the runs, the machine and the load to PATH, e.g. under ``bench/results/``); ``python -m bench
--sections mixed`` runs it as a section of the benchmarks (:func:`run`). Each figure is
the CPU time (``time.process_time``) of :meth:`kiwoom_tape.recorder.store.Store.add_received` (the call the recorder
makes) over N frames plus the closing flush, divided by N: with the fast path
(:func:`kiwoom_tape.schemas.normalize.read_real_frame`) and with it switched off, so that every frame takes the
general path (``decode_server_message`` and the builders' ``append``) exactly as a frame the fast path declines.
The kinds and paths are measured interleaved, R times each, and the medians are reported with the min-max spread
and the ratios taken from the same run: the machine is shared and noisy (PERF-LIMITS.md, "Machine and versions").

Frames come from :class:`kiwoom_tape.replay.simulator.SimulatedMarket` (200 items from the open): one 0D row, one
0B row, or a 0B row and a 0D row in one frame, as Kiwoom packs rows of several types (docs/protocol.md 1.7).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.frames import bench_items
from bench.machine import loadavg, machine_info, write_atomic
from bench.report import Config, Figure

__all__ = ["KINDS", "PATHS", "make_frames", "measure", "run", "store_us_per_frame"]

_READER = "read_real_frame"
"""The name the store's intake calls the fast path by (:mod:`kiwoom_tape.recorder.intake`)."""
KINDS = ("0D", "0B", "0B+0D")
PATHS = ("fast", "general")


def make_frames(n: int, items: int = 200, seed: int = 6) -> dict[str, list[bytes]]:
    """``n`` frames of each kind of :data:`KINDS` (fewer if the simulated minutes hold fewer 0B rows)."""
    from kiwoom_tape.replay.simulator import SimulatedMarket
    from kiwoom_tape.schemas.protocol import encode_real_frame

    market = SimulatedMarket(seed=seed, items=bench_items(items), start=9 * 3600.0)
    d: list[str] = []
    b: list[str] = []
    t = 9 * 3600.0
    while (len(d) < n or len(b) < n) and t < 15 * 3600:
        t += 5.0
        for tick in market.advance(t):
            for row in tick.rows:
                (d if row.type == "0D" else b if row.type == "0B" else []).append(row.text)
    k = min(n, len(d), len(b))
    return {
        "0D": [encode_real_frame([r]).encode() for r in d[:k]],
        "0B": [encode_real_frame([r]).encode() for r in b[:k]],
        "0B+0D": [encode_real_frame([x, y]).encode() for x, y in zip(b[:k], d[:k], strict=True)],
    }


@contextmanager
def _general_path() -> Iterator[None]:
    """The store with its fast path switched off: every frame is read the way a declined frame is."""
    from kiwoom_tape.recorder import intake

    fast = getattr(intake, _READER)
    setattr(intake, _READER, lambda data, types=(): None)
    try:
        yield
    finally:
        setattr(intake, _READER, fast)


def store_us_per_frame(frames: list[bytes], path: str) -> float:
    """CPU µs per frame of ``Store.add_received`` over ``frames`` and the closing flush, on ``path`` (see PATHS)."""
    from kiwoom_tape.recorder.store import Store

    with tempfile.TemporaryDirectory(prefix="kiwoom-bench-mixed-") as d:
        store = Store(d, "20261123T000000Z-benchmix")
        store.open()
        ns = time.time_ns()
        with _general_path() if path == "general" else _nothing():
            t = time.process_time()
            try:
                for i, data in enumerate(frames):
                    store.add_received(ns + i, data)
            finally:
                store.close()
            return (time.process_time() - t) / len(frames) * 1e6


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def measure(n: int = 8000, repeats: int = 5, items: int = 200) -> dict[str, Any]:
    """Medians (µs/frame) per kind and path, their runs, and the ratios of the medians (see the module docstring)."""
    frames = make_frames(n, items)
    runs: dict[str, dict[str, list[float]]] = {k: {p: [] for p in PATHS} for k in KINDS}
    for rep in range(repeats):
        for kind in KINDS:
            order = PATHS if rep % 2 == 0 else PATHS[::-1]  # neither path always runs first
            for path in order:
                runs[kind][path].append(store_us_per_frame(frames[kind], path))
    med = {k: {p: statistics.median(v) for p, v in by.items()} for k, by in runs.items()}
    return {
        "frames_per_kind": len(frames["0D"]),
        "repeats": repeats,
        "median_us_per_frame": med,
        "runs_us_per_frame": runs,
        "general_over_fast": {k: med[k]["general"] / med[k]["fast"] for k in KINDS},
        "fast_over_pure_0d_fast": {k: med[k]["fast"] / med["0D"]["fast"] for k in KINDS},
    }


def run(cfg: Config, log: Callable[[str], None]) -> tuple[list[Figure], dict[str, Any]]:
    """The ``mixed`` section of ``python -m bench``: :func:`measure` (8000 frames of each kind, 5 runs; ``--quick``:
    300, 1 run), one row per kind and path, CPU µs per frame; the note has the other path and the ratio."""
    r = measure(300, 1) if cfg.quick else measure(8000, 5)
    figs: list[Figure] = []
    for kind in KINDS:
        for path in PATHS:
            runs = r["runs_us_per_frame"][kind][path]
            other = r["median_us_per_frame"][kind][PATHS[path == PATHS[0]]]
            figs.append(Figure(
                "mixed", f"store path in-process, {kind} frames, {path} path ({r['frames_per_kind']:,} frames)",
                r["median_us_per_frame"][kind][path], "µs/frame", runs=runs,
                note=f"general/fast {r['general_over_fast'][kind]:.2f}x (the other path {other:.1f} µs/frame); "
                     f"fast vs pure 0D fast {r['fast_over_pure_0d_fast'][kind]:.2f}x; CPU time of "
                     "Store.add_received and the closing flush"))
        log(f"  {kind}: fast {r['median_us_per_frame'][kind]['fast']:.1f} µs/frame, general "
            f"{r['median_us_per_frame'][kind]['general']:.1f} µs/frame ({r['general_over_fast'][kind]:.2f}x)")
    return figs, r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mixed_frames", description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=8000, help="frames of each kind (default 8000)")
    p.add_argument("--repeats", type=int, default=5, help="runs of each kind and path (default 5)")
    p.add_argument("--items", type=int, default=200, help="simulated items (default 200, one connection's most)")
    p.add_argument("--json", type=Path, help="also write the figures, runs and machine to this JSON file")
    args = p.parse_args(argv)
    load = loadavg()
    r = measure(args.frames, args.repeats, args.items)
    print(f"store path in-process, CPU µs/frame, median of {r['repeats']} runs (min-max), "
          f"{r['frames_per_kind']} frames per kind")
    for kind in KINDS:
        cells = []
        for path in PATHS:
            v = r["runs_us_per_frame"][kind][path]
            cells.append(f"{path} {r['median_us_per_frame'][kind][path]:7.1f} ({min(v):.1f}-{max(v):.1f})")
        print(f"  {kind:6} {'   '.join(cells)}   general/fast {r['general_over_fast'][kind]:.2f}x   "
              f"fast vs pure 0D fast {r['fast_over_pure_0d_fast'][kind]:.2f}x")
    if args.json is not None:
        r.update(items=args.items, loadavg_before=load, loadavg_after=loadavg(), machine=machine_info(),
                 finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        write_atomic(args.json, json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
