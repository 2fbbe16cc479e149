"""Kiwoom's official sample clients (../shared/seeds) against the mock, unchanged but for SOCKET_URL.

Each seed is a Markdown document with the client in a ```python block. The test extracts it, swaps
the one line, runs it as a subprocess against a mock on a free loopback port, and checks that it
logs in and prints REAL frames of its type. The clients never exit by themselves (they loop on the
socket), so the test stops them once it has seen enough.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from replay.server import serve
from replay.simulator import SimulatedMarket
from replay.sources import SimSource

SEEDS = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"


def _seed_files() -> list[Path]:
    if not SEEDS.is_dir():
        return []
    return sorted(SEEDS.glob("*.txt"))


def _client_code(doc: str, url: str) -> str:
    m = re.search(r"```python\n(.*?)```", doc, re.S)
    assert m, "the seed has no ```python block"
    code = m.group(1)
    line = re.search(r"^SOCKET_URL = .*$", code, re.M)
    assert line, "the seed has no SOCKET_URL line"
    return code[: line.start()] + f"SOCKET_URL = {url!r}" + code[line.end() :]


@pytest.mark.skipif(not _seed_files(), reason=f"no seed documents at {SEEDS} (../shared is absent)")
@pytest.mark.parametrize("seed", _seed_files(), ids=lambda p: p.name)
def test_official_sample_client_runs_unchanged(seed: Path, tmp_path: Path) -> None:
    doc = seed.read_text(encoding="utf-8")
    rtype = re.search(r"'type': \['(0\w)'\]", doc)
    assert rtype, "cannot tell which type the seed registers"
    real_type = rtype.group(1)
    # 0D flows in the regular session; 0E from 15:40 (PROTOCOL.md 5.3)
    start = 9 * 3600 if real_type == "0D" else 15 * 3600 + 39 * 60 + 50

    async def main() -> str:
        market = SimulatedMarket(seed=7, items=["005930"], start=start)
        async with serve(SimSource(market, speed=5.0), port=0) as server:
            script = tmp_path / "client.py"
            script.write_text(_client_code(doc, server.url), encoding="utf-8")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-u", str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            assert proc.stdout is not None
            out: list[str] = []
            try:
                async with asyncio.timeout(30):
                    while sum(f"'type': '{real_type}'" in line for line in out) < 3:
                        line = (await proc.stdout.readline()).decode("utf-8", "replace")
                        if not line:
                            break
                        out.append(line)
            finally:
                proc.kill()
                await proc.wait()
            return "".join(out)

    output = asyncio.run(main())
    assert "로그인 성공" in output, output[-2000:]
    reals = [ln for ln in output.splitlines() if "'trnm': 'REAL'" in ln]
    assert len(reals) >= 3, output[-2000:]
    assert all(f"'type': '{real_type}'" in ln and "'item': '005930'" in ln for ln in reals)
