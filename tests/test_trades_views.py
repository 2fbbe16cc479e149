"""The ``trades`` view (``side``, ``qty``) and the ``bars(interval)`` macro (schemas/views.py), checked against
bars computed here, in plain Python, from the 0B rows written to the store."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.schemas.fields import FIELDS_0B
from kiwoom_tape.schemas.market import KST
from kiwoom_tape.schemas.protocol import encode_real_frame, encode_real_row

from kiwoom_tape.cli import cli

DAY = dt.date(2026, 11, 23)
OPEN = dt.datetime.combine(DAY, dt.time(9, 0), KST)
ITEMS = ("005930", "005930_NX")


def trade_row(item: str, t: dt.datetime, price: int, qty: int, cum: int) -> str:
    values = {f.fid: "" for f in FIELDS_0B}
    values.update({"20": t.strftime("%H%M%S"), "10": f"-{price}", "15": f"{qty:+d}", "13": str(cum)})
    return encode_real_row("0B", item, json.dumps(values, separators=(",", ":")))


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """(dataset, the trades written: item, second of the day, price, signed qty) in receive order."""
    root = tmp_path_factory.mktemp("trades-views")
    rng = random.Random(13)
    written: list[dict[str, Any]] = []
    cum = dict.fromkeys(ITEMS, 0)
    with Store(root, "viewsrun", flush_rows=64) as store:
        for n in range(400):
            t = OPEN + dt.timedelta(seconds=n * 2 + rng.randrange(2))  # 09:00:00 .. ~09:13:20
            rows = []
            for item in rng.sample(ITEMS, rng.choice((1, 2))):
                price = 70_000 + 100 * rng.randrange(-5, 6)
                qty = rng.choice((-1, 1)) * rng.randrange(1, 500)
                cum[item] += abs(qty)
                rows.append(trade_row(item, t, price, qty, cum[item]))
                written.append({"item": item, "t": t, "price": price, "qty": qty})
            recv_ns = int(t.timestamp()) * 1_000_000_000 + 300_000_000 + n  # a little after the trade
            store.add_frame(recv_ns, "in", encode_real_frame(rows))
    return root, written


def expected_bars(written: list[dict[str, Any]], seconds: int) -> list[tuple[Any, ...]]:
    groups: dict[tuple[str, dt.datetime], list[dict[str, Any]]] = defaultdict(list)
    midnight = dt.datetime.combine(DAY, dt.time(0), KST)
    for w in written:
        start = midnight + dt.timedelta(seconds=(w["t"] - midnight).seconds // seconds * seconds)
        groups[w["item"], start].append(w)
    out = []
    for (item, start), ts in sorted(groups.items()):
        volume = sum(abs(w["qty"]) for w in ts)
        out.append((
            item, start, ts[0]["price"], max(w["price"] for w in ts), min(w["price"] for w in ts), ts[-1]["price"],
            volume, sum(w["price"] * abs(w["qty"]) for w in ts) / volume, len(ts),
            sum(w["qty"] for w in ts if w["qty"] > 0), -sum(w["qty"] for w in ts if w["qty"] < 0),
        ))
    return out


@pytest.mark.parametrize(("interval", "seconds"), [("1 minute", 60), ("5 minutes", 300), ("90 seconds", 90)])
def test_bars_are_the_ohlcv_of_the_trades(tape: tuple[Path, list[dict[str, Any]]], interval: str,
                                          seconds: int) -> None:
    root, written = tape
    con = connect(root)
    got = con.execute(
        "SELECT item, bar_start, open, high, low, close, volume, vwap, trades, buy_volume, sell_volume "
        f"FROM bars('{interval}')"
    ).fetchall()
    want = expected_bars(written, seconds)
    assert len(got) == len(want) > 2
    for g, w in zip(got, want, strict=True):
        assert g[:7] == w[:7] and g[8:] == w[8:], (g, w)
        assert g[7] == pytest.approx(w[7], rel=1e-12)
        assert g[3] >= max(g[2], g[5]) and g[4] <= min(g[2], g[5])  # high/low bound open and close


def test_trades_view_side_and_qty_follow_the_sign_of_fid_15(tape: tuple[Path, list[dict[str, Any]]]) -> None:
    root, written = tape
    con = connect(root)
    got = con.execute("SELECT side, qty, trade_qty FROM trades ORDER BY recv_ts, frame_seq, row_idx").fetchall()
    assert got == [("buy" if w["qty"] > 0 else "sell", abs(w["qty"]), w["qty"]) for w in written]


def test_a_dataset_without_trades_has_empty_trades_and_bars(tmp_path: Path) -> None:
    with Store(tmp_path, "emptyrun") as store:
        store.add_event(int(OPEN.timestamp()) * 1_000_000_000, "login", {})
    con = connect(tmp_path)
    assert con.execute("SELECT count(*), count(side), count(qty) FROM trades").fetchone() == (0, 0, 0)
    assert con.execute("FROM bars('1 minute')").fetchall() == []


def test_a_bad_interval_is_an_error_naming_the_fix(tape: tuple[Path, list[dict[str, Any]]]) -> None:
    con = connect(tape[0])
    with pytest.raises(duckdb.Error, match="bars"):
        con.execute("FROM bars('0 minutes')").fetchall()


def test_sql_command_runs_the_bars_macro(tape: tuple[Path, list[dict[str, Any]]]) -> None:
    root, written = tape
    result = CliRunner().invoke(cli, ["sql", str(root), "from bars('1 minute')", "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].split(",")[:3] == ["item", "bar_start", "open"]
    assert len(lines) - 1 == len(expected_bars(written, 60))


def test_trades_and_bars_are_documented_with_examples() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    help_text = CliRunner().invoke(cli, ["sql", "--help"]).output
    for text in (readme, help_text):
        assert "from bars('1 minute')" in text and "from trades" in text
