"""The mock server on loopback (port 0): real sockets, real websockets client, bounded in time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from kiwoom_tape.replay.server import Dispatch, Server, serve
from kiwoom_tape.schemas.protocol import encode_real_row
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 15.0


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TIMEOUT):
            await coro

    asyncio.run(bounded())


@dataclass(frozen=True)
class R:
    item: str
    type: str
    text: str


def row(item: str, t: str = "0D", n: int = 0) -> R:
    return R(item, t, encode_real_row(t, item, json.dumps({"21": "090000", "41": f"+{1000 + n}"})))


class ManualSource:
    """A source the test feeds batch by batch."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Sequence[R]] = asyncio.Queue()
        self.added: list[str] = []

    def add_item(self, item: str) -> None:
        self.added.append(item)

    async def run(self, dispatch: Dispatch) -> None:
        while True:
            batch = await self.queue.get()
            await dispatch(batch, None)


async def login(ws: ClientConnection, token: str = "t0k") -> dict[str, Any]:
    await ws.send(json.dumps({"trnm": "LOGIN", "token": token}))
    return json.loads(await ws.recv())  # type: ignore[no-any-return]


async def reg(ws: ClientConnection, items: list[str], types: list[str], *, grp: str = "1", refresh: str = "1",
              trnm: str = "REG") -> dict[str, Any]:
    msg: dict[str, Any] = {"trnm": trnm, "grp_no": grp, "data": [{"item": items, "type": types}]}
    if trnm == "REG":
        msg["refresh"] = refresh
    await ws.send(json.dumps(msg))
    return await recv_not_ping(ws)


async def recv_not_ping(ws: ClientConnection, wait: float = 5.0) -> dict[str, Any]:
    while True:
        raw = await asyncio.wait_for(ws.recv(), wait)
        msg = json.loads(raw)
        if msg.get("trnm") == "PING":
            await ws.send(raw)
            continue
        return msg  # type: ignore[no-any-return]


async def real_items(ws: ClientConnection, quiet: float = 0.3) -> list[tuple[str, str]]:
    """Drain REAL frames until ``quiet`` seconds of silence; return (item, type) of every row."""
    got: list[tuple[str, str]] = []
    while True:
        try:
            msg = await recv_not_ping(ws, quiet)
        except TimeoutError:
            return got
        assert msg["trnm"] == "REAL", msg
        got += [(r["item"], r["type"]) for r in msg["data"]]


