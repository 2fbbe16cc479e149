"""The report of ``kiwoom-tape verify``: what was checked and found, and its human-readable form.

:mod:`kiwoom_tape.verify` fills a :class:`VerifyReport`; :func:`format_report` prints it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from kiwoom_tape.schemas.layout import TABLE_NAMES
from kiwoom_tape.schemas.market import KST

__all__ = ["FileCheck", "Problem", "Severity", "VerifyReport", "format_report"]

Severity = Literal["error", "warning"]

_NS: Final = 1_000_000_000


@dataclass
class Problem:
    severity: Severity
    message: str
    hint: str = ""


@dataclass
class FileCheck:
    """One part file, after the first pass."""

    table: str
    date: str
    path: Path
    size: int
    rows: int = 0
    schema_version: int | None = None
    writer: str = ""
    first_ns: int | None = None
    last_ns: int | None = None
    error: str | None = None
    """Why the file cannot be used (unreadable, unknown schema): it is left out of the second pass."""


@dataclass
class VerifyReport:
    root: Path
    files: list[FileCheck] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    book_rows: int = 0
    crossed: int = 0
    crossed_in_auction: int = 0
    off_grid: int = 0
    off_stock_grid_only: int = 0
    trade_rows: int = 0
    trade_checks: dict[str, int] = field(default_factory=dict)
    """check name (:mod:`kiwoom_tape.verify_trades`) -> trades rows that failed it."""
    parse_errors: list[tuple[str, str, int]] = field(default_factory=list)
    """(date, reason, frames) of frames stored with a parse_error."""
    flagged: dict[str, tuple[int, int]] = field(default_factory=dict)
    """table -> (rows with a missing FID, rows with an unreadable FID)."""
    gaps: list[tuple[str, str, str, float | None, str]] = field(default_factory=list)
    """(run_id, start, end or '', seconds or None, cause), times as KST text."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def ok(self, *, strict: bool = False) -> bool:
        """No errors (and, if ``strict``, no warnings either)."""
        return not self.errors and not (strict and self.warnings)

    def error(self, message: str, hint: str = "") -> None:
        self.problems.append(Problem("error", message, hint))

    def warn(self, message: str, hint: str = "") -> None:
        self.problems.append(Problem("warning", message, hint))


def _clock(ns: int | None) -> str:
    if ns is None:
        return "-"
    t = dt.datetime.fromtimestamp(ns / _NS, KST)
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True))

    return ["  " + line(headers).rstrip(), *("  " + line(r).rstrip() for r in rows)]


def format_report(report: VerifyReport, *, strict: bool = False) -> str:
    """The human-readable report ``kiwoom-tape verify`` prints."""
    out = [f"Dataset {report.root}"]
    files = report.files
    bad = [f for f in files if f.error is not None]
    size = sum(f.size for f in files)
    versions = sorted({f.schema_version for f in files if f.schema_version is not None})
    writers = sorted({f.writer for f in files if f.writer})
    out.append(
        f"Files: {len(files)} Parquet files, {size / 1e6:.1f} MB, "
        + (f"{len(bad)} not usable" if bad else "all readable")
        + (f"; schema version {', '.join(map(str, versions))}" if versions else "")
        + (f" ({', '.join(writers)})" if writers else "")
    )
    parts: dict[tuple[str, str], list[FileCheck]] = defaultdict(list)
    for f in files:
        if f.error is None:
            parts[(f.table, f.date)].append(f)
    rows = []
    for (table, date), fs in sorted(parts.items(), key=lambda kv: (kv[0][1], TABLE_NAMES.index(kv[0][0]))):
        firsts = [f.first_ns for f in fs if f.first_ns is not None]
        lasts = [f.last_ns for f in fs if f.last_ns is not None]
        rows.append([table, date, str(len(fs)), f"{sum(f.rows for f in fs):,}",
                     _clock(min(firsts) if firsts else None), _clock(max(lasts) if lasts else None)])
    if rows:
        out += ["", *_table(["table", "date", "files", "rows", "first (KST)", "last (KST)"], rows,
                            [False, False, True, True, False, False])]
    else:
        out.append("No readable rows.")
    out.append("")
    out.append(
        f"Books: {report.book_rows:,} rows; crossed {report.crossed}"
        + (f" (+{report.crossed_in_auction} in call auctions)" if report.crossed_in_auction else "")
        + f"; off the tick grid {report.off_grid}"
        + (f" (+{report.off_stock_grid_only} on the 5-won grid only)" if report.off_stock_grid_only else "")
    )
    failed = ", ".join(f"{name} {n}" for name, n in report.trade_checks.items() if n)
    out.append(f"Trades: {report.trade_rows:,} rows; " + (f"failing checks: {failed}" if failed else "all checks pass"))
    n_parse = sum(n for _, _, n in report.parse_errors)
    out.append(f"Frames that failed to parse: {n_parse}")
    flagged = ", ".join(f"{t} {m} with a missing FID, {i} with an unreadable one"
                        for t, (m, i) in report.flagged.items() if m or i)
    out.append(f"Rows with flagged FIDs: {flagged or 0}")
    if report.gaps:
        out.append(f"Gaps: {len(report.gaps)}")
        out += _table(
            ["run", "start (KST)", "end (KST)", "seconds", "cause"],
            [[r, s, e or "(open)", "-" if sec is None else f"{sec:.1f}", c] for r, s, e, sec, c in report.gaps],
            [False, False, False, True, False],
        )
    else:
        out.append("Gaps: none")
    out.append("")
    errors, warnings = report.errors, report.warnings
    for p in [*errors, *warnings]:
        out.append(f"{'ERROR' if p.severity == 'error' else 'warning'}: {p.message}")
        if p.hint:
            out.append(f"    hint: {p.hint}")
    if report.ok(strict=strict):
        out.append("OK" + (f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})" if warnings else
                           ": no problems found"))
    else:
        out.append(
            f"FAILED: {len(errors)} error{'s' if len(errors) != 1 else ''}, "
            f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}" + (" (--strict)" if strict else "")
        )
    return "\n".join(out)
