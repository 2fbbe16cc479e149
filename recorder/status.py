"""``record``'s status line: the connections summed, and the one that lags named (on a terminal every second,
in a log every 10 s)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence

from kiwoom_tape.recorder.client import Recorder

__all__ = ["LAG_SECONDS", "StatusLine", "lagging"]

log = logging.getLogger("kiwoom_tape.recorder")

LAG_SECONDS = 5.0
"""A connection whose last frame is this much older than the freshest connection's lags."""


def lagging(recs: Sequence[tuple[str, Recorder]], now: float) -> str | None:
    """What to say of the connection that lags most, or None: a disconnected one first, then the one whose
    last frame is LAG_SECONDS or more older than the freshest connection's (only with 2+ connections)."""
    if len(recs) < 2:
        return None
    down = [name for name, rec in recs if not rec.stats.connected]
    if down:
        return f"{down[0]} DISCONNECTED" + (f" (+{len(down) - 1} more)" if len(down) > 1 else "")
    last = [(rec.stats.last_frame_mono, name) for name, rec in recs]
    fresh = max((t for t, _ in last if t is not None), default=None)
    if fresh is None:
        return None
    worst_t, worst = min(last, key=lambda tn: -1.0 if tn[0] is None else tn[0])
    if worst_t is None:
        return f"{worst} no frame yet"
    if fresh - worst_t >= LAG_SECONDS:
        return f"{worst} last frame {now - worst_t:.1f}s ago"
    return None


class StatusLine:
    """The status line of ``recs`` (name, recorder) pairs, called every driver tick."""

    def __init__(self, recs: Sequence[tuple[str, Recorder]], quiet: bool,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.recs, self.quiet, self.monotonic = list(recs), quiet, monotonic
        self.tty = sys.stderr.isatty() and not quiet
        self.last_show = monotonic()
        self.last_frames = 0

    def line(self, now: float) -> str:
        """The line now (and the rate since the last one)."""
        stats = [rec.stats for _, rec in self.recs]
        stores = [rec.store.stats for _, rec in self.recs]
        frames = sum(rs.frames_in for rs in stats)
        rate = (frames - self.last_frames) / max(now - self.last_show, 1e-9)
        self.last_frames, self.last_show = frames, now
        up = sum(rs.connected for rs in stats)
        lasts = [rs.last_frame_mono for rs in stats if rs.last_frame_mono is not None]
        since = f"{now - max(lasts):.1f}s" if lasts else "-"
        state = ("connected" if up else "DISCONNECTED") if len(stats) == 1 else f"{up}/{len(stats)} connected"
        line = (
            f"{state} | {rate:7.1f} frames/s | "
            f"rows {sum(st.rows.get('orderbook', 0) for st in stores)} 0D, "
            f"{sum(st.rows.get('afterhours', 0) for st in stores)} 0E | "
            f"files {sum(st.files_written for st in stores)} | reconnects {sum(rs.reconnects for rs in stats)} | "
            f"last frame {since} ago"
        )
        lag = lagging(self.recs, now)
        return line + (f" | lagging: {lag}" if lag else "")

    def __call__(self) -> None:
        now = self.monotonic()
        if self.quiet or now - self.last_show < (1.0 if self.tty else 10.0):
            return
        line = self.line(now)
        if self.tty:
            sys.stderr.write("\r" + line[:180].ljust(180))
            sys.stderr.flush()
        else:
            log.info(line)