def with_server(test: Callable[[Server, ManualSource], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        source = ManualSource()
        async with serve(source, port=0, **kwargs) as server:
            await test(server, source)

    run(main())


def test_url_and_login_reply_exact() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        assert server.url.startswith("ws://127.0.0.1:") and server.url.endswith("/api/dostk/websocket")
        async with connect(server.url) as ws:
            await ws.send('{"trnm":"LOGIN","token":"abc"}')
            assert await ws.recv() == '{"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}'

    with_server(t)


def test_ping_echo_keeps_alive_and_silence_gets_r10002() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        async with connect(server.url) as good, connect(server.url) as silent:
            await login(good)
            await login(silent)
            pings = 0
            while pings < 7:  # past 5 intervals
                raw = await asyncio.wait_for(good.recv(), 2)
                assert json.loads(raw) == {"trnm": "PING"}
                await good.send(raw)
                pings += 1
            # the silent one has been closed with R10002 by now
            frames = []
            with pytest.raises(ConnectionClosed):
                while True:
                    frames.append(json.loads(await asyncio.wait_for(silent.recv(), 2)))
            assert [f["trnm"] for f in frames] == ["PING"] * 5 + ["SYSTEM"]
            assert frames[-1]["code"] == "R10002"
            # the good one is still alive
            await good.send('{"trnm":"PING"}')
            assert good.state.name == "OPEN"

    with_server(t, ping_interval=0.05)


def test_reg_remove_refresh_over_the_wire() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        async with connect(server.url) as ws:
            await login(ws)
            assert await reg(ws, ["005930", "000660"], ["0D"]) == {"trnm": "REG", "return_code": 0, "return_msg": ""}
            assert set(source.added) == {"005930", "000660"}
            await source.queue.put([row("005930"), row("000660"), row("035420")])
            assert sorted(await real_items(ws)) == [("000660", "0D"), ("005930", "0D")]
            # refresh "0" replaces the group's registrations
            assert (await reg(ws, ["035420"], ["0D"], refresh="0"))["return_code"] == 0
            await source.queue.put([row("005930"), row("000660"), row("035420")])
            assert await real_items(ws) == [("035420", "0D")]
            # refresh "1" keeps; another group adds; REMOVE drops from its group only
            await reg(ws, ["005930"], ["0D", "0E"], grp="2")
            rm = await reg(ws, ["035420"], ["0D"], trnm="REMOVE")
            assert rm == {"trnm": "REMOVE", "return_code": 0, "return_msg": ""}
            await source.queue.put([row("005930"), row("005930", "0E"), row("035420")])
            assert sorted(await real_items(ws)) == [("005930", "0D"), ("005930", "0E")]

    with_server(t)


def test_full_frame_is_sent_verbatim_and_partial_is_rebuilt() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        async with connect(server.url) as ws:
            await login(ws)
            await reg(ws, ["005930", "000660"], ["0D"])
            a, b, c = row("005930"), row("000660"), row("035420")
            await source.queue.put([a, b])
            assert await ws.recv() == '{"data":[' + a.text + "," + b.text + '],"trnm":"REAL"}'
            await source.queue.put([c, b])
            assert await ws.recv() == '{"data":[' + b.text + '],"trnm":"REAL"}'

    with_server(t)


def test_201_items_get_105115_and_nothing_applied() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        async with connect(server.url) as ws:
            await login(ws)
            items = [f"{i:06d}" for i in range(201)]
            rep = await reg(ws, items, ["0D"])
            assert rep["return_code"] == 105115
            await source.queue.put([row(items[0])])
            assert await real_items(ws) == []
            assert (await reg(ws, items[:200], ["0D", "0E"]))["return_code"] == 0

    with_server(t)


def test_ten_clients_each_get_exactly_their_own() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        universe = [f"{i:06d}" for i in range(1, 21)]
        conns = [await connect(server.url) for _ in range(10)]
        try:
            wants = {}
            for k, ws in enumerate(conns):
                await login(ws)
                mine = [*universe[k : k + 3], f"{k:06d}_NX"]
                wants[k] = {(i, "0D") for i in mine}
                await reg(ws, mine, ["0D"])
            batch = [row(i) for i in universe] + [row(f"{k:06d}_NX") for k in range(10)]
            batch += [row(u, "0E") for u in universe]
            for _ in range(3):
                await source.queue.put(batch)
            for k, ws in enumerate(conns):
                got = await real_items(ws)
                assert len(got) == 3 * len(wants[k])
                assert set(got) == wants[k]
        finally:
            for ws in conns:
                await ws.close()

    with_server(t)


def test_token_endpoint_and_required_token() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        host, port = "127.0.0.1", server.port

        async def post(path: str, body: bytes) -> tuple[int, dict[str, Any]]:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json;charset=UTF-8\r\n"
                f"api-id: au10001\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            )
            await writer.drain()
            data = await reader.read()
            writer.close()
            head, _, payload = data.partition(b"\r\n\r\n")
            return int(head.split()[1]), json.loads(payload)

        status, body = await post(
            "/oauth2/token", b'{"grant_type":"client_credentials","appkey":"K","secretkey":"S"}'
        )
        assert status == 200 and body["return_code"] == 0 and body["token_type"] == "bearer"
        assert len(body["expires_dt"]) == 14 and body["token"] == "s3cret"
        status, body = await post("/oauth2/token", b'{"grant_type":"client_credentials","appkey":"K"}')
        assert body["return_code"] != 0 and "secretkey" in body["return_msg"]
        status, body = await post("/oauth2/token", b"not json")
        assert status == 400
        async with connect(server.url) as ws:
            rep = await login(ws, "wrong")
            assert rep["return_code"] != 0 and "CODE=8005" in rep["return_msg"]
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 2)
        async with connect(server.url) as ws:
            assert (await login(ws, "s3cret"))["return_code"] == 0

    with_server(t, token="s3cret")


def test_bad_input_gets_error_replies_and_oversized_is_refused() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        async with connect(server.url) as ws:
            await login(ws)
            await ws.send("this is not json")
            rep = json.loads(await ws.recv())
            assert rep["return_code"] == 1
            await ws.send('{"trnm":"REG","grp_no":"1","refresh":"1","data":"nope"}')
            rep = json.loads(await ws.recv())
            assert rep["trnm"] == "REG" and rep["return_code"] == 1
            await ws.send('{"trnm":"CNSRLST"}')
            assert json.loads(await ws.recv())["return_code"] != 0
            assert (await reg(ws, ["005930"], ["0D"]))["return_code"] == 0  # still serving
            await ws.send("x" * (server.max_message + 1))
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 2)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        async with connect(server.url.replace("/api/dostk/websocket", "/elsewhere")) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 2)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1008

    with_server(t)


def test_no_login_in_time_gets_r10004() -> None:
    async def t(server: Server, source: ManualSource) -> None:
        async with connect(server.url) as ws:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 3))
            assert msg["trnm"] == "SYSTEM" and msg["code"] == "R10004"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 2)

    with_server(t, login_timeout=0.2)
