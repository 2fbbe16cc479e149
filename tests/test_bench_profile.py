"""The profile's folding (bench/profile_record.py): py-spy's raw lines into parts, lines and decoder samples."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from kiwoom_tape.schemas import fastpath

from bench.profile_record import PARTS, fold, parse_frame, part_of

FASTPATH = inspect.getsourcefile(fastpath) or ""
SOURCE = Path(FASTPATH).read_text(encoding="utf-8").splitlines()
DECODE_LINE = next(i for i, line in enumerate(SOURCE, 1) if "frame = _read_frame(data)" in line)
CHECK_LINE = next(i for i, line in enumerate(SOURCE, 1) if 'if b"\\\\" in data:' in line)

LOOP = ("<module> (record:8);main (kiwoom_tape/relay_cli.py:40);"
        "run_forever (/usr/lib/python3.11/asyncio/base_events.py:607)")
RECV = f"{LOOP};read_frames (/x/site-packages/websockets/asyncio/connection.py:900);parse (/x/websockets/frames.py:10)"
INTAKE = f"{LOOP};_receive (recorder/client.py:200);add_received (recorder/intake.py:122)"
DRAIN_IN_FLUSH = f"{INTAKE};_flush (recorder/segment.py:181);_drain (recorder/intake.py:152)"


def raw(stack: str, n: int) -> str:
    return f"{stack} {n}\n"


def test_a_frame_is_read_with_or_without_a_place() -> None:
    assert parse_frame("read_real_frame (schemas/fastpath.py:189)") == ("read_real_frame", "schemas/fastpath.py", 189)
    assert parse_frame("f (a (b).py:3)") == ("f", "a (b).py", 3)
    assert parse_frame("<module>") == ("<module>", "", 0)


def test_a_sample_counts_for_the_innermost_part_named_and_the_shares_add_up() -> None:
    lines = [
        raw(f"{DRAIN_IN_FLUSH};read_real_frame ({FASTPATH}:{DECODE_LINE})", 30),
        raw(f"{DRAIN_IN_FLUSH};read_real_frame ({FASTPATH}:{CHECK_LINE})", 10),
        raw(f"{INTAKE};SegmentRows._flush (recorder/segment.py:190);_Part.write (recorder/parquet_parts.py:118)", 20),
        raw(f"{INTAKE};_flush (recorder/segment.py:187)", 5),
        raw(f"{INTAKE};JournalWriter.append_frame (recorder/journal.py:260)", 5),
        raw(RECV, 25),
        raw(LOOP, 4),
        raw(INTAKE, 2),
        raw("<module> (record:8);main (kiwoom_tape/relay_cli.py:40)", 1),
        "not a sample line\n",
        "\n",
    ]
    f = fold(lines)
    assert f.samples == 102
    assert sum(f.parts.values()) == f.samples
    names = list(PARTS)
    assert f.parts[names[0]] == 40  # read_real_frame inside the flush's drain still counts as reading
    assert f.parts["pyarrow's Parquet writer (encoding, compression, file write)"] == 20
    assert f.parts["the rest of the flush (the sort by item, the loop)"] == 5
    assert f.parts["journal (append_frame, sync)"] == 5
    assert f.parts["websockets: receiving and parsing the frames"] == 25  # not the event loop below it
    assert f.parts["the event loop (asyncio, uvloop) and other tasks"] == 4
    assert f.parts["the receive loop and per-frame bookkeeping (their own lines)"] == 2  # not the loop around it
    assert f.parts["other"] == 1
    assert f.decoder_lines == 30  # the decode line, not the backslash check
    assert f.functions["SegmentRows._flush"] == 20 and f.functions["main"] == 102
    assert f.leaf_lines.most_common(1)[0] == (("read_real_frame", FASTPATH, DECODE_LINE), 30)
    assert f.share(f.parts["other"]) == pytest.approx(1 / 102)


def test_part_of_an_unnamed_stack_is_other() -> None:
    assert part_of([("main", "kiwoom_tape/relay_cli.py", 40)]) == "other"
    assert part_of([]) == "other"


def test_the_selector_s_wait_is_idle_time_left_out() -> None:
    f = fold([raw(f"{LOOP};EpollSelector.select (selectors.py:468)", 40), raw(f"{INTAKE};read_real_frame (x:1)", 10)])
    assert f.samples == 10 and f.idle == 40
    assert f.parts[next(iter(PARTS))] == 10
