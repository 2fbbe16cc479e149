"""The live relay's own tokens (``record --serve``, issue 17): local clients LOGIN with a token the relay issued to a
caller that sent record's app key and secret (or ``--serve-secret-env``'s secret), never with the Kiwoom token,
which no byte a local client receives and no log line carries."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from pathlib import Path

import pytest
from _cli import URL, cli_argv
from _relay import Tap, answer, post_token, relay_token
from kiwoom_tape.recorder.auth import TokenProvider
from kiwoom_tape.replay.rest import TokenDesk
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas import auth
from kiwoom_tape.schemas.errors import CredentialsError
from test_relay import MORNING, login_reg, recv, run
from websockets.asyncio.client import connect

from kiwoom_tape.relay import relaying
from kiwoom_tape.relay_tokens import relay_desk
from kiwoom_tape.testing import loopback_recorder

BASE = "http://127.0.0.1:9"


def body(appkey: str, secretkey: str) -> bytes:
    return json.dumps({"grant_type": "client_credentials", "appkey": appkey, "secretkey": secretkey}).encode()


def test_an_issued_only_desk_accepts_its_own_unexpired_tokens_and_nothing_else() -> None:
    now = [1_800_000_000.0]
    desk = TokenDesk(credentials=[("AK", "SK"), ("", "S2")], issued_only=True, lifetime=100.0, clock=lambda: now[0])
    assert desk.check("any-token") == 8005 and desk.check("") == 8005
    status, wrong = desk.handle("POST", auth.TOKEN_PATH, body("AK", "S3"))
    assert status == 200 and wrong["return_code"] == 8001 and "S3" not in wrong["return_msg"] and "token" not in wrong
    status, ok = desk.handle("POST", auth.TOKEN_PATH, body("AK", "SK"))
    token = ok["token"]
    assert ok["return_code"] == 0 and ok["expires_dt"] == auth.format_expires_dt(now[0] + 100.0)
    assert desk.check(token) is None and desk.app_key_of(token) is None  # clients of one key never kick each other
    other = desk.handle("POST", auth.TOKEN_PATH, body("whatever", "S2"))[1]["token"]  # the secret alone, any key
    assert other != token and desk.check(other) is None
    assert desk.handle("POST", auth.REVOKE_PATH, json.dumps({"token": token}).encode())[1]["return_code"] == 8001
    assert desk.check(token) is None  # au10002 without the pair revokes nothing
    revoke = {"appkey": "AK", "secretkey": "SK", "token": token}
    assert desk.handle("POST", auth.REVOKE_PATH, json.dumps(revoke).encode())[1]["return_code"] == 0
    assert desk.check(token) == 8005
    now[0] += 100.0
    assert desk.check(other) == 8005  # past its expires_dt
    fresh = desk.issue()
    assert desk.check(fresh) is None and desk.issued == {fresh}  # the dead ones are forgotten
    with pytest.raises(ValueError, match="needs credentials"):
        TokenDesk(issued_only=True)


def test_relay_desk_takes_the_recorders_pairs_or_the_serve_secret_and_refuses_a_token_only_record(
    tmp_path: Path,
) -> None:
    url = "ws://127.0.0.1:9/api/dostk/websocket"
    keyed = loopback_recorder(url, tmp_path / "a", ["005930"], ["0D"], run_id="a",
                              tokens=TokenProvider(BASE, appkey="AK1", secretkey="SK1"))
    token_only = loopback_recorder(url, tmp_path / "b", ["000660"], ["0D"], run_id="b",
                                   tokens=TokenProvider(BASE, fixed_token="KIWOOM-TOKEN"))
    try:
        desk = relay_desk([keyed, token_only])
        assert desk.authenticated({"appkey": "AK1", "secretkey": "SK1"})
        assert not desk.authenticated({"appkey": "x", "secretkey": "KIWOOM-TOKEN"})
        assert desk.check("KIWOOM-TOKEN") == 8005
        with pytest.raises(CredentialsError, match="has no secret to issue local clients") as err:
            relay_desk([token_only])
        assert "KIWOOM-TOKEN" not in str(err.value) and "--serve-secret-env" in (err.value.hint or "")
        desk = relay_desk([token_only], "LOCAL-SECRET")
        assert desk.authenticated({"appkey": "any", "secretkey": "LOCAL-SECRET"})
    finally:
        keyed.store.close()
        token_only.store.close()


def test_a_relay_refuses_a_login_with_any_token_it_did_not_issue(tmp_path: Path) -> None:
    """The Kiwoom token the recorder holds, or any made-up one: 8005 and the connection closes, as Kiwoom does."""

    async def main() -> None:
        market = SimulatedMarket(seed=31, items=["005930"], start=MORNING)
        async with serve(SimSource(market), port=0) as upstream:
            rec = loopback_recorder(upstream.url, tmp_path, ["005930"], ["0D"])
            try:
                async with relaying([rec]) as relay:
                    kiwoom = await rec.tokens.token()
                    for token in (kiwoom, "local-token"):
                        async with connect(relay.url) as ws:
                            await ws.send(json.dumps({"trnm": "LOGIN", "token": token}))
                            reply = json.loads(await recv(ws))
                            assert reply["trnm"] == "LOGIN" and reply["return_code"] != 0
                            assert "CODE=8005" in reply["return_msg"]
                            await asyncio.wait_for(ws.wait_closed(), 10)
                    token = await relay_token(relay.url, "kiwoom-tape-local", "kiwoom-tape-local")
                    async with connect(relay.url) as ws:
                        await login_reg(ws, ["005930"], ["0D"], token)
            finally:
                rec.store.close()

    run(main(), timeout=30)


def test_no_byte_a_local_client_gets_and_no_log_line_holds_the_kiwoom_token_or_the_secret(tmp_path: Path) -> None:
    """``record --serve`` with an app key and secret: every byte its local clients receive (token answers, a
    refused pair, refused and accepted LOGINs, REAL frames) and all it logs at -vv hold neither the Kiwoom token
    upstream issued nor the app key nor the secret."""
    appkey, secret = f"AK{uuid.uuid4().hex}", f"SK{uuid.uuid4().hex}"
    out = tmp_path / "data"

    async def main() -> tuple[bytes, set[str]]:
        market = SimulatedMarket(seed=32, items=["005930"], start=MORNING)
        async with serve(SimSource(market), port=0) as upstream:
            cmd = cli_argv("record", "--items", "005930", "--types", "0D", "--url", upstream.url, "--out", str(out),
                           "--serve", "0", "-vv")
            env = {**os.environ, "KIWOOM_APPKEY": appkey, "KIWOOM_SECRETKEY": secret}
            env.pop("KIWOOM_TOKEN", None)
            proc = await asyncio.create_subprocess_exec(*cmd, stderr=asyncio.subprocess.PIPE, env=env)
            assert proc.stderr is not None
            logs = bytearray()
            try:
                while not (line := (await proc.stderr.readline()).decode()).startswith("relay: "):
                    assert line, "record exited before serving:\n" + logs.decode()
                    logs += line.encode()
                logs += line.encode()
                url = URL.findall(line)[0]
                async with Tap(url) as tap:
                    refused = answer(await post_token(tap.url, {"grant_type": "client_credentials",
                                                                "appkey": appkey, "secretkey": secret + "x"}))
                    assert refused["return_code"] == 8001 and "token" not in refused
                    token = await relay_token(tap.url, appkey, secret)
                    while not upstream.tokens.known():  # noqa: ASYNC110  # the recorder logs in upstream
                        await asyncio.sleep(0.05)
                    for wrong in upstream.tokens.known():
                        async with connect(tap.url) as ws:
                            await ws.send(json.dumps({"trnm": "LOGIN", "token": wrong}))
                            assert "CODE=8005" in json.loads(await recv(ws))["return_msg"]
                    async with connect(tap.url) as ws:
                        await login_reg(ws, ["005930"], ["0D"], token)
                        assert '"item":"005930"' in await recv(ws)
                    revoke = {"appkey": appkey, "secretkey": secret, "token": token}
                    assert answer(await post_token(tap.url, revoke, auth.REVOKE_PATH))["return_code"] == 0
                    received = bytes(tap.received)
            finally:
                proc.send_signal(signal.SIGINT)
                logs += (await asyncio.wait_for(proc.communicate(), 30))[1]
            assert proc.returncode == 0, logs.decode()[-2000:]
            kiwoom_tokens = set(upstream.tokens.known())
        return received + b"\n--logs--\n" + bytes(logs), kiwoom_tokens

    scanned, kiwoom_tokens = asyncio.run(main())
    assert kiwoom_tokens and b'"trnm":"REAL"' in scanned and b"relay: local clients connect" in scanned
    assert b"logged in" in scanned and b"DEBUG" in scanned  # the recorder's and the relay's log lines, -vv
    text = scanned.decode("utf-8", "replace")
    for secret_value in (*kiwoom_tokens, appkey, secret):
        assert secret_value not in text


def test_serve_secret_env_goes_with_serve_and_names_a_set_variable(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``--serve-secret-env`` without ``--serve`` is a usage error; an unset variable is named, never a value; a
    ``record`` with only KIWOOM_TOKEN and no ``--serve-secret-env`` refuses to serve, before it records anything."""
    from click.testing import CliRunner

    from kiwoom_tape.relay_cli import record_command

    url = ["--url", "ws://127.0.0.1:9/api/dostk/websocket", "--out", str(tmp_path), "-q"]
    res = CliRunner().invoke(record_command, ["--items", "005930", "--serve-secret-env", "RELAY_SECRET", *url])
    assert res.exit_code == 2 and "--serve-secret-env goes with --serve" in res.output
    monkeypatch.delenv("RELAY_SECRET_UNSET", raising=False)
    res = CliRunner().invoke(record_command, ["--items", "005930", "--serve", "0", "--serve-secret-env",
                                              "RELAY_SECRET_UNSET", *url])
    assert res.exit_code == 2 and "RELAY_SECRET_UNSET is not set" in res.output
    for name in ("KIWOOM_APPKEY", "KIWOOM_SECRETKEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KIWOOM_TOKEN", "KIWOOM-TOKEN-ONLY")
    res = CliRunner().invoke(record_command, ["--items", "005930", "--serve", "0", *url])
    assert res.exit_code != 0 and "has no secret to issue local clients their tokens" in res.output, res.output
    assert "KIWOOM-TOKEN-ONLY" not in res.output and "Traceback" not in res.output
    assert not list(tmp_path.glob("_journal/*"))
