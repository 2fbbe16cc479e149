"""The benchmark workload: REAL frames exactly as the simulator makes them, generated once per run.

Rows come from :class:`kiwoom_tape.replay.simulator.SimulatedMarket` (full 163-FID 0D rows, ~2 KB each, and 0E rows
from the after-hours window) for 200 items, the most one connection may carry. They are packed into
frames with :func:`kiwoom_tape.schemas.protocol.encode_real_frame` in a fixed, seeded mix that looks like the live
stream: most frames carry one row, some several rows of different items (docs/protocol.md 1.7), and about
2 % are 0E frames. Every frame keeps the market time of its first row, so a stream can be replayed on
its own clock (storage) or cycled as fast as a socket takes it (throughput).
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kiwoom_tape.replay.simulator import DEFAULT_UNIVERSE, SimRow, SimulatedMarket
from kiwoom_tape.schemas.protocol import encode_real_frame

__all__ = ["ROWS_PER_FRAME", "Workload", "bench_items", "make_workload"]

ROWS_PER_FRAME: tuple[tuple[int, float], ...] = ((1, 0.80), (2, 0.12), (3, 0.05), (4, 0.03))
"""Rows per 0D frame and their probabilities (mean 1.31)."""
SHARE_0E = 0.02
"""Share of frames that are 0E (after-hours) frames."""
OPEN_0D = 10 * 3600.0
"""Market time the 0D stream starts at (10:00:00 KST: every item quotes)."""
OPEN_0E = 15 * 3600 + 45 * 60.0
"""Market time the 0E stream starts at (15:45:00 KST: the after-hours window)."""


def bench_items(n: int = 200) -> list[str]:
    """``n`` distinct items: the simulator's 31 real codes, synthetic KRX codes, and ``_NX`` twins."""
    nx = [c + "_NX" for c in DEFAULT_UNIVERSE[:29]]
    synthetic = [f"{100000 + i * 37:06d}" for i in range(max(0, n - len(DEFAULT_UNIVERSE) - len(nx)))]
    items = list(dict.fromkeys([*DEFAULT_UNIVERSE, *synthetic, *nx]))
    return items[:n]


@dataclass
class Workload:
    """Pre-encoded frames (UTF-8 bytes), each with its row count by type and its market time."""

    frames: list[bytes]
    rows_0d: list[int]
    rows_0e: list[int]
    times: list[float]
    items: list[str]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def n_0d(self) -> int:
        return sum(self.rows_0d)

    @property
    def n_0e(self) -> int:
        return sum(self.rows_0e)

    @property
    def rows_per_frame(self) -> float:
        return (self.n_0d + self.n_0e) / max(1, len(self.frames))

    def summary(self) -> dict[str, float | int]:
        sizes = sorted(len(f) for f in self.frames)
        d_sizes = sorted(len(f) for f, r in zip(self.frames, self.rows_0d, strict=True) if r == 1)
        return {
            "frames": len(self.frames),
            "rows_0d": self.n_0d,
            "rows_0e": self.n_0e,
            "rows_per_frame": round(self.rows_per_frame, 3),
            "frame_bytes_median": sizes[len(sizes) // 2] if sizes else 0,
            "frame_bytes_mean": round(sum(sizes) / max(1, len(sizes)), 1),
            "one_row_0d_frame_bytes_median": d_sizes[len(d_sizes) // 2] if d_sizes else 0,
            "items": len(self.items),
        }

    def save(self, path: Path) -> None:
        """Write the frames and their row counts for a subprocess (a pickle of plain lists)."""
        with open(path, "wb") as f:
            pickle.dump((self.frames, self.rows_0d, self.rows_0e, self.times, self.items), f, protocol=5)

    @classmethod
    def load(cls, path: Path) -> Workload:
        with open(path, "rb") as f:
            frames, rows_0d, rows_0e, times, items = pickle.load(f)  # our own temporary file
        return cls(frames, rows_0d, rows_0e, times, items)


def _timed_rows(market: SimulatedMarket, until: float, real_type: str) -> list[tuple[float, SimRow]]:
    return [(tick.t, row) for tick in market.advance(until) for row in tick.rows if row.type == real_type]


def make_workload(n_rows_0d: int, *, seed: int = 6, items: Sequence[str] | None = None) -> Workload:
    """About ``n_rows_0d`` 0D rows (plus ~2 % 0E frames) packed into frames, deterministic from ``seed``."""
    items = list(items) if items is not None else bench_items()
    market = SimulatedMarket(seed=seed, items=items, start=OPEN_0D)
    n_krx = sum(1 for i in items if not i.endswith("_NX"))
    # NXT twins update at 0.6x the base rate in the main market (replay/sim_calendar.py): run long enough
    seconds_0d = 1.5 * n_rows_0d / (market.rate_hz * len(items)) + 1.0
    rows_0d = _timed_rows(market, OPEN_0D + seconds_0d, "0D")[:n_rows_0d]
    n_0e_rows = int(len(rows_0d) / ROWS_PER_FRAME_MEAN * SHARE_0E * 1.2) + 4
    after = SimulatedMarket(seed=seed, items=items, start=OPEN_0E)
    seconds_0e = n_0e_rows / (after.rate_0e_hz * max(1, n_krx)) + 1.0
    rows_0e = _timed_rows(after, OPEN_0E + seconds_0e, "0E")
    rng = random.Random(seed)
    sizes = [k for k, _ in ROWS_PER_FRAME]
    weights = [p for _, p in ROWS_PER_FRAME]
    frames: list[bytes] = []
    n0d: list[int] = []
    n0e: list[int] = []
    times: list[float] = []
    i = j = 0
    while i < len(rows_0d):
        if rng.random() < SHARE_0E and j < len(rows_0e):
            k = 1 if rng.random() < 0.9 else 2
            chunk = rows_0e[j : j + k]
            j += len(chunk)
            frames.append(encode_real_frame([r.text for _, r in chunk]).encode("utf-8"))
            n0d.append(0)
            n0e.append(len(chunk))
            times.append(rows_0d[i][0])  # played at the 0D stream's clock
            continue
        k = rng.choices(sizes, weights)[0]
        chunk = rows_0d[i : i + k]
        i += len(chunk)
        frames.append(encode_real_frame([r.text for _, r in chunk]).encode("utf-8"))
        n0d.append(len(chunk))
        n0e.append(0)
        times.append(chunk[0][0])
    return Workload(frames, n0d, n0e, times, items)


ROWS_PER_FRAME_MEAN = sum(k * p for k, p in ROWS_PER_FRAME)
