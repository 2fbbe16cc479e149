"""`replay --simulate` as a user runs it: prints where to connect, serves, stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.request

from _cli import cli_argv, started_replay
from websockets.asyncio.client import connect


def test_replay_simulate_serves_and_stops_on_ctrl_c() -> None:
    async def main() -> None:
        args = ["--simulate", "--port", "0", "--items", "005930", "--sim-start", "09:30:00", "--speed", "5"]
        async with started_replay(*args, limit=20) as replay:
            async with connect(replay.url) as ws:
                await ws.send('{"trnm":"LOGIN","token":"t"}')
                assert json.loads(await ws.recv())["return_code"] == 0
                reg = {"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{"item": ["005930"], "type": ["0D"]}]}
                await ws.send(json.dumps(reg))
                assert json.loads(await ws.recv())["return_code"] == 0
                real = json.loads(await ws.recv())
                assert real["trnm"] == "REAL" and real["data"][0]["item"] == "005930"
            assert await replay.interrupt() == 0

    asyncio.run(main())


def _post_token(rest: str, appkey: str, secretkey: str) -> dict[str, object]:
    body = json.dumps({"grant_type": "client_credentials", "appkey": appkey, "secretkey": secretkey}).encode()
    req = urllib.request.Request(rest + "/oauth2/token", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_replay_checks_credentials_from_the_environment_and_says_so_in_its_help() -> None:
    key, secret = "APPKEY-cli-3141", "SECRETKEY-cli-2718"
    env = {**os.environ, "KIWOOM_REPLAY_APPKEY": key, "KIWOOM_REPLAY_SECRETKEY": secret}

    async def main() -> None:
        async with started_replay("--simulate", "--port", "0", "--token", "FIXED-cli-1", env=env, limit=20) as replay:
            rest = replay.url.split("/api/")[0].replace("ws://", "http://")
            wrong = await asyncio.to_thread(_post_token, rest, key, "not-the-secret")
            assert wrong["return_code"] == 8001 and "token" not in wrong
            right = await asyncio.to_thread(_post_token, rest, key, secret)
            assert right["return_code"] == 0 and right["token"] == "FIXED-cli-1"
            assert await replay.interrupt() == 0
        assert secret not in replay.output and "FIXED-cli-1" not in replay.output

    asyncio.run(main())
    help_text = subprocess.run(cli_argv("replay", "--help"), capture_output=True, text=True, check=True).stdout
    flat = " ".join(help_text.split()).replace("well- formed", "well-formed")  # click wraps at hyphens
    assert "KIWOOM_REPLAY_SECRETKEY" in flat and "Without both, any well-formed request gets a token" in flat
    only_key = {k: v for k, v in env.items() if k != "KIWOOM_REPLAY_SECRETKEY"}
    half = subprocess.run(cli_argv("replay", "--simulate", "--port", "0"), env=only_key, capture_output=True,
                          text=True, timeout=30)
    assert half.returncode == 2 and "KIWOOM_REPLAY_SECRETKEY" in half.stderr
