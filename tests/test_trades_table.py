"""The ``trades`` table: 0B 주식체결 rows (docs/protocol.md 2.3) -> typed columns, by both paths.

The official example of docs/protocol.md 6.5 is read here by hand, with nothing but ``int``/``float`` and the
rules of docs/protocol.md 2.0, and the builder must store exactly that; well-formed rows of every kind read
back; the fast path (:func:`read_real_frame`) stores what the careful path stores.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kiwoom_tape.schemas.fields import FIELDS_0B, Kind
from kiwoom_tape.schemas.market import KST
from kiwoom_tape.schemas.normalize import FLAG_INVALID, TradesBuilder, read_real_frame
from kiwoom_tape.schemas.tables import KEY_COLUMNS, SCHEMA_VERSION, TRADES, schema_version_of

RECV_NS = int(dt.datetime(2026, 7, 16, 16, 52, 8, 500_000, tzinfo=KST).timestamp() * 1e6) * 1000

OFFICIAL_0B: dict[str, str] = {
    "20": "165208", "10": "-20800", "11": "-50", "12": "-0.24", "27": "-20800", "28": "-20700",
    "15": "+82", "13": "30379732", "14": "632640", "16": "20850", "17": "+21150", "18": "-20450",
    "25": "5", "26": "-1057122", "29": "-22041267850", "30": "-96.64", "31": "36.67", "32": "44",
    "228": "98.92", "311": "17230", "290": "2", "691": "0", "567": "000000", "568": "000000",
    "851": "", "1890": "", "1891": "", "1892": "", "1030": "", "1031": "", "1032": "", "1071": "",
    "1072": "", "1313": "", "1315": "", "1316": "", "1314": "", "1497": "", "1498": "", "620": "",
    "732": "", "852": "", "9081": "1",
}  # fmt: skip


def naive(fid: str, raw: str, kind: Kind) -> Any:
    """An independent reading of one wire value, from docs/protocol.md 2.0 alone."""
    if raw == "":
        return raw if kind is Kind.TEXT else None
    if kind is Kind.PRICE:
        return abs(int(raw)) or None
    if kind in (Kind.QTY, Kind.SIGNED, Kind.CODE):
        return int(raw)
    if kind is Kind.PCT:
        return float(raw)
    if kind is Kind.TIME:
        h, m, s = int(raw[:2]), int(raw[2:4]), int(raw[4:])
        return dt.datetime(2026, 7, 16, h, m, s, tzinfo=KST)
    return raw


def test_official_0b_example_reads_as_a_naive_reading_says() -> None:
    assert list(OFFICIAL_0B) == [f.fid for f in FIELDS_0B]
    b = TradesBuilder()
    assert b.append(RECV_NS, "run-1", 42, 0, "005930", OFFICIAL_0B) == 0
    batch = b.flush()
    batch.validate(full=True)
    assert batch.schema == TRADES
    row = batch.to_pylist()[0]
    for spec in FIELDS_0B:
        assert row[spec.column] == naive(spec.fid, OFFICIAL_0B[spec.fid], spec.kind), spec
    # and the few a trader reads, written out
    assert (row["price"], row["change"], row["change_pct"], row["trade_qty"]) == (20800, -50, -0.24, 82)
    assert (row["open"], row["high"], row["low"], row["cum_volume"]) == (20850, 21150, 20450, 30379732)
    assert (row["cum_value_mil"], row["change_sign"], row["session_code"], row["exchange_code"]) == (632640, 5, 2, 1)
    assert row["trade_time"] == dt.datetime(2026, 7, 16, 16, 52, 8, tzinfo=KST)
    keys = (row["item"], row["code"], row["venue"], row["frame_seq"], row["flags"])
    assert keys == ("005930", "005930", "KRX", 42, 0)
    # prev close = abs(10) - 11 (docs/protocol.md 2.3)
    assert row["price"] - row["change"] == 20850


def test_the_seller_initiated_sign_is_kept() -> None:
    b = TradesBuilder()
    b.append(RECV_NS, "r", 1, 0, "005930_NX", {**OFFICIAL_0B, "15": "-7", "9081": "2"})
    row = b.flush().to_pylist()[0]
    assert (row["trade_qty"], row["venue"], row["exchange_code"]) == (-7, "NXT", 2)


def test_a_bad_value_is_flagged_not_fatal() -> None:
    b = TradesBuilder()
    assert b.append(RECV_NS, "r", 1, 0, "005930", {**OFFICIAL_0B, "13": "-5"}) == FLAG_INVALID
    row = b.flush().to_pylist()[0]
    assert row["cum_volume"] is None and row["price"] == 20800


def test_schema_metadata_has_every_fid_with_korean_name_kind_and_unit() -> None:
    assert schema_version_of(TRADES) == SCHEMA_VERSION == 2
    assert tuple(TRADES.names[: len(KEY_COLUMNS)]) == KEY_COLUMNS
    assert TRADES.names[-1] == "flags"
    fid_fields = [TRADES.field(i) for i in range(len(KEY_COLUMNS), len(TRADES) - 1)]
    assert len(fid_fields) == len(FIELDS_0B) == 43
    for field, spec in zip(fid_fields, FIELDS_0B, strict=True):
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        assert (field.name, meta["fid"], meta["korean"]) == (spec.column, spec.fid, spec.korean)
        assert meta["kind"] == spec.kind
        assert meta["unit"] == spec.unit and spec.korean in meta["description"]
    units = {f.name: f.metadata[b"unit"].decode() for f in fid_fields}
    assert units["cum_value_mil"] == "million KRW" and units["price"] == "KRW"


def _frame(rows: list[tuple[str, dict[str, str]]]) -> bytes:
    data = [{"type": "0B", "name": "주식체결", "item": item, "values": v} for item, v in rows]
    return json.dumps({"trnm": "REAL", "data": data}, ensure_ascii=False, separators=(",", ":")).encode()


def _careful(data: bytes) -> pa.RecordBatch:
    b = TradesBuilder()
    for idx, row in enumerate(json.loads(data)["data"]):
        b.append(RECV_NS, "r", 3, idx, row["item"], row["values"])
    return b.flush()


def _fast(data: bytes) -> pa.RecordBatch | None:
    rows = read_real_frame(data, types=("0B",))
    if rows is None:
        return None
    b = TradesBuilder()
    for idx, row in enumerate(rows):
        assert row.table == "trades"
        b.append_parsed(RECV_NS, "r", 3, idx, row)
    return b.flush()


FULL_0B = {**OFFICIAL_0B, **{f.fid: "0" for f in FIELDS_0B if OFFICIAL_0B[f.fid] == "" and f.kind is not Kind.TEXT}}


def test_fast_path_reads_a_full_0b_frame_as_the_careful_path() -> None:
    data = _frame([("005930", FULL_0B), ("005930_NX", {**FULL_0B, "15": "-3", "620": "20812.34"})])
    fast = _fast(data)
    assert fast is not None
    assert fast.equals(_careful(data))
    assert fast.column("trade_qty").to_pylist() == [82, -3]
    # a caller that reads only 0D/0E gets the 0B rows as rows without a table
    rows = read_real_frame(data, types=("0D", "0E"))
    assert rows is not None and [r.table for r in rows] == [None, None]


def test_fast_path_reads_empty_values_as_the_careful_path() -> None:
    """The official example's "" values (docs/protocol.md 6.5) are NULL without a flag, on both paths."""
    data = _frame([("005930", OFFICIAL_0B)])
    fast = _fast(data)
    assert fast is not None and fast.equals(_careful(data))
    assert None in fast.to_pylist()[0].values()


