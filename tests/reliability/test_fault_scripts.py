"""Fault scripts (replay/faults.py): the TOML parser and its errors, and what each fault does on the wire.

The wire tests drive the mock server with a source the test feeds frame by frame and a plain websockets
client, so each fault's effect is checked exactly (which frames, in which order, which close code).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _cli import cli_argv, started_replay
from _wire import drain
from kiwoom_tape.replay.faults import KINDS, Fault, FaultScript, FaultScriptError, parse_duration
from kiwoom_tape.replay.server import Dispatch, Server, serve
from kiwoom_tape.schemas.protocol import encode_real_row
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .conftest import SecretAudit

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TIMEOUT = 15.0


# --------------------------------------------------------------------------------------------------
# Parsing


def _readme_faults_section() -> str:
    return README.split("\n## Faults\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_example_script_parses_and_shows_every_kind() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", _readme_faults_section(), re.S)
    assert blocks, "the README's Faults section has no TOML example"
    script = FaultScript.parse(blocks[0], source="README")
    assert {f.kind for f in script.faults} == set(KINDS)
    drop, abort = script.faults[0], script.faults[1]
    assert (drop.code, drop.reason, drop.at) == (1011, "server restart", 5.0)
    assert abort.abort and abort.at == 10.0
    for kind in KINDS:
        assert f"`{kind}`" in _readme_faults_section() or f'"{kind}"' in blocks[0]


def test_defaults_and_both_triggers() -> None:
    script = FaultScript.parse(
        '[[fault]]\nkind = "drop"\nat = 2\n\n[[fault]]\nkind = "reorder"\nafter_frames = 10\n'
        '[[fault]]\nkind = "refuse_login"\nat = "250ms"\n'
    )
    drop, reorder, refuse = script.faults
    assert (drop.code, drop.reason, drop.abort, drop.at, drop.after_frames) == (1011, "", False, 2.0, None)
    assert (reorder.count, reorder.after_frames, reorder.at) == (2, 10, None)
    assert (refuse.code, refuse.count, refuse.at) == (8005, 1, 0.25)
    assert len(FaultScript.parse("")) == 0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5s", 5.0), ("250ms", 0.25), ("1.5m", 90.0), ("1h", 3600.0), (3, 3.0), (0.5, 0.5), ("2", 2.0)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-1s", "5 days", True, None, [], float("inf"), float("nan"), -2])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


BAD = [
    # (script, line, key, words in the message)
    ('[[fault]]\nkind = "dorp"\nat = "1s"\n', 2, "kind", ["unknown kind 'dorp'", "drop, kick"]),
    ('[[fault]]\nat = "1s"\n', 1, "", ["no kind", 'kind = "..."']),
    ('[[fault]]\nkind = "kick"\n', 1, "", ["exactly one trigger", 'at = "5s"']),
    ('[[fault]]\nkind = "kick"\nat = "1s"\nafter_frames = 3\n', 4, "after_frames", ["not both at and after_frames"]),
    ('[[fault]]\nkind = "kick"\nat = "soon"\n', 3, "at", ["bad at = 'soon'", '"250ms"']),
    ('[[fault]]\nkind = "kick"\nafter_frames = -1\n', 3, "after_frames", ["bad after_frames", ">= 0"]),
    ('[[fault]]\nkind = "kick"\nat = 1\ncode = 1000\n', 4, "code", ["kick has no key 'code'", "keys of kick"]),
    ('[[fault]]\nkind = "stall"\nat = 1\n', 1, "", ["stall needs seconds", "seconds = "]),
    ('[[fault]]\nkind = "stall"\nat = 1\nseconds = 0\n', 4, "seconds", ["bad seconds = 0", "duration > 0"]),
    ('[[fault]]\nkind = "drop"\nat = 1\ncode = 99\n', 4, "code", ["bad code = 99", "1000 to 4999"]),
    ('[[fault]]\nkind = "drop"\nat = 1\ncode = 1000\nabort = true\n', 4, "code", ["takes no code"]),
    ('[[fault]]\nkind = "drop"\nat = 1\nabort = "yes"\n', 4, "abort", ["bad abort", "true"]),
    ('[[fault]]\nkind = "reject_reg"\nat = 1\nreturn_code = 7\n', 4, "return_code", ["105110, 105115"]),
    ('[[fault]]\nkind = "malformed"\nat = 1\nframe = "junk"\n', 4, "frame", ['"not_json"', '"bad_row"']),
    ('[[fault]]\nkind = "reorder"\nat = 1\ncount = 1\n', 4, "count", [">= 2"]),
    ('[[fault]]\nkind = "duplicate"\nat = 1\ncount = 0\n', 4, "count", [">= 1"]),
    ('[[fault]]\nkind = "slow"\nat = 1\nseconds = 1\n', 1, "", ["slow needs bytes_per_second"]),
    ('[[fault]]\nkind = "kick"\nat = 1\n\n[[fault]]\nkind = "burst"\nat = 2\nseconds = "x"\n', 8, "seconds",
     ["fault #2", "bad seconds"]),
    ('[[faults]]\nkind = "kick"\n', 1, "faults", ["unknown top-level key 'faults'", "[[fault]]"]),
    ('[[fault]]\nkind = "kick"\nat = "1s\n', 3, "", ["not valid TOML"]),
    ("fault = 3\n", 1, "fault", ["array of tables"]),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_scripts_name_the_line_the_key_and_the_fix(text: str, line: int, key: str, words: list[str]) -> None:
    with pytest.raises(FaultScriptError) as info:
        FaultScript.parse(text, source="f.toml")
    err = info.value
    assert (err.line, err.key) == (line, key), str(err)
    assert str(err).startswith(f"f.toml, line {line}: ")
    for w in words:
        assert w in str(err), str(err)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FaultScriptError, match="cannot read the fault script"):
        FaultScript.load(tmp_path / "nope.toml")


def test_python_api_checks_values_like_the_parser() -> None:
    assert Fault("drop", at=0).code == 1011
    assert Fault("reorder", after_frames=1).count == 2
    for bad in (
        lambda: Fault("dorp", at=1), lambda: Fault("kick"), lambda: Fault("kick", at=1, after_frames=2),
        lambda: Fault("stall", at=1), lambda: Fault("slow", at=1, seconds=1),
        lambda: Fault("reject_reg", at=1, return_code=2), lambda: Fault("kick", at=-1.0),
    ):
        with pytest.raises(ValueError):
            bad()


# --------------------------------------------------------------------------------------------------
# On the wire


@dataclass(frozen=True)
class R:
    item: str
    type: str
    text: str


def real(n: int, item: str = "005930") -> R:
    return R(item, "0D", encode_real_row("0D", item, json.dumps({"21": f"{90000 + n:06d}", "41": f"+{1000 + n}"})))


def frame_no(text: str | bytes) -> int:
    return int(json.loads(text)["data"][0]["values"]["21"]) - 90000


class ManualSource:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Sequence[R]] = asyncio.Queue()

    def add_item(self, item: str) -> None:
        pass

    async def run(self, dispatch: Dispatch) -> None:
        while True:
            await dispatch(await self.queue.get(), None)


def with_server(
    test: Callable[[Server, ManualSource], Awaitable[None]], faults: list[Fault] | str, **kwargs: Any
) -> None:
    script = FaultScript.parse(faults) if isinstance(faults, str) else FaultScript(tuple(faults))

    async def main() -> None:
        source = ManualSource()
        async with asyncio.timeout(TIMEOUT), serve(source, port=0, faults=script, **kwargs) as server:
            await test(server, source)

    asyncio.run(main())


async def open_client(server: Server, token: str = "tok", items: Sequence[str] = ("005930",)) -> ClientConnection:
    ws = await connect(server.url)
    await ws.send(json.dumps({"trnm": "LOGIN", "token": token}))
    assert json.loads(await ws.recv())["return_code"] == 0
    await ws.send(json.dumps({"trnm": "REG", "grp_no": "1", "refresh": "1",
                              "data": [{"item": list(items), "type": ["0D"]}]}))
    assert json.loads(await ws.recv())["return_code"] == 0
    return ws


async def recv_data(ws: ClientConnection, within: float = 3.0) -> str:
    """The next frame that is not a PING (PINGs are echoed)."""
    async with asyncio.timeout(within):
        while True:
            raw = str(await ws.recv())
            if raw != '{"trnm":"PING"}':
                return raw
            await ws.send(raw)


async def closed(ws: ClientConnection, within: float = 3.0) -> list[str]:
    """Everything received until the server closes the connection (PINGs included)."""
    got: list[str] = []
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(within):
            while True:
                got.append(str(await ws.recv()))
    return got


async def fire(server: Server, fault: Fault) -> None:
    assert server.faults is not None
    await server.faults.fire(fault)


def test_drop_with_a_code_and_reason() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server)
        await fire(server, Fault("drop", at=0, code=4001, reason="maintenance"))
        await closed(ws)
        assert ws.close_code == 4001 and ws.close_reason == "maintenance"

    with_server(t, [])


def test_drop_abort_sends_no_close_frame() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server)
        await fire(server, Fault("drop", at=0, abort=True))
        await closed(ws)
        assert ws.protocol.close_rcvd is None

    with_server(t, [])


def test_kick_is_r10001_then_close_1000_bye() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server)
        await fire(server, Fault("kick", at=0))
        got = await closed(ws)
        assert json.loads(got[-1])["code"] == "R10001"
        assert (ws.close_code, ws.close_reason) == (1000, "Bye")

    with_server(t, [])


def test_timed_faults_fire_after_the_first_login_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def t(server: Server, source: ManualSource) -> None:
        await asyncio.sleep(0.3)
        assert server.faults is not None and not server.faults.fired  # nobody logged in yet
        t0 = time.monotonic()
        ws = await open_client(server)
        await closed(ws)
        assert 0.35 <= time.monotonic() - t0 < 1.5
        (fired,) = server.faults.fired
        assert fired.fault.kind == "kick" and 0.4 <= fired.since_login < 0.6 and fired.connections == 1

    with_server(t, '[[fault]]\nkind = "kick"\nat = "400ms"\n')
    lines = [r.getMessage() for r in caplog.records if r.name == "kiwoom_tape.replay" and "fault #1" in r.getMessage()]
    assert lines and re.search(r"fault #1 kick fired \d\d:\d\d:\d\d: \+0\.4\d\d s after the first LOGIN", lines[0])


def test_after_frames_trigger() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server)
        for n in range(10):
            await source.queue.put([real(n)])
        got = await closed(ws)
        reals = [g for g in got if '"REAL"' in g]
        assert 5 <= len(reals) <= 10 and json.loads(got[-1])["code"] == "R10001"

    with_server(t, '[[fault]]\nkind = "kick"\nafter_frames = 5\n')


def test_stall_holds_frames_and_pings() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server)
        stall = asyncio.create_task(fire(server, Fault("stall", at=0, seconds=0.6)))
        await asyncio.sleep(0.05)
        for n in range(3):
            await source.queue.put([real(n)])
        t0 = time.monotonic()
        first = await recv_data(ws)
        assert time.monotonic() - t0 >= 0.45, "a frame went out during the stall"
        rest = await drain(ws)
        assert [frame_no(f) for f in [first, *rest]] == [0, 1, 2]  # delivered after, in order
        await stall
        assert server.faults is not None and server.faults.fired[0].fault.kind == "stall"

    with_server(t, [], ping_interval=0.05)


def test_no_pings_window_then_pings_again_while_data_flows() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server)
        log: list[tuple[float, str]] = []

        async def collect() -> None:
            while True:
                raw = str(await ws.recv())
                log.append((time.monotonic(), raw))
                if raw == '{"trnm":"PING"}':
                    await ws.send(raw)

        collector = asyncio.create_task(collect())
        while not any(raw == '{"trnm":"PING"}' for _, raw in log):  # noqa: ASYNC110  # let PINGs start
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        window = asyncio.create_task(fire(server, Fault("no_pings", at=0, seconds=0.5)))
        await asyncio.sleep(0.1)
        await source.queue.put([real(1)])
        await window
        await asyncio.sleep(0.3)
        collector.cancel()
        pings = [at - t0 for at, raw in log if raw == '{"trnm":"PING"}' and at > t0]
        data = [at - t0 for at, raw in log if '"REAL"' in raw]
        assert not [p for p in pings if 0.1 < p < 0.5], pings  # none in the window
        assert any(p >= 0.5 for p in pings), "PINGs did not come back"
        assert data and data[0] < 0.4  # data flowed during the window

    with_server(t, [], ping_interval=0.05)


def test_ignore_echoes_ends_in_r10002() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server)
        await fire(server, Fault("ignore_echoes", at=0))
        got: list[str] = []
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    raw = str(await ws.recv())
                    got.append(raw)
                    if raw == '{"trnm":"PING"}':
                        await ws.send(raw)  # echoed, but not credited
        assert got.count('{"trnm":"PING"}') == 5 and json.loads(got[-1])["code"] == "R10002"
        late = await open_client(server)  # a new connection is not affected
        await late.close()

    with_server(t, [], ping_interval=0.05)


def test_expire_token_then_fresh_token_works(audit: SecretAudit) -> None:
    secret = audit.secret("replaytoken")

    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server, secret)
        await fire(server, Fault("expire_token", at=0, drop=True))
        await closed(ws)
        assert ws.close_code == 1011
        async with connect(server.url) as again:
            await again.send(json.dumps({"trnm": "LOGIN", "token": secret}))
            reply = json.loads(await again.recv())
            assert reply["return_code"] == 805004 and "CODE=8005" in reply["return_msg"]
        fresh = server.issue_token()
        audit.add(fresh)
        ok = await open_client(server, fresh)
        await ok.close()

    with_server(t, [], token=secret)


def test_refuse_login_count() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        await fire(server, Fault("refuse_login", at=0, count=2, code=8031))
        for _ in range(2):
            async with connect(server.url) as ws:
                await ws.send('{"trnm":"LOGIN","token":"tok"}')
                reply = json.loads(await ws.recv())
                assert reply["return_code"] == 805004 and "CODE=8031" in reply["return_msg"]
                await closed(ws)
        ws = await open_client(server)
        await ws.close()
        assert server.stats.logins == 1

    with_server(t, [])


@pytest.mark.parametrize("code", [1, 105110, 105115, 105118])
def test_reject_reg(code: int) -> None:
    async def t(server: Server, source: ManualSource) -> None:
        async with connect(server.url) as ws:
            await ws.send('{"trnm":"LOGIN","token":"tok"}')
            await ws.recv()
            await fire(server, Fault("reject_reg", at=0, return_code=code, count=2))
            reg = '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930"],"type":["0D"]}]}'
            replies = []
            for _ in range(3):
                await ws.send(reg)
                replies.append(json.loads(await ws.recv()))
            assert [r["return_code"] for r in replies] == [code, code, 0]
            assert replies[0]["trnm"] == "REG" and replies[0]["return_msg"]
            await source.queue.put([real(7)])
            assert frame_no(await ws.recv()) == 7  # the third REG applied

    with_server(t, [])


def test_malformed_frames() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server, items=["035420"])
        for kind in ("not_json", "truncated", "unknown_trnm", "bad_row"):
            await fire(server, Fault("malformed", at=0, frame=kind))
        got = await drain(ws)
        assert got[0] == "502 Bad Gateway"
        with pytest.raises(ValueError):
            json.loads(got[1])
        assert "035420" in got[1]
        assert json.loads(got[2])["trnm"] == "XYZZY"
        row = json.loads(got[3])["data"][0]
        assert row["item"] == "035420" and not isinstance(row["values"], dict)
        assert len(got) == 4

    with_server(t, [])


def test_duplicate_and_reorder_the_next_frames() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server)
        await fire(server, Fault("duplicate", at=0, count=2))
        for n in range(4):
            await source.queue.put([real(n)])
        assert [frame_no(f) for f in await drain(ws)] == [0, 0, 1, 1, 2, 3]
        await fire(server, Fault("reorder", at=0, count=3))
        for n in range(10, 15):
            await source.queue.put([real(n)])
        assert [frame_no(f) for f in await drain(ws)] == [12, 11, 10, 13, 14]
        assert server.sent is not None
        assert [frame_no(t) for _, _, t in server.sent] == [0, 0, 1, 1, 2, 3, 12, 11, 10, 13, 14]

    with_server(t, [], keep_sent=True)


def test_slow_caps_the_bytes_per_second() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server)
        window = asyncio.create_task(fire(server, Fault("slow", at=0, seconds=5, bytes_per_second=2000)))
        await asyncio.sleep(0.02)
        t0 = time.monotonic()
        for n in range(20):
            await source.queue.put([real(n)])
        got = []
        while len(got) < 20:
            got.append(await asyncio.wait_for(ws.recv(), 3))
        size = sum(len(str(g).encode()) for g in got)
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.8 * (size - len(str(got[0]).encode())) / 2000, (size, elapsed)
        window.cancel()

    with_server(t, [])


def test_burst_holds_real_frames_then_sends_them_at_once() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        ws = await open_client(server)
        window = asyncio.create_task(fire(server, Fault("burst", at=0, seconds=0.5)))
        await asyncio.sleep(0.02)
        t0 = time.monotonic()
        for n in range(5):
            await source.queue.put([real(n)])
            await asyncio.sleep(0.05)
        first = await recv_data(ws)
        assert time.monotonic() - t0 >= 0.45
        got = [first, *await drain(ws)]
        assert [frame_no(f) for f in got] == [0, 1, 2, 3, 4]
        await window

    with_server(t, [])


def test_clients_other_than_the_faulted_ones_keep_working() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        a = await open_client(server)
        await fire(server, Fault("duplicate", at=0, count=1))
        b = await open_client(server)  # connected after: not duplicated
        await source.queue.put([real(1)])
        assert [frame_no(f) for f in await drain(a)] == [1, 1]
        assert [frame_no(f) for f in await drain(b)] == [1]

    with_server(t, [])


# --------------------------------------------------------------------------------------------------
# The CLI: --faults in both modes


def test_cli_refuses_a_bad_script_before_serving(tmp_path: Path) -> None:
    import subprocess

    bad = tmp_path / "faults.toml"
    bad.write_text('[[fault]]\nkind = "dorp"\nat = "1s"\n')
    r = subprocess.run(cli_argv("replay", "--simulate", "--port", "0", "--faults", str(bad)), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    assert f"{bad}, line 2: fault #1: unknown kind 'dorp'" in r.stderr and "Traceback" not in r.stderr


async def _kicked_via_cli(args: list[str], audit: SecretAudit, item: str) -> str:
    async with started_replay(*args) as replay:
        token = audit.secret("clitoken")
        async with connect(replay.url) as ws:
            await ws.send(json.dumps({"trnm": "LOGIN", "token": token}))
            assert json.loads(await ws.recv())["return_code"] == 0
            await ws.send(json.dumps({"trnm": "REG", "grp_no": "1", "refresh": "1",
                                      "data": [{"item": [item], "type": ["0D"]}]}))
            got = []
            with pytest.raises(ConnectionClosed):
                while True:
                    got.append(await ws.recv())
            assert json.loads(got[-1])["code"] == "R10001" and ws.close_reason == "Bye"
        assert await replay.interrupt() == 0
    audit.text("replay stderr", replay.output)
    return replay.output


def test_cli_simulate_with_faults(tmp_path: Path, audit: SecretAudit) -> None:
    script = tmp_path / "faults.toml"
    script.write_text('[[fault]]\nkind = "kick"\nat = "300ms"\n')
    args = ["--simulate", "--port", "0", "--items", "005930", "--sim-start", "09:30:00", "--faults", str(script)]
    text = asyncio.run(_kicked_via_cli(args, audit, "005930"))
    assert "fault #1 at 0.3 s: kick" in text  # the banner lists the script
    assert "fault #1 kick fired" in text  # and the server logged it firing


def _recorded_day(tmp_path: Path, audit: SecretAudit) -> Path:
    """A short recorded day: 005930_NX from 16:00:00 KST, ~30 rows, recorded through the mock server."""
    from kiwoom_tape.recorder.auth import TokenProvider
    from kiwoom_tape.replay.simulator import SimulatedMarket
    from kiwoom_tape.replay.sources import SimSource

    from ._recording import record

    data = tmp_path / "data"

    async def capture() -> None:
        market = SimulatedMarket(seed=2, items=["005930_NX"], start=16 * 3600)
        async with serve(SimSource(market, speed=30), port=0) as server:
            tokens = TokenProvider(server.rest_url, appkey=audit.secret("appkey"), secretkey=audit.secret("secret"))

            async def until(rec: Any) -> None:
                while rec.stats.real_rows < 30:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)

            await record(server, data, ["005930_NX"], tokens, until)
            for tok in server._issued:
                audit.add(tok)

    asyncio.run(capture())
    logging.getLogger(__name__).debug("recorded %s", data)
    return data


def test_cli_recorded_day_with_faults(tmp_path: Path, audit: SecretAudit) -> None:
    data = _recorded_day(tmp_path, audit)
    script = tmp_path / "faults.toml"
    script.write_text('[[fault]]\nkind = "kick"\nafter_frames = 3\n')
    text = asyncio.run(_kicked_via_cli(
        [str(data), "--port", "0", "--speed", "max", "--start-delay", "0", "--faults", str(script)], audit, "005930_NX"
    ))
    assert "fault #1 after 3 frames: kick" in text


def test_cli_market_time_trigger_on_the_simulated_clock(tmp_path: Path, audit: SecretAudit) -> None:
    script = tmp_path / "faults.toml"
    script.write_text('[[fault]]\nkind = "kick"\nmarket_time = "09:30:02"\n')
    args = ["--simulate", "--port", "0", "--items", "005930", "--sim-start", "09:29:58", "--speed", "10",
            "--faults", str(script)]
    text = asyncio.run(_kicked_via_cli(args, audit, "005930"))
    assert "fault #1 at market time 09:30:02.000: kick" in text and "fault #1 kick fired" in text


def test_cli_market_time_trigger_on_a_recorded_days_clock(tmp_path: Path, audit: SecretAudit) -> None:
    from kiwoom_tape.replay.recorded import RecordedSource

    data = _recorded_day(tmp_path, audit)
    source = RecordedSource(data)
    assert source.market_time() is None  # not started: no clock yet
    rec = source.status()["recording"]
    first, last = (sum(float(x) * u for x, u in zip(t.split(":"), (3600, 60, 1), strict=True))
                   for t in (rec["first"], rec["last"]))
    fire_at = (first + last) / 2  # halfway through the tape, on its own clock
    script = tmp_path / "faults.toml"
    stamp = f"{int(fire_at) // 3600:02d}:{int(fire_at) % 3600 // 60:02d}:{fire_at % 60:06.3f}"
    script.write_text(f'[[fault]]\nkind = "kick"\nmarket_time = "{stamp}"\n')
    text = asyncio.run(_kicked_via_cli(
        [str(data), "--port", "0", "--speed", "1", "--start-delay", "0", "--faults", str(script)], audit, "005930_NX"
    ))
    assert "fault #1 kick fired" in text
