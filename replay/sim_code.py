"""Per-code facts of the simulated market: an item's price ladder, typical level size and fair price path.

Pure and deterministic: the fair price of a code is a function of (seed, code, second), drawn from
``random.Random`` instances seeded by them. Typical sizes are capped at :data:`MAX_TYPICAL` shares, so that with
the book's own bound (:data:`kiwoom_tape.replay.sim_book.LEVEL_CAP`) no level or total comes near 1e9 shares
(docs/protocol.md 2.1 quantities; issue 11). The books that quote around it are
:mod:`kiwoom_tape.replay.sim_book`.
"""

from __future__ import annotations

import math
import random
import zlib
from bisect import bisect_right

from kiwoom_tape.replay.sim_calendar import hms
from kiwoom_tape.replay.sim_references import is_known, reference_price_of, seed_int
from kiwoom_tape.schemas.market import band, is_etf, tick_size

__all__ = ["MAX_TYPICAL", "Code"]

MAX_TYPICAL = 2_000_000
"""The largest typical level size in shares: 10 levels x LEVEL_CAP x 1.2 x this stays far below 1e9."""

_T0900, _T1520 = hms(9), hms(15, 20)


def _signed_price(p: int, ref: int) -> str:
    return f"+{p}" if p > ref else (f"-{p}" if p < ref else str(p))


class Code:
    """Per-code facts shared by its venues ("005930", "005930_NX", "005930_AL"): ladder, sizes, fair price.

    The fair log price is a mean-reverting walk, flat until 08:00: hourly anchors drawn in sequence
    (at most 24 draws), minutes between two anchors a Brownian bridge seeded by (seed, code, hour), and
    seconds interpolated linearly. So :meth:`target` costs O(60) on the first call in an hour, O(1) after.
    """

    __slots__ = (
        "_anchors",
        "_hour",
        "_minutes",
        "_seed",
        "_sigma",
        "_tsec",
        "_tval",
        "code",
        "etf",
        "ladder",
        "liquid",
        "lower",
        "reference",
        "signed",
        "typical",
        "upper",
        "volume_per_sec",
    )

    def __init__(self, code: str, seed: int, volatility: float) -> None:
        self.code = code
        self.etf = is_etf(code)
        ref = self.reference = reference_price_of(code)
        self.lower, self.upper = band(ref, etf=self.etf)
        ladder: list[int] = []
        p = self.lower
        while p <= self.upper:
            ladder.append(p)
            p += tick_size(p, etf=self.etf)
        self.ladder = ladder
        self.signed = [_signed_price(p, ref) for p in ladder]
        u = (zlib.crc32(b"liq:" + code.encode("utf-8")) & 0xFFFF) / 65535.0
        known = is_known(code)
        notional = 10.0 ** (8.0 + 1.5 * u + (0.5 if known else 0.0))  # 100 M .. 10 B won resting per level
        self.liquid = known or u > 0.7
        self.typical = min(float(MAX_TYPICAL), max(5.0, notional / ref))  # shares: cheap -> many, dear -> few
        self.volume_per_sec = self.typical * 5.0 / 60.0  # the fill budget: 5 typical levels a minute
        self._seed = seed
        self._sigma = volatility / math.sqrt(390.0)  # per minute; 390 = minutes of the regular session
        self._anchors: list[float] = [0.0] * 9  # hours 0..8: flat until 08:00
        self._hour = -1
        self._minutes: list[float] = []
        self._tsec = -1
        self._tval = 0

    def _anchor(self, h: int) -> float:
        anchors = self._anchors
        if len(anchors) <= h:
            rng = random.Random(seed_int(self._seed, "anchors", self.code))
            for _ in range(9):
                rng.random()
            anchors[9:] = []
            x = 0.0
            rho, s = 0.998**60, self._sigma * math.sqrt(60.0)
            while len(anchors) <= max(h, 24):
                x = _clamp_log(x * rho + s * rng.gauss(0.0, 1.0))
                anchors.append(x)
        return anchors[h]

    def _hour_path(self, h: int) -> list[float]:
        """61 minute values of hour ``h``: a Brownian bridge between the anchors of ``h`` and ``h + 1``."""
        if h == self._hour:
            return self._minutes
        a, b = self._anchor(h), self._anchor(h + 1)
        if h < 8:
            path = [0.0] * 61
        else:
            rng = random.Random(seed_int(self._seed, "hour", self.code, h))
            w = [0.0]
            for _ in range(60):
                w.append(w[-1] + self._sigma * rng.gauss(0.0, 1.0))
            end = w[60]
            path = [_clamp_log(a + (b - a) * j / 60.0 + w[j] - end * j / 60.0) for j in range(61)]
        self._hour, self._minutes = h, path
        return path

    def target(self, t: float) -> int:
        """Ladder index of the best bid implied by the fair price at second ``int(t)`` (-1: below the lower limit)."""
        sec = min(max(int(t + 1e-9), 0), 86_399)
        if sec == self._tsec:
            return self._tval  # venues of one code, and several updates a second, share it
        h, rest = divmod(sec, 3600)
        m, s = divmod(rest, 60)
        path = self._hour_path(h)
        x = path[m] + (path[m + 1] - path[m]) * s / 60.0
        self._tsec = sec
        self._tval = v = bisect_right(self.ladder, self.reference * math.exp(x)) - 1
        return v

    def base_volume(self, t: float, venue: str) -> int:
        """Cumulative volume (FID 13) at a checkpoint ``t``: the opening fill plus the fill budget so far.

        Within a checkpoint interval fills add at most the interval's budget, so FID 13 never decreases.
        """
        if venue == "NXT":
            return int(self.volume_per_sec * 0.1 * max(0.0, t - hms(8)))
        if t < _T0900:
            return 0
        return int(self.typical * 2 + self.volume_per_sec * (min(t, _T1520) - _T0900))


def _clamp_log(x: float) -> float:
    return min(math.log(1.31), max(math.log(0.69), x))  # just beyond the band: limits are reachable
