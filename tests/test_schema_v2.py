"""Schema version 2 (issue 15 item 3): types every engine reads with its defaults, the exact receive nanosecond."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st
from kiwoom_tape.schemas.fields import FIELDS_0D, Kind
from kiwoom_tape.schemas.logbuilders import EventBuilder, FrameBuilder
from kiwoom_tape.schemas.rowbuilders import OrderbookBuilder, TradesBuilder
from kiwoom_tape.schemas.tables import QUOTE_TZ, TABLES, TABLES_V1
from kiwoom_tape.schemas.versions import recv_ns_of

NS = 1_764_550_000_123_456_789  # 2025-12-01 00:46:40.123456789 UTC


def _values(t: str = "090102") -> dict[str, str]:
    return {f.fid: (t if f.kind is Kind.TIME else "" if f.kind is Kind.TEXT else "1") for f in FIELDS_0D}


def _batches() -> dict[str, pa.RecordBatch]:
    fb = FrameBuilder()
    fb.append(NS, "r", 0, "in", '{"trnm":"PING"}', None, "PING")
    fb.append(NS + 1, "r", 1, "out", '{"trnm":"PING"}', None, "PING")
    eb = EventBuilder()
    eb.append(NS, "r", "connect", {})
    ob = OrderbookBuilder()
    ob.append(NS + 999, "r", 0, 0, "005930", _values())
    ob.append(NS + 1000, "r", 0, 1, "005930_NX", _values("99"))  # invalid time: NULL
    tb = TradesBuilder()
    tb.append(NS, "r", 0, 0, "005930", {})
    return {"frames": fb.flush(), "events": eb.flush(), "orderbook": ob.flush(), "trades": tb.flush()}


def test_v2_types_exact() -> None:
    for name, schema in TABLES.items():
        assert schema.names[:2] == ["recv_ts", "recv_sub_us"], name
        assert schema.field("recv_ts").type == pa.timestamp("us", tz="UTC")
        assert schema.field("recv_sub_us").type == pa.int16()
        for field in schema:
            assert not (pa.types.is_timestamp(field.type) and field.type.unit == "ns"), (name, field.name)
            if field.metadata.get(b"kind") == b"time":
                assert field.type == pa.timestamp("ms", tz="UTC")
                assert QUOTE_TZ.encode() in field.metadata[b"instant"]
        v1 = TABLES_V1[name]
        assert v1.field("recv_ts").type == pa.timestamp("ns", tz="UTC")
        assert "recv_sub_us" not in v1.names
        assert [n for n in schema.names if n != "recv_sub_us"] == v1.names
        assert v1.metadata[b"kiwoom_tape.schema_version"] == b"1"


def test_builders_write_v2_and_parquet_has_no_nanos(tmp_path: Path) -> None:
    for name, batch in _batches().items():
        assert batch.schema == TABLES[name]
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.Table.from_batches([batch]), path)
        pschema = pq.ParquetFile(path).schema
        for i in range(len(pschema)):
            col = pschema.column(i)
            logical = str(col.logical_type)
            assert "NANOS" not in logical, (name, col.name, logical)
            if col.name == "recv_ts":
                assert col.physical_type == "INT64"
                assert logical.startswith("Timestamp(isAdjustedToUTC=true, timeUnit=microseconds")
            if col.name in ("recv_sub_us", "row_idx"):
                assert col.physical_type == "INT32" and logical.startswith("Int(bitWidth=16, isSigned=true)")
            if col.name == "quote_time":
                assert logical.startswith("Timestamp(isAdjustedToUTC=true, timeUnit=milliseconds")
        back = pq.read_table(path)
        assert back.schema.field("recv_ts").type == pa.timestamp("us", tz="UTC")
        assert recv_ns_of(back).to_pylist() == recv_ns_of(batch).to_pylist()


def test_exact_receive_ns_and_quote_time() -> None:
    b = _batches()
    assert recv_ns_of(b["orderbook"]).to_pylist() == [NS + 999, NS + 1000]
    assert b["orderbook"].column("recv_sub_us").to_pylist() == [(NS + 999) % 1000, (NS + 1000) % 1000]
    assert recv_ns_of(b["frames"]).to_pylist() == [NS, NS + 1]
    qt = b["orderbook"].column("quote_time").cast(pa.int64()).to_pylist()
    # 2025-12-01 KST, 09:01:02 KST = 00:01:02 UTC, in ms
    assert qt == [1_764_547_262_000, None]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**62), min_size=1, max_size=20))
def test_split_round_trips(ns: list[int]) -> None:
    fb = FrameBuilder()
    for i, t in enumerate(ns):
        fb.append(t, "r", i, "in", "x", None, None)
    batch = fb.flush()
    assert recv_ns_of(batch).to_pylist() == ns
    assert all(0 <= s <= 999 for s in batch.column("recv_sub_us").to_pylist())
    assert batch.column("recv_ts").cast(pa.int64()).to_pylist() == [t // 1000 for t in ns]
