"""``python -m bench --quick`` runs end to end and reports every section. No timing is asserted here:
benchmarks measure, tests check that the measuring works (bench/__init__.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("record", "storage", "replay", "query", "market", "compact")


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
                   "mid/spread", "imbalance", "as-of", "peak RSS", "the day, compacted", "CPU of record, full market",
                   "full market lossless", "per 0D row, compacted", "rows equal after compaction"):
        assert needle in names, needle
    assert "| section |" in result["table_markdown"]
    assert "record, lossless" in res.stdout  # the table is printed
