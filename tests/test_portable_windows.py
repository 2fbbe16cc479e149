"""kiwoom-tape as on Windows: entry points without fcntl, the journal/store/recovery tests, ``record`` and
``replay`` on Ctrl-C, all with every fallback of :mod:`kiwoom_tape.portable`; and no one-platform call elsewhere.

Each runs in a subprocess started with ``KIWOOM_TAPE_PORTABLE=fallback`` and tests/portable_fallback/ on
PYTHONPATH (``fcntl`` unimportable, a stand-in ``msvcrt``, Windows' refusal to rename or delete an open file).
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _cli import ROOT, cli_argv, started_replay
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from websockets.asyncio.client import connect

from kiwoom_tape import portable
from kiwoom_tape.testing import read_table

pytest.importorskip("fcntl")  # the stand-in msvcrt is built on flock

SHIM = ROOT / "tests" / "portable_fallback"
FALLBACK_ENV = {**os.environ, "KIWOOM_TAPE_PORTABLE": "fallback", "PYTHONPATH": str(SHIM)}
"""A Python process started with this runs as on Windows (tests/portable_fallback/sitecustomize.py)."""
LOCKS = re.compile(r"fake msvcrt: (\d+) locks at offsets \[([\d, ]*)\]")


def fallback_locks(stderr: str) -> list[tuple[int, str]]:
    """What the processes of a fallback run said at exit: (locks taken through msvcrt, their offsets)."""
    return [(int(n), offsets) for n, offsets in LOCKS.findall(stderr)]


def test_every_entry_point_imports_without_fcntl() -> None:
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import kiwoom_tape.recorder.cli, kiwoom_tape.replay.cli, kiwoom_tape.cli, kiwoom_tape.recorder.store\n"
        "import kiwoom_tape.recorder.recovery, kiwoom_tape.replay.pytest_plugin\n"
        "import kiwoom_tape.portable as p; print('imported', p.FALLBACK, p._fcntl)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["imported", "False", "None"]


@pytest.mark.parametrize("files", [("tests/test_journal.py", "tests/test_store.py"), ("tests/test_recovery.py",)])
def test_the_journal_store_and_recovery_tests_pass_as_on_windows(files: tuple[str, ...]) -> None:
    """Locks, renames + directory syncs, kill -9, recovery and Ctrl-C during it, with every fallback.

    Also with Windows' refusal to rename or delete an open file (tests/portable_fallback/sitecustomize.py).
    """
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *files]
    proc = subprocess.run(cmd, cwd=ROOT, env=FALLBACK_ENV, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"\d+ passed", proc.stdout) and "failed" not in proc.stdout
    locks = fallback_locks(proc.stderr)
    assert locks and sum(n for n, _ in locks) > 5  # the journals were locked through msvcrt.locking
    assert {offsets for n, offsets in locks if n} == {str(portable.LOCK_OFFSET)}


ITEMS = ["005930", "000660"]


def test_record_stops_cleanly_on_sigint_through_the_fallback(tmp_path: Path) -> None:
    out = tmp_path / "data"
    env = {**FALLBACK_ENV, "KIWOOM_APPKEY": "APPKEY-PORTABLE-1", "KIWOOM_SECRETKEY": "SECRET-PORTABLE-2"}

    async def main() -> str:
        market = SimulatedMarket(seed=16, items=ITEMS, start=10 * 3600)
        async with serve(SimSource(market, speed=20.0), port=0) as server:
            cmd = cli_argv("record", "--items", ",".join(ITEMS), "--url", server.url, "--out", str(out),
                           "--fsync-interval", "0.05", "-vv")
            proc = await asyncio.create_subprocess_exec(*cmd, env=env, stderr=asyncio.subprocess.PIPE)
            assert proc.stderr is not None
            try:
                async with asyncio.timeout(60):
                    while server.stats.frames_sent < 20:  # a server counter, no event
                        assert proc.returncode is None, (await proc.stderr.read()).decode()
                        await asyncio.sleep(0.05)
                    proc.send_signal(signal.SIGINT)
                    stderr = (await proc.stderr.read()).decode()
                    assert await proc.wait() == 0, stderr
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        return stderr

    stderr = asyncio.run(main())
    m = re.search(r"recorded (\d+) frames", stderr)
    assert m and int(m.group(1)) > 0, stderr
    assert "stop signals SIGINT, SIGTERM: through signal.signal (the fallback)" in stderr
    # its journal, locked through msvcrt.locking as .journal.new, then again once renamed (closed between)
    assert [n for n, _ in fallback_locks(stderr)] == [2]
    assert not list((out / "_journal").glob("*.journal"))  # closed, not left for recovery
    assert any(r["trnm"] == "REAL" for r in read_table(out, "frames"))


def test_replay_stops_cleanly_on_sigint_through_the_fallback() -> None:
    async def main() -> None:
        args = ["--simulate", "--port", "0", "--items", "005930", "--sim-start", "09:30:00", "--speed", "5", "-vv"]
        async with started_replay(*args, env=FALLBACK_ENV, limit=30) as replay:
            async with connect(replay.url) as ws:
                await ws.send('{"trnm":"LOGIN","token":"t"}')
                assert '"return_code":0' in str(await ws.recv()).replace(" ", "")
            assert await replay.interrupt() == 0, replay.output
        assert fallback_locks(replay.output) == [(0, "")]  # it ran with the Windows stand-ins
        assert "stop signals SIGINT, SIGTERM: through signal.signal (the fallback)" in replay.output

    asyncio.run(main())


def test_the_fast_extra_installs_on_windows() -> None:
    """``pip install 'kiwoom-tape[fast]'`` must not ask Windows for uvloop, which has no Windows build."""
    import tomllib

    from packaging.requirements import Requirement

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    uvloop = [Requirement(r) for r in extra["fast"] if Requirement(r).name == "uvloop"]
    assert uvloop and all(r.marker is not None for r in uvloop)
    assert not any(r.marker.evaluate({"sys_platform": "win32"}) for r in uvloop if r.marker)
    assert all(r.marker.evaluate({"sys_platform": p}) for r in uvloop for p in ("linux", "darwin") if r.marker)


POSIX_ONLY_MODULES = {"fcntl", "msvcrt", "termios", "tty", "pty", "resource", "pwd", "grp"}
POSIX_ONLY_NAMES = {"fdatasync", "pread", "pwrite", "O_DIRECTORY", "O_CLOEXEC", "add_signal_handler", "getuid",
                    "killpg", "setsid", "fork"}


def platform_calls(source: str) -> list[str]:
    """What ``source`` calls that exists on one platform only, or an ``os.open`` without ``OPEN_FLAGS``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"line {node.lineno}: import {n}" for n in names if n.split(".")[0] in POSIX_ONLY_MODULES]
        elif (isinstance(node, ast.Attribute) and node.attr in POSIX_ONLY_NAMES
              and not (isinstance(node.value, ast.Name) and node.value.id == "portable")):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "open"
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "os"
              and "OPEN_FLAGS" not in ast.unparse(node)):
            found.append(f"line {node.lineno}: os.open without portable.OPEN_FLAGS (binary mode on Windows)")
    return found


def test_platform_calls_go_through_portable_everywhere_else() -> None:
    """recorder/, replay/, schemas/ and kiwoom_tape/ call the OS through kiwoom_tape.portable where platforms differ."""
    assert platform_calls("import fcntl\nos.fdatasync(fd)\nloop.add_signal_handler(s, f)\nos.open(p, os.O_RDONLY)")
    assert not platform_calls("os.open(p, os.O_RDONLY | portable.OPEN_FLAGS)\nportable.pread(fd, 1, 0)")
    offenders = {
        str(path.relative_to(ROOT)): calls
        for package in ("recorder", "replay", "schemas", "kiwoom_tape")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "portable.py" and (calls := platform_calls(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "call these through kiwoom_tape.portable (or add a fallback there):\n" + "\n".join(
        f"  {p}: {', '.join(c)}" for p, c in offenders.items()
    )
