"""``python -m bench [--quick] [--sections record,storage,replay,mixed,relay,query,market,compact] [--out DIR]``.

Prints the machine, the package versions and one table (figure, value, ceiling, ratio, target,
verdict), and writes everything, with each section's details, to ``DIR/latest.json`` (``--quick``:
``latest-quick.json``) and a dated copy. Full mode takes about an hour (66 minutes in
``2026-12-03T053103.json``; the memory run alone is 30, compacting the query day about 6); ``--quick``
takes a few minutes and only shows that everything runs: its figures are too short to mean much. The
machine is shared and small (see PERF-LIMITS.md): figures are medians of several runs, and the load
average before and after is recorded with them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import compact, market, mixed_frames, pacing, query, record, relay, replay, storage
from bench.frames import make_workload
from bench.machine import loadavg, machine_info
from bench.report import Config, Figure, table

__all__ = ["SECTIONS", "main"]

SECTIONS = ("record", "storage", "replay", "mixed", "relay", "query", "market", "compact")
RESULTS = Path(__file__).resolve().parent / "results"
RECORD_POOL_ROWS = 50_000
"""0D rows in the frames the record and replay senders cycle through (full mode)."""


def _log(msg: str) -> None:
    print(msg, flush=True)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, int | float | str | bool) or obj is None:
        return obj
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def run(cfg: Config, sections: list[str], out: Path, log: Callable[[str], None] = _log) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    info = machine_info()
    load_before = loadavg()
    log(f"kiwoom-tape benchmarks, {'quick' if cfg.quick else 'full'} mode, {started:%Y-%m-%d %H:%M} UTC")
    log(f"machine: {info['cpu']}, {info['cores']} cores, {info['mem_gib']} GiB, Linux {info['kernel']}, "
        f"Python {info['python']}, commit {info['commit']}, taskset {'yes' if info['taskset'] else 'no'}")
    log("packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()))
    log(f"load average before: {load_before}")
    tmp = Path(tempfile.mkdtemp(prefix="kiwoom-bench-"))
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    durations: dict[str, float] = {}
    errors: dict[str, str] = {}
    try:
        t = time.perf_counter()
        pool_rows = 3_000 if cfg.quick else RECORD_POOL_ROWS
        wl = make_workload(max(cfg.storage_rows, pool_rows, cfg.replay_frames * 2))
        pool = make_workload(pool_rows) if len(wl) > 2 * pool_rows else wl
        pool_path = tmp / "workload.pkl"
        pool.save(pool_path)
        summary = wl.summary()
        log(f"workload: {summary['frames']:,} frames, {summary['rows_0d']:,} 0D + {summary['rows_0e']:,} 0E rows, "
            f"{summary['rows_per_frame']} rows/frame, median frame {summary['frame_bytes_median']} B "
            f"(one-row 0D frame {summary['one_row_0d_frame_bytes_median']} B), made in {time.perf_counter() - t:.0f} s")
        details["workload"] = summary
        for name in sections:
            log(f"[{name}]")
            t = time.perf_counter()
            try:
                if name == "record":
                    figs, det = record.run(cfg, tmp, pool_path, pool, log)
                elif name == "storage":
                    figs, det = storage.run(cfg, tmp, wl, log)
                elif name == "replay":
                    figs, det = replay.run(cfg, tmp, wl, log)
                    pace_figs, det["pacing"] = pacing.run(cfg, tmp, wl, log)
                    figs += pace_figs
                elif name == "mixed":
                    figs, det = mixed_frames.run(cfg, log)
                elif name == "relay":
                    figs, det = relay.run(cfg, tmp, pool_path, pool, log)
                elif name == "market":
                    figs, det = market.run(cfg, tmp, pool, log)
                elif name == "compact":
                    figs, det = compact.run(cfg, tmp, wl, log)
                else:
                    figs, det = query.run(cfg, tmp, log)
                figures.extend(figs)
                details[name] = det
            except Exception as exc:  # one failing section must not hide the others' figures
                errors[name] = "".join(traceback.format_exception(exc))[-4000:]
                log(f"  {name} FAILED: {exc!r}")
                figures.append(Figure(name, f"{name} section", None, "", verdict="ERROR", note=repr(exc)[:200]))
            durations[name] = time.perf_counter() - t
            log(f"  ({durations[name]:.0f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = loadavg()
    text = table(figures)
    log("")
    log(text)
    log(f"\nload average after: {load_after}")
    result = {
        "date": started.isoformat(timespec="seconds"),
        "mode": "quick" if cfg.quick else "full",
        "machine": info,
        "load_before": load_before,
        "load_after": load_after,
        "config": cfg.__dict__,
        "sections": sections,
        "figures": [f.as_dict() for f in figures],
        "details": details,
        "durations_s": durations,
        "errors": errors,
        "table": text,
        "table_markdown": table(figures, markdown=True),
    }
    out.mkdir(parents=True, exist_ok=True)
    name = "latest-quick.json" if cfg.quick else "latest.json"
    payload = json.dumps(_jsonable(result), indent=1, allow_nan=False)
    (out / name).write_text(payload)
    dated = out / f"{started:%Y-%m-%dT%H%M%S}{'-quick' if cfg.quick else ''}.json"
    dated.write_text(payload)
    log(f"wrote {out / name} and {dated.name}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run (figures not meaningful)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--out", type=Path, default=RESULTS, help="where the JSON results go (default bench/results)")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                   help="event loop of the benchmark's own senders and receivers")
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        p.error(f"unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    cfg = Config.make(args.quick)
    cfg.loop = args.loop
    result = run(cfg, sections, args.out)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
