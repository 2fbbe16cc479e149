"""One benchmark figure, its ceiling and target, and the table printed from a list of them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Config", "Figure", "median", "percentile", "table"]


@dataclass
class Config:
    """How long and how often each section measures (``--quick`` shrinks everything to seconds)."""

    quick: bool
    repeats: int
    record_seconds: float
    confirm_seconds: float
    cpu_seconds: float
    memory_seconds: float
    storage_rows: int
    replay_frames: int
    pacing_seconds: float
    query_rows: int
    relay_seconds: float = 60.0
    loop: str = "asyncio"

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(quick=True, repeats=1, record_seconds=1.5, confirm_seconds=0.0, cpu_seconds=3.0,
                       memory_seconds=4.0, storage_rows=6_000, replay_frames=3_000, pacing_seconds=2.0,
                       query_rows=200_000, relay_seconds=5.0)
        return cls(quick=False, repeats=3, record_seconds=20.0, confirm_seconds=60.0, cpu_seconds=60.0,
                   memory_seconds=1800.0, storage_rows=300_000, replay_frames=60_000, pacing_seconds=60.0,
                   query_rows=200 * int(6.5 * 3600 * 3.6))


@dataclass
class Figure:
    """One row of the table. ``ratio`` is value / ceiling; ``verdict`` is "met", "MISSED" or "" (no target)."""

    section: str
    name: str
    value: float | None
    unit: str
    ceiling: float | None = None
    ratio: float | None = None
    target: str = ""
    verdict: str = ""
    runs: list[float] = field(default_factory=list)
    note: str = ""

    def check_ratio(self, at_least: float) -> Figure:
        if self.value is not None and self.ceiling:
            self.ratio = self.value / self.ceiling
            self.target = f">= {at_least:.0%} of ceiling"
            self.verdict = "met" if self.ratio >= at_least else "MISSED"
        return self

    def check_ratio_at_most(self, limit: float) -> Figure:
        """A target on ``value / ceiling`` from above: "<= 100 % of ceiling" for a cost against a bare floor."""
        if self.value is not None and self.ceiling:
            self.ratio = self.value / self.ceiling
            self.target = f"<= {limit:.0%} of ceiling"
            self.verdict = "met" if self.ratio <= limit else "MISSED"
        return self

    def check_at_most(self, limit: float, text: str) -> Figure:
        self.target = text
        if self.value is not None:
            self.verdict = "met" if self.value <= limit else "MISSED"
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank), NaN for none."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))] if v else float("nan")


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if v != v:  # NaN
        return "n/a"
    a = abs(v)
    if a >= 100_000:
        s = f"{v:,.0f}"
    elif a >= 100:
        s = f"{v:,.0f}" if float(v).is_integer() or a >= 1000 else f"{v:.0f}"
    elif a >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return f"{s} {unit}".strip()


def table(figures: Sequence[Figure], *, markdown: bool = False) -> str:
    """The figures as a text (or Markdown) table: figure | value | ceiling | ratio | target | verdict."""
    head = ["section", "figure", "value", "ceiling", "ratio", "target", "verdict"]
    rows = [
        [
            f.section,
            f.name + (f" ({len(f.runs)} runs)" if len(f.runs) > 1 else ""),
            _fmt(f.value, f.unit),
            _fmt(f.ceiling, f.unit),
            "-" if f.ratio is None else f"{f.ratio:.0%}",
            f.target or "-",
            f.verdict or "-",
        ]
        for f in figures
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)
