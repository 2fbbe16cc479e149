"""``replay`` as a user runs it (a subprocess, loopback, port 0): ``DIR --loop`` plays the tape again and again;
``--simulate`` answers ``POST /oauth2/revoke`` (au10002, docs/protocol.md 4.4) as documented.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from _cli import started_replay
from _tape import ITEMS, record_tape
from websockets.asyncio.client import ClientConnection, connect

LIMIT = 60.0
OK_MSG = "정상적으로 처리되었습니다"


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("tape")
    return root, record_tape(root, frames=12)


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(LIMIT):
            return await coro

    return asyncio.run(bounded())


async def http(method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
    """(status, body) of one request, in a thread (urllib blocks); a JSON body decoded, else its text."""

    def decoded(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def call() -> tuple[int, Any]:
        req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, decoded(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, decoded(exc.read())

    return await asyncio.to_thread(call)


def rest_url(ws_url: str) -> str:
    return "http://" + ws_url.removeprefix("ws://").split("/", 1)[0]


async def login(ws: ClientConnection, token: str) -> dict[str, Any]:
    await ws.send(json.dumps({"trnm": "LOGIN", "token": token}))
    reply: dict[str, Any] = json.loads(await ws.recv())
    return reply


async def reals(ws: ClientConnection, n: int) -> list[str]:
    """The next ``n`` REAL frames as received, echoing PINGs."""
    got: list[str] = []
    while len(got) < n:
        raw = await ws.recv()
        assert isinstance(raw, str)
        if raw == '{"trnm":"PING"}':
            await ws.send(raw)
        elif '"REAL"' in raw:
            got.append(raw)
    return got


async def unsubscribe(ws: ClientConnection) -> None:
    """REMOVE everything and read up to the ack: a looping tape at max speed sends for ever, and a client
    that stops reading without this waits websockets' close timeout (10 s) for the close handshake."""
    await ws.send(json.dumps({"trnm": "REMOVE", "grp_no": "1", "data": [{"item": list(ITEMS), "type": ["0D"]}]}))
    while (raw := await ws.recv()) != '{"trnm":"REMOVE","return_code":0,"return_msg":""}':
        assert '"REAL"' in raw or raw == '{"trnm":"PING"}', raw


# --------------------------------------------------------------------------------------------------
# replay DIR --loop


def test_replay_loop_from_the_command_line_plays_the_tape_twice(tape: tuple[Path, list[str]]) -> None:
    root, frames = tape

    async def main() -> None:
        args = [str(root), "--loop", "--speed", "max", "--start-delay", "0", "--port", "0"]
        async with started_replay(*args, limit=LIMIT) as replay:
            async with connect(replay.url) as ws:
                assert (await login(ws, "any-token"))["return_code"] == 0
                reg = {"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{"item": list(ITEMS), "type": ["0D"]}]}
                await ws.send(json.dumps(reg))
                assert json.loads(await ws.recv()) == {"trnm": "REG", "return_code": 0, "return_msg": ""}
                got = await reals(ws, 2 * len(frames) + 1)
                # byte for byte, the recorded frames in order, then again from the start
                assert got == frames + frames + frames[:1]
                status, body = await http("GET", rest_url(replay.url) + "/control")
                assert status == 200 and body["loops"] >= 2, body
                await unsubscribe(ws)
            assert await replay.interrupt() == 0
        assert "looping" in replay.output

    run(main())


def test_without_loop_the_tape_plays_once(tape: tuple[Path, list[str]]) -> None:
    root, frames = tape

    async def main() -> None:
        args = [str(root), "--speed", "max", "--start-delay", "0", "--port", "0"]
        async with started_replay(*args, limit=LIMIT) as replay:
            async with connect(replay.url) as ws:
                assert (await login(ws, "any-token"))["return_code"] == 0
                reg = {"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{"item": list(ITEMS), "type": ["0D"]}]}
                await ws.send(json.dumps(reg))
                await ws.recv()
                assert await reals(ws, len(frames)) == frames
                while (await http("GET", rest_url(replay.url) + "/control"))[1]["state"] != "ended":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                with pytest.raises(TimeoutError):  # nothing more comes but PINGs (none within 0.5 s)
                    await asyncio.wait_for(reals(ws, 1), 0.5)
            assert await replay.interrupt() == 0

    run(main())


# --------------------------------------------------------------------------------------------------
# POST /oauth2/revoke (au10002) against replay --simulate


def test_revoke_answers_as_au10002_and_leaves_no_secret_in_the_output() -> None:
    appkey, secretkey = "APPKEY-revoke-test-1", "SECRETKEY-revoke-test-2"

    async def main() -> None:
        async with started_replay("--simulate", "--port", "0", limit=LIMIT) as replay:
            base = rest_url(replay.url)
            body = json.dumps({"grant_type": "client_credentials", "appkey": appkey, "secretkey": secretkey})
            status, issued = await http("POST", base + "/oauth2/token", body.encode())
            assert status == 200 and issued["return_code"] == 0 and issued["token_type"] == "bearer"
            token = issued["token"]
            assert isinstance(token, str) and len(token) >= 20 and len(issued["expires_dt"]) == 14

            revoke = json.dumps({"appkey": appkey, "secretkey": secretkey, "token": token}).encode()
            assert await http("POST", base + "/oauth2/revoke", revoke) == (
                200, {"return_code": 0, "return_msg": OK_MSG})
            # bad requests name the problem (docs/protocol.md 4.4)
            status, bad = await http("POST", base + "/oauth2/revoke", b"appkey=1&token=2")
            assert status == 400 and bad["return_code"] == 1501 and "JSON" in bad["return_msg"]
            status, wrong = await http("PUT", base + "/oauth2/revoke", revoke)
            assert status == 405 and wrong == {"return_code": 405, "return_msg": "use POST /oauth2/revoke"}
            status, _ = await http("GET", base + "/oauth2/revoke")  # a plain GET is the WebSocket's: no upgrade
            assert status == 426

            # the documented deviation: the mock does not track revoked tokens, LOGIN still accepts it
            async with connect(replay.url) as ws:
                assert (await login(ws, token))["return_code"] == 0
            assert await replay.interrupt() == 0
        for secret in (appkey, secretkey, token):
            assert secret not in replay.output

    run(main())
