"""The platform calls of :mod:`kiwoom_tape.portable`, natively and through each fallback, and the package without fcntl.

The fallbacks are what Windows runs; here they are forced with ``KIWOOM_TAPE_PORTABLE=fallback`` (in a
subprocess, with ``fcntl`` made unimportable and a stand-in ``msvcrt``: tests/portable_fallback/) or by
setting the module's choices directly (in-process).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cli import ROOT, cli_argv, started_replay
from portable_fallback import fake_msvcrt
from websockets.asyncio.client import connect

from kiwoom_tape import portable
from kiwoom_tape.testing import read_table
from recorder.journal import JournalBusy, JournalWriter
from replay.server import serve
from replay.simulator import SimulatedMarket
from replay.sources import SimSource
from schemas.errors import StorageError

fcntl = pytest.importorskip("fcntl")  # the stand-in msvcrt is built on flock

SHIM = ROOT / "tests" / "portable_fallback"
FALLBACK_ENV = {**os.environ, "KIWOOM_TAPE_PORTABLE": "fallback", "PYTHONPATH": str(SHIM)}
"""A Python process started with this runs as on Windows (tests/portable_fallback/sitecustomize.py)."""
LOCKS = re.compile(r"fake msvcrt: (\d+) locks at offsets \[([\d, ]*)\]")


def fallback_locks(stderr: str) -> list[tuple[int, str]]:
    """What the processes of a fallback run said at exit: (locks taken through msvcrt, their offsets)."""
    return [(int(n), offsets) for n, offsets in LOCKS.findall(stderr)]


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[int]]:
    """Open files of ``tmp_path / "f"`` (append ``fd``s to the list); all closed at the end."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _open(path: Path, fds: list[int]) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | portable.OPEN_FLAGS, 0o644)
    fds.append(fd)
    return fd


# -- file lock -------------------------------------------------------------------------------------


def test_the_native_lock_is_held_by_one_open_file_at_a_time(
    tmp_path: Path, opened: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portable, "_fcntl", fcntl)
    a, b = _open(tmp_path / "f", opened), _open(tmp_path / "f", opened)
    assert portable.try_lock(a)
    assert not portable.try_lock(b)
    os.close(opened.pop(0))
    assert portable.try_lock(b)


def test_the_msvcrt_fallback_locks_one_byte_past_the_data_and_refuses_a_second_open_file(
    tmp_path: Path, opened: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_msvcrt.make(fcntl)
    monkeypatch.setattr(portable, "_fcntl", None)
    monkeypatch.setattr(portable, "_msvcrt", fake)
    path = tmp_path / "f"
    a, b = _open(path, opened), _open(path, opened)
    os.write(a, b"0123456789")
    os.lseek(a, 3, os.SEEK_SET)
    assert portable.try_lock(a)
    assert os.lseek(a, 0, os.SEEK_CUR) == 3  # the file position is kept
    assert fake.locks == [portable.LOCK_OFFSET]
    assert not portable.try_lock(b)
    os.write(a, b"more")  # the holder still appends at the end
    assert path.read_bytes() == b"0123456789more"
    os.close(opened.pop(0))
    assert portable.try_lock(b)
    os.close(b)
    with pytest.raises(OSError, match="Bad file descriptor"):  # not "locked": an error
        portable.try_lock(b)


def test_the_journal_lock_through_the_msvcrt_fallback_refuses_a_second_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portable, "_fcntl", None)
    monkeypatch.setattr(portable, "_msvcrt", fake_msvcrt.make(fcntl))
    path = tmp_path / "a.journal"
    w = JournalWriter(path, "run1", 0)
    with pytest.raises(JournalBusy, match="in use by a running recorder"):
        JournalWriter.resume(path)
    w.append_frame(1, 0, "in", b"{}")
    w.close()
    w2, scan = JournalWriter.resume(path)
    assert scan.frames == 1
    w2.remove()
    assert list(tmp_path.iterdir()) == []


def test_where_open_files_cannot_be_renamed_the_journal_closes_first_and_a_racing_recovery_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portable, "RENAMES_OPEN_FILES", False)
    real_rename, held = os.rename, []

    def rename_as_on_windows(src: Any, dst: Any) -> None:
        fd = os.open(src, os.O_RDONLY)  # an open file of this name cannot be renamed: refuse if one is locked
        try:
            assert portable.try_lock(fd), f"{src} is still open and locked during its rename"
        finally:
            os.close(fd)
        real_rename(src, dst)
        if Path(dst).name.startswith("race"):  # a recovery takes the journal between rename and lock
            held.append(os.open(dst, os.O_RDONLY))
            assert portable.try_lock(held[-1])

    monkeypatch.setattr(os, "rename", rename_as_on_windows)
    w = JournalWriter(tmp_path / "a.journal", "run1", 0)
    with pytest.raises(JournalBusy):
        JournalWriter.resume(tmp_path / "a.journal")  # locked again after the rename
    w.append_frame(1, 0, "in", b"{}")
    w.remove()
    assert not (tmp_path / "a.journal").exists()
    with pytest.raises(JournalBusy, match="in use by a running recorder or recovery"):
        JournalWriter(tmp_path / "race.journal", "run1", 1)
    os.close(held.pop())
    assert [p.name for p in tmp_path.iterdir()] == ["race.journal"]  # complete, no record: recovery's to take


