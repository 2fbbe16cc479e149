"""Fuzz with hypothesis, where shrinking matters: frames and client messages into the recorder and the server.

The bulk of the generated cases (>= 100,000 per run, seeded) is in ``test_fuzz_*.py`` (``_fuzzgen``);
these few hundred hypothesis examples shrink a failure to a minimal input and drive whole stacks:

- the recorder's parser as ``Recorder`` drives it: ``Store.add_real_frame`` (the fast path), else
  ``ClientSession.receive`` then ``Store.add_frame``: any JSON, non-JSON, huge, deeply nested, wrong
  types, and nearly valid 0D/0E frames with mutated values. Nothing raises; every frame is stored once;
  what was written reads back.
- the server's session (``ServerSession.receive``): nothing raises, and a valid REG still works after.
- a running mock server over real sockets: each example opens a connection (logged in or not) and
  sends messages (text and binary, some over the size limit); the server answers only with JSON
  envelopes or closes with a documented code, and a well-behaved client on another connection keeps
  receiving data all along.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.replay.server import Server, serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.fields import FIELDS_0D, FIELDS_0E
from kiwoom_tape.schemas.protocol import (
    ClientSession,
    Event,
    RealData,
    ServerSession,
    ServerState,
    UnexpectedMessage,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kiwoom_tape.testing import read_table as table

from .conftest import Report

FUZZ = settings(
    deadline=None,
    database=None,  # the same cases every run: no state shared between CI runs
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
RECORDER_CASES = 400
SESSION_CASES = 300
SOCKET_CASES = 150
MAX_MESSAGE = 64 * 1024

# -- strategies -------------------------------------------------------------------------------------

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "-0", "+0", " 67300", "+-5", "1e5", "00012", "9" * 40, "가", "²", "\u0000", "+"])
)
JSON = st.recursive(
    SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=16,
)
TRNMS = st.sampled_from(["LOGIN", "REG", "REMOVE", "PING", "REAL", "SYSTEM", "CNSRLST", "", "real", "LOGIN "])


def _nested(depth: int, kind: str) -> str:
    return {"list": "[" * depth + "]" * depth, "obj": '{"a":' * depth + "1" + "}" * depth,
            "open": "[" * depth}[kind]


DEEP = st.builds(_nested, st.integers(1, 30_000), st.sampled_from(["list", "obj", "open"]))


def _row(fields: Any, tag: str, item: str, mutations: dict[int, Any], drop: set[int], name: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for i, f in enumerate(fields):
        if i in drop:
            continue
        values[f.fid] = mutations.get(i, "+1000" if f.kind.value in ("price", "signed") else "10")
    values[fields[0].fid] = mutations.get(0, "090000")
    return {"values": values, "type": tag, "name": name, "item": item}


def _near_valid(tag: str, item: str, mutations: dict[int, Any], drop: set[int], name: str, trnm: Any) -> str:
    fields = FIELDS_0D if tag == "0D" else FIELDS_0E
    row = _row(fields, tag, item, mutations, drop, name)
    return json.dumps({"data": [row], "trnm": trnm}, ensure_ascii=False, separators=(",", ":"))  # compact, as Kiwoom


NEAR_VALID = st.builds(
    _near_valid,
    st.sampled_from(["0D", "0E"]),
    st.sampled_from(["005930", "005930_NX", "", "가나다"]) | st.text(max_size=10),
    st.just({}) | st.dictionaries(st.integers(0, 162), SCALARS | JSON, max_size=4),
    st.just(set()) | st.sets(st.integers(0, 162), max_size=3),
    st.sampled_from(["주식호가잔량", "주식시간외호가", ""]),
    st.sampled_from(["REAL"] * 6 + ["real", None, 1]),
)
ENVELOPES = st.builds(
    lambda trnm, extra: json.dumps({"trnm": trnm, **extra}, ensure_ascii=False),
    TRNMS | JSON,
    st.dictionaries(
        st.sampled_from(["token", "grp_no", "refresh", "data", "return_code", "return_msg", "code", "message", "x"]),
        JSON | st.lists(st.dictionaries(st.sampled_from(["item", "type", "values", "name"]), JSON, max_size=4),
                        max_size=3),
        max_size=4,
    ),
)
HUGE = st.builds(
    lambda n, k: ('{"trnm":"REAL","data":[{"type":"0D","item":"005930","values":{"41":"' + "9" * n + '"}}]}')
    if k else '{"trnm":"' + "가" * n + '"}',
    st.integers(10_000, 300_000), st.booleans(),
)
TEXTS = st.one_of(
    st.text(max_size=200), st.builds(json.dumps, JSON), ENVELOPES, NEAR_VALID, DEEP, HUGE,
    NEAR_VALID.map(lambda s: s[: len(s) // 2]),
)
FRAMES = st.one_of(TEXTS, TEXTS.map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=300))



# -- the recorder's parser and store ---------------------------------------------------------------


def test_recorder_parser_and_store_take_anything(tmp_path: Path, report: Report) -> None:
    store = Store(tmp_path, "fuzz", fsync_interval=0.05)
    store.open()
    fed = 0
    clock = [1_795_000_000_000_000_000]

    @settings(FUZZ, max_examples=RECORDER_CASES)
    @given(frame=FRAMES, logged_in=st.booleans())
    def feed(frame: str | bytes, logged_in: bool) -> None:
        nonlocal fed
        session = ClientSession(token="t")
        session.connect(0.0)
        if logged_in:
            session.receive('{"trnm":"LOGIN","return_code":0,"return_msg":""}', 0.0)
        session.data_to_send()
        clock[0] += 1000
        data = frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass")
        fed += 1
        if store.add_real_frame(clock[0], data) is not None:  # the recorder's fast path
            return
        events: list[Event] = session.receive(data, 1.0)
        assert all(isinstance(e, Event) for e in events)
        real = next((e for e in events if isinstance(e, RealData)), None)
        bad = next((e for e in events if isinstance(e, UnexpectedMessage)), None)
        if real is not None:
            store.add_frame(clock[0], "in", data, rows=real.rows, trnm="REAL")
        elif bad is not None:
            store.add_frame(clock[0], "in", data, parse_error=bad.reason or "unexpected")
        else:
            store.add_frame(clock[0], "in", data)
        for out in session.data_to_send():
            assert out == data  # the only reply to anything is a PING echo

    try:
        feed()
    finally:
        store.close()
    report.fuzz["recorder parser+store (hypothesis)"] = fed
    frames = table(tmp_path, "frames")
    assert len(frames) == fed  # every frame stored, once
    assert sorted(f["seq"] for f in frames) == list(range(fed))
    for name in ("orderbook", "afterhours"):
        rows = [(r["frame_seq"], r["row_idx"]) for r in table(tmp_path, name)]
        assert len(rows) == len(set(rows))


# -- the server's session ----------------------------------------------------------------------------


def test_server_session_takes_anything(report: Report) -> None:
    tried = 0

    @settings(FUZZ, max_examples=SESSION_CASES)
    @given(frames=st.lists(FRAMES, min_size=1, max_size=3), login_first=st.booleans())
    def feed(frames: list[str | bytes], login_first: bool) -> None:
        nonlocal tried
        tried += 1
        s = ServerSession(now=0.0)
        if login_first:
            s.receive('{"trnm":"LOGIN","token":"t"}', 0.0)
        for i, f in enumerate(frames):
            s.receive(f, 0.1 + i * 0.3)
        for out in s.data_to_send():
            body = json.loads(out)
            assert isinstance(body, dict) and isinstance(body.get("trnm"), str)
        if s.state is ServerState.OPEN:
            s.receive('{"trnm":"REG","grp_no":"9","refresh":"1","data":[{"item":["A"],"type":["0D"]}]}', 5.0)
            assert json.loads(s.data_to_send()[-1])["return_code"] == 0 and s.wants("A", "0D")

    feed()
    report.fuzz["server session (hypothesis)"] = tried


# -- a running server, over sockets ----------------------------------------------------------------


class _Background:
    """The mock server and one well-behaved client, on an event loop in a thread."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.stop_flag: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: Server | None = None
        self.good_times: list[float] = []
        self.good_error: BaseException | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_flag = asyncio.Event()
        market = SimulatedMarket(seed=21, items=["005930_NX", "000660_NX"], start=16 * 3600)
        async with serve(SimSource(market, speed=20.0), port=0, max_message=MAX_MESSAGE,
                         ping_interval=0.5) as server:
            self.server = server
            good = asyncio.create_task(self._good(server.url))
            self.ready.set()
            await self.stop_flag.wait()
            good.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await good

    async def _good(self, url: str) -> None:
        try:
            async with connect(url) as ws:
                await ws.send('{"trnm":"LOGIN","token":"good"}')
                await ws.send('{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930_NX"],"type":["0D"]}]}')
                while True:
                    raw = await ws.recv()
                    if raw == '{"trnm":"PING"}':
                        await ws.send(raw)
                    elif '"REAL"' in raw:
                        self.good_times.append(time.monotonic())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.good_error = exc

    def __enter__(self) -> _Background:
        self.thread.start()
        assert self.ready.wait(10), "the server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.loop is not None and self.stop_flag is not None
        self.loop.call_soon_threadsafe(self.stop_flag.set)
        self.thread.join(10)


