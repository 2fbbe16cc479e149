"""``kiwoom-tape verify`` on trades (kiwoom_tape/verify_trades.py): a clean tape passes, each planted bad row is
named with the right severity, and nothing else is flagged."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.schemas.fields import FIELDS_0B, Kind
from kiwoom_tape.schemas.protocol import encode, encode_real_frame, encode_real_row
from test_catalog import book_values, kst_ns, write_frames

from kiwoom_tape.cli import cli
from kiwoom_tape.verify import verify

DAY = dt.date(2026, 3, 10)
REF = 70_000


def trade_values(hms: str, price: int, qty: int, cum: int, *, change: int | None = None) -> dict[str, str]:
    """0B values: time, price signed vs REF, change (price - REF unless given), signed quantity, cumulative volume."""
    v = {f.fid: {Kind.TEXT: "", Kind.PCT: "0.00", Kind.TIME: "000000"}.get(f.kind, "0") for f in FIELDS_0B}
    ch = price - REF if change is None else change
    v.update({"20": hms.replace(":", ""), "10": f"{'+' if price > REF else '-' if price < REF else ''}{price}",
              "11": f"{ch:+d}" if ch else "0", "15": f"{qty:+d}", "13": str(cum)})
    return v


def clean_rows() -> list[tuple[int, str, str, dict[str, str]]]:
    """A book at 70,000 / 70,100 each second from 09:10:00 and a trade at its touch a little later."""
    rows: list[tuple[int, str, str, dict[str, str]]] = []
    cum = 0
    for s in range(30):
        hms = f"09:10:{s:02d}"
        ns = kst_ns(DAY, hms)
        rows.append((ns, "0D", "005930", book_values(REF, REF + 100, 500, 400, time=hms.replace(":", ""), ref=REF)))
        qty = 10 + s if s % 2 else -(10 + s)
        cum += abs(qty)
        rows.append((ns + 1_000_000, "0B", "005930", trade_values(hms, REF + 100 if qty > 0 else REF, qty, cum)))
    return rows


def test_a_clean_tape_passes_every_trades_check(tmp_path: Path) -> None:
    write_frames(tmp_path, clean_rows())
    report = verify(tmp_path)
    assert report.ok(strict=True), [p.message for p in report.problems]
    assert report.trade_rows == 30 and report.trade_checks and not any(report.trade_checks.values())
    out = CliRunner().invoke(cli, ["verify", str(tmp_path)], catch_exceptions=False).output
    assert "Trades: 30 rows; all checks pass" in out


# (name, planted trade (hms, price, qty, cum, change), the check it fails, severity)
PLANTED: list[tuple[str, tuple[Any, ...], str, str]] = [
    ("off every grid", ("09:10:30", 70_003, 5, 10**6, None), "off_grid", "error"),
    ("on the ETF grid only", ("09:10:30", 70_050, 5, 10**6, None), "etf_grid", "warning"),
    ("outside the band", ("09:10:30", 95_000, 5, 10**6, 25_000), "band", "error"),
    ("cumulative volume falls", ("09:10:30", 70_100, 5, 100, None), "volume_down", "error"),
    ("two ticks above the ask", ("09:10:30", 70_300, 5, 10**6, None), "off_touch", "warning"),
    ("in the 단일가 window", ("16:30:00", 70_100, 5, 10**6, None), "off_hours", "warning"),
]


@pytest.mark.parametrize(("name", "trade", "check", "severity"), PLANTED, ids=[p[0] for p in PLANTED])
def test_a_planted_bad_trade_is_named_with_its_severity(tmp_path: Path, name: str, trade: tuple[Any, ...],
                                                        check: str, severity: str) -> None:
    hms, price, qty, cum, change = trade
    if check == "band":  # a book where the trade is, so that only the band is wrong
        extra = [(kst_ns(DAY, hms), "0D", "005930", book_values(price, price + 100, 5, 5, time="091030", ref=REF))]
    else:
        extra = []
    write_frames(tmp_path, [*clean_rows(), *extra,
                            (kst_ns(DAY, hms) + 2_000_000, "0B", "005930",
                             trade_values(hms, price, qty, cum, change=change))])
    report = verify(tmp_path)
    assert {k: v for k, v in report.trade_checks.items() if v} == {check: 1}, name
    problems = [p for p in report.problems if p.message.startswith("trades:")]
    assert [p.severity for p in problems] == [severity]
    assert "005930: 1 from" in problems[0].message and problems[0].hint
    assert report.ok() == (severity == "warning")
    result = CliRunner().invoke(cli, ["verify", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == (0 if severity == "warning" else 1)
    assert f"failing checks: {check} 1" in result.output


@pytest.mark.parametrize(("before", "after", "flagged"), [
    ((70_000, 70_100), (70_300, 70_400), 1),  # the book after the trade is at its price, the one before 3 ticks off
    ((70_300, 70_400), (70_000, 70_100), 0),  # at the touch of the book before it, 3 ticks off the one after
], ids=["off-the-book-before", "at-the-book-before"])
def test_the_touch_check_uses_the_book_received_before_the_trade(
        tmp_path: Path, before: tuple[int, int], after: tuple[int, int], flagged: int) -> None:
    """A trade and the 0D row after it in one frame (as the simulated market sends them, and Kiwoom may): the book in
    force is the one received before the trade in receive order, not the later one of the same recv_ts."""
    ns = kst_ns(DAY, "09:10:00")
    rows = [
        encode_real_row("0B", "005930", encode(trade_values("09:10:01", 70_400, 7, 7))),
        encode_real_row("0D", "005930", encode(book_values(*after, 500, 400, time="091001", ref=REF))),
    ]
    with Store(tmp_path, "handmade") as store:
        book = encode_real_row("0D", "005930", encode(book_values(*before, 500, 400, time="091000", ref=REF)))
        store.add_frame(ns, "in", encode_real_frame([book]))
        store.add_frame(ns + 1_000_000_000, "in", encode_real_frame(rows))
    report = verify(tmp_path)
    assert report.trade_rows == 1 and report.book_rows == 2
    assert report.trade_checks["off_touch"] == flagged
    assert {k for k, v in report.trade_checks.items() if v} == ({"off_touch"} if flagged else set())


def test_the_touch_check_ignores_a_book_of_another_run(tmp_path: Path) -> None:
    """A run's first trade is not compared with the last book of the run before it (the recorder was restarted: that
    book may be stale, as for the simulated close-price fills after 15:40, which come with no 0D row)."""
    ns = kst_ns(DAY, "09:10:00")
    with Store(tmp_path, "run-a") as store:
        book = encode_real_row("0D", "005930", encode(book_values(70_000, 70_100, 500, 400, time="091000", ref=REF)))
        store.add_frame(ns, "in", encode_real_frame([book]))
    with Store(tmp_path, "run-b") as store:
        trade = encode_real_row("0B", "005930", encode(trade_values("09:10:01", 70_400, 7, 7)))
        store.add_frame(ns + 1_000_000_000, "in", encode_real_frame([trade]))
    report = verify(tmp_path)
    assert report.trade_rows == 1 and report.book_rows == 1
    assert not any(report.trade_checks.values()), report.trade_checks