def test_without_any_file_lock_the_journal_refuses_to_start_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portable, "_fcntl", None)
    monkeypatch.setattr(portable, "_msvcrt", None)
    with pytest.raises(StorageError, match=r"no file lock on this platform \(neither fcntl.flock nor msvcrt"):
        JournalWriter(tmp_path / "a.journal", "run1", 0)
    assert list(tmp_path.iterdir()) == []  # nothing half-made left behind


# -- durability ------------------------------------------------------------------------------------


def test_fsync_dir_opens_the_directory_natively_and_does_nothing_in_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tmp_path / "x.tmp", tmp_path / "x"
    src.write_bytes(b"data")
    monkeypatch.setattr(portable, "_dir_flag", os.O_DIRECTORY)
    portable.fsync_dir(tmp_path)
    with pytest.raises(NotADirectoryError):  # O_DIRECTORY is in the flags
        portable.fsync_dir(src)
    monkeypatch.setattr(portable, "_dir_flag", None)

    def no_open(*args: object) -> int:
        raise AssertionError("the fallback must not open the directory")

    monkeypatch.setattr(os, "open", no_open)
    os.replace(src, dst)
    portable.fsync_dir(tmp_path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["x"] and dst.read_bytes() == b"data"


@pytest.mark.parametrize("native", [True, False])
def test_datasync_uses_fdatasync_where_it_exists_else_fsync(
    tmp_path: Path, opened: list[int], monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    calls: list[str] = []
    real_fsync = os.fsync

    def fdatasync(fd: int) -> None:
        calls.append("fdatasync")

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(portable, "_fdatasync", fdatasync if native else None)
    monkeypatch.setattr(os, "fsync", fsync)
    fd = _open(tmp_path / "f", opened)
    os.write(fd, b"abc")
    portable.datasync(fd)
    assert calls == (["fdatasync"] if native else ["fsync"])


def test_the_pread_fallback_reads_what_pread_reads(
    tmp_path: Path, opened: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(256)) * 40
    fd = _open(tmp_path / "f", opened)
    os.write(fd, data)
    cases = [(1, 0), (100, 7), (4096, 5000), (10, len(data) - 3), (10, len(data)), (10, len(data) + 50)]
    monkeypatch.setattr(portable, "_pread", None)
    got = [portable.pread(fd, n, offset) for n, offset in cases]
    assert got == [os.pread(fd, n, offset) for n, offset in cases] == [data[o:o + n] for n, o in cases]
    os.write(fd, b"tail")  # O_APPEND: a write after a fallback read still goes to the end
    assert portable.pread(fd, 10, len(data)) == b"tail"


# -- stop signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fallback", [False, True])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_calls_back_on_the_loop_and_the_old_handlers_come_back(
    monkeypatch: pytest.MonkeyPatch, fallback: bool, sig: signal.Signals
) -> None:
    monkeypatch.setattr(portable, "FALLBACK", fallback)
    seen: list[bool] = []

    async def main() -> None:
        before = {s: signal.getsignal(s) for s in portable.STOP_SIGNALS}
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_stop() -> None:
            seen.append(threading.current_thread() is threading.main_thread() and asyncio.get_running_loop() is loop)
            stop.set()

        with portable.on_stop_signals(loop, on_stop) as handlers:
            assert handlers.installed == portable.STOP_SIGNALS
            assert handlers.fallback == (portable.STOP_SIGNALS if fallback else ())
            signal.raise_signal(sig)
            async with asyncio.timeout(5):
                await stop.wait()
        assert {s: signal.getsignal(s) for s in portable.STOP_SIGNALS} == before

    asyncio.run(main())
    assert seen == [True]


def test_a_stop_signal_after_the_loop_closed_gets_the_previous_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(portable, "FALLBACK", True)
    got: list[int] = []

    def previous(signum: int, _frame: Any) -> None:
        got.append(signum)

    old = signal.signal(signal.SIGTERM, previous)
    try:
        loop = asyncio.new_event_loop()
        portable.on_stop_signals(loop, lambda: None)  # never restored: the loop closes first
        loop.close()
        signal.raise_signal(signal.SIGTERM)
        assert got == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)


def test_no_stop_signal_handler_outside_the_main_thread() -> None:
    loop = asyncio.new_event_loop()
    try:
        result: list[portable.StopSignals] = []
        t = threading.Thread(target=lambda: result.append(portable.on_stop_signals(loop, lambda: None)))
        t.start()
        t.join(5)
        assert result[0].installed == ()
    finally:
        loop.close()


# -- the package as on Windows, in subprocesses ----------------------------------------------------


def test_every_entry_point_imports_without_fcntl() -> None:
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import recorder.cli, replay.cli, kiwoom_tape.cli, recorder.store, recorder.recovery, replay.pytest_plugin\n"
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
            cmd = cli_argv("recorder.cli", "--items", ",".join(ITEMS), "--url", server.url, "--out", str(out),
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
