"""Generated fuzz cases (``_fuzzgen``) against the journal reader: valid journals with mutated bytes.

A journal is built with the writer's own encoders (``encode_header``, ``encode_frame``,
``encode_event``) from the fuzz seeds, then damaged where damage hurts most (a record's length, its
checksum, its kind byte, the header's magic, version and run-id length) and anywhere else (bit flips,
truncation, zeroed, dropped, duplicated or inserted ranges), one to three times.

Documented errors: ``read_journal``, ``scan_journal`` and ``iter_journal`` raise only StorageError (a
file that is not a journal of this version: JournalFormatError). Properties: every record that lies
wholly before the first damaged byte is read back, first and in order; no record is invented (each
one read is a record that was written); the three readers agree on the records, their counts and
where the valid part ends.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kiwoom_tape.recorder.journal import (
    EventRecord,
    FrameRecord,
    encode_event,
    encode_frame,
    encode_header,
    iter_journal,
    read_journal,
    scan_journal,
)
from kiwoom_tape.schemas.errors import StorageError

from ._fuzzgen import cases, run_cases, server_seeds
from .conftest import Report

RUN_ID = "fuzz-run"
RECV_NS = 1_795_000_000_000_000_000


@dataclass(frozen=True)
class Journal:
    data: bytes
    records: tuple[FrameRecord | EventRecord, ...]
    ends: tuple[int, ...]
    """Byte offset where each record ends."""
    header_length: int


@cache
def _journal(variant: int) -> Journal:
    """A valid journal of ~24 frames and events (small frames, so that cases stay cheap)."""
    rng = random.Random(f"journal/{variant}")
    seeds = [s for s in server_seeds() if len(s) < 1200]
    header = encode_header(RUN_ID, variant, RECV_NS)
    parts, records, ends, pos = [header], [], [], len(header)
    for seq in range(rng.randint(1, 24)):
        t = RECV_NS + seq * 1000
        rec: FrameRecord | EventRecord
        if rng.random() < 0.75:
            text = rng.choice(seeds)
            rec = FrameRecord(t, seq, rng.choice(["in", "in", "out"]), text, rng.random() < 0.5,
                              rng.choice([None, None, "not JSON", "가"]), rng.choice([None, "REAL", "PING", "LOGIN"]))
            blob = encode_frame(rec.recv_ns, rec.seq, rec.direction, rec.text, has_rows=rec.has_rows,
                                parse_error=rec.parse_error, trnm=rec.trnm)
        else:
            rec = EventRecord(t, rng.choice(["connect", "gap_start", "reg_ack"]), '{"n":1,"why":"가"}',
                              rng.choice([None, 0, 105110, -1]))
            blob = encode_event(rec.recv_ns, rec.kind, rec.detail_json, rec.return_code)
        parts.append(blob)
        records.append(rec)
        pos += len(blob)
        ends.append(pos)
    return Journal(b"".join(parts), tuple(records), tuple(ends), len(header))


def _damage(rng: random.Random, j: Journal) -> bytes:
    b = bytearray(j.data)
    starts = [j.header_length, *j.ends[:-1]]
    for _ in range(rng.choice((1, 1, 2, 3))):
        n = len(b)
        if n == 0:
            b += rng.randbytes(rng.randint(1, 40))
            continue
        how = rng.choice(("flip", "flip", "truncate", "length", "crc", "kind", "header", "zero", "drop", "dup",
                          "insert", "append"))
        at = rng.choice(starts) if starts else 0
        if how == "flip":
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif how == "truncate":
            del b[rng.randrange(n) :]
        elif how == "length" and at + 4 <= n:  # u32 length: 0, huge, one off, past the end
            length = rng.choice([0, 1, 2**31, 2**32 - 1, 64 * 2**20 + 1, (n - at) * 2,
                                 int.from_bytes(b[at : at + 4], "little") + rng.choice((-1, 1))])
            b[at : at + 4] = (length % 2**32).to_bytes(4, "little")
        elif how == "crc" and at + 8 <= n:
            b[at + 4 + rng.randrange(4)] ^= 0xFF
        elif how == "kind" and at + 9 <= n:
            b[at + 8] = rng.choice((0, 3, 255))
        elif how == "header":
            i = rng.choice((0, 7, 8, 9, 10, 11, 12, j.header_length - 1, rng.randrange(j.header_length)))
            if i < n:
                b[i] ^= 1 << rng.randrange(8)
        elif how == "zero":
            i = rng.randrange(n)
            b[i : i + rng.choice((1, 8, 512, 4096))] = bytes(min(n - i, 4096))[: rng.choice((1, 8, 512, 4096))]
        elif how in ("drop", "dup") and len(starts) > 1:
            k = rng.randrange(len(starts))
            a, e = starts[k], j.ends[k]
            if e <= n:
                b[a:e] = b"" if how == "drop" else b[a:e] * 2
        elif how == "insert":
            i = rng.choice([*starts, rng.randrange(n)])
            b[i:i] = rng.randbytes(rng.randint(1, 64))
        else:
            b += rng.choice([rng.randbytes(rng.randint(1, 64)), bytes(8), j.data[j.header_length :][:100]])
    return bytes(b)


@dataclass(frozen=True)
class Case:
    journal: Journal
    damaged: bytes


def _case(rng: random.Random) -> Case:
    j = _journal(rng.randrange(40))
    return Case(j, _damage(rng, j))


def _first_difference(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n  # the first i < n with a[i] != b[i], else n
    if a[:n] == b[:n]:
        return n
    while lo < hi:
        mid = (lo + hi) // 2
        if a[: mid + 1] == b[: mid + 1]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _checker(path: Path) -> tuple[list[int], Callable[[Case], None]]:
    counts = [0, 0]  # journals read; of them, journals with intact records before the damage

    def check(case: Case) -> None:
        path.unlink(missing_ok=True)  # not truncated: ext4 flushes a file truncated and rewritten on close
        path.write_bytes(case.damaged)
        j = case.journal
        try:
            contents = read_journal(path)
        except StorageError:
            scan_raises = False
            try:
                scan_journal(path)
            except StorageError:
                scan_raises = True
            assert scan_raises, "read_journal refused a file scan_journal accepts"
            raise
        scan = scan_journal(path)
        records = contents.records
        assert list(iter_journal(path)) == records
        assert (scan.header, scan.valid_length, scan.torn) == (contents.header, contents.valid_length,
                                                               contents.torn)
        assert scan.frames + scan.events == len(records)
        assert scan.size == len(case.damaged) and 0 <= contents.valid_length <= scan.size
        written = set(j.records)
        assert all(r in written for r in records), "a record was read that was never written"
        intact = _first_difference(j.data, case.damaged)
        if intact >= j.header_length:
            assert contents.header is not None and contents.header.run_id == RUN_ID
            whole = sum(1 for e in j.ends if e <= intact)
            assert tuple(records[:whole]) == j.records[:whole], (whole, intact)
            counts[1] += whole > 0
        if case.damaged == j.data:
            assert tuple(records) == j.records and not contents.torn
        counts[0] += 1

    return counts, check


def test_journal_reader_takes_damaged_journals(tmp_path: Path, report: Report) -> None:
    n = cases(0.07)
    counts, check = _checker(tmp_path / "fuzz-run-000000.journal")
    refused = run_cases("read_journal", n, _case, check, documented=(StorageError,))
    assert counts[0] > n // 2 and counts[1] > n // 4, (counts, refused)  # the properties were checked
    report.fuzz["journal reader"] = n
