"""The ``kiwoom_replay`` pytest fixture: a recorded day served by the mock server, for strategy tests.

Installed with kiwoom-tape as the pytest plugin ``kiwoom_tape`` (entry point ``pytest11``); nothing to
import. ``kiwoom_replay`` is a factory: call it with a dataset directory (or set the ini option) and
options, get a running server; it stops when the test ends::

    def test_strategy_sees_the_book(kiwoom_replay):
        server = kiwoom_replay("data", date="2026-11-20", start="09:00", end="09:05")
        run_my_strategy(socket_url=server.url)        # any client: sync, asyncio, a subprocess

The server runs on its own event loop in a background thread, so the test may be a plain function, use
``asyncio.run``, or run under any async test plugin. Options (keywords of the factory):

- ``dataset_dir``: the ``record --out`` directory; default: the ini option ``kiwoom_replay_dataset``
  (a path relative to the ini file), e.g. ``[tool.pytest.ini_options] kiwoom_replay_dataset = "data"``;
- ``date``, ``start``, ``end``, ``items``, ``loop``, ``start_delay``: as
:class:`kiwoom_tape.replay.recorded.RecordedSource`
  (times are KST ``"HH:MM[:SS]"``); ``speed``: **default None = as fast as the slowest client reads**
  (tests rarely want to wait in real time; pass ``speed=1.0`` for the recorded pace);
- ``token``, ``ping_interval``: as :class:`kiwoom_tape.replay.server.Server` (the port is always a free one);
- ``faults``: scripted faults (:mod:`kiwoom_tape.replay.faults`), a TOML file's path, a
:class:`kiwoom_tape.replay.faults.FaultScript`
  or a list of :class:`kiwoom_tape.replay.faults.Fault`, e.g. ``faults=[Fault("drop", after_frames=100)]`` to see
  how the client under test reconnects; ``server.fired()`` lists what fired.

The handle has ``url`` (give it to the client as ``SOCKET_URL``), ``rest_url`` (``POST
{rest_url}/oauth2/token``), ``control(cmd, **args)`` / ``status()`` (the ``/control`` endpoint, see
:mod:`kiwoom_tape.replay.control`) and ``stop()``. Disable the plugin with ``-p no:kiwoom_tape``.

Importing this module is cheap (only the standard library and pytest); the server's modules load when
the fixture is first used.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import asyncio
    import datetime as dt

    from kiwoom_tape.replay.faults import Fault, FaultScript
    from kiwoom_tape.replay.recorded import RecordedSource, TimeOfDay
    from kiwoom_tape.replay.server import Server

__all__ = ["ReplayServer", "kiwoom_replay"]

INI_DATASET = "kiwoom_replay_dataset"
START_TIMEOUT = 30.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_DATASET,
        "kiwoom-tape dataset directory that the kiwoom_replay fixture serves when called without one",
        type="paths",
        default=[],
    )


class ReplayServer:
    """A mock Kiwoom server serving a recording, on its own event loop thread. Made by ``kiwoom_replay``."""

    def __init__(self, source: RecordedSource, server_options: dict[str, Any]) -> None:
        self.source = source
        self._options = server_options
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._main, name="kiwoom-replay", daemon=True)

    # -- the handle

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/api/dostk/websocket``: the client's ``SOCKET_URL``."""
        return self._running().url

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:PORT``: the token endpoint is ``POST {rest_url}/oauth2/token``."""
        return self._running().rest_url

    @property
    def port(self) -> int:
        return self._running().port

    def control(self, cmd: str = "status", **args: Any) -> dict[str, Any]:
        """``POST /control`` with ``{"cmd": cmd, **args}``; returns the status after it.

        ``control("pause")``, ``control("step", n=5)``, ``control("seek", to="09:30")``,
        ``control("speed", value="max")``. Raises ValueError with the server's message on a bad command.
        """
        import urllib.error
        import urllib.request

        body = json.dumps({"cmd": cmd, **args}).encode()
        req = urllib.request.Request(f"{self.rest_url}/control", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", str(exc))
            except ValueError:
                message = str(exc)
            finally:
                exc.close()
            raise ValueError(message) from None

    def status(self) -> dict[str, Any]:
        """``GET /control``: state, position, speed, frames played, clients (see :mod:`kiwoom_tape.replay.control`)."""
        return self.control("status")

    def fired(self) -> list[str]:
        """The faults that fired so far (``faults=``), oldest first: ``"drop(code=1011, ...) after 100 frames"``."""
        runner = self._running().faults
        if runner is None:
            return []
        return [f"{f.fault.describe()} {f.fault.trigger}" for f in list(runner.fired)]

    # -- lifecycle

    def start(self) -> ReplayServer:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"the replay server did not start within {START_TIMEOUT:g} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread. Called by the fixture at the end of the test."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stop.set)
        if self._thread.ident is not None:
            self._thread.join(START_TIMEOUT)

    def _running(self) -> Server:
        if self._server is None:
            raise RuntimeError("the replay server is not running")
        return self._server

    def _main(self) -> None:
        import asyncio

        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        import asyncio

        from kiwoom_tape.replay.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self.source, host="127.0.0.1", port=0, **self._options) as server:
            self._server = server
            self._ready.set()
            await self._stop.wait()


def _default_dataset(config: pytest.Config) -> Path:
    paths = config.getini(INI_DATASET)
    if not paths:
        raise pytest.UsageError(
            f"kiwoom_replay() needs a dataset directory: pass it, kiwoom_replay('data'), or set "
            f'{INI_DATASET} = "data" in the pytest ini options'
        )
    return Path(paths[0])


@pytest.fixture
def kiwoom_replay(request: pytest.FixtureRequest) -> Iterator[Callable[..., ReplayServer]]:
    """Factory: ``kiwoom_replay(dataset_dir=None, *, date=None, start=None, end=None, speed=None, items=None,
    loop=False, start_delay=0.2, token=None, ping_interval=15.0, faults=None)`` -> a running :class:`ReplayServer`.

    Every server it made stops when the test ends. See :mod:`kiwoom_tape.replay.pytest_plugin`.
    """
    servers: list[ReplayServer] = []

    def make(
        dataset_dir: str | os.PathLike[str] | None = None,
        *,
        date: dt.date | str | None = None,
        start: TimeOfDay | None = None,
        end: TimeOfDay | None = None,
        speed: float | None = None,
        items: Iterable[str] | None = None,
        loop: bool = False,
        start_delay: float = 0.2,
        token: str | None = None,
        ping_interval: float = 15.0,
        faults: str | os.PathLike[str] | FaultScript | Iterable[Fault] | None = None,
    ) -> ReplayServer:
        from kiwoom_tape.replay.faults import FaultScript
        from kiwoom_tape.replay.recorded import RecordedSource

        root = _default_dataset(request.config) if dataset_dir is None else Path(dataset_dir)
        source = RecordedSource(
            root, date=date, start=start, end=end, speed=speed, items=items, loop=loop, start_delay=start_delay
        )
        if isinstance(faults, str | os.PathLike):
            faults = FaultScript.load(Path(faults))  # FaultScriptError names the line and the fix
        server = ReplayServer(source, {"token": token, "ping_interval": ping_interval, "faults": faults})
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()