def test_fast_path_declines_what_it_cannot_read_exactly() -> None:
    assert _fast(_frame([("005930", {**FULL_0B, "13": "-1"})])) is None  # a negative quantity
    assert _fast(_frame([("005930", {**FULL_0B, "12": " "})])) is None  # blank, not empty: the careful path


MIDNIGHT = dt.datetime(2026, 7, 16, tzinfo=KST)
_VALUE = {
    Kind.PRICE: st.integers(-(2**31) + 1, 2**31 - 1).map(lambda n: (f"{n:+d}" if n else "0", abs(n) or None)),
    Kind.QTY: st.integers(0, 2**63 - 1).map(lambda n: (str(n), n)),
    Kind.SIGNED: st.integers(-(2**63), 2**63 - 1).map(lambda n: (f"{n:+d}", n)),
    Kind.PCT: st.integers(-(10**7), 10**7).map(lambda n: (f"{n / 100:.2f}", float(f"{n / 100:.2f}"))),
    Kind.CODE: st.integers(-128, 127).map(lambda n: (str(n), n)),
    Kind.TIME: st.integers(0, 86_399).map(
        lambda s: (f"{s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}", MIDNIGHT + dt.timedelta(seconds=s))
    ),
    Kind.TEXT: st.text(max_size=6).map(lambda s: (s, s)),
}


@st.composite
def rows_0b(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, Any]]:
    values, want = {}, {}
    for spec in FIELDS_0B:
        values[spec.fid], want[spec.column] = draw(_VALUE[spec.kind])
    return values, want


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(rows_0b(), min_size=1, max_size=3))
def test_well_formed_0b_rows_read_back_by_both_paths(rows: list[tuple[dict[str, str], dict[str, Any]]]) -> None:
    data = _frame([("000660", v) for v, _ in rows])
    careful = _careful(data)
    for got, (_, want) in zip(careful.to_pylist(), rows, strict=True):
        assert {k: got[k] for k in want} == want
        assert got["flags"] == 0
    fast = _fast(data)
    assert fast is None or fast.equals(careful)
