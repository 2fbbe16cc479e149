"""The console scripts as a user runs them, in a subprocess. Shared test helper.

:func:`cli_argv` is the command line of ``record``, ``replay`` or ``kiwoom-tape`` as installed (editable)
in the running interpreter, so it needs no ``bin/`` on PATH. :func:`started_replay` starts ``replay ARGS``,
waits for the ``ws://`` URL it prints, and kills it on the way out if the test did not stop it::

    async with started_replay("--simulate", "--port", "0") as replay:
        async with connect(replay.url) as ws:
            ...
        assert await replay.interrupt() == 0   # Ctrl-C: a clean exit
    text = replay.output                       # everything it printed on stderr
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
URL = re.compile(r"(ws://127\.0\.0\.1:\d+/api/dostk/websocket)")
"""What ``replay`` prints where to connect (port 0: the port it got)."""


SCRIPTS = {"record": "kiwoom_tape.relay_cli", "replay": "kiwoom_tape.replay.cli", "kiwoom-tape": "kiwoom_tape.cli"}
"""The console scripts (pyproject.toml ``[project.scripts]``) and the module whose ``main`` each runs."""


def cli_argv(script: str, *args: str) -> list[str]:
    """``python -c "from MODULE import main; main()" ARGS``: the console script ``script`` (a key of SCRIPTS)."""
    return [sys.executable, "-c", f"from {SCRIPTS[script]} import main; main()", *args]


@dataclass
class StartedCli:
    """A command running in a subprocess, past its start-up line."""

    proc: asyncio.subprocess.Process
    url: str
    lines: list[str] = field(default_factory=list)
    """What it printed on stderr: the lines up to the URL, then (after :meth:`interrupt`) the rest."""

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def control_url(self) -> str:
        """``http://127.0.0.1:PORT/control``: the status (and commands) on the server's own port."""
        return "http://" + self.url.removeprefix("ws://").split("/", 1)[0] + "/control"

    async def status(self) -> dict[str, Any]:
        """``GET /control``, decoded (in a thread: urllib blocks)."""

        def get() -> dict[str, Any]:
            with urllib.request.urlopen(self.control_url, timeout=10) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]

        return await asyncio.to_thread(get)

    async def wait_until(self, done: Callable[[dict[str, Any]], bool], what: str, limit: float) -> dict[str, Any]:
        """Poll the status until ``done(status["server"])``: what was served or the market clock, not wall time
        (a busy machine serves a simulated day more slowly). Fails naming ``what`` after ``limit`` wall seconds."""
        server: dict[str, Any] = {}
        try:
            async with asyncio.timeout(limit):
                while not done(server := (await self.status())["server"]):  # noqa: ASYNC110  # another process
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise AssertionError(f"not {what} within {limit:g} s (busy machine?); server status {server}") from None
        return server

    async def market_reached(self, seconds: float, limit: float) -> dict[str, Any]:
        """Wait until the server's market clock (``market_time``, seconds since KST midnight) is at ``seconds``."""
        return await self.wait_until(lambda s: (s.get("market_time") or 0.0) >= seconds,
                                     f"at market time {seconds:g} s", limit)

    async def stop_when(
        self, proc: asyncio.subprocess.Process, done: Callable[[dict[str, Any]], bool], what: str, limit: float
    ) -> dict[str, Any]:
        """Ctrl-C ``proc`` (a ``record`` of this server, run with a ``--duration`` longer than ``limit``) once
        ``done(status["server"])``, or return at once if it exited first; the server's status then."""
        server = await self.wait_until(lambda s: proc.returncode is not None or done(s), what, limit)
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        return server

    async def stop_after_market_time(
        self, proc: asyncio.subprocess.Process, seconds: float, limit: float, margin: float = 1200.0
    ) -> dict[str, Any]:
        """:meth:`stop_when` the server's market clock is at ``seconds`` and ``proc`` (the one client) caught up with
        it: logged in, nothing queued for it (on a busy machine a client lags behind what the server generated, and
        faults on the market clock reach it late), then ``margin`` market seconds more so (what is still in the
        sockets arrives)."""

        def caught_up(s: dict[str, Any], at: float) -> bool:
            return s["market_time"] >= at and s["logged_in"] >= 1 and s["backlog"] == 0

        first = await self.wait_until(lambda s: proc.returncode is not None or caught_up(s, seconds),
                                      f"at market time {seconds:g} s with the client caught up", limit)
        return await self.stop_when(proc, lambda s: caught_up(s, first["market_time"] + margin),
                                    f"{margin:g} market seconds more", limit)

    async def interrupt(self) -> int:
        """Ctrl-C (SIGINT); reads the rest of stderr into ``lines`` and returns the exit code."""
        assert self.proc.stderr is not None
        self.proc.send_signal(signal.SIGINT)
        self.lines.append((await self.proc.stderr.read()).decode())
        return await self.proc.wait()


@asynccontextmanager
async def started_replay(
    *args: str, env: Mapping[str, str] | None = None, limit: float = 30.0
) -> AsyncIterator[StartedCli]:
    """``replay ARGS`` in a subprocess, once it printed its URL; the whole block is bounded by ``limit`` s."""
    proc = await asyncio.create_subprocess_exec(*cli_argv("replay", *args), env=env, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(limit):
            url = None
            while url is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "replay exited before printing its URL:\n" + "".join(lines)
                lines.append(line)
                m = URL.search(line)
                url = m.group(1) if m else None
            yield StartedCli(proc, url, lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
