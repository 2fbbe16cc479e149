"""The stored tables (``schemas/tables.py``): schemas, metadata, LOGIN redaction; and ``schemas/layout.py``."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.fields import FIELDS_0D, FIELDS_0E, FieldSpec, Kind
from kiwoom_tape.schemas.protocol import login
from kiwoom_tape.schemas.tables import (
    AFTERHOURS,
    EVENTS,
    FRAMES,
    KEY_COLUMNS,
    META_SCHEMA_VERSION,
    META_TABLE,
    META_WRITER,
    ORDERBOOK,
    SCHEMA_VERSION,
    TABLE_OF_TYPE,
    TABLES,
    TRADES,
    WRITER,
    arrow_type_of,
    redact_login,
    schema_version_of,
)

# --- schemas ---------------------------------------------------------------------------------------------


def test_tables_are_the_layout_tables() -> None:
    assert tuple(TABLES) == layout.TABLE_NAMES
    assert TABLES == {
        "frames": FRAMES, "orderbook": ORDERBOOK, "afterhours": AFTERHOURS, "trades": TRADES, "events": EVENTS,
    }
    assert TABLE_OF_TYPE == {"0D": "orderbook", "0E": "afterhours", "0B": "trades"}
    assert set(TABLE_OF_TYPE.values()) <= set(TABLES)


@pytest.mark.parametrize("name", list(TABLES))
def test_schema_metadata(name: str) -> None:
    schema = TABLES[name]
    meta = schema.metadata
    assert meta[META_SCHEMA_VERSION] == str(SCHEMA_VERSION).encode()
    assert meta[META_TABLE] == name.encode()
    assert meta[META_WRITER] == WRITER.encode()
    assert schema_version_of(schema) == SCHEMA_VERSION == 2
    assert len(set(schema.names)) == len(schema.names)


def test_writer_names_the_package() -> None:
    assert WRITER.startswith("kiwoom-tape ")
    assert len(WRITER) > len("kiwoom-tape ")


def test_schema_version_of_tolerates_foreign_files() -> None:
    assert schema_version_of(pa.schema([("a", pa.int8())])) is None
    assert schema_version_of(pa.schema([("a", pa.int8())], metadata={META_SCHEMA_VERSION: b"x"})) is None


@pytest.mark.parametrize("name", list(TABLES))
def test_every_field_has_metadata(name: str) -> None:
    for field in TABLES[name]:
        assert field.metadata, field.name
        assert field.metadata[b"description"], field.name


@pytest.mark.parametrize(("schema", "fields"), [(ORDERBOOK, FIELDS_0D), (AFTERHOURS, FIELDS_0E)])
def test_normalized_columns_follow_the_field_table(schema: pa.Schema, fields: tuple[FieldSpec, ...]) -> None:
    assert schema.names == [*KEY_COLUMNS, *(f.column for f in fields), "flags"]
    for spec in fields:
        field = schema.field(spec.column)
        assert field.nullable
        assert field.type == arrow_type_of(spec.kind)
        assert field.metadata[b"fid"] == spec.fid.encode()
        assert field.metadata[b"korean"] == spec.korean.encode()
        assert field.metadata[b"kind"] == spec.kind.value.encode()
        assert field.metadata[b"unit"] == spec.unit.encode()
    for name in (*KEY_COLUMNS, "flags"):
        assert not schema.field(name).nullable


def test_column_types() -> None:
    assert ORDERBOOK.field("recv_ts").type == pa.timestamp("us", tz="UTC")
    assert ORDERBOOK.field("recv_sub_us").type == pa.int16()
    assert ORDERBOOK.field("frame_seq").type == pa.int64()
    assert ORDERBOOK.field("row_idx").type == pa.int16()
    assert ORDERBOOK.field("flags").type == pa.int32()
    assert ORDERBOOK.field("quote_time").type == pa.timestamp("ms", tz="UTC")
    assert b"UTC" in ORDERBOOK.field("quote_time").metadata[b"instant"]
    assert ORDERBOOK.field("ask_price_1").type == pa.int32()
    assert ORDERBOOK.field("ask_qty_1").type == pa.int64()
    assert ORDERBOOK.field("total_bid_qty_delta").type == pa.int64()
    assert ORDERBOOK.field("bid_ratio_pct").type == pa.float64()
    assert ORDERBOOK.field("expected_change_sign").type == pa.int8()
    assert ORDERBOOK.field("market_op_code").type == pa.string()
    assert len(ORDERBOOK) == len(KEY_COLUMNS) + 163 + 1
    assert len(AFTERHOURS) == len(KEY_COLUMNS) + 5 + 1
    assert arrow_type_of(Kind.PRICE) == pa.int32()


def test_frames_and_events_columns() -> None:
    assert FRAMES.names == ["recv_ts", "recv_sub_us", "run_id", "seq", "direction", "text", "parse_error", "trnm"]
    assert [FRAMES.field(n).nullable for n in FRAMES.names] == [False] * 6 + [True, True]
    assert EVENTS.names == ["recv_ts", "recv_sub_us", "run_id", "kind", "detail", "return_code"]
    assert EVENTS.field("return_code").nullable
    assert EVENTS.field("return_code").type == pa.int64()


# --- LOGIN redaction ------------------------------------------------------------------------------------

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.x-Y_z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (login(TOKEN), '{"trnm":"LOGIN","token":"***"}'),
        (f'{{"trnm": "LOGIN", "token": "{TOKEN}"}}', '{"trnm": "LOGIN", "token": "***"}'),
        (f'{{ "token" :\n "{TOKEN}" , "trnm":"LOGIN"}}', '{ "token" :\n "***" , "trnm":"LOGIN"}'),
        ('{"trnm":"LOGIN","token":"a\\"b"}', '{"trnm":"LOGIN","token":"***"}'),
        ('{"trnm":"LOGIN","token":12345}', '{"trnm":"LOGIN","token":"***"}'),
        ('{"trnm":"LOGIN","token":"a","token":"b"}', '{"trnm":"LOGIN","token":"***","token":"***"}'),
        ('{"trnm":"LOGIN","token":"abc', '{"trnm":"LOGIN","token":"***"'),  # truncated: still redacted
    ],
)
def test_redact_login(text: str, expected: str) -> None:
    assert redact_login(text) == expected
    assert redact_login(expected) == expected  # idempotent: redacting twice changes nothing


def test_redact_login_keeps_other_text() -> None:
    for text in (
        '{"trnm":"PING"}',
        '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930"],"type":["0D"]}]}',
        '{"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}',
        '{"trnm":"REAL","data":[{"values":{"token":"not a secret"}}]}',
        '{"trnm":"REAL","token":"x"}',
        '["LOGIN", {"token": "x"}]',
        "not json at all",
        "",
    ):
        assert redact_login(text) == text


def test_redact_login_escaped_key_is_reencoded() -> None:
    out = redact_login('{"trnm":"LOGIN","\\u0074oken":"secret"}')
    assert "secret" not in out
    assert json.loads(out) == {"trnm": "LOGIN", "token": "***"}


def test_redact_login_object_token() -> None:
    out = redact_login('{"trnm":"LOGIN","token":{"a":1,"b":"secret"}}')
    assert "secret" not in out
    assert json.loads(out) == {"trnm": "LOGIN", "token": "***"}


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_redact_login_never_raises(text: str) -> None:
    out = redact_login(text)
    assert isinstance(out, str)


@settings(max_examples=300, deadline=None)
@given(
    token=st.text(min_size=4).filter(lambda t: t.strip() and "***" not in t),
    ascii_only=st.booleans(),
    extra=st.dictionaries(st.sampled_from(["grp_no", "x", "sor_yn"]), st.text(), max_size=2),
)
def test_redacted_login_has_no_token(token: str, ascii_only: bool, extra: dict[str, str]) -> None:
    text = json.dumps({"trnm": "LOGIN", **extra, "token": token}, ensure_ascii=ascii_only)
    out = redact_login(text)
    obj = json.loads(out)
    assert obj["token"] == "***"
    assert obj == {"trnm": "LOGIN", **extra, "token": "***"}
    encoded = json.dumps(token, ensure_ascii=ascii_only)[1:-1]
    rest = json.dumps({"trnm": "LOGIN", **extra, "token": "***"}, ensure_ascii=ascii_only)
    if encoded not in rest:
        assert encoded not in out


# --- layout ---------------------------------------------------------------------------------------------


def test_partition_dir() -> None:
    d = dt.date(2026, 11, 22)
    assert layout.partition_dir("data", "orderbook", d) == "data/orderbook/date=2026-11-22"
    assert layout.partition_dir("/srv/tape/", "frames", d) == "/srv/tape/frames/date=2026-11-22"
    assert layout.partition_dir("/", "events", d) == "/events/date=2026-11-22"
    assert layout.partition_dir("x", "afterhours", dt.datetime(2026, 1, 2, 23, 59)) == "x/afterhours/date=2026-01-02"
    with pytest.raises(ValueError, match="unknown table"):
        layout.partition_dir("data", "quotes", d)
    with pytest.raises(ValueError, match="empty"):
        layout.partition_dir("", "frames", d)
    assert layout.journal_dir("data/") == "data/_journal"


def test_run_id_sorts_by_time_and_parses() -> None:
    t = int(dt.datetime(2026, 11, 22, 2, 15, tzinfo=dt.UTC).timestamp()) * 1_000_000_000 + 999_999_999
    rid = layout.new_run_id(t, 0xAB12CD)
    assert rid == "20261122T021500Z-ab12cd"
    assert layout.parse_run_id(rid) == dt.datetime(2026, 11, 22, 2, 15, tzinfo=dt.UTC)
    assert layout.new_run_id(t, -1).endswith("-ffffff")
    assert layout.new_run_id(t, 1 << 40).endswith("-000000")
    assert layout.parse_run_id("run1") is None
    assert layout.parse_run_id("20261399T021500Z-ab12cd") is None
    ids = [layout.new_run_id(s * 1_000_000_000, r) for s, r in ((10**9, 5), (10**9 + 1, 1), (2 * 10**9, 0))]
    assert ids == sorted(ids)


def test_part_and_journal_names() -> None:
    rid = "20261122T021500Z-ab12cd"
    name = layout.part_filename(rid, 7, "orderbook")
    assert name == "part-20261122T021500Z-ab12cd-000007.parquet"
    assert layout.part_filename(rid, 7, "frames") == name  # deterministic, one counter for all tables
    assert layout.parse_part_filename(name) == (rid, 7)
    assert layout.parse_part_filename(name + layout.TMP_SUFFIX) is None
    assert layout.parse_part_filename(layout.part_filename(rid, 1234567, "events")) == (rid, 1234567)
    assert layout.parse_part_filename("part-x-0000007.parquet") is None  # not a name we make
    assert layout.parse_part_filename("part--000001.parquet") is None
    assert layout.parse_part_filename("other.parquet") is None
    j = layout.journal_filename(rid, 3)
    assert j == "20261122T021500Z-ab12cd-000003.journal"
    assert layout.parse_journal_filename(j) == (rid, 3)
    assert layout.parse_journal_filename(j + ".new") is None
    assert layout.JOURNAL_DIR == "_journal"
    assert layout.TMP_SUFFIX == ".tmp"
    for bad in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            layout.part_filename(bad, 0, "frames")
        with pytest.raises(ValueError):
            layout.journal_filename(bad, 0)
    with pytest.raises(ValueError):
        layout.part_filename(rid, -1, "frames")
    with pytest.raises(ValueError):
        layout.part_filename(rid, 0, "nope")


@given(
    epoch_s=st.integers(0, 4_102_444_800),
    rand=st.integers(0, (1 << 24) - 1),
    segment=st.integers(0, 10**8),
)
def test_part_filename_round_trip(epoch_s: int, rand: int, segment: int) -> None:
    rid = layout.new_run_id(epoch_s * 1_000_000_000, rand)
    assert layout.parse_part_filename(layout.part_filename(rid, segment, "orderbook")) == (rid, segment)
    assert layout.parse_journal_filename(layout.journal_filename(rid, segment)) == (rid, segment)
    assert layout.parse_run_id(rid) == dt.datetime.fromtimestamp(epoch_s, dt.UTC)
