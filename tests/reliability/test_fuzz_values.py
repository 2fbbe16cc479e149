"""Generated fuzz cases (``_fuzzgen``) against the wire-value readers, the normalizer and the recorder's fast path.

Documented errors: ``read_value``, ``read_real_frame`` and the builders' ``append`` never raise
(``kiwoom_tape.schemas.normalize``); ``parse_real_frame`` and its rows' texts raise only ProtocolError
(``kiwoom_tape.schemas.realframe``); ``Store.add_received`` raises only StorageError, for a disk that fails, which
no case here makes, so none is allowed. Properties:

- ``read_value``: a value of the column's type and range, or NULL; the flag is 0 or FLAG_INVALID;
- ``read_real_frame`` (the fast path) reads exactly the rows the general path reads
  (``decode_server_message`` of the text as the store decodes it + ``OrderbookBuilder.append``), or declines;
- a REAL frame that parses round-trips its rows' text: each row's text is the row (same item and
  type), and the frame rebuilt from all or some of its rows parses to those rows with the same texts;
- ``Store.add_received``: every frame stored once, in order, verbatim, with the rows the general path
  reads from it.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.schemas.errors import ProtocolError
from kiwoom_tape.schemas.fields import Kind
from kiwoom_tape.schemas.normalize import (
    FLAG_INVALID,
    FLAG_MISSING,
    AfterhoursBuilder,
    OrderbookBuilder,
    TradesBuilder,
    read_real_frame,
    read_value,
)
from kiwoom_tape.schemas.protocol import Real, decode_server_message
from kiwoom_tape.schemas.realframe import parse_real_frame
from kiwoom_tape.schemas.tables import TABLE_OF_TYPE

from kiwoom_tape.testing import read_table as table

from ._fuzzgen import as_received, cases, mutate, nasty_value, run_cases, server_seeds
from .conftest import Report

RECV_NS = 1_795_000_000_123_456_789
MAX_ROW_IDX = (1 << 15) - 1
RANGES: dict[Kind, tuple[float, float]] = {
    Kind.PRICE: (1, 2**31 - 1), Kind.QTY: (0, 2**63 - 1), Kind.SIGNED: (-(2**63), 2**63 - 1),
    Kind.CODE: (-128, 127), Kind.TIME: (0, 86_399), Kind.PCT: (-math.inf, math.inf),
}


def _real_seeds() -> tuple[bytes, ...]:
    return tuple(s for s in server_seeds() if s.endswith(b'"trnm":"REAL"}'))


# -- read_value ------------------------------------------------------------------------------------


def _value_case(rng: random.Random) -> tuple[Kind, Any]:
    return rng.choice(list(Kind)), nasty_value(rng)


def _check_value(case: tuple[Kind, Any]) -> None:
    kind, raw = case
    value, flag = read_value(kind, raw)
    if raw is None:
        assert (value, flag) == (None, FLAG_MISSING)
        return
    assert flag in (0, FLAG_INVALID)
    if flag:
        assert value is None
    if value is None:
        return
    if kind is Kind.TEXT:
        assert isinstance(value, str)
        return
    assert isinstance(value, float if kind is Kind.PCT else int) and not isinstance(value, bool), value
    lo, hi = RANGES[kind]
    assert lo <= value <= hi and (kind is not Kind.PCT or math.isfinite(value)), value


def test_value_readers_take_anything(report: Report) -> None:
    n = cases(0.11)
    run_cases("read_value", n, _value_case, _check_value)
    report.fuzz["read_value"] = n


# -- parse_real_frame --------------------------------------------------------------------------------


class _RowHead(msgspec.Struct):
    item: str
    type: str


_row_head = msgspec.json.Decoder(_RowHead)


def _frame_text(rng: random.Random) -> str:
    data = as_received(rng, mutate(rng, _real_seeds()))
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def _check_frame(text: str) -> None:
    frame = parse_real_frame(text)  # ProtocolError: documented
    texts = frame.row_texts
    assert len(texts) == len(frame.rows)
    for row, t in zip(frame.rows, texts, strict=True):
        head = _row_head.decode(t)  # the row's own text is an object with this item and type
        assert (head.item, head.type) == (row.item, row.type), (t, row)
    again = parse_real_frame(frame.subset(frame.rows))
    assert [(r.item, r.type) for r in again.rows] == [(r.item, r.type) for r in frame.rows]
    assert again.row_texts == texts
    some = frame.rows[::2]
    part = frame.only(some)
    assert parse_real_frame(part.text).row_texts == tuple(r.text for r in some)


def test_real_frames_round_trip_their_rows_text(report: Report) -> None:
    n = cases(0.08)
    refused = run_cases("parse_real_frame", n, _frame_text, _check_frame, documented=(ProtocolError,))
    assert refused < n  # some cases parse, so the round trip is checked
    report.fuzz["parse_real_frame"] = n


# -- the fast path against the general path ------------------------------------------------------------

CHUNK = 256


Builders = tuple[OrderbookBuilder, AfterhoursBuilder, TradesBuilder]
_AT: dict[str | None, int] = {"orderbook": 0, "afterhours": 1, "trades": 2}


def _builders() -> Builders:
    return OrderbookBuilder(), AfterhoursBuilder(), TradesBuilder()


@dataclass
class _Differ:
    """Appends each case's rows the fast way and the general way; compares the batches every CHUNK cases."""

    fast: Builders = field(default_factory=_builders)
    ref: Builders = field(default_factory=_builders)
    chunk: list[bytes] = field(default_factory=list)
    cases: int = 0
    accepted: int = 0

    def add(self, data: bytes, fast: Builders | None = None, ref: Builders | None = None) -> bool:
        fast, ref = fast or self.fast, ref or self.ref
        rows = read_real_frame(data)
        if rows is None:
            return False
        try:  # as the store reads a frame: UTF-8, bad bytes replaced (a text frame always is UTF-8)
            msg = decode_server_message(data.decode("utf-8", "replace"))
        except ProtocolError as exc:
            raise AssertionError(f"the fast path read a frame the general path refuses ({exc.reason})") from None
        assert isinstance(msg, Real) and len(msg.rows) == len(rows), msg
        seq = self.cases
        for idx, (parsed, row) in enumerate(zip(rows, msg.rows, strict=True)):
            table = TABLE_OF_TYPE.get(row.type)
            assert parsed.table == table, (parsed.table, row.type)  # None: a row without a table, on both paths
            if table is not None:
                fast[_AT[table]].append_parsed(RECV_NS, "r", seq, idx, parsed)
                ref[_AT[table]].append(RECV_NS, "r", seq, idx, row.item, row.values)
        return True

    def __call__(self, data: bytes) -> None:
        self.accepted += self.add(data)
        self.chunk.append(data)
        self.cases += 1
        if len(self.chunk) >= CHUNK:
            self.compare()

    def compare(self) -> None:
        chunk, self.chunk = self.chunk, []
        if all(_same(a.flush(), b.flush()) for a, b in zip(self.fast, self.ref, strict=True)):
            return
        for data in chunk:  # which frame: one at a time
            fast, ref = _builders(), _builders()
            self.add(data, fast, ref)
            for a, b in zip(fast, ref, strict=True):
                got, want = a.flush(), b.flush()
                assert _same(got, want), f"fast path differs on {data!r}:\n{_rows(got)}\n{_rows(want)}"
        raise AssertionError("the fast path differs on a chunk but on none of its frames alone")


