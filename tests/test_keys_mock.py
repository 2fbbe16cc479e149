"""The mock server allows one connection per app key, as Kiwoom does (docs/protocol.md 1.9, 4.1), and takes its own
credentials from KIWOOM_REPLAY_APPKEY / KIWOOM_REPLAY_SECRETKEY, never from the user's real KIWOOM_APPKEY."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from _cli import cli_argv, started_replay
from kiwoom_tape.replay.rest import RC_BAD_CREDENTIALS, TokenDesk
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.protocol import PING_TEXT, SYSTEM_KICKED, login
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


def _post_token(rest: str, appkey: str, secretkey: str) -> dict[str, object]:
    body = json.dumps({"grant_type": "client_credentials", "appkey": appkey, "secretkey": secretkey}).encode()
    req = urllib.request.Request(rest + "/oauth2/token", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


async def _token(rest: str, appkey: str) -> str:
    reply = await asyncio.to_thread(_post_token, rest, appkey, "secret-" + appkey)
    assert reply["return_code"] == 0, reply
    token = reply["token"]
    assert isinstance(token, str)
    return token


async def _login(url: str, token: str) -> ClientConnection:
    ws = await connect(url, ping_interval=None)
    await ws.send(login(token))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert reply["trnm"] == "LOGIN" and reply["return_code"] == 0, reply
    return ws


async def _read(ws: ClientConnection, quiet: float) -> list[str]:
    """Every frame but PINGs (echoed) until ``quiet`` seconds pass without one, or the server closes."""
    got: list[str] = []
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), quiet)
        except (TimeoutError, ConnectionClosed):
            return got
        if raw == PING_TEXT:
            await ws.send(raw)
        else:
            got.append(str(raw))


def _systems(frames: list[str]) -> list[str]:
    return [obj["code"] for obj in map(json.loads, frames) if obj.get("trnm") == "SYSTEM"]


def test_a_second_login_with_a_token_of_the_same_app_key_kicks_the_first() -> None:
    async def main() -> None:
        market = SimulatedMarket(seed=1, items=["005930"], start=9 * 3600)
        async with serve(SimSource(market, speed=1.0), port=0) as server:
            a1, a2, b = await _token(server.rest_url, "KEY-A"), await _token(server.rest_url, "KEY-A"), \
                await _token(server.rest_url, "KEY-B")
            first = await _login(server.url, a1)
            other = await _login(server.url, b)  # another key: no kick
            assert await _read(first, 0.3) == [] and await _read(other, 0.1) == []
            second = await _login(server.url, a2)
            got = await _read(first, 1.0)
            assert _systems(got) == [SYSTEM_KICKED[0]], got
            await asyncio.wait_for(first.wait_closed(), 5)
            assert first.close_code == 1000 and first.close_reason == "Bye"
            # the newcomer and the other key's connection are untouched
            assert _systems(await _read(second, 0.3)) == [] and _systems(await _read(other, 0.1)) == []
            assert second.close_code is None and other.close_code is None
            assert server.stats.kicks == 1 and server.clients == 2
            # the same token again kicks the second in turn: the key, not the token, is what counts
            third = await _login(server.url, a1)
            assert _systems(await _read(second, 1.0)) == [SYSTEM_KICKED[0]]
            assert server.stats.kicks == 2
            for ws in (third, other, second):
                await ws.close()

    asyncio.run(main())


def test_a_fixed_token_or_one_the_desk_did_not_issue_carries_no_key_and_is_not_limited() -> None:
    async def main() -> None:
        market = SimulatedMarket(seed=1, items=["005930"], start=9 * 3600)
        async with serve(SimSource(market, speed=1.0), port=0) as server:
            made_up = [await _login(server.url, "made-up-token") for _ in range(2)]
            assert [_systems(await _read(ws, 0.3)) for ws in made_up] == [[], []]
            assert server.stats.kicks == 0 and server.clients == 2
            for ws in made_up:
                await ws.close()
        async with serve(SimSource(market, speed=1.0), port=0, token="FIXED-1") as server:
            fixed = [await _token(server.rest_url, "KEY-A") for _ in range(2)]
            assert fixed == ["FIXED-1", "FIXED-1"]
            conns = [await _login(server.url, tok) for tok in fixed]
            assert [_systems(await _read(ws, 0.3)) for ws in conns] == [[], []]
            assert server.stats.kicks == 0 and server.clients == 2
            for ws in conns:
                await ws.close()

    asyncio.run(main())


def test_replay_ignores_the_users_real_kiwoom_keys_and_reads_its_own_variables() -> None:
    real_key, real_secret = "REAL-APPKEY-of-the-user", "REAL-SECRET-of-the-user"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIWOOM_REPLAY_")}
    env |= {"KIWOOM_APPKEY": real_key, "KIWOOM_SECRETKEY": real_secret}

    async def main() -> None:
        async with started_replay("--simulate", "--port", "0", env=env, limit=20) as replay:
            rest = replay.url.split("/api/")[0].replace("ws://", "http://")
            # the mock checks no credentials: any well-formed pair gets a token (not 8001 for "wrong" keys)
            reply = await asyncio.to_thread(_post_token, rest, "any-key", "any-secret")
            assert reply["return_code"] == 0 and isinstance(reply["token"], str)
            assert await replay.interrupt() == 0
        assert real_secret not in replay.output

    asyncio.run(main())


def test_a_desk_with_several_pairs_issues_to_each_and_refuses_crossed_pairs() -> None:
    desk = TokenDesk(credentials=[("KEY-1", "SECRET-1"), ("KEY-2", "SECRET-2")])

    def ask(key: str, secret: str) -> dict[str, Any]:
        body = json.dumps({"grant_type": "client_credentials", "appkey": key, "secretkey": secret}).encode()
        status, reply = desk.handle("POST", "/oauth2/token", body)
        assert status == 200
        return reply

    one, two = ask("KEY-1", "SECRET-1"), ask("KEY-2", "SECRET-2")
    assert one["return_code"] == 0 and two["return_code"] == 0
    assert desk.app_key_of(one["token"]) != desk.app_key_of(two["token"]) is not None
    assert desk.app_key_of(ask("KEY-1", "SECRET-1")["token"]) == desk.app_key_of(one["token"])
    for key, secret in (("KEY-1", "SECRET-2"), ("KEY-2", "SECRET-1"), ("KEY-3", "SECRET-1")):
        reply = ask(key, secret)
        assert reply["return_code"] == RC_BAD_CREDENTIALS and "token" not in reply
        assert not any(s in reply["return_msg"] for s in ("SECRET-1", "SECRET-2", "KEY-1", "KEY-2"))


def test_replay_keys_refuses_a_file_with_a_secret_and_names_a_missing_variable(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[[key]]\nappkey_env = "KT_MOCK_KEY"\nsecretkey = "PSx9Qk2LmZ8vR4tY7wB1"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_MOCK_")}
    run = subprocess.run(cli_argv("replay", "--simulate", "--port", "0", "--keys", str(keys)), env=env,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "never holds a key, secret or token" in run.stderr, run.stderr
    assert "PSx9Qk2LmZ8vR4tY7wB1" not in run.stderr
    keys.write_text('[[key]]\nappkey_env = "KT_MOCK_KEY"\nsecretkey_env = "KT_MOCK_SECRET"\n')
    run = subprocess.run(cli_argv("replay", "--simulate", "--port", "0", "--keys", str(keys)),
                         env=env | {"KT_MOCK_KEY": "k"}, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "KT_MOCK_SECRET not set in the environment" in run.stderr, run.stderr
