"""The server's fast path: frames handed over in bulk (``dispatch.frames``) and written in batches.

Real sockets on 127.0.0.1 port 0, the websockets client, every test bounded in time. What is checked is
what a client receives (exact texts, in order, only its rows) and the counters, never how fast.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import pytest
from kiwoom_tape.replay.control import Step
from kiwoom_tape.replay.recorded import RecordedSource
from kiwoom_tape.replay.server import Dispatch, Row, _BatchConnection, serve
from kiwoom_tape.schemas.realframe import RealFrame, parse_real_frame
from test_replay_recorded import T9, A, B, C, login_reg, make_frame, mixed_tape, recv_reals, write_tape
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

TIMEOUT = 20.0


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TIMEOUT):
            await coro

    asyncio.run(bounded())


class Encoded:
    """An :class:`EncodedFrame` made from a frame's text."""

    def __init__(self, text: str) -> None:
        self.real = parse_real_frame(text)
        self.data = text.encode()
        self.keys = tuple((r.item, r.type) for r in self.real.rows)

    def subset(self, keep: Sequence[int]) -> str:
        return self.real.subset([self.real.rows[k] for k in keep])


class BulkSource:
    """Hands each list put in its queue to ``dispatch.frames`` in one call."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[list[Encoded], bool]] = asyncio.Queue()

    def add_item(self, item: str) -> None:
        pass

    async def run(self, dispatch: Dispatch) -> None:
        while True:
            frames, wait = await self.queue.get()
            await dispatch.frames(frames, wait=wait)


def test_frames_in_bulk_reach_each_client_exactly_and_in_order(tmp_path: Path) -> None:
    tape = mixed_tape(tmp_path, n=40)  # rows of A, B, C in varied formatting; some frames with several rows
    big = make_frame(T9, [(A, "0D"), (B, "0D")], 99, 2, pad=70_000)  # > 65535 bytes: the 8-byte length
    tape.append(big)
    encoded = [Encoded(f.text) for f in tape]

    async def main() -> None:
        source = BulkSource()
        async with serve(source, port=0, keep_sent=True) as server, \
                connect(server.url, max_size=2**20) as one, connect(server.url, max_size=2**20) as two:
            await login_reg(one, [A, B, C], ["0D", "0E"])  # everything
            await login_reg(two, [A], ["0D"])  # some rows of some frames
            source.queue.put_nowait((encoded[:25], False))
            source.queue.put_nowait((encoded[25:], True))
            want1 = [f.text for f in tape]
            want2 = [e for f in tape if (e := f.expected(lambda i, t: (i, t) == (A, "0D")))]
            assert await recv_reals(one, len(want1), quiet=0.2) == want1
            assert await recv_reals(two, len(want2), quiet=0.2) == want2
            rows1 = sum(len(f.rows) for f in tape)
            rows2 = sum(1 for f in tape for i, t, _ in f.rows if (i, t) == (A, "0D"))
            assert server.stats.frames_sent == len(want1) + len(want2)
            assert server.stats.rows_sent == rows1 + rows2
            assert sum(server.stats.rows_by_item.values()) == rows1 + rows2
            assert server.stats.rows_by_item[A] == sum(1 for f in tape for i, _, _ in f.rows if i == A) + rows2
            assert server.sent is not None  # what was written, as text, per connection
            assert [t for c, _, t in server.sent if c == 1] == want1
            assert [t for c, _, t in server.sent if c == 2] == want2

    run(main())


class _Transport:
    """The connection's transport, keeping a copy of every write."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)
        self.real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_batched_frames_are_the_librarys_frames(size: int) -> None:
    """``send_texts`` writes, in one write, exactly what websockets' protocol makes of each text."""
    texts: list[str | bytes] = ["가" * (size // 3) + "x" * (size % 3), b"y" * size, "{}"]

    async def main() -> None:
        async with serve(None, port=0) as server, connect(server.url, max_size=2**20) as ws:
            await ws.send('{"trnm":"LOGIN","token":"t"}')
            await ws.recv()
            conn = next(iter(server._clients)).conn
            assert isinstance(conn, _BatchConnection)
            real = conn.transport
            conn.transport = transport = _Transport(real)  # type: ignore[assignment]
            try:
                await conn.send_texts(texts)
            finally:
                conn.transport = real
            expected = b"".join(
                Frame(Opcode.TEXT, t if isinstance(t, bytes) else t.encode()).serialize(mask=False, extensions=[])
                for t in texts
            )
            assert transport.out == [expected]
            for t in texts:  # and the client reads them as the texts they are
                assert await ws.recv(decode=False) == (t if isinstance(t, bytes) else t.encode())

    run(main())


def test_a_recorded_source_without_the_bulk_path_sends_frame_by_frame(tmp_path: Path) -> None:
    """RecordedSource over a ``dispatch`` that has no ``frames`` (a plain callable) still sends every frame."""
    tape = mixed_tape(tmp_path, n=12)
    got: list[tuple[list[tuple[str, str]], str]] = []

    async def plain(rows: Sequence[Row], frame: str | bytes | Any = None, /, *, wait: bool = False) -> None:
        assert isinstance(frame, RealFrame) and wait
        got.append(([(r.item, r.type) for r in rows], frame.text))

    async def main() -> None:
        source = RecordedSource(tmp_path, speed=None, start_delay=0)
        source.add_item(A)
        task = asyncio.create_task(source.run(plain))  # type: ignore[arg-type]
        while source.status()["state"] != "ended":  # noqa: ASYNC110  # the source offers no event
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
    assert [t for _, t in got] == [f.text for f in tape]
    assert [k for k, _ in got] == [[(i, t) for i, t, _ in f.rows] for f in tape]


def test_items_filter_and_skipped_frames_on_the_bulk_path(tmp_path: Path) -> None:
    frames = [make_frame(T9 + k * 1_000_000, [(A, "0D"), (B, "0D")] if k % 2 else [(B, "0D")], k, k % 3)
              for k in range(20)]
    write_tape(tmp_path, frames)  # with a PING and a REAL frame without an item: skipped

    async def main() -> None:
        source = RecordedSource(tmp_path, speed=None, start_delay=0, items=[A])
        async with serve(source, port=0) as server, connect(server.url) as ws:
            await login_reg(ws, [A, B], ["0D"])
            want = [e for f in frames if (e := f.expected(lambda i, t: i == A))]
            assert await recv_reals(ws, len(want), quiet=0.3) == want
            status = source.status()
            assert status["frames_played"] == len(want) and status["skipped"] == 1
            assert server.stats.rows_by_item == {A: len(want)}

    run(main())


def test_step_sends_exactly_n_frames_of_the_replay(tmp_path: Path) -> None:
    tape = mixed_tape(tmp_path, n=40)

    async def main() -> None:
        source = RecordedSource(tmp_path, speed=None, start_delay=60)
        async with serve(source, port=0) as server, connect(server.url) as ws:
            await login_reg(ws, [C], ["0D"])  # frames without C 0D still count as played: the tape moves on
            control = source.apply
            control(Step(5))
            want = [e for f in tape[:5] if (e := f.expected(lambda i, t: (i, t) == (C, "0D")))]
            assert await recv_reals(ws, len(want), quiet=0.3) == want
            assert source.status()["frames_played"] == 5 and source.status()["step_pending"] == 0
            control(Step(30))
            want = [e for f in tape[5:35] if (e := f.expected(lambda i, t: (i, t) == (C, "0D")))]
            assert await recv_reals(ws, len(want), quiet=0.3) == want
            assert source.status()["frames_played"] == 35
            assert json.loads(want[-1])["data"][0]["item"] == C
            assert server.stats.slow_clients_dropped == 0

    run(main())


def test_a_writer_takes_at_most_cap_frames_and_stops_at_a_close() -> None:
    from types import SimpleNamespace

    from kiwoom_tape.replay.outbox import Client

    client = Client(SimpleNamespace(remote_address=None), None, 1)  # type: ignore[arg-type]
    for item in ("ab", b"cde", "f", (1000, "bye"), "gh"):
        client.append(item)
    assert client.backlog == 8
    assert client.take(2) == (["ab", b"cde"], None) and client.backlog == 3
    assert client.take(64) == (["f"], (1000, "bye")) and client.backlog == 2  # the frames before the close first
    assert client.take(64) == (["gh"], None) and client.backlog == 0 and not client.outbox
