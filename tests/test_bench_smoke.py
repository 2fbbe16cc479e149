"""``python -m bench --quick`` runs end to end and reports every section. No timing is asserted here:
benchmarks measure, tests check that the measuring works (bench/__init__.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from bench.relay import relay_delays

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("record", "storage", "replay", "mixed", "relay", "query", "market", "compact")


def test_relay_delays_pair_the_client_frames_with_the_recorders_last_ones() -> None:
    send = array("q", [100, 200, 300, 400])
    recv = array("q", [1_100, 2_200, 3_300, 4_400])
    client = array("q", [3_300 + 2_000_000, 4_400 + 500_000])  # joined after two frames
    d = relay_delays(send, recv, client)
    assert d["relay_ms"] == [2.0, 0.5]
    assert d["upstream_ms"] == [0.003, 0.004]
    with pytest.raises(ValueError, match="the client received 5 frames"):
        relay_delays(send, recv, array("q", [0] * 5))
    with pytest.raises(ValueError, match="before the recorder"):  # a frame lost on the way pairs them wrong
        relay_delays(send, recv, array("q", [3_300, 4_000]))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_bench_reports_every_section(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=840,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads((tmp_path / "latest-quick.json").read_text())
    assert len(list(tmp_path.glob("20*-quick.json"))) == 1  # the dated copy
    assert result["mode"] == "quick" and not result["errors"]
    assert {"cpu", "cores", "python", "packages"} <= set(result["machine"])
    for section in SECTIONS:
        assert section in result["details"], section
    by_section: dict[str, list[dict[str, object]]] = {}
    for fig in result["figures"]:
        by_section.setdefault(str(fig["section"]), []).append(fig)
    for section in (*SECTIONS, "memory"):
        assert by_section.get(section), f"no figure for {section}"
        for fig in by_section[section]:
            assert fig["verdict"] in ("met", "MISSED", ""), fig
    # the figures docs/benchmarks.md's table is about are there, each with a value
    names = " | ".join(str(f["name"]) for f in result["figures"] if f["value"] is not None)
    for needle in ("bare websockets receive", "record, lossless", "CPU of record", "raw + normalized",
                   "replay --speed max, 1 client", "replay --speed max, 10 clients", "pacing error",
                   "against one websockets send per frame", "other core busy", "0B+0D frames, fast path",
                   "0B+0D frames, general path", "relay delay at 720 rows/s", "p99",
                   "mid/spread", "imbalance", "as-of", "peak RSS", "the day, compacted", "CPU of record, full market",
                   "full market lossless", "per 0D row, compacted", "rows equal after compaction"):
        assert needle in names, needle
    replay = result["details"]["replay"]
    for conns in (1, 10):  # the fair ceiling and the per-send baseline both ran, on every frame
        assert replay[f"clients_{conns}"]["fair_ceiling"] and replay[f"clients_{conns}"]["per_send"]
    assert replay["pacing"]["frames"] > 0 and replay["pacing"]["spinner_cpu_s"] > 0  # the other core was busy
    relayed = result["details"]["relay"]
    assert 0 < relayed["client_frames"] <= relayed["written"] == relayed["sent"]  # lossless, the client joined late
    assert "| section |" in result["table_markdown"]
    assert "record, lossless" in res.stdout  # the table is printed
