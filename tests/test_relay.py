"""The live relay (``record --serve``, issue 17): the recorder's one upstream connection shared with local clients.

Upstream is the mock (``replay --simulate``'s server, in process, keeping every REAL frame it wrote): what a
local client of the relay receives is compared with what upstream sent, byte for byte, and the upstream
connection count says the relay never opened a second one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import Awaitable, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
from _cli import URL, cli_argv
from _relay import SEED_TOKEN_LINE, relay_token
from _seedclients import SEEDS, check_seed_output, run_seed_client, seed_files, seed_type
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay.contracts import EncodedFrame
from kiwoom_tape.replay.live import LiveSource
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.envelopes import encode_real_frame
from kiwoom_tape.schemas.protocol import encode_real_row
from websockets.asyncio.client import ClientConnection, connect

from kiwoom_tape.testing import loopback_recorder, read_table, run_recorder

MORNING = 10 * 3600.0
"""10:00 KST: KRX continuous trading, 0D rows for every stock item (docs/protocol.md 5.3)."""


def run(coro: Awaitable[None], timeout: float = 60) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


async def login_reg(ws: ClientConnection, items: list[str], types: list[str], token: str = "local-token") -> None:
    """LOGIN with ``token`` (the relay's: one it issued), then REG ``items`` x ``types``; both acknowledged with
    return_code 0."""
    await ws.send(json.dumps({"trnm": "LOGIN", "token": token}))
    assert json.loads(await recv(ws))["return_code"] == 0
    await ws.send(json.dumps({"trnm": "REG", "grp_no": "1", "refresh": "1",
                              "data": [{"item": items, "type": types}]}))
    ack = json.loads(await recv(ws))
    assert ack["trnm"] == "REG" and ack["return_code"] == 0, ack


async def recv(ws: ClientConnection, wait: float = 10.0) -> str:
    """The next frame that is not a PING (PINGs are echoed, as Kiwoom clients do)."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), wait)
        assert isinstance(raw, str)
        if '"trnm":"PING"' in raw.replace(" ", ""):
            await ws.send(raw)
            continue
        return raw


def row(item: str, price: int) -> str:
    return encode_real_row("0D", item, json.dumps({"21": "100000", "41": f"+{price}"}))


def test_live_source_serves_pushed_frames_exactly_or_as_their_rows() -> None:
    """A pushed frame goes out byte-exact to a client that registered every row, as its rows' own texts to a
    client that registered some; a frame that is not REAL rows is skipped; REG/forget reach the callbacks."""
    added: list[str] = []
    removed: list[str] = []

    async def main() -> None:
        source = LiveSource(on_add=added.append, on_remove=removed.append)
        async with serve(source, port=0, forget_after=0.2) as server, connect(server.url) as ws:
            await login_reg(ws, ["005930"], ["0D"])
            assert added == ["005930"]
            a, b = row("005930", 1000), row("000660", 2000)
            whole = encode_real_frame([a]).encode()
            source.push(b'{"trnm":"PING"}')  # not REAL rows: skipped
            source.push(encode_real_frame([a, b]).encode())
            source.push(whole)
            assert await recv(ws) == encode_real_frame([a])  # the 005930 row of the mixed frame
            assert (await recv(ws)).encode() == whole  # the whole frame, as pushed
            assert source.skipped == 1 and source.pushed == 3
            await ws.send(json.dumps({"trnm": "REMOVE", "grp_no": "1", "data": [{"item": ["005930"], "type": ["0D"]}]}))
            assert json.loads(await recv(ws))["return_code"] == 0
            while not removed:  # noqa: ASYNC110  # the server's sweep forgets it within a second or so
                await asyncio.sleep(0.05)
            assert removed == ["005930"]

    run(main(), timeout=20)


def test_live_source_not_served_drops_the_oldest_instead_of_growing() -> None:
    """Frames pushed while nothing serves them stay bounded by ``max_pending``; the newest are kept, in order."""
    served: list[bytes] = []

    class Collect:
        async def frames(self, frames: Sequence[EncodedFrame], /, *, wait: bool = False) -> None:
            served.extend(f.data for f in frames)

    async def main() -> None:
        source = LiveSource(max_pending=4)
        frames = [encode_real_frame([row("005930", 1000 + n)]).encode() for n in range(10)]
        for f in frames:
            source.push(f)
        assert source.dropped == 6 and source.pushed == 10  # at most 4 waiting: the older half went, three times
        task = asyncio.create_task(source.run(Collect()))  # type: ignore[arg-type]  # frames only
        while len(served) < 10 - source.dropped:  # noqa: ASYNC110  # the task fills it
            await asyncio.sleep(0.01)
        task.cancel()
        assert served == frames[source.dropped:]

    run(main(), timeout=10)


def test_recorder_taps_what_it_journals_and_registers_items_while_running(tmp_path: Path) -> None:
    """``on_real`` sees every REAL frame the recording holds, in order; ``add_items`` REGs on the live
    connection and again after a reconnect; ``remove_items`` REMOVEs; events say who asked."""
    tapped: list[bytes] = []

    async def main() -> None:
        market = SimulatedMarket(seed=21, items=["005930", "000660"], start=MORNING)
        async with serve(SimSource(market), port=0, keep_sent=True) as server:
            rec = loopback_recorder(server.url, tmp_path, ["005930"], ["0D"])
            rec.on_real = tapped.append

            async def until(rec: Recorder) -> None:
                await wait_for_rows(tapped, "005930")
                assert rec.add_items(["000660", "005930"], ["0D"], by="test") == ["000660"]
                await wait_for_rows(tapped, "000660")
                await server.drop_all()  # a reconnect registers it again
                while server.stats.logins < 2:  # noqa: ASYNC110  # a server counter
                    await asyncio.sleep(0.05)
                n = len(tapped)
                await wait_for_rows(tapped, "000660", after=n)
                assert rec.remove_items(["000660"], by="test") == ["000660"]
                await asyncio.sleep(0.5)  # the REMOVE went out and was applied
                assert server.sent is not None
                mark = len(server.sent)
                await asyncio.sleep(1.0)
                later = [text for _, _, text in server.sent[mark:]]
                assert any('"005930"' in t for t in later) and not any('"000660"' in t for t in later)

            await run_recorder(rec, until)
            assert server.sent is not None
            sent_to_second = [text for conn, _, text in server.sent if conn == 2]
        frames = [r for r in read_table(tmp_path, "frames") if r["direction"] == "in" and r["trnm"] == "REAL"]
        frames.sort(key=lambda r: r["seq"])
        assert [r["text"].encode() for r in frames] == tapped
        assert any('"000660"' in text for text in sent_to_second)  # REGistered again after the reconnect
        events = [(e["kind"], json.loads(e["detail"])) for e in read_table(tmp_path, "events")]
        assert ("items_added", {"items": ["000660"], "types": ["0D"], "by": "test"}) in events
        assert ("items_removed", {"items": ["000660"], "by": "test"}) in events
        outs = [r["text"] for r in read_table(tmp_path, "frames") if r["direction"] == "out"]
        assert any('"REMOVE"' in t and "000660" in t for t in outs)

    run(main())


async def wait_for_rows(tapped: list[bytes], item: str, after: int = 0) -> None:
    while not any(f'"item":"{item}"'.encode() in f for f in tapped[after:]):  # noqa: ASYNC110  # a list the tap fills
        await asyncio.sleep(0.05)


def test_record_serve_relays_upstream_frames_and_a_local_reg_reaches_upstream(tmp_path: Path) -> None:
    """``record --items 005930 --serve 0``: a local client registering 005930 gets upstream's frames byte-exact;
    the official 0D sample client registering 000660, with a relay token in place of its token placeholder, gets
    000660 rows; the recording holds both; upstream saw one connection."""
    out = tmp_path / "data"
    docs = [d for d in (p.read_text(encoding="utf-8") for p in seed_files()) if seed_type(d) == "0D"]

    async def main() -> None:
        market = SimulatedMarket(seed=22, items=["005930", "000660"], start=MORNING)
        async with serve(SimSource(market), port=0, keep_sent=True) as upstream:
            cmd = cli_argv("record", "--items", "005930", "--types", "0D", "--url", upstream.url, "--out", str(out),
                           "--serve", "0", "--fsync-interval", "0.05", "-q")
            env = {**os.environ, "KIWOOM_APPKEY": "relay-test-appkey", "KIWOOM_SECRETKEY": "relay-test-secret"}
            env.pop("KIWOOM_TOKEN", None)
            proc = await asyncio.create_subprocess_exec(*cmd, stderr=asyncio.subprocess.PIPE, env=env)
            assert proc.stderr is not None
            try:
                url = await relay_url(proc.stderr)
                token = await relay_token(url, "relay-test-appkey", "relay-test-secret")  # as the bot would
                async with connect(url) as ws:
                    await login_reg(ws, ["005930"], ["0D"], token)
                    got = [await recv(ws) for _ in range(5)]
                assert upstream.sent is not None
                sent = [text for conn, _, text in upstream.sent if conn == 1]
                first = sent.index(got[0])  # byte-exact, in order, none skipped
                assert sent[first:first + len(got)] == got
                if docs:
                    assert SEED_TOKEN_LINE in docs[0]
                    doc = docs[0].replace("'item': ['005930']", "'item': ['000660']")
                    doc = doc.replace(SEED_TOKEN_LINE, f"ACCESS_TOKEN = {token!r}")  # the line a user edits
                    output = await run_seed_client(doc, url, tmp_path, frames=3, seconds=30)
                    check_seed_output(output, "0D", item="000660")
                else:  # no seeds (../shared absent): a plain client does what the sample client does
                    async with connect(url) as ws:
                        await login_reg(ws, ["000660"], ["0D"], token)
                        assert '"item":"000660"' in await recv(ws)
            finally:
                proc.send_signal(signal.SIGINT)
                await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0
            assert upstream.stats.connections == 1 and upstream.stats.logins == 1
            assert upstream.sent is not None
            sent = [text for _, _, text in upstream.sent]
        frames = [r for r in read_table(out, "frames") if r["direction"] == "in" and r["trnm"] == "REAL"]
        assert [r["text"] for r in sorted(frames, key=lambda r: r["seq"])] == sent  # as a plain record stores it
        items = {r["item"] for r in read_table(out, "orderbook")}
        assert {"005930", "000660"} <= items
        events = [json.loads(e["detail"]) for e in read_table(out, "events") if e["kind"] == "items_added"]
        assert events and events[0]["items"] == ["000660"]
        assert re.fullmatch(r"relay client #\d+ 127\.0\.0\.1:\d+", events[0]["by"])  # who asked

    run(main(), timeout=90)


async def relay_url(stderr: asyncio.StreamReader) -> str:
    """The relay's URL, from the line ``record --serve`` prints when it starts serving."""
    lines: list[str] = []
    while True:
        line = (await stderr.readline()).decode()
        assert line, "record exited before serving:\n" + "".join(lines)
        lines.append(line)
        m = URL.search(line) if line.startswith("relay: ") else None
        if m:
            return m.group(1)


def test_record_serve_refuses_a_bad_address() -> None:
    from click.testing import CliRunner

    from kiwoom_tape.relay_cli import record_command

    res = CliRunner().invoke(record_command, ["--items", "005930", "--serve", "host:port"])
    assert res.exit_code == 2 and "is not [HOST:]PORT; write e.g. 10001" in res.output


@pytest.mark.skipif(not seed_files(), reason=f"no seed documents at {SEEDS}")
def test_the_sample_client_patch_applies() -> None:
    """The 0D seed registers 005930 in the line the relay test rewrites (so that test uses the sample client)."""
    docs = [p.read_text(encoding="utf-8") for p in seed_files()]
    assert any(seed_type(d) == "0D" and "'item': ['005930']" in d for d in docs)


class FakeClient:
    """What :class:`kiwoom_tape.relay_regs.Registrations` reads of a local client: its number, address, repr."""

    def __init__(self, number: int, host: str = "127.0.0.1", port: int = 5000) -> None:
        self.number = number
        self.conn = SimpleNamespace(remote_address=(host, port))
        self.peer = f"{host}:{port}"

    def __repr__(self) -> str:
        return f"client #{self.number} {self.peer}"


def test_registrations_add_new_items_and_types_where_there_is_room_and_keep_the_pairs_of_record(
    tmp_path: Path,
) -> None:
    """A local client's new pairs (a new item, a new type of a recorded item, the empty item of 00) are added on
    the connection with room for them; past 200 items on every connection the REG is refused with Kiwoom's 105115;
    00/04 are refused to a client not on loopback; pairs no client has are removed after ``forget_after``, the
    pairs of record never; events name the client."""
    from kiwoom_tape.schemas.protocol import RC_ERROR, RC_ITEM_CAP

    from kiwoom_tape.relay_regs import PRIVATE_REFUSED, Registrations

    full = loopback_recorder("ws://127.0.0.1:9/api/dostk/websocket", tmp_path / "a",
                             [f"{n:06d}" for n in range(200)], ["0D"], run_id="full")
    rec = loopback_recorder("ws://127.0.0.1:9/api/dostk/websocket", tmp_path / "b", ["005930"], ["0B", "0D", "1h"],
                            run_id="room")
    one, two, far = FakeClient(1), FakeClient(2, port=5001), FakeClient(3, "192.0.2.7")
    now = [0.0]

    async def main() -> None:
        regs = Registrations([full, rec], forget_after=10, clock=lambda: now[0])
        asked = frozenset({("000660", "0D"), ("000660", "0E"), ("000001", "0D"), ("005930", "0D")})
        assert await regs.admit(one, asked) is None  # type: ignore[arg-type]  # a fake client
        assert await regs.admit(two, frozenset({("", "00")})) is None  # type: ignore[arg-type]
        assert await regs.admit(far, frozenset({("", "04")})) == (RC_ERROR, PRIVATE_REFUSED)  # type: ignore[arg-type]
        pairs = {(i, t) for sub in rec.subscriptions for i in sub.items for t in sub.types}
        assert {("000660", "0D"), ("000660", "0E"), ("", "00")} <= pairs and ("000660", "0B") not in pairs
        assert ("000001", "0D") not in pairs  # full records it already
        assert len({i for sub in full.subscriptions for i in sub.items}) == 200
        alone = Registrations([full])
        assert await alone.admit(one, frozenset({("000660", "0D")})) == (  # type: ignore[arg-type]
            RC_ITEM_CAP, "등록 허용 개수(200) 초과")
        regs.registered(one, asked)  # type: ignore[arg-type]
        regs.registered(two, frozenset({("", "00"), ("000660", "0D")}))  # type: ignore[arg-type]
        now[0] = 20.0
        assert regs.sweep() == 0  # every added pair is wanted
        regs.registered(one, frozenset())  # type: ignore[arg-type]  # gone: 000660 0E is nobody's, 0D is two's
        now[0] = 25.0
        assert regs.sweep() == 0  # not for forget_after yet
        now[0] = 30.0
        assert regs.sweep() == 1
        regs.registered(two, frozenset())  # type: ignore[arg-type]
        now[0] = 40.0
        assert regs.sweep() == 2
        assert {(i, t) for sub in rec.subscriptions for i in sub.items for t in sub.types} == {
            ("005930", "0B"), ("005930", "0D"), ("005930", "1h")}  # the pairs of record, and only them

    try:
        run(main(), timeout=20)
        rec.store.tick()
    finally:
        full.store.close()
        rec.store.close()
    events = [(e["kind"], json.loads(e["detail"])) for e in read_table(tmp_path / "b", "events")]
    by1, by2 = "relay client #1 127.0.0.1:5000", "relay client #2 127.0.0.1:5001"
    assert events == [
        ("items_added", {"items": ["000660"], "types": ["0D", "0E"], "by": by1}),
        ("items_added", {"items": [""], "types": ["00"], "by": by2}),
        ("items_removed", {"items": ["000660"], "types": ["0E"], "by": by1}),
        ("items_removed", {"items": [""], "types": ["00"], "by": by2}),  # one event per data entry
        ("items_removed", {"items": ["000660"], "types": ["0D"], "by": by2}),
    ]


def test_record_serve_on_a_port_in_use_says_so_and_leaves_no_journal(tmp_path: Path) -> None:
    import socket

    from click.testing import CliRunner

    from kiwoom_tape.relay_cli import record_command

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = CliRunner().invoke(record_command, ["--items", "005930", "--serve", str(port), "--out", str(tmp_path),
                                                  "--url", "ws://127.0.0.1:9/api/dostk/websocket", "-q"])
    assert res.exit_code == 1, res.output
    assert f"record --serve cannot listen on 127.0.0.1:{port}" in res.output and "pick another port" in res.output
    assert "Traceback" not in res.output
    assert not list(tmp_path.glob("_journal/*"))  # the store was closed: nothing left to recover


def test_an_upstream_reconnect_keeps_local_clients_connected_and_the_gap_is_in_events(tmp_path: Path) -> None:
    """Upstream drops the recorder: the local client keeps its connection and gets the frames of the new upstream
    connection byte-exact; ``events`` has the gap (issue 17)."""
    from kiwoom_tape.relay import relaying

    async def main() -> None:
        market = SimulatedMarket(seed=23, items=["005930"], start=MORNING)
        async with serve(SimSource(market), port=0, keep_sent=True) as upstream:
            rec = loopback_recorder(upstream.url, tmp_path, ["005930"], ["0D"])
            got: list[str] = []

            async def until(rec: Recorder) -> None:
                async with relaying([rec]) as relay, connect(relay.url) as ws:
                    await login_reg(ws, ["005930"], ["0D"], relay.issue_token())
                    got.append(await recv(ws))
                    await upstream.drop_all()
                    while upstream.stats.logins < 2:  # noqa: ASYNC110  # a server counter
                        await asyncio.sleep(0.05)
                    assert upstream.sent is not None
                    while not got or got[-1] not in [t for c, _, t in upstream.sent if c == 2]:
                        got.append(await recv(ws))  # on the same local connection
                    assert relay.stats.connections == 1

            await run_recorder(rec, until)
            assert upstream.sent is not None
            by_conn = {c: [t for c2, _, t in upstream.sent if c2 == c] for c in (1, 2)}
        assert got[0] in by_conn[1] and got[-1] in by_conn[2]
        assert all(f in by_conn[1] or f in by_conn[2] for f in got)
        kinds = [e["kind"] for e in read_table(tmp_path, "events")]
        assert "gap_start" in kinds and "gap_end" in kinds

    run(main())


def test_relay_refuses_to_serve_account_types_beyond_loopback(tmp_path: Path) -> None:
    """00/04 rows are the user's private data: never served to other machines; a loopback relay serves them."""
    from kiwoom_tape.schemas.errors import KiwoomTapeError

    from kiwoom_tape.relay import relaying

    async def main() -> None:
        rec = loopback_recorder("ws://127.0.0.1:9/api/dostk/websocket", tmp_path, ["005930"], ["0D"], run_id="r")
        rec.add_items([""], ["00"], by="test")
        try:
            with pytest.raises(KiwoomTapeError, match=r"would serve your account data \(00\) to other machines"):
                async with relaying([rec], "0.0.0.0", 0):
                    pass
            async with relaying([rec], "127.0.0.1", 0) as relay:
                assert relay.port > 0
        finally:
            rec.store.close()

    run(main(), timeout=20)
