"""The ``kiwoom_replay`` fixture as a user's test suite meets it: a pytest run in a subprocess, the plugin
loaded from its ``pytest11`` entry point, an ``async def`` test, a client in a subprocess of its own.

No async test plugin (pytest-asyncio, anyio, ...) is installed in this project's venv, so the generated
suite's ``conftest.py`` runs ``async def`` tests the way those plugins do: the coroutine on an event loop in
the test's thread (pytest's documented ``pytest_pyfunc_call`` hook). What docs/replay.md claims is exactly what
that exercises: the factory is called from inside a running event loop, and the server, on its own loop in
a thread, serves an asyncio client in that loop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _tape import ITEMS, record_tape

CONFTEST = '''
import asyncio
import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """What an async test plugin does: run an ``async def`` test on an event loop in this thread."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**args), 30))
    return True
'''

CLIENT = '''
"""A strategy client in its own process: LOGIN, REG, print the first N REAL frames as a JSON list."""
import json
import sys

from websockets.sync.client import connect

url, n, items = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
with connect(url) as ws:
    ws.send(json.dumps({"trnm": "LOGIN", "token": "any-token"}))
    assert json.loads(ws.recv(10))["return_code"] == 0
    ws.send(json.dumps({"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{"item": items, "type": ["0D"]}]}))
    assert json.loads(ws.recv(10))["return_code"] == 0
    got = []
    while len(got) < n:
        raw = ws.recv(10)
        if raw == '{"trnm":"PING"}':
            ws.send(raw)
        elif '"REAL"' in raw:
            got.append(raw)
print(json.dumps(got))
'''

TESTS = '''
import json
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

HERE = Path(__file__).parent
EXPECTED = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
ITEMS = {items!r}
URLS = []


async def test_an_async_strategy_reads_the_tape(kiwoom_replay):
    server = kiwoom_replay()  # the ini's dataset, max speed
    URLS.append(server.url)
    async with connect(server.url) as ws:
        await ws.send(json.dumps({{"trnm": "LOGIN", "token": "any-token"}}))
        assert json.loads(await ws.recv())["return_code"] == 0
        reg = {{"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{{"item": ITEMS, "type": ["0D"]}}]}}
        await ws.send(json.dumps(reg))
        assert json.loads(await ws.recv())["return_code"] == 0
        got = []
        while len(got) < len(EXPECTED):
            raw = await ws.recv()
            if raw == '{{"trnm":"PING"}}':
                await ws.send(raw)
            elif '"REAL"' in raw:
                got.append(raw)
    assert got == EXPECTED
    assert server.status()["frames_played"] == len(EXPECTED)


def test_the_server_stopped_when_its_test_ended():
    from websockets.sync.client import connect as sync_connect

    assert len(URLS) == 1
    with pytest.raises(OSError):
        sync_connect(URLS[0], open_timeout=5)


def test_a_client_in_a_subprocess(kiwoom_replay):
    server = kiwoom_replay()
    out = subprocess.run([sys.executable, str(HERE / "client.py"), server.url, str(len(EXPECTED)), ",".join(ITEMS)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == EXPECTED
'''


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project: a recorded dataset, the ini option naming it, the tests above."""
    root = tmp_path_factory.mktemp("user-project")
    expected = record_tape(root / "data", frames=10)
    (root / "expected.json").write_text(json.dumps(expected), encoding="utf-8")
    (root / "pytest.ini").write_text(
        "[pytest]\nkiwoom_replay_dataset = data\nfilterwarnings = error\naddopts = --strict-markers\n",
        encoding="utf-8")
    (root / "conftest.py").write_text(textwrap.dedent(CONFTEST), encoding="utf-8")
    (root / "client.py").write_text(textwrap.dedent(CLIENT), encoding="utf-8")
    (root / "test_strategy.py").write_text(TESTS.format(items=list(ITEMS)), encoding="utf-8")
    return root


def pytest_in(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest ARGS`` in ``root``, as the user runs it (the plugin comes from its entry point)."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=root,
                          capture_output=True, text=True, timeout=100)


def test_the_fixture_serves_async_and_subprocess_clients_in_a_user_s_pytest_run(suite: Path) -> None:
    out = pytest_in(suite)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed" in out.stdout, out.stdout


def test_the_plugin_can_be_turned_off(suite: Path) -> None:
    # without the plugin its ini option is unknown, a warning that this suite's filterwarnings makes an error
    out = pytest_in(suite, "-p", "no:kiwoom_tape", "-W", "ignore::pytest.PytestConfigWarning", "-k", "subprocess")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "fixture 'kiwoom_replay' not found" in out.stdout
