"""Record, lossless: how fast the real ``record`` process keeps up, what it costs at the real peak.

Three measurements, each against the lean sender (:mod:`bench.sender`, pinned to core 0) with the
receiver pinned to core 1:

- **ceiling**: a bare websockets client (:mod:`bench.bare_client`) receiving the same frames as fast as
  TCP delivers them;
- **record at max rate**: ``record --url ws://127.0.0.1:PORT/...`` (the real CLI, a subprocess) takes the
  same stream; with TCP flow control the sender is throttled rather than frames dropped, so the rate
  it sustains with every frame written and none delayed beyond 1 s is its lossless capacity. A paced
  run at 90 % of it confirms the figure (full mode);
- **the real peak**: 200 items x 3.6 Hz = 720 rows/s, paced, for a minute (full) or seconds (quick):
  the CPU share of one core and the RSS of ``record``, sampled from /proc.

The pieces: :mod:`bench.sender_process` (the sender), :mod:`bench.bare_receive` (the ceiling and the CPU
floor), :mod:`bench.record_run` (one ``record`` run and what is read back), :mod:`bench.record_inprocess`
(the store path and the writer's footer, in-process). This module runs them and makes the figures.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

from bench.bare_receive import bare_cpu, bare_receive
from bench.frames import Workload
from bench.memory import WINDOW_S
from bench.record_inprocess import footer_in_fresh_process, store_path
from bench.record_run import record_run
from bench.report import Config, Figure, median

__all__ = ["REAL_PEAK_ROWS", "bare_receive", "record_run", "run"]

REAL_PEAK_ROWS = 200 * 3.6
"""One connection's real peak: 200 items x ~3.6 0D updates/s (DESIGN.md Targets)."""