@pytest.fixture
def background() -> Iterator[_Background]:
    with _Background() as bg:
        yield bg


DOCUMENTED_CLOSE = {1000, 1007, 1009}
"""1000 after R10004 / a refused LOGIN; 1007 (websockets) for a text frame that is not UTF-8; 1009 over max_message."""


async def _poke(url: str, login: bool, messages: list[tuple[bool, str | bytes]]) -> list[str]:
    replies: list[str] = []
    async with connect(url, max_size=None, compression=None) as ws:
        try:
            if login:
                await ws.send('{"trnm":"LOGIN","token":"fuzz"}')
            for as_binary, m in messages:
                if as_binary:
                    await ws.send(m if isinstance(m, bytes) else m.encode("utf-8", "surrogatepass"), text=False)
                else:
                    text = m if isinstance(m, str) else m.decode("utf-8", "replace")
                    await ws.send(text.encode("utf-8", "replace").decode("utf-8"))
            with contextlib.suppress(TimeoutError):
                while True:
                    replies.append(str(await asyncio.wait_for(ws.recv(), 0.05)))
        except ConnectionClosed:
            pass
        if ws.close_code is not None:
            assert ws.close_code in DOCUMENTED_CLOSE, (ws.close_code, ws.close_reason)
    return replies


def test_a_running_server_takes_anything_and_keeps_serving(background: _Background, report: Report) -> None:
    server = background.server
    assert server is not None
    tried = 0

    @settings(FUZZ, max_examples=SOCKET_CASES)
    @given(login=st.booleans(), messages=st.lists(st.tuples(st.booleans(), FRAMES), min_size=1, max_size=3))
    def poke(login: bool, messages: list[tuple[bool, str | bytes]]) -> None:
        nonlocal tried
        tried += 1
        for raw in asyncio.run(_poke(server.url, login, messages)):
            if raw == '{"trnm":"PING"}' or '"REAL"' in raw:
                continue
            body = json.loads(raw)
            assert isinstance(body, dict) and isinstance(body.get("trnm"), str), raw

    t0 = time.monotonic()
    poke()
    t1 = time.monotonic()
    time.sleep(0.3)
    report.fuzz["server over sockets (hypothesis)"] = tried
    # the well-behaved client received data all along, and is still connected
    assert background.good_error is None, background.good_error
    times = [t for t in background.good_times if t0 <= t <= t1 + 0.3]
    assert times, "the well-behaved client got nothing while the fuzzer ran"
    gaps = [b - a for a, b in zip([t0, *times], [*times, t1], strict=True)]
    assert max(gaps) < 2.0, f"the well-behaved client waited {max(gaps):.2f} s for data"
    assert server.stats.protocol_errors > 0 and server.clients >= 1


def test_oversized_and_handshake_garbage(background: _Background) -> None:
    server = background.server
    assert server is not None

    async def main() -> None:
        async with connect(server.url, max_size=None) as ws:
            await ws.send('{"trnm":"LOGIN","token":"t"}')
            await ws.recv()
            await ws.send("x" * (MAX_MESSAGE + 1))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 2)
            assert ws.close_code == 1009
        # raw bytes that are not HTTP, and an HTTP request that is not a WebSocket upgrade
        for junk in (b"\x16\x03\x01\x00\xa5\x01\x00", b"GET /api/dostk/websocket HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"POST /oauth2/token HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", b"BREW / HTCPCP/1.0\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(junk)
            await writer.drain()
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(reader.read(), 0.5)
            writer.close()
        async with connect(server.url.replace("/api/dostk/websocket", "/nope")) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 2)
            assert ws.close_code == 1008 and "/api/dostk/websocket" in (ws.close_reason or "")

    asyncio.run(main())
    assert background.good_error is None
