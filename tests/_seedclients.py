"""Kiwoom's official sample clients (../shared/seeds), run unchanged but for SOCKET_URL. Shared test helper.

Each seed is a Markdown document with the client in a ```python block. :func:`run_seed_client` extracts
it, swaps the one line, runs it as a subprocess against a server URL, and returns its output once it
has printed enough REAL frames of its type (the clients never exit by themselves: they loop on the
socket), or when the time is up.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

SEEDS = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"


def seed_files() -> list[Path]:
    if not SEEDS.is_dir():
        return []
    return sorted(SEEDS.glob("*.txt"))


def client_code(doc: str, url: str) -> str:
    m = re.search(r"```python\n(.*?)```", doc, re.S)
    assert m, "the seed has no ```python block"
    code = m.group(1)
    line = re.search(r"^SOCKET_URL = .*$", code, re.M)
    assert line, "the seed has no SOCKET_URL line"
    return code[: line.start()] + f"SOCKET_URL = {url!r}" + code[line.end() :]


def seed_type(doc: str) -> str:
    """The real-time type the seed registers (``0D``, ``0E``)."""
    rtype = re.search(r"'type': \['(0\w)'\]", doc)
    assert rtype, "cannot tell which type the seed registers"
    return rtype.group(1)


async def run_seed_client(doc: str, url: str, workdir: Path, *, frames: int = 3, seconds: float = 30) -> str:
    """Run the seed against ``url`` until it printed ``frames`` REAL frames of its type; return its output."""
    real_type = seed_type(doc)
    script = workdir / "client.py"
    script.write_text(client_code(doc, url), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-u", str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    out: list[str] = []
    try:
        async with asyncio.timeout(seconds):
            while sum(f"'type': '{real_type}'" in line for line in out) < frames:
                line = (await proc.stdout.readline()).decode("utf-8", "replace")
                if not line:
                    break
                out.append(line)
    finally:
        proc.kill()
        await proc.wait()
    return "".join(out)


def check_seed_output(output: str, real_type: str, item: str = "005930", frames: int = 3) -> list[str]:
    """The seed logged in and printed at least ``frames`` REAL frames, all of ``real_type`` rows of ``item``."""
    assert "로그인 성공" in output, output[-2000:]
    reals = [ln for ln in output.splitlines() if "'trnm': 'REAL'" in ln]
    assert len(reals) >= frames, output[-2000:]
    assert all(f"'type': '{real_type}'" in ln and f"'item': '{item}'" in ln for ln in reals), output[-2000:]
    return reals
