"""Damaged journals: bit flips and cuts at random offsets of a crashed run's journal (issue 12, finding 2).

Recovery must store every record outside the damaged bytes (the reader resynchronises on the next valid
record), keep every damaged byte in ``{journal}.torn``, record a ``journal_damage`` event per damaged
range whose frame counts match the frames missing, and say that it dropped something. The count of
damaged journals recovered goes to the reliability summary (conftest.py).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from kiwoom_tape.recorder.journal import iter_journal_at, read_journal
from kiwoom_tape.recorder.recovery import recover
from kiwoom_tape.schemas.layout import JOURNAL_DIR
from test_recovery import _crashed, _table

from .conftest import Report

CASES = 60
"""Seeded (fixed seed): the same cases every run."""


def test_random_damage_loses_only_the_damaged_records(tmp_path: Path, report: Report) -> None:
    """CASES seeded cases: bit flips and cuts at random offsets; recovery stores every record outside them."""
    clean = tmp_path / "clean"
    path = _crashed(clean, 300)
    data = path.read_bytes()
    spans = []  # (start, end, seq) of every record
    at = [(pos, rec) for pos, rec in iter_journal_at(path)]
    for (pos, rec), nxt in zip(at, [*(p for p, _ in at[1:]), len(data)], strict=True):
        spans.append((pos, nxt, rec.seq))  # type: ignore[union-attr]
    hlen = read_journal(path).header.length  # type: ignore[union-attr]
    rng = random.Random(1202)
    report.journal_damage = (0, CASES)
    for case in range(CASES):
        root = tmp_path / f"case{case}"
        shutil.copytree(clean, root)
        bad = bytearray(data)
        flips = [rng.randrange(hlen, len(data)) for _ in range(rng.randint(1, 4))]
        for f in flips:
            bad[f] ^= 1 << rng.randrange(8)
        cut = rng.randrange(hlen, len(data)) if case % 3 == 0 else len(data)
        (root / JOURNAL_DIR / path.name).write_bytes(bytes(bad[:cut]))
        rec = recover(root)
        want = [seq for lo, hi, seq in spans if hi <= cut and not any(lo <= f < hi for f in flips)]
        got = [r["seq"] for r in _table(root, "frames")]
        assert got == want, (case, flips, cut)
        assert rec.dropped and rec.frames == len(want)
        damage = [json.loads(e["detail"]) for e in _table(root, "events") if e["kind"] == "journal_damage"]
        kept = (root / JOURNAL_DIR / (path.name + ".torn")).read_bytes()
        assert kept == b"".join(bytes(bad[d["start"]:d["end"]]) for d in damage)
        assert sum(d["bytes"] for d in damage) == rec.torn_bytes == len(kept)
        # the frames counted lost between valid frames are exactly the ones missing there
        inner = sum(d["frames_lost"] for d in damage if d["frames_lost"] is not None)
        missing = [s for s in range(want[-1] + 1) if s not in set(want)] if want else []
        assert inner == len(missing) == rec.frames_lost, case
        assert not list((root / JOURNAL_DIR).glob("*.journal"))
        report.journal_damage = (case + 1, CASES)