def _same(a: pa.RecordBatch, b: pa.RecordBatch) -> bool:
    return bool(a.equals(b))


def _rows(b: pa.RecordBatch) -> list[dict[str, Any]]:
    """The batch's rows, timestamps as int ns (a datetime cannot hold them)."""
    cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in b.columns]
    return pa.RecordBatch.from_arrays(cols, names=b.schema.names).to_pylist()  # type: ignore[no-any-return]


def test_fast_path_reads_what_the_general_path_reads(report: Report) -> None:
    n = cases(0.12)
    differ = _Differ()
    run_cases("read_real_frame", n, partial(_bytes_of, _real_seeds()), differ)
    differ.compare()
    assert differ.accepted >= n // 20, differ.accepted  # the comparison compared something
    report.fuzz["read_real_frame vs general path"] = n


def _bytes_of(seeds: tuple[bytes, ...], rng: random.Random) -> bytes:
    return mutate(rng, seeds)


# -- Store.add_received -------------------------------------------------------------------------------


def _expected_rows(data: bytes) -> tuple[int, int]:
    """(orderbook rows, afterhours rows) the general path stores for a frame."""
    try:
        msg = decode_server_message(data.decode("utf-8", "replace"))
    except ProtocolError:
        return 0, 0
    if not isinstance(msg, Real):
        return 0, 0
    types = [r.type for r in msg.rows[: MAX_ROW_IDX + 1]]
    return types.count("0D"), types.count("0E")


def test_store_add_received_keeps_every_frame(tmp_path: Path, report: Report) -> None:
    n = cases(0.06)
    fed: list[bytes] = []
    store = Store(tmp_path, "fuzz", fsync_interval=0.05, flush_rows=2000)
    store.open()
    clock = [RECV_NS]

    def feed(data: bytes) -> None:
        clock[0] += 1000
        seq = store.add_received(clock[0], data)
        assert seq == len(fed), (seq, len(fed))
        fed.append(data)
        if len(fed) % 500 == 0:
            store.tick()

    try:
        run_cases("Store.add_received", n, partial(_bytes_of, server_seeds()), feed)
    finally:
        store.close()
    frames = sorted(table(tmp_path, "frames"), key=lambda f: f["seq"])
    assert [f["seq"] for f in frames] == list(range(n))  # every frame stored, once, in order
    rows: dict[str, dict[int, int]] = {"orderbook": {}, "afterhours": {}}
    for name, counts in rows.items():
        for r in table(tmp_path, name):
            counts[r["frame_seq"]] = counts.get(r["frame_seq"], 0) + 1
    for f, data in zip(frames, fed, strict=True):
        assert f["text"] == data.decode("utf-8", "replace"), (f["seq"], data)
        got = rows["orderbook"].get(f["seq"], 0), rows["afterhours"].get(f["seq"], 0)
        assert got == _expected_rows(data), (f["seq"], data, got)
    report.fuzz["Store.add_received"] = n


def test_the_oracles_see_rows() -> None:
    """The store test's reference reads rows from the unmutated seeds (it is not comparing zeros)."""
    assert sum(_expected_rows(s)[0] for s in _real_seeds()) > 50
    assert sum(_expected_rows(s)[1] for s in _real_seeds()) > 10
    assert json.loads(_real_seeds()[0])["trnm"] == "REAL"
