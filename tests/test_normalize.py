"""Normalization (``schemas/normalize.py``): wire rows -> typed columns, checked value by value.

Literal rows from docs/protocol.md 6.1-6.4, an in-memory Parquet round trip, and property tests: any dict is
accepted without raising, the fast path agrees with the per-value reference (:func:`read_value`), and
well-formed values read back as ``abs(int(...))`` and friends.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kiwoom_tape.schemas.fields import FIELDS_0D, FIELDS_0E, FieldSpec, Kind
from kiwoom_tape.schemas.market import KST, kst_date_of_ns
from kiwoom_tape.schemas.normalize import (
    FLAG_INVALID,
    FLAG_MISSING,
    AfterhoursBuilder,
    EventBuilder,
    FrameBuilder,
    OrderbookBuilder,
    TradesBuilder,
    builder_for,
    detail_json,
    kst_midnight_epoch_s,
    read_value,
)
from kiwoom_tape.schemas.protocol import login
from kiwoom_tape.schemas.tables import (
    AFTERHOURS,
    EVENTS,
    FRAMES,
    META_SCHEMA_VERSION,
    ORDERBOOK,
    TABLES,
    schema_version_of,
)

SEOUL = dt.timezone(dt.timedelta(hours=9))
# 2026-07-16 16:52:07.123456 KST, the receive time used with the examples (whole microseconds, so that
# to_pylist() can give datetimes)
RECV_NS = int(dt.datetime(2026, 7, 16, 16, 52, 7, tzinfo=SEOUL).timestamp()) * 1_000_000_000 + 123_456_000

# docs/protocol.md 6.1, verbatim, completed with the elided '0' runs 6044-6087 and 6100-6115.
OFFICIAL_0D: dict[str, str] = {
    "21": "165207",
    "41": "-20800", "61": "82", "81": "0", "51": "-20700", "71": "23847", "91": "0",
    "42": "+20900", "62": "393", "82": "0", "52": "-20650", "72": "834748", "92": "0",
    "43": "+21000", "63": "674739", "83": "0", "53": "-20600", "73": "2145799", "93": "0",
    "44": "+21050", "64": "2055055", "84": "0", "54": "-20550", "74": "2134689", "94": "0",
    "45": "+21100", "65": "1998461", "85": "0", "55": "-20500", "75": "1982298", "95": "0",
    "46": "+21150", "66": "1932347", "86": "0", "56": "-20450", "76": "1853788", "96": "0",
    "47": "+21200", "67": "1723333", "87": "0", "57": "-20400", "77": "1687992", "97": "0",
    "48": "+21250", "68": "1621835", "88": "0", "58": "-20350", "78": "1467869", "98": "0",
    "49": "+21300", "69": "1373291", "89": "0", "59": "-20300", "79": "1259995", "99": "0",
    "50": "+21350", "70": "1242991", "90": "0", "60": "-20250", "80": "1062405", "100": "0",
    "121": "12622527", "122": "-1036021", "125": "14453430", "126": "+1062126",
    "23": "20850", "24": "332941", "128": "+1830903", "129": "114.51",
    "138": "-1830903", "139": "87.33", "200": "0", "201": "0.00", "238": "3",
    "291": "0", "292": "0", "293": "3", "294": "0", "295": "0.00",
    "621": "0", "631": "0", "622": "0", "632": "0", "623": "0", "633": "0",
    "624": "0", "634": "0", "625": "0", "635": "0", "626": "0", "636": "0",
    "627": "0", "637": "0", "628": "0", "638": "0", "629": "0", "639": "0",
    "630": "0", "640": "0",
    "13": "30379650", "299": "-1.06", "215": "", "216": "",
    **{str(fid): "0" for fid in range(6044, 6088)},
    **{str(fid): "0" for fid in range(6100, 6116)},
}  # fmt: skip

# docs/protocol.md 6.3 (trimmed fixture of a measured KRX row) and 6.4 (NXT after-market, empty levels "-0").
MEASURED_KRX = {
    "21": "135622",
    "41": "+6500", "42": "+6510", "43": "+6520", "44": "+6530", "45": "+6540",
    "46": "+6550", "47": "+6560", "48": "+6570", "49": "+6580", "50": "+6590",
    "51": "+6490", "52": "+6480", "53": "+6470", "54": "+6460", "55": "+6440",
    "56": "+6410", "57": "+6400", "58": "+6390", "59": "+6380", "60": "+6370",
    "61": "20", "62": "244", "63": "72", "64": "352", "65": "47",
    "66": "108", "67": "729", "68": "718", "69": "333", "70": "1720",
    "71": "2", "72": "714", "73": "47", "74": "1887", "75": "30",
    "76": "742", "77": "4977", "78": "16855", "79": "1361", "80": "132",
    "121": "4343", "125": "26747",
}  # fmt: skip
MEASURED_NXT = {
    "21": "153305",
    "41": "-425000", "42": "-425500", "43": "-426000",
    "44": "-0", "45": "-0", "46": "-0", "47": "-0", "48": "-0", "49": "-0", "50": "-0",
    "51": "-424500", "52": "-424000", "53": "-423500",
    "54": "-0", "55": "-0", "56": "-0", "57": "-0", "58": "-0", "59": "-0", "60": "-0",
    "61": "273", "62": "54", "63": "233",
    "64": "0", "65": "0", "66": "0", "67": "0", "68": "0", "69": "0", "70": "0",
    "71": "24", "72": "10", "73": "123",
    "74": "0", "75": "0", "76": "0", "77": "0", "78": "0", "79": "0", "80": "0",
    "121": "560", "125": "157",
}  # fmt: skip
OFFICIAL_0E = {"21": "165208", "131": "43955", "132": "+156", "135": "0", "136": "0"}

ASK = [20800, 20900, 21000, 21050, 21100, 21150, 21200, 21250, 21300, 21350]
ASK_QTY = [82, 393, 674739, 2055055, 1998461, 1932347, 1723333, 1621835, 1373291, 1242991]
BID = [20700, 20650, 20600, 20550, 20500, 20450, 20400, 20350, 20300, 20250]
BID_QTY = [23847, 834748, 2145799, 2134689, 1982298, 1853788, 1687992, 1467869, 1259995, 1062405]


def kst(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, ss, tzinfo=KST)


def one_row(builder: Any, values: Any, item: str = "005930", recv_ns: int = RECV_NS) -> tuple[dict[str, Any], int]:
    flags = builder.append(recv_ns, "run-1", 42, 3, item, values)
    batch = builder.flush()
    batch.validate(full=True)
    assert batch.num_rows == 1
    return batch.to_pylist()[0], flags


# --- the literal examples -----------------------------------------------------------------------------


def test_official_0d_example() -> None:
    assert set(OFFICIAL_0D) == {f.fid for f in FIELDS_0D}
    row, flags = one_row(OrderbookBuilder(), OFFICIAL_0D)
    assert flags == 0 == row["flags"]
    assert row["recv_ts"] == dt.datetime(2026, 7, 16, 7, 52, 7, 123456, tzinfo=dt.UTC)
    assert (row["run_id"], row["frame_seq"], row["row_idx"]) == ("run-1", 42, 3)
    assert (row["item"], row["code"], row["venue"]) == ("005930", "005930", "KRX")
    assert row["quote_time"] == kst(2026, 7, 16, 16, 52, 7)
    assert [row[f"ask_price_{n}"] for n in range(1, 11)] == ASK
    assert [row[f"bid_price_{n}"] for n in range(1, 11)] == BID
    assert [row[f"ask_qty_{n}"] for n in range(1, 11)] == ASK_QTY
    assert [row[f"bid_qty_{n}"] for n in range(1, 11)] == BID_QTY
    assert all(row[f"{side}_qty_delta_{n}"] == 0 for side in ("ask", "bid") for n in range(1, 11))
    assert row["ask_price_1"] == 20800
    assert row["bid_price_1"] == 20700
    assert row["total_ask_qty"] == 12622527
    assert row["total_ask_qty_delta"] == -1036021
    assert row["total_bid_qty"] == 14453430
    assert row["total_bid_qty_delta"] == 1062126
    assert row["expected_price"] == 20850
    assert row["expected_qty"] == 332941
    assert row["net_bid_qty"] == 1830903
    assert row["net_ask_qty"] == -1830903
    assert row["bid_ratio_pct"] == 114.51
    assert row["ask_ratio_pct"] == 87.33
    assert row["expected_change_vs_prev_close"] == 0
    assert row["expected_change_pct_vs_prev_close"] == 0.0
    assert row["expected_change_sign_vs_prev_close"] == 3
    assert row["expected_change_sign"] == 3
    assert row["expected_price_auction"] is None  # "0": a zero price is NULL
    assert row["expected_qty_auction"] == 0
    assert row["cum_volume"] == 30379650
    assert row["expected_vs_prev_volume_pct"] == -1.06
    assert row["market_op_code"] == "" == row["investor_ticker"]
    assert row["lp_ask_qty_1"] == 0 == row["nxt_total_bid_qty"]
    assert row["krx_mid_price"] is None and row["nxt_mid_price"] is None
    assert row["krx_mid_change_sign"] == 0
    assert row["nxt_mid_change_pct"] == 0.0


def test_measured_krx_row_missing_keys() -> None:
    row, flags = one_row(OrderbookBuilder(), MEASURED_KRX, item="000020")
    assert flags == FLAG_MISSING == row["flags"]
    assert row["quote_time"] == kst(2026, 7, 16, 13, 56, 22)
    assert row["ask_price_1"] == 6500 and row["ask_price_10"] == 6590
    assert row["bid_price_1"] == 6490 and row["bid_price_10"] == 6370
    assert row["ask_qty_10"] == 1720 and row["bid_qty_1"] == 2
    assert (row["total_ask_qty"], row["total_bid_qty"]) == (4343, 26747)
    for name in ("ask_qty_delta_1", "total_ask_qty_delta", "expected_price", "bid_ratio_pct", "cum_volume",
                 "expected_change_sign", "market_op_code", "krx_ask_qty_1", "nxt_mid_change_pct"):  # fmt: skip
        assert row[name] is None, name


def test_measured_nxt_row_empty_levels() -> None:
    row, flags = one_row(OrderbookBuilder(), MEASURED_NXT, item="005380_NX")
    assert flags == FLAG_MISSING
    assert (row["item"], row["code"], row["venue"]) == ("005380_NX", "005380", "NXT")
    assert row["quote_time"] == kst(2026, 7, 16, 15, 33, 5)
    assert [row[f"ask_price_{n}"] for n in range(1, 11)] == [425000, 425500, 426000] + [None] * 7
    assert [row[f"bid_price_{n}"] for n in range(1, 11)] == [424500, 424000, 423500] + [None] * 7
    assert [row[f"ask_qty_{n}"] for n in range(1, 11)] == [273, 54, 233] + [0] * 7
    assert [row[f"bid_qty_{n}"] for n in range(1, 11)] == [24, 10, 123] + [0] * 7


def test_official_0e_example() -> None:
    row, flags = one_row(AfterhoursBuilder(), OFFICIAL_0E, item="039490_AL")
    assert flags == 0
    assert (row["code"], row["venue"]) == ("039490", "SOR")
    assert row["quote_time"] == kst(2026, 7, 16, 16, 52, 8)
    assert row["ah_total_ask_qty"] == 43955
    assert row["ah_total_ask_qty_delta"] == 156
    assert row["ah_total_bid_qty"] == 0
    assert row["ah_total_bid_qty_delta"] == 0


def test_batch_of_many_rows_and_parquet_round_trip() -> None:
    b = OrderbookBuilder()
    rows = [OFFICIAL_0D, MEASURED_KRX, MEASURED_NXT, {}, {"41": "garbage", "21": "999999"}]
    flags = [b.append(RECV_NS + i * 1000, "r", i, 0, "005930", v) for i, v in enumerate(rows)]
    assert flags == [0, FLAG_MISSING, FLAG_MISSING, FLAG_MISSING, FLAG_MISSING | FLAG_INVALID]
    assert len(b) == 5
    batch = b.flush()
    assert len(b) == 0
    batch.validate(full=True)
    assert batch.schema == ORDERBOOK
    assert batch.schema.metadata == ORDERBOOK.metadata
    assert batch.column("flags").to_pylist() == flags
    assert batch.column("frame_seq").to_pylist() == [0, 1, 2, 3, 4]
    assert batch.column("ask_price_1").to_pylist() == [20800, 6500, 425000, None, None]
    assert batch.column("quote_time").null_count == 2

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_batches([batch]), sink)
    back = pq.read_table(pa.BufferReader(sink.getvalue()))
    assert back.schema.metadata[META_SCHEMA_VERSION] == b"2"
    assert schema_version_of(back.schema) == 2
    for field in ORDERBOOK:
        assert back.schema.field(field.name).metadata == field.metadata
    assert back.cast(ORDERBOOK).to_pylist() == batch.to_pylist()


def test_flush_resets_and_old_batches_stay_intact() -> None:
    b = OrderbookBuilder()
    b.append(RECV_NS, "r", 0, 0, "005930", OFFICIAL_0D)
    first = b.flush()
    snapshot = first.to_pylist()
    for i in range(50):
        b.append(RECV_NS, "r", i + 1, 0, "000020", MEASURED_KRX)
    second = b.flush()
    assert first.to_pylist() == snapshot
    assert second.num_rows == 50
    empty = b.flush()
    assert empty.num_rows == 0 and empty.schema == ORDERBOOK
    assert AfterhoursBuilder().flush().schema == AFTERHOURS


def test_row_idx_range() -> None:
    b = OrderbookBuilder()
    for bad in (-1, 32768):
        with pytest.raises(ValueError, match="row_idx"):
            b.append(RECV_NS, "r", 0, bad, "005930", OFFICIAL_0D)
    assert len(b) == 0
    b.append(RECV_NS, "r", 0, 32767, "005930", OFFICIAL_0D)
    assert b.flush().column("row_idx").to_pylist() == [32767]


def test_nbytes_grows() -> None:
    b = OrderbookBuilder()
    assert b.nbytes == 0
    b.append(RECV_NS, "r", 0, 0, "005930", OFFICIAL_0D)
    assert b.nbytes > 163 * 4


# --- value reading, one by one ------------------------------------------------------------------------

CASES: list[tuple[Kind, Any, Any, int]] = [
    # kind, wire value, stored value, flags
    (Kind.PRICE, "-20800", 20800, 0),
    (Kind.PRICE, "+20900", 20900, 0),
    (Kind.PRICE, "20850", 20850, 0),
    (Kind.PRICE, " 67300", 67300, 0),
    (Kind.PRICE, "-0", None, 0),
    (Kind.PRICE, "0", None, 0),
    (Kind.PRICE, "", None, 0),
    (Kind.PRICE, "  ", None, 0),
    (Kind.PRICE, "2147483647", 2147483647, 0),
    (Kind.PRICE, "-2147483648", None, FLAG_INVALID),
    (Kind.PRICE, "1_000", None, FLAG_INVALID),
    (Kind.PRICE, "١٢٣", None, FLAG_INVALID),
    (Kind.PRICE, "12.5", None, FLAG_INVALID),
    (Kind.PRICE, "+-5", None, FLAG_INVALID),
    (Kind.PRICE, -20800, 20800, 0),
    (Kind.PRICE, 20800.0, 20800, 0),
    (Kind.PRICE, 20800.5, None, FLAG_INVALID),
    (Kind.PRICE, True, None, FLAG_INVALID),
    (Kind.PRICE, [1], None, FLAG_INVALID),
    (Kind.PRICE, None, None, FLAG_MISSING),
    (Kind.QTY, "82", 82, 0),
    (Kind.QTY, "+82", 82, 0),
    (Kind.QTY, "-0", 0, 0),
    (Kind.QTY, "0", 0, 0),
    (Kind.QTY, "000000000003", 3, 0),
    (Kind.QTY, "-82", None, FLAG_INVALID),
    (Kind.QTY, "9223372036854775807", 9223372036854775807, 0),
    (Kind.QTY, "9223372036854775808", None, FLAG_INVALID),
    (Kind.QTY, "1" * 5000, None, FLAG_INVALID),
    (Kind.QTY, "", None, 0),
    (Kind.QTY, "abc", None, FLAG_INVALID),
    (Kind.SIGNED, "-1036021", -1036021, 0),
    (Kind.SIGNED, "+1062126", 1062126, 0),
    (Kind.SIGNED, "-9223372036854775808", -9223372036854775808, 0),
    (Kind.SIGNED, "-9223372036854775809", None, FLAG_INVALID),
    (Kind.SIGNED, float("nan"), None, FLAG_INVALID),
    (Kind.PCT, "114.51", 114.51, 0),
    (Kind.PCT, "-0.24", -0.24, 0),
    (Kind.PCT, "0.00", 0.0, 0),
    (Kind.PCT, "5", 5.0, 0),
    (Kind.PCT, ".5", 0.5, 0),
    (Kind.PCT, "nan", None, FLAG_INVALID),
    (Kind.PCT, "inf", None, FLAG_INVALID),
    (Kind.PCT, "1e3", None, FLAG_INVALID),
    (Kind.PCT, "1" * 400, None, FLAG_INVALID),
    (Kind.PCT, 1.5, 1.5, 0),
    (Kind.PCT, 10**400, None, FLAG_INVALID),
    (Kind.PCT, float("inf"), None, FLAG_INVALID),
    (Kind.CODE, "3", 3, 0),
    (Kind.CODE, "-5", -5, 0),
    (Kind.CODE, "127", 127, 0),
    (Kind.CODE, "128", None, FLAG_INVALID),
    (Kind.TIME, "165207", 16 * 3600 + 52 * 60 + 7, 0),
    (Kind.TIME, "090000", 9 * 3600, 0),
    (Kind.TIME, " 090000 ", 9 * 3600, 0),
    (Kind.TIME, 90000, 9 * 3600, 0),
    (Kind.TIME, "000000", 0, 0),
    (Kind.TIME, "235959", 86399, 0),
    (Kind.TIME, "240000", None, FLAG_INVALID),
    (Kind.TIME, "126000", None, FLAG_INVALID),
    (Kind.TIME, "12345", None, FLAG_INVALID),
    (Kind.TIME, "", None, FLAG_INVALID),
    (Kind.TIME, "１２３４５６", None, FLAG_INVALID),
    (Kind.TEXT, "", "", 0),
    (Kind.TEXT, " x ", " x ", 0),
    (Kind.TEXT, 7, "7", 0),
    (Kind.TEXT, [1], None, FLAG_INVALID),
]


@pytest.mark.parametrize(("kind", "raw", "stored", "flag"), CASES)
def test_read_value(kind: Kind, raw: Any, stored: Any, flag: int) -> None:
    assert read_value(kind, raw) == (stored, flag)


def _spec_of(kind: Kind, table: tuple[FieldSpec, ...] = FIELDS_0D) -> FieldSpec:
    return next(f for f in table if f.kind is kind)


@pytest.mark.parametrize(("kind", "raw", "stored", "flag"), CASES)
def test_builder_stores_what_read_value_says(kind: Kind, raw: Any, stored: Any, flag: int) -> None:
    spec = _spec_of(kind)
    values: dict[str, Any] = dict(OFFICIAL_0D)
    if raw is None:
        del values[spec.fid]
    else:
        values[spec.fid] = raw
    row, flags = one_row(OrderbookBuilder(), values)
    assert flags == flag
    if kind is Kind.TIME and stored is not None:
        stored = kst(2026, 7, 16) + dt.timedelta(seconds=stored)
    got = row[spec.column]
    if isinstance(stored, float):
        assert got == pytest.approx(stored)
    else:
        assert got == stored


def test_values_not_a_dict() -> None:
    row, flags = one_row(OrderbookBuilder(), [("41", "-20800")])
    assert flags == FLAG_MISSING | FLAG_INVALID
    assert row["ask_price_1"] is None
    from collections import OrderedDict

    row, flags = one_row(OrderbookBuilder(), OrderedDict(OFFICIAL_0D))
    assert flags == 0 and row["ask_price_1"] == 20800


def test_json_null_counts_as_missing() -> None:
    values: dict[str, Any] = dict(OFFICIAL_0D, **{"61": None})
    row, flags = one_row(OrderbookBuilder(), values)
    assert flags == FLAG_MISSING
    assert row["ask_qty_1"] is None


def test_missing_marker_is_not_confused_with_a_value() -> None:
    """The fast path reads a missing key as a private "\\t0" object; a real "\\t0" is just a padded 0."""
    values = dict(OFFICIAL_0D, **{"61": "\t0"})
    row, flags = one_row(OrderbookBuilder(), values)
    assert flags == 0 and row["ask_qty_1"] == 0


def test_quote_time_uses_the_kst_date_of_the_receive_time() -> None:
    # 2026-07-16 23:30 UTC is 2026-07-17 08:30 KST
    recv = int(dt.datetime(2026, 7, 16, 23, 30, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    row, _ = one_row(AfterhoursBuilder(), dict(OFFICIAL_0E, **{"21": "083000"}), recv_ns=recv)
    assert row["quote_time"] == kst(2026, 7, 17, 8, 30)


@given(st.integers(-(2**62), 2**62))
def test_kst_midnight_matches_market_dates(ns: int) -> None:
    base = kst_midnight_epoch_s(ns)
    midnight = dt.datetime.combine(kst_date_of_ns(ns), dt.time(), KST) if ns >= 0 else None
    if midnight is not None:
        assert base == int(midnight.timestamp())
    assert base <= ns // 1_000_000_000 < base + 86_400


# --- properties -------------------------------------------------------------------------------------------

FIDS_0D = [f.fid for f in FIELDS_0D]
ANY_VALUE = st.one_of(st.text(), st.integers(), st.none(), st.floats(), st.lists(st.integers()))
GARBAGE_STR = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"\s*[+-]{0,2}[0-9]{0,25}(\.[0-9]*)?\s*", fullmatch=True),
    st.sampled_from(["-0", "+0", "", " ", "nan", "inf", "1e5", "1_0", "٣", "\t0", "0x10", "--1", "+", "-"]),
)


def check_batch_against_reference(batch: pa.RecordBatch, rows: list[dict[str, Any]], recv_ns: int) -> None:
    """Every stored value and the flags equal what :func:`read_value` says, field by field."""
    out = batch.to_pylist()
    fields = FIELDS_0D if batch.schema == ORDERBOOK else FIELDS_0E
    base = kst_midnight_epoch_s(recv_ns)
    for values, got in zip(rows, out, strict=True):
        flags = 0
        for spec in fields:
            raw = values.get(spec.fid) if isinstance(values, dict) else None
            want, f = read_value(spec.kind, raw)
            flags |= f
            if spec.kind is Kind.TIME and want is not None:
                want = dt.datetime.fromtimestamp(base + want, KST)
            value = got[spec.column]
            if isinstance(want, float):
                assert value == want or (math.isnan(want) and math.isnan(value)), (spec.fid, raw)
            else:
                assert value == want, (spec.fid, raw, value, want)
        assert got["flags"] == flags


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.one_of(st.text(), st.sampled_from(FIDS_0D)), ANY_VALUE), max_size=5))
def test_any_dict_never_raises(rows: list[dict[str, Any]]) -> None:
    b = OrderbookBuilder()
    e = AfterhoursBuilder()
    for i, values in enumerate(rows):
        f = b.append(RECV_NS, "r", i, i, "005930", values)
        assert 0 <= f <= FLAG_MISSING | FLAG_INVALID
        e.append(RECV_NS, "r", i, i, "005930", values)
    batch = b.flush()
    batch.validate(full=True)
    check_batch_against_reference(batch, rows, RECV_NS)
    check_batch_against_reference(e.flush(), rows, RECV_NS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([OFFICIAL_0D, MEASURED_KRX, MEASURED_NXT]),
    garbage=st.dictionaries(st.sampled_from(FIDS_0D), st.one_of(GARBAGE_STR, ANY_VALUE), max_size=20),
    drop=st.sets(st.sampled_from(FIDS_0D), max_size=10),
)
def test_valid_fids_with_garbage_match_the_reference(
    base: dict[str, str], garbage: dict[str, Any], drop: set[str]
) -> None:
    values: dict[str, Any] = {k: v for k, v in {**base, **garbage}.items() if k not in drop}
    b = OrderbookBuilder()
    b.append(RECV_NS, "r", 0, 0, "005930", values)
    b.append(RECV_NS, "r", 1, 1, "005930", OFFICIAL_0D)  # a clean row after a dirty one
    batch = b.flush()
    batch.validate(full=True)
    check_batch_against_reference(batch, [values, OFFICIAL_0D], RECV_NS)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sets(st.sampled_from(FIDS_0D[:12] + FIDS_0D[-12:]), max_size=6),
            st.dictionaries(st.sampled_from(FIDS_0D[:12]), st.sampled_from(["\t0", " 5\t", "\t", "7"]), max_size=2),
        ),
        min_size=2,
        max_size=8,
    )
)
def test_changing_missing_keys_in_one_builder(rows: list[tuple[set[str], dict[str, str]]]) -> None:
    """Rows of one builder that miss varying keys (the builder remembers the last pattern) and hold tabs."""
    all_values = [{k: v for k, v in {**OFFICIAL_0D, **extra}.items() if k not in drop} for drop, extra in rows]
    b = OrderbookBuilder()
    for i, values in enumerate(all_values):
        b.append(RECV_NS, "r", i, 0, "005930", values)
    check_batch_against_reference(b.flush(), all_values, RECV_NS)


def test_same_number_of_missing_keys_elsewhere() -> None:
    b = OrderbookBuilder()
    rows = [
        {k: v for k, v in OFFICIAL_0D.items() if k not in ("61", "62")},
        {k: v for k, v in OFFICIAL_0D.items() if k not in ("63", "64")},
        {k: v for k, v in OFFICIAL_0D.items() if k not in ("63",)} | {"65": "\t5"},
        {k: v for k, v in OFFICIAL_0D.items() if k not in ("63", "64")},
    ]
    for i, values in enumerate(rows):
        assert b.append(RECV_NS, "r", i, 0, "005930", values) == FLAG_MISSING
    out = b.flush().to_pylist()
    assert [[r[f"ask_qty_{n}"] for n in (1, 2, 3, 4, 5)] for r in out] == [
        [None, None, 674739, 2055055, 1998461],
        [82, 393, None, None, 1998461],
        [82, 393, None, 2055055, 5],
        [82, 393, None, None, 1998461],
    ]


def _well_formed(kind: Kind) -> st.SearchStrategy[tuple[str, Any]]:
    """(wire string, the value it must be stored as) for well-formed values of ``kind``."""
    sign = st.sampled_from(["", "+", "-"])
    pad = st.sampled_from(["", " ", "  "])
    if kind is Kind.PRICE:
        return st.tuples(sign, st.integers(0, 2**31 - 1), pad).map(
            lambda t: (t[2] + t[0] + str(t[1]), abs(int(t[0] + str(t[1]))) or None)
        )
    if kind is Kind.QTY:
        return st.tuples(st.sampled_from(["", "+"]), st.integers(0, 2**63 - 1)).map(lambda t: (t[0] + str(t[1]), t[1]))
    if kind is Kind.SIGNED:
        return st.integers(-(2**63), 2**63 - 1).flatmap(
            lambda n: st.sampled_from([str(n), f"+{n}" if n >= 0 else str(n)]).map(lambda s: (s, n))
        )
    if kind is Kind.PCT:
        return st.integers(-(10**6), 10**6).map(lambda n: (f"{n / 100:.2f}", float(f"{n / 100:.2f}")))
    if kind is Kind.CODE:
        return st.integers(-128, 127).map(lambda n: (str(n), n))
    if kind is Kind.TIME:
        return st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)).map(
            lambda t: (f"{t[0]:02d}{t[1]:02d}{t[2]:02d}", t[0] * 3600 + t[1] * 60 + t[2])
        )
    return st.text(max_size=8).map(lambda s: (s, s))


@st.composite
def well_formed_rows(draw: st.DrawFn, fields: tuple[FieldSpec, ...]) -> tuple[dict[str, str], dict[str, Any]]:
    values: dict[str, str] = {}
    expected: dict[str, Any] = {}
    present = draw(st.sets(st.sampled_from([f.fid for f in fields]))) if draw(st.booleans()) else None
    for spec in fields:
        wire, want = draw(_well_formed(spec.kind))
        if present is not None and spec.fid not in present:
            expected[spec.column] = None
            continue
        values[spec.fid] = wire
        expected[spec.column] = want
    return values, expected


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(well_formed_rows(FIELDS_0D), min_size=1, max_size=3), recv_s=st.integers(0, 4_102_444_800))
def test_well_formed_values_read_back(rows: list[tuple[dict[str, str], dict[str, Any]]], recv_s: int) -> None:
    recv_ns = recv_s * 1_000_000_000 + 5_000
    b = OrderbookBuilder()
    for i, (values, _) in enumerate(rows):
        missing = len(values) < len(FIELDS_0D)
        assert b.append(recv_ns, "r", i, 0, "005930_AL", values) == (FLAG_MISSING if missing else 0)
    out = b.flush().to_pylist()
    midnight = dt.datetime.combine(kst_date_of_ns(recv_ns), dt.time(), KST)
    for (_, expected), got in zip(rows, out, strict=True):
        for spec in FIELDS_0D:
            want = expected[spec.column]
            if spec.kind is Kind.TIME and want is not None:
                want = midnight + dt.timedelta(seconds=want)
            assert got[spec.column] == want, spec.column
        assert (got["code"], got["venue"]) == ("005930", "SOR")


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(well_formed_rows(FIELDS_0E), min_size=1, max_size=4))
def test_well_formed_0e_values_read_back(rows: list[tuple[dict[str, str], dict[str, Any]]]) -> None:
    b = AfterhoursBuilder()
    for i, (values, _) in enumerate(rows):
        b.append(RECV_NS, "r", i, 0, "005930", values)
    out = b.flush().to_pylist()
    for (_, expected), got in zip(rows, out, strict=True):
        for spec in FIELDS_0E:
            if spec.kind is not Kind.TIME:
                assert got[spec.column] == expected[spec.column]


# --- frames and events ------------------------------------------------------------------------------------


def test_frame_builder() -> None:
    b = FrameBuilder()
    token_frame = login("SECRET-TOKEN-123")
    b.append(RECV_NS, "r", 0, "out", token_frame, None, "LOGIN")
    b.append(RECV_NS + 1000, "r", 1, "in", '{"trnm":"LOGIN","return_code":0,"return_msg":""}', None, "LOGIN")
    b.append(RECV_NS + 2000, "r", 2, "in", "{not json", "invalid JSON", None)
    b.append(RECV_NS + 3000, "r", 3, "out", '{"trnm":"PING"}', None, "PING")
    assert len(b) == 4 and b.nbytes > 0
    batch = b.flush()
    batch.validate(full=True)
    assert batch.schema == FRAMES
    rows = batch.to_pylist()
    assert rows[0]["text"] == '{"trnm":"LOGIN","token":"***"}'
    assert "SECRET" not in "".join(r["text"] for r in rows)
    assert [r["seq"] for r in rows] == [0, 1, 2, 3]
    assert [r["direction"] for r in rows] == ["out", "in", "in", "out"]
    assert rows[2]["parse_error"] == "invalid JSON" and rows[2]["trnm"] is None
    assert rows[3]["text"] == '{"trnm":"PING"}'
    assert rows[0]["recv_ts"] == dt.datetime(2026, 7, 16, 7, 52, 7, 123456, tzinfo=dt.UTC)
    assert len(b) == 0 and b.flush().num_rows == 0
    with pytest.raises(ValueError, match="direction"):
        b.append(RECV_NS, "r", 4, "sideways", "x", None, None)
    assert len(b) == 0


class Weird:
    def __str__(self) -> str:
        return "weird"


def test_event_builder() -> None:
    b = EventBuilder()
    b.append(RECV_NS, "r", "connect", {"url": "ws://127.0.0.1:1/api/dostk/websocket", "attempt": 1})
    b.append(RECV_NS, "r", "login_failed", {"msg": "토큰"}, return_code=805004)
    b.append(RECV_NS, "r", "gap_end", '{"seconds":1.5}')
    odd: dict[Any, Any] = {"obj": Weird(), 1: float("nan"), "when": dt.date(2026, 7, 16)}
    b.append(RECV_NS, "r", "error", odd)
    b.append(RECV_NS, "r", "system", "plain words")
    batch = b.flush()
    batch.validate(full=True)
    assert batch.schema == EVENTS
    rows = batch.to_pylist()
    details = [json.loads(r["detail"]) for r in rows]
    assert details[0] == {"url": "ws://127.0.0.1:1/api/dostk/websocket", "attempt": 1}
    assert rows[1]["detail"] == '{"msg":"토큰"}'
    assert [r["return_code"] for r in rows] == [None, 805004, None, None, None]
    assert details[2] == {"seconds": 1.5}
    assert details[3] == {"obj": "weird", "1": "nan", "when": "2026-07-16"}
    assert details[4] == {"text": "plain words"}
    with pytest.raises(ValueError, match="unknown event kind"):
        b.append(RECV_NS, "r", "party", {})
    with pytest.raises(ValueError, match="return_code"):
        b.append(RECV_NS, "r", "login", {}, return_code=2**64)
    assert len(b) == 0


def test_detail_json_never_raises() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert json.loads(detail_json(loop))
    odd: dict[Any, Any] = {(1, 2): {3, 4}}
    assert json.loads(detail_json(odd)) == {"(1, 2)": [3, 4]}


def test_builder_for() -> None:
    for name, schema in TABLES.items():
        builder = builder_for(name)
        assert builder.flush().schema == schema
    assert isinstance(builder_for("trades"), TradesBuilder)
    with pytest.raises(KeyError):
        builder_for("quotes")  # a view, not a stored table
