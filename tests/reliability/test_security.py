"""Security of the mock server and the recorder: loopback by default, --token enforced, bounded input, no secrets.

The grep for secrets in files, logs and outputs runs after every test of the suite (``audit`` in
conftest.py); the tests here also hand it what the CLIs print at their most verbose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _cli import started_replay
from kiwoom_tape.recorder.auth import TokenProvider
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay import server as server_module
from kiwoom_tape.replay.cli import replay_command
from kiwoom_tape.replay.server import exposed, serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.errors import CredentialsError, LoginError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ._recording import record
from .conftest import RECORDER_WS_LOGGER, SecretAudit

ITEMS = ["005930_NX"]


def _market() -> SimSource:
    return SimSource(SimulatedMarket(seed=31, items=ITEMS, start=16 * 3600), speed=20.0)


def run(coro: object, limit: float = 30.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(limit):
            await coro  # type: ignore[misc]

    asyncio.run(bounded())


# -- loopback ---------------------------------------------------------------------------------------


def test_binds_loopback_by_default_and_the_cli_too() -> None:
    async def main() -> None:
        async with serve(None, port=0) as server:
            assert server._ws is not None
            addrs = {s.getsockname()[0] for s in server._ws.sockets}
            assert addrs == {"127.0.0.1"}
            assert server.url.startswith("ws://127.0.0.1:")

    run(main())
    host = next(p for p in replay_command.params if p.name == "host")
    assert host.default == "127.0.0.1"


@pytest.mark.parametrize(
    ("host", "public"),
    [("127.0.0.1", False), ("127.0.0.2", False), ("localhost", False), ("::1", False), ("[::1]", False),
     ("0.0.0.0", True), ("::", True), ("192.168.0.10", True), ("10.1.2.3", True), ("example.org", True)],
)
def test_what_counts_as_exposed(host: str, public: bool) -> None:
    assert exposed(host) is public


def test_warns_when_not_on_loopback(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # (the suite stays on loopback: the bind is real, the address check answers as for 0.0.0.0)
    async def start(answer: bool) -> list[str]:
        monkeypatch.setattr(server_module, "exposed", lambda host: answer)
        caplog.clear()
        async with serve(None, port=0):
            pass
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    quiet = asyncio.run(start(False))
    loud = asyncio.run(start(True))
    assert not [m for m in quiet if "reachable" in m]
    assert any("reachable from other machines" in m for m in loud), loud


# -- --token ----------------------------------------------------------------------------------------


def test_token_is_enforced(audit: SecretAudit) -> None:
    right, wrong = audit.secret("replaytoken"), audit.secret("wrongtoken")

    async def main() -> None:
        async with serve(None, port=0, token=right) as server:
            for bad in (wrong, "", " ", right + "x", right[:-1]):
                async with connect(server.url) as ws:
                    await ws.send(json.dumps({"trnm": "LOGIN", "token": bad}))
                    reply = json.loads(await ws.recv())
                    assert reply["return_code"] == 805004 and "CODE=8005" in reply["return_msg"]
                    with pytest.raises(ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 2)
            async with connect(server.url) as ws:  # no token at all, then a REG before LOGIN
                await ws.send('{"trnm":"LOGIN"}')
                assert json.loads(await ws.recv())["return_code"] == 1
                await ws.send('{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["A"],"type":["0D"]}]}')
                assert json.loads(await ws.recv())["code"] == "R10004"
            async with connect(server.url) as ws:
                await ws.send(json.dumps({"trnm": "LOGIN", "token": right}))
                assert json.loads(await ws.recv())["return_code"] == 0
            assert server.stats.logins == 1

    run(main())


def test_the_cli_enforces_the_token_and_never_prints_it(tmp_path: Path, audit: SecretAudit) -> None:
    token = audit.secret("replaytoken")
    env = {**os.environ, "KIWOOM_REPLAY_TOKEN": token}

    async def main() -> str:
        args = ["--simulate", "--port", "0", "--items", "005930", "--sim-start", "09:30:00", "-vv"]
        async with started_replay(*args, env=env) as replay:
            async with connect(replay.url) as ws:
                await ws.send('{"trnm":"LOGIN","token":"not-it"}')
                assert json.loads(await ws.recv())["return_code"] == 805004
            async with connect(replay.url) as ws:
                await ws.send(json.dumps({"trnm": "LOGIN", "token": token}))  # logged at -vv: redacted
                assert json.loads(await ws.recv())["return_code"] == 0
            assert await replay.interrupt() == 0
        return replay.output

    text = asyncio.run(main())
    audit.text("replay -vv stderr", text)
    assert '"token":"***' in text, "the -vv log should show the LOGIN frame, token redacted"


# -- bounded input ----------------------------------------------------------------------------------


def test_message_size_and_registrations_are_bounded() -> None:
    async def main() -> None:
        async with serve(None, port=0, max_message=4096) as server:
            async with connect(server.url, max_size=None) as ws:
                await ws.send('{"trnm":"LOGIN","token":"t"}')
                await ws.recv()
                items = [f"{i:06d}" for i in range(201)]
                reg = {"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{"item": items[:150], "type": ["0D"]}]}
                await ws.send(json.dumps(reg))
                assert json.loads(await ws.recv())["return_code"] == 0
                reg["data"] = [{"item": items[150:], "type": ["0D"]}]  # the 201st item
                await ws.send(json.dumps(reg))
                assert json.loads(await ws.recv())["return_code"] == 105115
                codes = []
                for _ in range(6):
                    await ws.send('{"trnm":"REMOVE","grp_no":"1","data":[{"item":["000000"],"type":["0D"]}]}')
                    codes.append(json.loads(await ws.recv())["return_code"])
                assert 105110 in codes  # more than 5 REG/REMOVE per second
                await ws.send("x" * 4097)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 2)
                assert ws.close_code == 1009
            # the REST side bounds bodies too
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /oauth2/token HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.read(), 2)
            writer.close()
            assert head.startswith(b"HTTP/1.1 413")

    run(main())


# -- secrets in errors and logs ---------------------------------------------------------------------


def test_login_and_credential_errors_carry_no_secret(tmp_path: Path, audit: SecretAudit) -> None:
    fixed = audit.secret("fixedtoken")

    async def main() -> None:
        async with serve(_market(), port=0, token=audit.secret("replaytoken")) as server:
            tokens = TokenProvider(server.rest_url, fixed_token=fixed)

            async def forever(rec: Recorder) -> None:
                await asyncio.sleep(30)

            _, error = await record(server, tmp_path / "a", ITEMS, tokens, forever)
            assert isinstance(error, LoginError)
            audit.text("LoginError", f"{error!r} {error}")
            with pytest.raises(CredentialsError) as info:
                await tokens.renew()  # a fixed token cannot be renewed
            audit.text("CredentialsError", str(info.value))
            bad_base = TokenProvider(server.rest_url + "/nope", appkey=audit.secret("appkey"),
                                     secretkey=audit.secret("secretkey"))
            with pytest.raises(CredentialsError) as info:
                await bad_base.renew()
            audit.text("CredentialsError", f"{info.value!r} {info.value}")
            audit.text("TokenProvider repr", repr(bad_base))

    run(main())


async def _record_briefly(root: Path, token: str) -> None:
    """Record 5 rows into ``root`` with a fixed ``token`` (from the mock server, on loopback)."""
    async with serve(_market(), port=0) as server:
        async def briefly(rec: Recorder) -> None:
            while rec.stats.real_rows < 5:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        await record(server, root, ITEMS, TokenProvider(server.rest_url, fixed_token=token), briefly)


def test_recorder_debug_log_redacts_the_token(tmp_path: Path, audit: SecretAudit) -> None:
    token = audit.secret("fixedtoken")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    ws_log = logging.getLogger(RECORDER_WS_LOGGER)
    handler, level, propagate = Keep(), ws_log.level, ws_log.propagate
    ws_log.addHandler(handler)
    ws_log.setLevel(logging.DEBUG)
    ws_log.propagate = False  # keep the leak out of the suite's own audit: this test is about it

    try:
        run(_record_briefly(tmp_path / "a", token))
    finally:
        ws_log.removeHandler(handler)
        ws_log.setLevel(level)
        ws_log.propagate = propagate
    assert any('"LOGIN"' in m for m in seen), "websockets logged no frames: the test proves nothing"
    assert not [m for m in seen if token[4:20] in m], "the recorder's DEBUG log shows the token"


def test_the_stored_login_frame_is_redacted(tmp_path: Path, audit: SecretAudit) -> None:
    token = audit.secret("fixedtoken")

    run(_record_briefly(tmp_path / "a", token))
    from ._recording import table

    logins = [f["text"] for f in table(tmp_path / "a", "frames") if f["direction"] == "out" and f["trnm"] == "LOGIN"]
    assert logins == ['{"trnm":"LOGIN","token":"***"}']
    with contextlib.suppress(FileNotFoundError):
        assert not list((tmp_path / "a" / "_journal").iterdir())


def test_every_secret_kind_was_audited(audit: SecretAudit) -> None:
    # a canary: the grep finds a secret where one is (so "0 found" means something)
    canary = audit.secret("canary")
    probe = SecretAudit(audit.report)
    probe.text("canary", f"... {canary[len(canary) // 2 - 6 : len(canary) // 2 + 6]} ...")
    assert probe.scan(Path("/nonexistent"), []) == ["canary: canary"]
    audit.report.scanned_texts -= 1  # (not an output of the suite)


# -- credentials go only where they may (issue 12, finding 4) ---------------------------------------


@pytest.fixture
def posts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL the token client tried to POST to (none is reached: the suite stays on loopback)."""
    tried: list[str] = []

    def urlopen(req: urllib.request.Request, timeout: float = 0) -> None:
        tried.append(req.full_url)
        raise urllib.error.URLError("the test network is loopback only")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return tried


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.kiwoom.com/oauth2/token", True),
        ("https://mockapi.kiwoom.com/oauth2/token", True),
        ("http://127.0.0.1:10000/oauth2/token", True),
        ("http://127.0.0.2:10000/oauth2/token", True),
        ("http://[::1]:9/oauth2/token", True),
        ("http://localhost:9/oauth2/token", True),
        ("http://api.kiwoom.com/oauth2/token", False),  # Kiwoom, but in cleartext
        ("http://192.0.2.1:10000/oauth2/token", False),
        ("https://example.org/oauth2/token", False),  # HTTPS, but not Kiwoom
        ("http://api.kiwoom.com.example.org/oauth2/token", False),
    ],
)
def test_app_key_and_secret_go_only_to_kiwoom_over_https_or_to_loopback(
    url: str, allowed: bool, posts: list[str], audit: SecretAudit
) -> None:
    p = TokenProvider(url.removesuffix("/oauth2/token"), appkey=audit.secret("appkey"),
                      secretkey=audit.secret("secretkey"))
    with pytest.raises(CredentialsError) as info:
        asyncio.run(p.renew())  # the fixture's urlopen fails: what matters is whether it was called
    audit.text("renew error", str(info.value))
    assert posts == ([url] if allowed else [])
    if not allowed:
        assert "refusing to send KIWOOM_APPKEY" in str(info.value) and "127.0.0.1" in str(info.value)


