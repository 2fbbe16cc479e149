"""The recorder's fast path reads exactly what the general path reads, or declines.

:func:`kiwoom_tape.schemas.normalize.read_real_frame` (typed decoding of a REAL frame's bytes) must give, for every
frame it accepts, the same rows and flags as ``decode_server_message`` + the builders' ``append`` (0D, 0E and
0B rows into their tables, rows of other types only counted); for any other frame it returns None and the
recorder takes the general path. These tests compare the two on the simulator's frames, pure and mixed
(docs/protocol.md 1.7), and on frames mutated in every way the fast path has to notice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.schemas.errors import ProtocolError
from kiwoom_tape.schemas.normalize import (
    AfterhoursBuilder,
    FrameBuilder,
    OrderbookBuilder,
    TradesBuilder,
    read_real_frame,
)
from kiwoom_tape.schemas.protocol import decode_server_message, encode_real_frame
from kiwoom_tape.schemas.tables import TABLE_OF_TYPE
from kiwoom_tape.schemas.versions import recv_ns_of

RECV_NS = 1_795_000_000_123_456_789
ITEMS = ["005930", "000660", "005930_NX", "035720_AL"]


def _sim_rows(start: float, seconds: float, seed: int = 5) -> list[Any]:
    market = SimulatedMarket(seed=seed, items=ITEMS, start=start)
    return [row for tick in market.advance(start + seconds) for row in tick.rows]


ROWS_0D = [r for r in _sim_rows(9 * 3600 + 10, 3.0) if r.type == "0D"]
ROWS_0E = [r for r in _sim_rows(15 * 3600 + 45 * 60, 30.0) if r.type == "0E"]
ROWS_0B = [r for r in _sim_rows(9 * 3600 - 60, 80.0) if r.type == "0B"]
"""Trades from the opening auction on: the simulator sends "" for the FIDs it has no value for, as Kiwoom does."""
OTHER_ROWS = [  # types without a table: the store keeps only their frame's text
    '{"values":{"20":"090000","9201":"+1","9068":"1"},"type":"1h","name":"VI발동/해제","item":"005930"}',
    '{"values":{"215":"0","20":"085000","214":"+000000"},"type":"0s","name":"장시작시간","item":""}',
    '{"values":{"10":"+71000","27":"+71100"},"type":"0e","name":"x.E","item":"005930"}',
    '{"values":{},"type":"ZZ","name":"","item":"005930"}',
]
Batches = tuple[dict[str, pa.RecordBatch], int]


def _builders() -> dict[str, OrderbookBuilder | AfterhoursBuilder | TradesBuilder]:
    return {"orderbook": OrderbookBuilder(), "afterhours": AfterhoursBuilder(), "trades": TradesBuilder()}


def _reference(data: bytes) -> Batches | None:
    """The general path: the session's decoder and the builders' careful ``append``."""
    try:
        msg = decode_server_message(data)
    except ProtocolError:
        return None
    rows = getattr(msg, "rows", None)
    if rows is None:
        return None
    builders, others = _builders(), 0
    for idx, row in enumerate(rows):
        table = TABLE_OF_TYPE.get(row.type)
        if table is None:
            others += 1
        else:
            builders[table].append(RECV_NS, "run", 7, idx, row.item, row.values)
    return {t: b.flush() for t, b in builders.items()}, others


def _fast(data: bytes) -> Batches | None:
    rows = read_real_frame(data)
    if rows is None:
        return None
    builders, others = _builders(), 0
    for idx, row in enumerate(rows):
        if row.table is None:
            others += 1
        else:
            builders[row.table].append_parsed(RECV_NS, "run", 7, idx, row)
    return {t: b.flush() for t, b in builders.items()}, others


def _check(data: bytes) -> bool:
    """Asserts the fast path agrees with the general one; returns whether it accepted the frame."""
    fast = _fast(data)
    if fast is None:
        return False
    ref = _reference(data)
    assert ref is not None, f"fast path accepted a frame the general path refuses: {data[:300]!r}"
    assert fast[1] == ref[1], "rows without a table"
    for table, got in fast[0].items():
        want = ref[0][table]
        assert got.equals(want), f"{table} {data[:300]!r}\n{got.to_pylist()}\n{want.to_pylist()}"
    return True


@pytest.mark.parametrize("k", [1, 2, 4])
def test_simulated_frames_take_the_fast_path_with_the_same_rows(k: int) -> None:
    for rows in (ROWS_0D, ROWS_0E, ROWS_0B):
        for i in range(0, min(len(rows), 60), k):
            frame = encode_real_frame([r.text for r in rows[i : i + k]]).encode()
            assert _check(frame), frame[:200]


def test_official_order_and_spacing_variants() -> None:
    row = json.loads(ROWS_0D[0].text)
    # key order of the official docs (trnm first, type before values): still the fast path
    doc = {"trnm": "REAL", "data": [{"type": "0D", "name": row["name"], "item": row["item"], "values": row["values"]}]}
    assert _check(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())
    # spaced JSON (not what Kiwoom sends): the general path, with the same result
    assert not _check(json.dumps(doc, ensure_ascii=False).encode())
    assert not _check(json.dumps(doc, ensure_ascii=False, indent=2).encode())


def test_mixed_frames_take_the_fast_path_with_the_same_rows() -> None:
    """Rows of 0B, 0D, 0E and types without a table in one frame (docs/protocol.md 1.7), in every order."""
    rows = [r.text for r in (ROWS_0D[0], ROWS_0B[0], ROWS_0E[0], ROWS_0B[1], ROWS_0D[1])] + OTHER_ROWS[:2]
    for i in range(len(rows)):
        for j in range(len(rows)):
            for order in ([rows[i], rows[j]], [rows[j], rows[i], rows[(i + j) % len(rows)]]):
                frame = encode_real_frame(order).encode()
                assert _check(frame), frame[:200]
    fast = _fast(encode_real_frame(rows).encode())
    assert fast is not None and fast[1] == 2
    assert [fast[0][t].num_rows for t in ("orderbook", "afterhours", "trades")] == [2, 1, 2]


def test_rows_without_a_table_take_the_fast_path_when_flat_strings() -> None:
    for text in OTHER_ROWS:
        assert _check(encode_real_frame([ROWS_0D[0].text, text]).encode())
    # values that are not a flat object of strings: the general path (which stores the same)
    for values in ('{"a":1}', '{"a":{"b":"c"}}', '[]', '"x"', '{"a":null}'):
        frame = encode_real_frame([ROWS_0D[0].text, '{"values":' + values + ',"type":"1h","name":"","item":""}'])
        assert read_real_frame(frame.encode()) is None
    # rows of a table type the caller did not ask for are rows without a table
    frame = encode_real_frame([ROWS_0D[0].text, ROWS_0B[0].text]).encode()
    rows = read_real_frame(frame, types=("0D",))
    assert rows is not None and [r.table for r in rows] == ["orderbook", None]


def test_empty_integer_values_read_as_null_like_the_general_path() -> None:
    """0B rows carry "" for integer FIDs without a value (docs/protocol.md 2.0: NULL, no flag)."""
    assert any('":""' in r.text for r in ROWS_0B)
    row = json.loads(ROWS_0D[0].text)
    for fid in ("41", "61", "81", "129", "238", "21"):  # price, qty, signed, pct, code, time
        row["values"][fid] = ""
        frame = encode_real_frame([json.dumps(row, ensure_ascii=False, separators=(",", ":"))]).encode()
        assert _check(frame), fid
    # a lone "+" stays invalid (the general path flags it), so the frame is declined
    row["values"]["61"] = "+"
    assert read_real_frame(encode_real_frame([json.dumps(row, ensure_ascii=False)]).encode()) is None


def test_other_messages_are_declined() -> None:
    for text in ('{"trnm":"PING"}', '{"trnm":"LOGIN","return_code":0}', '{"data":[],"trnm":"REAL"}',
                 '{"data":[{"type":"0B","item":"005930","name":"x","values":{"10":"+1"}}],"trnm":"REAL"}',
                 "not json", ""):
        assert read_real_frame(text.encode()) is None


# --- mutations: every way a value or the envelope may differ from the well-formed case ------------------

NASTY_VALUES = [
    '"+"', '"-"', '"+-5"', '"-+5"', '"++5"', '"5+3"', '"5.0"', '"+5.0"', '"1e3"', '"1E3"', '"+1e3"', '"1e+3"',
    '" 5"', '"5 "', '"+ 5"', '"05"', '"+05"', '"-05"', '""', '"-0"', '"+0"', '"0"', '"-1"', '"\\u0035"',
    '"١"', '"5_0"', '"inf"', '"nan"', '"Infinity"', '"0x10"', '"2147483648"', '"-2147483648"', '"+2147483647"',
    '"9223372036854775808"', '"-9223372036854775809"', '"128"', '"-129"', '"127"', '"99999999999999999999"',
    '"114.51"', '"+114.51"', '"-0.24"', '".5"', '"5."', '"+.5"', '"1.2.3"', '"165207"', '"+165207"', '"16520"',
    '"246060"', '"abc"', '"+abc"', '"주식"',
    "5", "-5", "5.0", "1e3", "1E3", "-0", "0", "5.5", "true", "false", "null", "[]", "{}", '["5"]',
    "9007199254740993.0", "1e400", "2147483648",
]


def _row_pairs(text: str) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    row = json.loads(text)
    pairs = [(json.dumps(k), json.dumps(v, ensure_ascii=False)) for k, v in row["values"].items()]
    return pairs, row


def _encode(rows: list[tuple[list[tuple[str, str]], list[tuple[str, str]]]], tail: str = ',"trnm":"REAL"') -> bytes:
    out = []
    for values, keys in rows:
        v = "{" + ",".join(f"{k}:{x}" for k, x in values) + "}"
        out.append("{" + ",".join([f'"values":{v}'] + [f"{k}:{x}" for k, x in keys]) + "}")
    return ('{"data":[' + ",".join(out) + "]" + tail + "}").encode()


SOURCES = [r.text for r in ROWS_0D[:20] + ROWS_0E[:10] + ROWS_0B[:10]] + OTHER_ROWS


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    n_rows = draw(st.integers(1, 3))
    rows = []
    for _ in range(n_rows):
        source = draw(st.sampled_from(SOURCES))
        pairs, row = _row_pairs(source)
        keys = [('"type"', json.dumps(row["type"])), ('"name"', json.dumps(row["name"], ensure_ascii=False)),
                ('"item"', json.dumps(row["item"]))]
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["value", "value", "value", "drop", "dup", "extra", "key", "meta", "escape"]))
            if not pairs:  # a row without values (or all dropped)
                break
            i = draw(st.integers(0, len(pairs) - 1))
            if kind == "value":
                pairs[i] = (pairs[i][0], draw(st.sampled_from(NASTY_VALUES)))
            elif kind == "drop":
                del pairs[i]
            elif kind == "dup":
                pairs.insert(draw(st.integers(0, len(pairs))), (pairs[i][0], draw(st.sampled_from(NASTY_VALUES))))
            elif kind == "extra":
                pairs.insert(i, (draw(st.sampled_from(['"9999"', '"e"', '"x.y"', '"+41"', '""'])),
                                 draw(st.sampled_from(NASTY_VALUES))))
            elif kind == "key":
                pairs[i] = (draw(st.sampled_from(['"+41"', '" 41"', '"41 "', '"\\u0034\\u0031"', '"21"'])), pairs[i][1])
            elif kind == "meta":
                j = draw(st.integers(0, 2))
                keys[j] = (keys[j][0], draw(st.sampled_from(['"+0D"', '"0E"', '"0D"', '"0B"', '"1h"', '"+005930"', '5',
                                                               "null", '"item.e"', '"E"', '"\\u0030D"'])))
            else:
                k, v = pairs[i]
                pairs[i] = (k, v.replace("0", "\\u0030", 1))
        if draw(st.booleans()):
            keys.append(draw(st.sampled_from([('"type"', '"0D"'), ('"item"', '"000660"'), ('"name"', '"x"'),
                                              ('"extra"', '"e.E"')])))
        rows.append((pairs, keys))
    tail = draw(st.sampled_from([',"trnm":"REAL"', ',"trnm":"+REAL"', ',"trnm":"REAL","trnm":"PING"',
                                 ',"trnm":"PING","trnm":"REAL"', ',"trnm":"REAL","x":1.5', ',"trnm":"REAL","data":[]']))
    return _encode(rows, tail)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_frames())
def test_mutated_frames_read_the_same_or_are_declined(frame: bytes) -> None:
    _check(frame)


# --- the store: add_real_frame writes what add_frame writes ---------------------------------------------


def _tables(root: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name in ("frames", "orderbook", "afterhours", "trades"):
        if not (root / name).exists():
            continue
        t = ds.dataset(root / name, format="parquet", partitioning="hive").to_table()
        t = t.drop_columns(["run_id"]).sort_by([("recv_ts", "ascending"), ("recv_sub_us", "ascending")])
        out[name] = t.set_column(0, "recv_ts", recv_ns_of(t)).to_pylist()
    return out


def test_store_fast_path_writes_what_the_general_path_writes(tmp_path: Path) -> None:
    frames = [encode_real_frame([r.text for r in ROWS_0D[i : i + 2]]).encode() for i in range(0, 40, 2)]
    frames += [encode_real_frame([r.text]).encode() for r in ROWS_0E[:5]]
    frames.append(b'{"data":[{"values":{"21":"+1"},"type":"0E","name":"x","item":"1"}],"trnm":"REAL"}')
    frames += _mixed_frames()
    fast_frames = 0
    other_rows = []
    for kind in ("fast", "general"):
        with Store(tmp_path / kind, "run1", flush_rows=7) as store:
            for i, data in enumerate(frames):
                ns = RECV_NS + i
                if kind == "fast" and store.add_real_frame(ns, data) is not None:
                    fast_frames += 1
                    continue
                msg = decode_server_message(data)
                store.add_frame(ns, "in", data.decode(), rows=getattr(msg, "rows", ()), trnm="REAL")
        other_rows.append(store.stats.other_rows)
    got = _tables(tmp_path / "fast")
    assert got == _tables(tmp_path / "general")
    assert fast_frames == len(frames) - 1 and other_rows[0] == other_rows[1] > 0
    assert {"orderbook", "afterhours", "trades"} <= set(got)


def _mixed_frames() -> list[bytes]:
    """Frames mixing 0D, 0B, 0E rows and rows without a table, as Kiwoom packs them (docs/protocol.md 1.7)."""
    out = []
    for i in range(12):
        rows = [ROWS_0D[i].text, ROWS_0B[i].text]
        if i % 3 == 0:
            rows.append(ROWS_0E[i].text)
        if i % 4 == 1:
            rows.insert(1, OTHER_ROWS[i % len(OTHER_ROWS)])
        out.append(encode_real_frame(rows[::-1] if i % 2 else rows).encode())
    return out


def test_frame_builder_keeps_bytes_as_their_text() -> None:
    b = FrameBuilder()
    b.append(1, "r", 0, "in", "é", None, None)
    b.append(2, "r", 1, "in", "é".encode(), None, "REAL")
    b.append(3, "r", 2, "in", b"\xff ok", "bad", None)  # not UTF-8: U+FFFD in place, as the store did
    b.append(4, "r", 3, "out", b'{"trnm":"LOGIN","token":"secret"}', None, "LOGIN")
    texts = b.flush().column("text").to_pylist()
    assert texts[:3] == ["é", "é", "\ufffd ok"] and "secret" not in texts[3]
    b.append(5, "r", 4, "in", b"plain", None, None)
    assert b.flush().column("text").to_pylist() == ["plain"]


# --- the store: add_received (journal now, read in batches) stores what add_frame stores -------------


def _received_stream() -> list[tuple[str, bytes]]:
    """In-frames of every sort (fast, general, malformed, control) and out-frames, interleaved."""
    reals = [encode_real_frame([r.text for r in ROWS_0D[i : i + 3]]).encode() for i in range(0, 60, 3)]
    reals += [encode_real_frame([r.text]).encode() for r in ROWS_0E[:4]]
    reals += _mixed_frames()
    odd = [
        b'{"data":[{"values":{"21":"+1"},"type":"0E","name":"x","item":"1"}],"trnm":"REAL"}',  # general path
        b'{"data":[{"type":"0D","name":"x","item":"1"}],"trnm":"REAL"}',  # no values: a parse error
        b'{"data":[{"values":{"21":"1"},"type":"0D","name":"x","item":"1"}],"trnm":"REAL"',  # truncated
        b'{"trnm":"REAL","data":[]}',
        b'\xff{"data":[],"trnm":"REAL"}',  # not UTF-8
        b'{"trnm":"PING"}',
        b'{"trnm":"SYSTEM","code":"R10001","message":"x"}',
    ]
    stream: list[tuple[str, bytes]] = []
    for i, data in enumerate(reals):
        stream.append(("in", data))
        if i % 7 == 3:
            stream.append(("in", odd[(i // 7) % len(odd)]))
        if i % 9 == 4:
            stream.append(("out", b'{"trnm":"PING"}'))
    stream += [("in", d) for d in odd]
    return stream


@pytest.mark.parametrize("defer", [1, 5, 64])
def test_add_received_stores_what_add_frame_stores_and_recovers_the_same(tmp_path: Path, defer: int) -> None:
    from kiwoom_tape.recorder.recovery import recover
    from kiwoom_tape.schemas import layout

    stream = _received_stream()
    for kind in ("received", "general"):
        with Store(tmp_path / kind, "run1", flush_rows=9, defer_frames=defer) as store:
            for i, (direction, data) in enumerate(stream):
                if kind == "received" and direction == "in":
                    store.add_received(RECV_NS + i, data)
                else:
                    store.add_frame(RECV_NS + i, direction, data)
        assert store.stats.frames == len(stream)  # close() read what waited
    got, want = _tables(tmp_path / "received"), _tables(tmp_path / "general")
    assert got == want
    assert [r["seq"] for r in got["frames"]] == list(range(len(stream)))  # one seq per frame, in order
    assert sum(1 for r in got["frames"] if r["parse_error"]) >= 3
    # a crash before anything was read: the journal alone gives the same tables
    crashed = tmp_path / "crashed"
    store = Store(crashed, "run1", defer_frames=10_000)
    store.open()
    for i, (direction, data) in enumerate(stream):
        if direction == "in":
            store.add_received(RECV_NS + i, data)
        else:
            store.add_frame(RECV_NS + i, direction, data)
    assert store.stats.frames < len(stream)  # the in-frames since the last out-frame wait to be read
    store._abandon()  # a crash after the journal's last fsync: its lock is released, nothing else written
    assert list((crashed / layout.JOURNAL_DIR).iterdir())
    recover(crashed)
    assert _tables(crashed) == want


def test_add_received_reads_at_most_defer_frames_late(tmp_path: Path) -> None:
    frames = [encode_real_frame([r.text]).encode() for r in ROWS_0D[:12]]
    with Store(tmp_path, "run1", defer_frames=5) as store:
        seen = []
        for i, data in enumerate(frames):
            assert store.add_received(RECV_NS + i, data) == i
            seen.append(store.stats.frames)
        assert seen == [0, 0, 0, 0, 5, 5, 5, 5, 5, 10, 10, 10]  # read in batches of defer_frames
        journal = store.stats.journal_bytes
        assert journal > sum(len(f) for f in frames)  # every frame journaled at once
        store.tick()
        assert store.stats.frames == 12 and store.stats.rows["orderbook"] == 12
