"""Memory of ``record`` at the real peak: the estimator, stated before the run, and an A/B of memory levers.

**The estimator** (:func:`rss_estimate`), fixed before any run so that no run can choose its own:

- RSS (``VmRSS``) is sampled every second for the whole run (30 minutes in full mode, seconds in quick mode);
- the samples are cut into consecutive windows of 5 minutes from the start of the stream (quick mode: a sixth of
  the run); a last window shorter than half a window is dropped;
- each window is summarized by its **median** (robust to the sawtooth of the flushes, a row group every
  ~14 s at the peak, and to the step of a roll);
- **growth** = the least-squares slope of the window medians over the windows' mid-times, in MiB per minute;
- **peak RSS** = the largest sample (``VmHWM`` when it is higher: a peak between two samples counts too).

:func:`main` (``python -m bench.memory``) runs ``record`` at the real peak once per variant, all variants at
the same time (one machine state for all), and writes ``bench/results/memory-<date>.json``. A variant is a set of
environment variables given to ``record`` (``ARROW_DEFAULT_MEMORY_POOL``: pyarrow's allocator).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import statistics
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["WINDOW_S", "RssEstimate", "main", "rss_estimate", "window_medians"]

WINDOW_S = 300.0
"""Window of the estimator in full mode: 5 minutes."""


@dataclasses.dataclass(frozen=True)
class RssEstimate:
    """What :func:`rss_estimate` makes of one run's samples (MiB, MiB/min)."""

    peak_mib: float
    growth_mib_per_min: float
    window_s: float
    window_medians_mib: list[float]
    window_mid_s: list[float]
    samples: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def window_medians(samples: Sequence[tuple[float, float]], window_s: float) -> tuple[list[float], list[float]]:
    """(mid-times, medians) of ``(seconds since start, value)`` samples in consecutive windows of ``window_s``.

    Windows start at t = 0; samples before it are ignored; a last window covering less than half a window
    of samples is dropped (its median would stand for too few samples).
    """
    if window_s <= 0:
        raise ValueError("window_s must be > 0")
    groups: dict[int, list[float]] = {}
    last_t = 0.0
    for t, v in samples:
        if t < 0:
            continue
        groups.setdefault(int(t // window_s), []).append(v)
        last_t = max(last_t, t)
    mids: list[float] = []
    meds: list[float] = []
    for k in sorted(groups):
        start = k * window_s
        if last_t - start < window_s / 2 and k == max(groups):
            continue
        mids.append(start + window_s / 2)
        meds.append(float(statistics.median(groups[k])))
    return mids, meds


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (NaN with fewer than two distinct xs)."""
    if len(xs) < 2:
        return float("nan")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def rss_estimate(samples: Sequence[tuple[float, int]], window_s: float = WINDOW_S,
                 hwm_bytes: int = 0) -> RssEstimate:
    """Peak RSS and growth (module docstring) of ``(seconds since the stream started, RSS bytes)`` samples."""
    mib = [(t, b / 2**20) for t, b in samples]
    mids, meds = window_medians(mib, window_s)
    peak = max([v for _t, v in mib] + [hwm_bytes / 2**20]) if mib else float("nan")
    return RssEstimate(
        peak_mib=peak,
        growth_mib_per_min=60.0 * _slope(mids, meds),
        window_s=window_s,
        window_medians_mib=[round(m, 2) for m in meds],
        window_mid_s=mids,
        samples=len(mib),
    )


# --------------------------------------------------------------------------------------------------
# The A/B: ``record`` at the real peak once per variant, all at the same time

def _flush_rows(n: int) -> str:
    """A ``record`` prelude: the Store's row-group size (``flush_rows``) set to ``n`` for the run."""
    return f"import kiwoom_tape.recorder.store as s; s.Store.__init__.__kwdefaults__['flush_rows'] = {n}"


VARIANTS: dict[str, tuple[dict[str, str], str]] = {
    "mimalloc-10k": ({"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}, _flush_rows(10_000)),
    "jemalloc-10k": ({"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}, _flush_rows(10_000)),
    "mimalloc-5k": ({"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}, _flush_rows(5_000)),
    "jemalloc-5k": ({"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}, _flush_rows(5_000)),
    "system-5k": ({"ARROW_DEFAULT_MEMORY_POOL": "system"}, _flush_rows(5_000)),
    "jemalloc-10k-page4": ({"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"},
                           _flush_rows(10_000) + "\nimport kiwoom_tape.recorder.parquet_parts as p; "
                           "p.FRAMES_PAGE_BYTES = 4 * 2**20"),
}
"""name (pyarrow's memory pool, rows per flush) -> (environment of ``record``, Python prelude of ``record``).
jemalloc-10k is ``record`` as it is (it picks jemalloc itself when ARROW_DEFAULT_MEMORY_POOL is unset); mimalloc is
pyarrow's default; ``page4``: ``frames`` data pages of 4 MiB, which became the default after the run of
memory-2026-12-02T1903.json (before it, every variant had 16 MiB pages; after it, every variant has 4 MiB)."""


def _one(cfg: Any, tmp: Path, wl_path: Path, wl: Any, seconds: float, tag: str,
         variant: tuple[dict[str, str], str], window_s: float, out: dict[str, Any]) -> None:
    from bench.record import REAL_PEAK_ROWS
    from bench.record_run import record_run

    try:
        r = record_run(cfg, tmp, wl_path, wl, rate=REAL_PEAK_ROWS / wl.rows_per_frame, seconds=seconds, tag=tag,
                       sample_every=1.0, env=variant[0], prelude=variant[1], window_s=window_s,
                       record_args=("--roll-minutes", f"{max(0.1, seconds / 5 / 60):.2f}"))
        out[tag] = {k: v for k, v in r.items() if k != "rss_samples"}
    except Exception as exc:  # one variant failing must not hide the others
        out[tag] = {"error": repr(exc)}


def main(argv: list[str] | None = None) -> int:
    from bench.frames import make_workload
    from bench.machine import loadavg, machine_info
    from bench.report import Config
    from bench.run import _jsonable

    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=1800.0, help="length of each run (default 30 min)")
    p.add_argument("--window", type=float, default=WINDOW_S, help="estimator window, seconds (default 300)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    cfg = Config.make(quick=True)
    started = dt.datetime.now(dt.UTC)
    load_before = loadavg()
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kiwoom-bench-memory-") as d:
        tmp = Path(d)
        wl = make_workload(3_000)
        wl_path = tmp / "workload.pkl"
        wl.save(wl_path)
        threads = [threading.Thread(target=_one, args=(cfg, tmp, wl_path, wl, args.seconds, f"mem{i}",
                                                         VARIANTS[name], args.window, res))
                   for i, name in enumerate(names)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    runs = {name: res.get(f"mem{i}", {}) for i, name in enumerate(names)}
    for name, r in runs.items():
        print(f"{name}: peak {r.get('rss_peak_mib', float('nan')):.1f} MiB, growth "
              f"{r.get('rss_growth_mib_per_min', float('nan')):.3f} MiB/min, window medians "
              f"{r.get('rss_window_medians_mib')}, lost {r.get('lost')}", flush=True)
    result = {"date": started.isoformat(timespec="seconds"), "machine": machine_info(), "load_before": load_before,
              "load_after": loadavg(), "seconds": args.seconds, "window_s": args.window,
              "rate_rows_per_s": 720, "variants": {n: VARIANTS[n] for n in names}, "runs": runs,
              "note": "all variants ran at the same time, each record pinned to core 1 and its sender to core 0"}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"memory-{started:%Y-%m-%dT%H%M}.json"
    path.write_text(json.dumps(_jsonable(result), indent=1, allow_nan=False))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