def run(cfg: Config, tmp: Path, wl_path: Path, wl: Workload, log: Any) -> tuple[list[Figure], dict[str, Any]]:
    """The record section: ceiling, lossless max rate, CPU and memory at the real peak."""
    items = wl.items
    detail: dict[str, Any] = {"ceiling_runs": [], "max_runs": []}
    for k in range(cfg.repeats):
        r = bare_receive(cfg, tmp, wl_path, items, cfg.record_seconds, f"bare{k}")
        detail["ceiling_runs"].append(r)
        log(f"  bare receive run {k + 1}: {r['rate']:,.0f} frames/s")
    for k in range(cfg.repeats):
        r = record_run(cfg, tmp, wl_path, wl, rate=0.0, seconds=cfg.record_seconds, tag=f"recmax{k}")
        detail["max_runs"].append({key: v for key, v in r.items() if key != "rss_samples"})
        log(f"  record max run {k + 1}: {r['rate']:,.0f} frames/s, lost {r['lost']}, "
            f"max delay {r['delay_max_s']:.3f} s, lossless {r['lossless']}")
    ceiling = median([r["rate"] for r in detail["ceiling_runs"]])
    rates = [r["rate"] for r in detail["max_runs"]]
    lossless = all(r["lossless"] for r in detail["max_runs"])
    rows_per_frame = wl.rows_per_frame
    figs: list[Figure] = []
    rec = Figure("record", "record, lossless, max rate", median(rates), "frames/s", ceiling, runs=rates,
                 note=f"{rows_per_frame:.2f} rows/frame; lossless in every run: {lossless}")
    rec.check_ratio(0.40)
    if not lossless:
        rec.verdict = "MISSED"
        rec.note += " (a run lost or delayed frames)"
    if cfg.confirm_seconds > 0 and rates:
        target = 0.9 * median(rates)
        r = record_run(cfg, tmp, wl_path, wl, rate=target, seconds=cfg.confirm_seconds, tag="recconfirm")
        detail["confirm"] = {key: v for key, v in r.items() if key != "rss_samples"}
        log(f"  record paced at {target:,.0f} frames/s for {cfg.confirm_seconds:.0f} s: lost {r['lost']}, "
            f"max delay {r['delay_max_s']:.3f} s")
        rec.note += (f"; paced {cfg.confirm_seconds:.0f} s at 90 %: lost {r['lost']}, "
                     f"max delay {r['delay_max_s']:.2f} s")
        if not r["lossless"]:
            rec.verdict = "MISSED"
    figs.append(Figure("record", "bare websockets receive (ceiling)", ceiling, "frames/s",
                       runs=[r["rate"] for r in detail["ceiling_runs"]]))
    figs.append(rec)
    figs.append(Figure("record", "record, rows/s at max rate", median(rates) * rows_per_frame, "rows/s"))
    # The real peak: CPU over the window, RSS over the whole (memory) run.
    peak_fps = REAL_PEAK_ROWS / rows_per_frame
    seconds = max(cfg.cpu_seconds, cfg.memory_seconds) + 2.0
    # Segments roll every fifth of the run, so the memory run sees several: each open Parquet writer keeps
    # its file's footer until the roll (footer_bytes_per_row_group), a growth the roll bounds; what is
    # left over the rolls is what would grow without bound.
    roll_minutes = max(0.1, seconds / 5 / 60)
    # RSS by the estimator of bench.memory: medians per 5-minute window (quick: a sixth of the run), slope
    window_s = seconds / 6 if cfg.quick else WINDOW_S
    r = record_run(cfg, tmp, wl_path, wl, rate=peak_fps, seconds=seconds, tag="recpeak", cpu_window=cfg.cpu_seconds,
                   sample_every=0.25 if cfg.quick else 1.0, record_args=("--roll-minutes", f"{roll_minutes:.2f}"),
                   window_s=window_s)
    detail["peak"] = r
    log(f"  record at the real peak ({peak_fps:.0f} frames/s) for {seconds:.0f} s: CPU {r.get('cpu_pct', 0):.2f} %, "
        f"peak RSS {r.get('rss_peak_mib', 0):.0f} MiB, lost {r['lost']}")
    floor = [bare_cpu(cfg, tmp, wl_path, items, peak_fps, cfg.cpu_seconds, f"barecpu{k}") for k in range(cfg.repeats)]
    detail["bare_cpu_at_peak"] = floor
    log(f"  a bare websockets client at the same rate: CPU {median(floor):.2f} % ({[round(x, 2) for x in floor]})")
    figs.append(Figure("record", f"CPU of record at 720 rows/s ({cfg.cpu_seconds:.0f} s)", r.get("cpu_pct"),
                       "% of a core", median(floor),
                       note=f"ceiling column: a bare websockets client at the same rate; whole run: "
                       f"{r.get('cpu_pct_whole_run', float('nan')):.2f} %; lost {r['lost']}, "
                       f"max delay {r['delay_max_s']:.3f} s")
                .check_ratio_at_most(1.0))
    if cfg.loop == "asyncio" and importlib.util.find_spec("uvloop") is not None:
        # what `record --event-loop auto` uses when the `fast` extra is installed, against the same floor
        uv = dataclasses.replace(cfg, loop="uvloop")
        ru = record_run(uv, tmp, wl_path, wl, rate=peak_fps, seconds=cfg.cpu_seconds + 2.0, tag="recpeakuv",
                        cpu_window=cfg.cpu_seconds, sample_every=0.25 if cfg.quick else 1.0)
        floor_uv = bare_cpu(uv, tmp, wl_path, items, peak_fps, cfg.cpu_seconds, "barecpuuv")
        detail["uvloop_peak"] = {k: v for k, v in ru.items() if k != "rss_samples"}
        detail["bare_cpu_at_peak_uvloop"] = floor_uv
        log(f"  the same on uvloop: record CPU {ru.get('cpu_pct', 0):.2f} %, bare client {floor_uv:.2f} %")
        figs.append(Figure("record", f"CPU of record at 720 rows/s, uvloop ({cfg.cpu_seconds:.0f} s)",
                           ru.get("cpu_pct"), "% of a core", floor_uv,
                           note=f"ceiling column: a bare websockets client on uvloop; lost {ru['lost']}")
                    .check_ratio_at_most(1.0))
    # The store path alone, in-process (no socket): the fast path vs the general path it replaced.
    sp = {kind: [store_path(wl, kind == "fast") for _ in range(cfg.repeats)] for kind in ("general", "fast")}
    detail["store_path"] = sp
    log(f"  store path in-process: general {median(sp['general']):,.0f} frames/s, fast {median(sp['fast']):,.0f}")
    speedup = median(sp["fast"]) / median(sp["general"])
    figs.append(Figure("record", "store path in-process (no socket), fast path", median(sp["fast"]), "frames/s",
                       runs=sp["fast"], note=f"CPU time; the general path it replaced: {median(sp['general']):,.0f} "
                       f"frames/s ({speedup:.2f}x)"))
    figs.append(Figure("memory", f"peak RSS of record at 720 rows/s ({seconds:.0f} s)", r.get("rss_peak_mib"), "MiB",
                       note=f"largest of the samples (every second) and VmHWM; segments rolled every "
                       f"{roll_minutes:.2f} min").check_at_most(150.0, "<= 150 MiB"))
    at = r.get("rss_mib_at", {})
    figs.append(Figure("memory", "RSS growth with time (slope of window medians)", r.get("rss_growth_mib_per_min"),
                       "MiB/min",
                       note=f"least-squares slope over the medians of {window_s / 60:.1f}-minute windows "
                       f"({'/'.join(str(v) for v in r.get('rss_window_medians_mib', []))} MiB); "
                       f"RSS at 10/25/50/75/100 %: {'/'.join(str(v) for v in at.values())} MiB")
                .check_at_most(0.5, "flat (<= 0.5 MiB/min)"))
    footer = [footer_in_fresh_process() for _ in range(cfg.repeats)]
    detail["footer_bytes_per_row_group"] = footer
    groups_per_min = 60.0 * REAL_PEAK_ROWS / 10_000  # the store writes a row group per 10,000 rows
    per_min = median(footer) * groups_per_min / 2**20
    figs.append(Figure("memory", "open writer's footer per orderbook row group", median(footer) / 1024, "KiB",
                       note=f"held until the segment rolls: at the real peak {per_min:.2f} MiB/min"
                       " while a segment is open, reset by each roll (128 MiB or 60 min by default)"))
    return figs, detail
