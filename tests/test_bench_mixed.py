"""``python -m bench.mixed_frames`` runs: the store's per-frame cost, pure and mixed frames, fast and general path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kiwoom_tape.recorder import intake

from bench import mixed_frames


def test_mixed_frames_bench_measures_both_paths_on_every_kind(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    frames = mixed_frames.make_frames(40, items=20)
    assert {k: len(v) for k, v in frames.items()} == {"0D": 40, "0B": 40, "0B+0D": 40}
    assert all(f.count(b'"type":"0B"') == 1 and f.count(b'"type":"0D"') == 1 for f in frames["0B+0D"])
    fast = intake.read_real_frame
    for kind in mixed_frames.KINDS:
        assert all(fast(f, intake._FAST_TYPES) is not None for f in frames[kind])  # "fast" is the fast path
        for path in mixed_frames.PATHS:
            assert mixed_frames.store_us_per_frame(frames[kind], path) > 0
    assert intake.read_real_frame is fast  # the general path's switch is undone
    out_file = tmp_path / "mixed.json"
    assert mixed_frames.main(["--frames", "20", "--repeats", "1", "--items", "20", "--json", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "0B+0D" in out and "general/fast" in out
    stored = json.loads(out_file.read_text(encoding="utf-8"))
    assert stored["repeats"] == 1 and stored["frames_per_kind"] == 20 and stored["items"] == 20
    assert set(stored["runs_us_per_frame"]) == set(mixed_frames.KINDS) and "machine" in stored