def _record_cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner
    from kiwoom_tape.recorder.cli import record_command

    result = CliRunner().invoke(
        record_command, ["--items", "005930", "--out", str(tmp_path / "data"), "--duration", "5s", "-q", *args],
    )
    return result.exit_code, result.output  # (stdout and stderr)


def test_record_never_posts_exported_keys_to_a_plain_http_host(
    tmp_path: Path, posts: list[str], monkeypatch: pytest.MonkeyPatch, audit: SecretAudit
) -> None:
    # as a user keeps them: exported in the shell profile, whatever --url says
    monkeypatch.setenv("KIWOOM_APPKEY", audit.secret("appkey"))
    monkeypatch.setenv("KIWOOM_SECRETKEY", audit.secret("secretkey"))
    monkeypatch.delenv("KIWOOM_TOKEN", raising=False)
    remote = "ws://192.0.2.1:10000/api/dostk/websocket"  # TEST-NET-1: never reached

    code, text = _record_cli(tmp_path, "--url", remote)
    audit.text("record --url ws://remote", text)
    assert code == 2 and "--allow-insecure-url" in text and "cleartext" in text, text
    code, text = _record_cli(tmp_path, "--url", remote, "--allow-insecure-url")
    audit.text("record --url ws://remote --allow-insecure-url", text)
    assert code == 1 and "refusing to send KIWOOM_APPKEY and KIWOOM_SECRETKEY to http://192.0.2.1:10000" in text
    assert len([line for line in text.splitlines() if line.strip()]) == 1, text  # one line, with the fix
    code, text = _record_cli(tmp_path, "--url", "wss://example.org/api/dostk/websocket")
    audit.text("record --url wss://example.org", text)
    assert code == 1 and "refusing to send" in text
    assert posts == [], "the app key and secret were sent"


def test_a_plain_ws_url_to_another_host_needs_the_explicit_option(
    tmp_path: Path, posts: list[str], monkeypatch: pytest.MonkeyPatch, audit: SecretAudit
) -> None:
    token = audit.secret("fixedtoken")
    monkeypatch.setenv("KIWOOM_TOKEN", token)
    for var in ("KIWOOM_APPKEY", "KIWOOM_SECRETKEY"):
        monkeypatch.delenv(var, raising=False)
    code, text = _record_cli(tmp_path, "--url", "ws://192.0.2.1:10000/api/dostk/websocket")
    audit.text("record ws:// with KIWOOM_TOKEN", text)
    assert code == 2 and "--allow-insecure-url" in text
    assert not (tmp_path / "data").exists(), "refused before anything was created"
