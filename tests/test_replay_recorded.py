"""Replaying a recorded day (issue 4): byte-exact, paced, seekable, for many clients; CLI, /control, fixture.

Two kinds of tape: a real one (the simulated market recorded by the recorder, once per module) for the
round trip, the 1x pace and the official sample clients; and small synthetic ``frames`` files written
here, with known timestamps and deliberately varied JSON formatting, for everything that must be exact
(partial frames, control, merging of runs, errors). Loopback only, port 0, every test bounded in time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _cli import started_replay
from _seedclients import SEEDS, check_seed_output, run_seed_client, seed_files, seed_type
from _wire import drain
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay.control import Step
from kiwoom_tape.replay.recorded import RecordedSource
from kiwoom_tape.replay.recording import kst_day_start_ns
from kiwoom_tape.replay.server import Server, serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.errors import ProtocolError
from kiwoom_tape.schemas.realframe import parse_real_frame
from kiwoom_tape.schemas.tables import TABLES_V1
from kiwoom_tape.schemas.versions import upgrade
from test_record import ITEMS, real_frames, record_for, table
from websockets.asyncio.client import ClientConnection, connect

from kiwoom_tape.cli import cli

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
REPLAY_MD = (ROOT / "docs" / "replay.md").read_text(encoding="utf-8")
NS = 1_000_000_000
TIMEOUT = 30.0

# 15:29:30 at 150x for ~5 s: 005930 KRX 0D until 15:30, _NX 0D throughout, KRX 0E from 15:40 (docs/protocol.md 5.3)
SIM_START = 15 * 3600 + 29 * 60 + 30
SIM_SPEED = 150.0
RECORD_SECONDS = 5.3


def run(coro: Awaitable[Any], timeout: float = TIMEOUT) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


# --------------------------------------------------------------------------------------------------
# Tapes


@pytest.fixture(scope="module")
def recorded_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated market recorded for ~5 s by the recorder: a real dataset."""
    root = tmp_path_factory.mktemp("recorded")

    async def main() -> None:
        market = SimulatedMarket(seed=11, items=ITEMS, start=SIM_START)
        async with serve(SimSource(market, speed=SIM_SPEED), port=0) as server:
            await record_for(server, root, RECORD_SECONDS)

    run(main())
    rows = [json.loads(t)["data"] for t in real_frames(root)]
    kinds = {(r["item"], r["type"]) for frame in rows for r in frame}
    assert {("005930", "0D"), ("005930", "0E"), ("005930_NX", "0D")} <= kinds, kinds
    return root


D = dt.date(2026, 1, 5)
T9 = kst_day_start_ns(D) + 9 * 3600 * NS  # 09:00:00 KST on D

STYLES = [
    ('{"data":[', ",", '],"trnm":"REAL"}'),  # Kiwoom's measured order, compact
    ('{"trnm": "REAL", "data": [', ", ", "]}"),  # the official examples' order, Python-style spacing
    ('{\n  "data": [\n    ', ",\n    ", '\n  ],\n  "trnm": "REAL"\n}'),  # pretty-printed
]


def row_text(item: str, rtype: str, n: int, style: int = 0, pad: int = 0) -> str:
    values = json.dumps({"21": f"0900{n % 60:02d}", "41": f"+{1000 + n}", "51": f"-{990 + n}", "pad": "x" * pad},
                        separators=(",", ":"))
    name = "주식호가잔량" if rtype == "0D" else "주식시간외호가"
    if style == 1:
        return f'{{"type": "{rtype}", "item": "{item}", "name": "{name}", "values": {values}}}'
    return f'{{"values":{values},"type":"{rtype}","name":"{name}","item":"{item}"}}'


@dataclass
class TapeFrame:
    ts: int
    rows: list[tuple[str, str, str]]  # (item, type, text)
    style: int
    text: str

    def expected(self, wants: Callable[[str, str], bool]) -> str | None:
        """What a client with this registration must receive: None, the text, or the rebuilt frame."""
        kept = [t for i, ty, t in self.rows if wants(i, ty)]
        if not kept:
            return None
        if len(kept) == len(self.rows):
            return self.text
        prefix, sep, suffix = STYLES[self.style]
        return prefix + sep.join(kept) + suffix


def make_frame(ts: int, rows: Sequence[tuple[str, str]], n: int, style: int, pad: int = 0) -> TapeFrame:
    texts = [(i, t, row_text(i, t, n, style % 2, pad)) for i, t in rows]
    prefix, sep, suffix = STYLES[style]
    return TapeFrame(ts, texts, style, prefix + sep.join(t for _, _, t in texts) + suffix)


def write_part(root: Path, run_id: str, segment: int, records: Sequence[tuple[int, str, str, str | None]],
               date: dt.date = D, seq0: int = 0, version: int = 2) -> Path:
    """One frames part file of schema ``version``: records of (recv_ts ns, direction, text, trnm)."""
    rows = [
        {"recv_ts": ts, "run_id": run_id, "seq": seq0 + k, "direction": d, "text": text, "parse_error": None,
         "trnm": trnm}
        for k, (ts, d, text, trnm) in enumerate(records)
    ]
    t = pa.Table.from_pylist(rows, schema=TABLES_V1["frames"])
    if version == 2:
        t = upgrade(t, "frames")
    path = Path(layout.partition_dir(str(root), "frames", date)) / layout.part_filename(run_id, segment, "frames")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, path, row_group_size=64)
    return path


def write_tape(root: Path, frames: Sequence[TapeFrame], run_id: str = "synthrun") -> None:
    """The frames, plus what a real recording has around them (LOGIN, REG, PING, a broken REAL)."""
    t0 = frames[0].ts
    records: list[tuple[int, str, str, str | None]] = [
        (t0 - 3 * NS, "out", '{"trnm":"LOGIN","token":"***"}', "LOGIN"),
        (t0 - 3 * NS, "in", '{"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}', "LOGIN"),
        (t0 - 2 * NS, "in", '{"trnm":"REG","return_code":0,"return_msg":""}', "REG"),
    ]
    for k, f in enumerate(frames):
        records.append((f.ts, "in", f.text, "REAL"))
        if k == 2:
            records.append((f.ts, "in", '{"trnm":"PING"}', "PING"))
            records.append((f.ts, "out", '{"trnm":"PING"}', "PING"))
            records.append((f.ts, "in", '{"trnm":"REAL","data":[{"values":{}}]}', "REAL"))  # no item: skipped
    write_part(root, run_id, 0, records)


A, B, C = "005930", "000660", "005930_NX"


def mixed_tape(root: Path, n: int = 40, step_ms: int = 100) -> list[TapeFrame]:
    """``n`` frames 100 ms apart from 09:00:00, mixing items, types and formatting."""
    shapes = [[(A, "0D"), (B, "0D"), (C, "0D"), (A, "0E")], [(A, "0D"), (B, "0D")], [(C, "0D")],
              [(B, "0E"), (A, "0D"), (C, "0D")]]
    frames = [make_frame(T9 + k * step_ms * 1_000_000, shapes[k % 4], k, k % 3) for k in range(n)]
    write_tape(root, frames)
    return frames


# --------------------------------------------------------------------------------------------------
# A plain client (the websockets library, as a strategy would use it)


async def login_reg(ws: ClientConnection, items: list[str], types: list[str], *, grp: str = "1",
                    refresh: str = "1", trnm: str = "REG", login: bool = True) -> None:
    if login:
        await ws.send('{"trnm":"LOGIN","token":"t"}')
        assert json.loads(await ws.recv())["return_code"] == 0
    msg: dict[str, Any] = {"trnm": trnm, "grp_no": grp, "data": [{"item": items, "type": types}]}
    if trnm == "REG":
        msg["refresh"] = refresh
    await ws.send(json.dumps(msg))
    while True:
        reply = json.loads(await ws.recv())
        if reply["trnm"] == "PING":
            await ws.send(json.dumps(reply))
            continue
        assert reply == {"trnm": trnm, "return_code": 0, "return_msg": ""}, reply
        return


async def recv_reals(ws: ClientConnection, n: int, *, quiet: float = 0.0, wait: float = 10.0) -> list[str]:
    """``n`` REAL frames (PINGs echoed), then nothing more for ``quiet`` seconds."""
    got: list[str] = []
    while len(got) < n:
        raw = await asyncio.wait_for(ws.recv(), wait)
        assert isinstance(raw, str)
        if '"PING"' in raw[:20]:
            await ws.send(raw)
        else:
            got.append(raw)
    if quiet:
        extra = await drain(ws, quiet)
        assert extra == [], f"{len(extra)} frames more than the {n} expected"
    return got


async def http(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


async def control(server: Server, cmd: str, **args: Any) -> dict[str, Any]:
    status, body = await http(server.port, "POST", "/control", json.dumps({"cmd": cmd, **args}).encode())
    assert status == 200, body
    return body


# --------------------------------------------------------------------------------------------------
# The pure part: splitting frames


def test_parse_real_frame_keeps_every_byte_and_rebuilds_subsets() -> None:
    for style in range(3):
        f = make_frame(T9, [(A, "0D"), (B, "0E"), (C, "0D")], 7, style)
        rf = parse_real_frame(f.text)
        assert [(r.item, r.type) for r in rf.rows] == [(A, "0D"), (B, "0E"), (C, "0D")]
        assert [r.text for r in rf.rows] == [t for _, _, t in f.rows]
        assert rf.subset(rf.rows) == f.text
        assert rf.subset([rf.rows[0], rf.rows[2]]) == f.expected(lambda i, t: i != B)
        assert rf.only([rf.rows[1]]).text == f.expected(lambda i, t: i == B)
    for bad in ["not json", '{"trnm":"PING"}', '{"trnm":"REAL","data":[{"values":{}}]}', '{"trnm":"REAL"}', "[]"]:
        with pytest.raises(ProtocolError):
            parse_real_frame(bad)
    # a row's text repeated outside "data": still exact as a whole, canonical when cut
    odd = '{"x":[{"item":"A","type":"0D"}],"data":[{"item":"A","type":"0D"},{"item":"B","type":"0D"}],"trnm":"REAL"}'
    rf = parse_real_frame(odd)
    assert rf.subset(rf.rows[1:]) == '{"data":[{"item":"B","type":"0D"}],"trnm":"REAL"}'


_json_text = st.text(st.characters(codec="utf-8", exclude_characters='"\\'), max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(st.sampled_from([A, B, C]), st.sampled_from(["0D", "0E"]), _json_text), min_size=1,
                  max_size=6),
    style=st.integers(0, 2),
    mask=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_any_subset_is_the_original_rows_in_the_original_formatting(
    rows: list[tuple[str, str, str]], style: int, mask: list[bool]
) -> None:
    prefix, sep, suffix = STYLES[style]
    texts = [json.dumps({"values": {"41": v}, "item": i, "type": t}, ensure_ascii=style == 1) for i, t, v in rows]
    text = prefix + sep.join(texts) + suffix
    rf = parse_real_frame(text)
    assert rf.subset(rf.rows) == text
    kept = [r for r, keep in zip(rf.rows, mask, strict=False) if keep]
    if kept:
        assert rf.subset(kept) == prefix + sep.join(texts[r.index] for r in kept) + suffix
        assert json.loads(rf.subset(kept))["data"] == [json.loads(texts[r.index]) for r in kept]


# --------------------------------------------------------------------------------------------------
# Acceptance: round trip, pace, per-client rows, the official clients


def _normalized(root: Path, name: str) -> list[dict[str, Any]]:
    rows = sorted(table(root, name), key=lambda r: (r["frame_seq"], r["row_idx"]))
    return [{k: v for k, v in r.items() if k not in ("recv_ts", "run_id", "frame_seq", "date")} for r in rows]


def rerecord(recorded: Path, out: Path, n_rows: int, record: Callable[..., Awaitable[Recorder]] = record_for) -> int:
    """Replay ``recorded`` at max speed and ``record(server, out, seconds, during=...)`` it until its ``n_rows``
    rows are stored; returns the frames the replay played."""

    async def main() -> int:
        source = RecordedSource(recorded, speed=None, start_delay=0.3)
        async with serve(source, port=0) as server:

            async def until_all_recorded(rec: Recorder) -> None:
                # polls counters of two other tasks; neither offers an event to wait on
                while source.status()["state"] != "ended" or rec.stats.real_rows < n_rows:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)

            await record(server, out, 0.1, during=until_all_recorded)
            return int(source.status()["frames_played"])

    return int(run(main()))


def test_round_trip_at_max_speed_gives_the_same_frames_and_tables(recorded_day: Path, tmp_path: Path) -> None:
    original = real_frames(recorded_day)
    n_rows = sum(len(json.loads(t)["data"]) for t in original)
    assert rerecord(recorded_day, tmp_path, n_rows) == len(original)
    assert real_frames(tmp_path) == original  # byte for byte, frame for frame, in order
    for name in ("orderbook", "afterhours"):
        again = _normalized(tmp_path, name)
        assert again == _normalized(recorded_day, name) and again, name


def test_1x_delivers_every_frame_in_order_and_not_early(recorded_day: Path) -> None:
    original = real_frames(recorded_day)
    recv = sorted(
        r["recv_ts"] for r in table(recorded_day, "frames") if r["trnm"] == "REAL" and r["direction"] == "in"
    )
    span = (recv[-1] - recv[0]) / NS
    assert span > 4.5

    async def main() -> tuple[list[str], float]:
        async with serve(RecordedSource(recorded_day, start_delay=0.2), port=0) as server, connect(server.url) as ws:
            await login_reg(ws, ITEMS, ["0D", "0E"])
            got = await recv_reals(ws, 1)
            t0 = t1 = time.monotonic()
            while len(got) < len(original):
                got += await recv_reals(ws, 1)
                t1 = time.monotonic()
            assert await drain(ws, 0.3) == []
            return got, t1 - t0

    got, elapsed = run(main())
    assert got == original
    assert elapsed >= span - 0.05, f"finished early: {elapsed:.3f} s for {span:.3f} s of tape"
    assert elapsed >= 4.5 and elapsed < span + 1.5


def test_two_clients_remove_and_refresh_0_each_get_exactly_their_rows(tmp_path: Path) -> None:
    frames = mixed_tape(tmp_path, n=40)

    async def main() -> None:
        source = RecordedSource(tmp_path, speed=None, start_delay=60)  # the test steps the tape itself
        async with serve(source, port=0) as server, connect(server.url) as one, connect(server.url) as two:
            await login_reg(one, [A, B], ["0D"])
            await login_reg(two, [B], ["0D", "0E"])
            await login_reg(two, [C], ["0D"], grp="2", login=False)
            source.apply(Step(12))
            want1 = [e for f in frames[:12] if (e := f.expected(lambda i, t: i in (A, B) and t == "0D"))]
            want2 = [e for f in frames[:12] if (e := f.expected(lambda i, t: i == B or (i, t) == (C, "0D")))]
            assert await recv_reals(one, len(want1), quiet=0.2) == want1
            assert await recv_reals(two, len(want2), quiet=0.2) == want2
            # one REMOVEs B; two replaces group 1 (refresh 0) with A 0E, keeps group 2 (C 0D)
            await login_reg(one, [B], ["0D"], trnm="REMOVE", login=False)
            await login_reg(two, [A], ["0E"], refresh="0", login=False)
            source.apply(Step(28))
            want1 = [e for f in frames[12:] if (e := f.expected(lambda i, t: (i, t) == (A, "0D")))]
            want2 = [e for f in frames[12:] if (e := f.expected(lambda i, t: (i, t) in ((A, "0E"), (C, "0D"))))]
            assert await recv_reals(one, len(want1), quiet=0.2) == want1
            assert await recv_reals(two, len(want2), quiet=0.2) == want2
            assert source.status()["skipped"] == 1  # the REAL frame without an item

    run(main())


@pytest.mark.skipif(not seed_files(), reason=f"no seed documents at {SEEDS} (../shared is absent)")
@pytest.mark.parametrize("seed", seed_files(), ids=lambda p: p.name)
def test_official_sample_clients_run_against_a_recorded_day(seed: Path, recorded_day: Path, tmp_path: Path) -> None:
    doc = seed.read_text(encoding="utf-8")

    async def main() -> str:
        async with serve(RecordedSource(recorded_day, speed=20.0, start_delay=0.2), port=0) as server:
            return await run_seed_client(doc, server.url, tmp_path)

    # every REAL line is 005930 of the seed's type: frames mixing items were cut to the registered rows
    check_seed_output(run(main()), seed_type(doc))


# --------------------------------------------------------------------------------------------------
# Control, end of tape, loop, merging, backpressure


def test_control_pause_step_seek_speed_and_status(tmp_path: Path) -> None:
    frames = [make_frame(T9 + k * 100_000_000, [(A, "0D")], k, k % 3) for k in range(30)]
    write_tape(tmp_path, frames)
    texts = [f.text for f in frames]

    async def main() -> None:
        source = RecordedSource(tmp_path, speed=1.0, start_delay=0.1)
        async with serve(source, port=0) as server:
            status, st = await http(server.port, "GET", "/control")
            assert status == 200 and st["state"] == "waiting" and st["date"] == "2026-01-05"
            assert st["recording"]["first"] == "08:59:57.000" and st["recording"]["last"] == "09:00:02.900"
            async with connect(server.url) as ws:
                await login_reg(ws, [A], ["0D"])
                got = await recv_reals(ws, 3)
                st = await control(server, "pause")
                assert st["state"] == "paused" and st["server"]["clients"] == 1
                got += await drain(ws, 0.3)  # what was already on its way
                assert await drain(ws, 0.4) == []  # and then nothing: paused
                n = len(got)
                assert got == texts[:n] and n < 10
                # step 3: exactly the next three, at once, still paused
                st = await control(server, "step", n=3)
                assert st["state"] == "paused"
                assert await recv_reals(ws, 3, quiet=0.3) == texts[n : n + 3]
                st = (await http(server.port, "GET", "/control"))[1]
                assert st["last_frame"] == f"09:00:00.{(n + 2) % 10}00" and st["step_pending"] == 0
                # seek (paused: stays paused), then step 1: the frame at the new time
                st = await control(server, "seek", to="09:00:02")
                assert st["state"] == "paused" and st["position"] == "09:00:02.000"
                assert await drain(ws, 0.2) == []
                await control(server, "step")
                assert await recv_reals(ws, 1) == [texts[20]]
                # 10x, resume: the other nine in ~0.09 s instead of 0.9 s, then the end of the tape
                await control(server, "speed", value=10)
                t0 = time.monotonic()
                st = await control(server, "resume")
                assert st["state"] == "playing" and st["speed"] == 10
                assert await recv_reals(ws, 9) == texts[21:]
                assert time.monotonic() - t0 < 0.6
                await asyncio.sleep(0.1)
                st = await control(server, "status")
                assert st["state"] == "ended" and st["position"] == "09:00:02.900"
                assert st["frames_played"] == n + 3 + 1 + 9  # the seek skipped the rest
                # after the end: a seek plays again (max speed: everything from 09:00:01 at once)
                await control(server, "speed", value="max")
                await control(server, "seek", to="09:00:01")
                assert await recv_reals(ws, 20, quiet=0.2) == texts[10:]
                # bad commands: 400 with a message naming the fix
                for body, needle in [
                    (b'{"cmd":"rewind"}', "use one of"),
                    (b'{"cmd":"seek","to":"25:00"}', "time of day"),
                    (b'{"cmd":"seek"}', '"to"'),
                    (b'{"cmd":"speed","value":0}', "max"),
                    (b'{"cmd":"step","n":-1}', "whole number"),
                    (b"pause", "not JSON"),
                ]:
                    status, reply = await http(server.port, "POST", "/control", body)
                    assert status == 400 and needle in reply["error"], (body, reply)
                status, reply = await http(server.port, "GET", "/control?cmd=pause")
                assert status == 400 and "POST" in reply["error"]
                # query parameters work as well as a JSON body
                status, reply = await http(server.port, "POST", "/control?cmd=step&n=2")
                assert status == 200 and reply["state"] == "paused"
        async with serve(SimSource(SimulatedMarket(items=[A], start=10 * 3600)), port=0) as sim:
            status, reply = await http(sim.port, "POST", "/control", b'{"cmd":"pause"}')
            assert status == 404 and "recorded" in reply["error"]
            # the simulated market's clock and what was served, read-only: what tests wait on rather than wall time
            async with connect(sim.url) as ws:
                await login_reg(ws, [A], ["0D"])
                await recv_reals(ws, 1)
                status, st = await http(sim.port, "GET", "/control")
            assert status == 200 and st["server"]["items_served"] == st["server"]["logged_in"] == 1
            assert 10 * 3600 < st["server"]["market_time"] <= sim.market_time()

    run(main())


def test_end_of_tape_keeps_connections_open_and_loop_starts_over(tmp_path: Path) -> None:
    frames = [make_frame(T9 + k * 10_000_000, [(A, "0D")], k, 0) for k in range(5)]
    write_tape(tmp_path / "a", frames)
    texts = [f.text for f in frames]

    async def main() -> None:
        async with serve(RecordedSource(tmp_path / "a", speed=None, start_delay=0), port=0,
                         ping_interval=0.1) as server, connect(server.url) as ws:
            await login_reg(ws, [A], ["0D"])
            assert await recv_reals(ws, 5) == texts
            pings = 0
            while pings < 3:  # the tape has ended; the connection lives on, PINGs continue
                raw = await asyncio.wait_for(ws.recv(), 2)
                assert raw == '{"trnm":"PING"}'
                await ws.send(raw)
                pings += 1
            assert (await control(server, "status"))["state"] == "ended"
        source = RecordedSource(tmp_path / "a", speed=50.0, loop=True, start_delay=0)
        async with serve(source, port=0) as server, connect(server.url) as ws:
            await login_reg(ws, [A], ["0D"])
            assert await recv_reals(ws, 12) == texts + texts + texts[:2]
            assert (await control(server, "status"))["loops"] >= 2

    run(main())


def test_runs_are_merged_by_receive_time_and_the_window_is_honoured(tmp_path: Path) -> None:
    # two recorders on one day, overlapping in time, one of them over two files; a session in between
    ta = [make_frame(T9 + k * 30_000_000, [(A, "0D")], k, 0) for k in range(40)]
    tb = [make_frame(T9 + 5_000_000 + k * 45_000_000, [(B, "0D")], k, 1) for k in range(30)]
    write_part(tmp_path, "run-a", 0, [(f.ts, "in", f.text, "REAL") for f in ta[:25]])
    write_part(tmp_path, "run-a", 1, [(f.ts, "in", f.text, "REAL") for f in ta[25:]], seq0=25)
    write_part(tmp_path, "run-b", 0, [(f.ts, "in", f.text, "REAL") for f in tb])
    write_part(tmp_path, "run-c", 0, [(T9 - 86_400 * NS, "in", ta[0].text, "REAL")], date=D - dt.timedelta(days=1))
    everything = sorted(ta + tb, key=lambda f: f.ts)
    window = [f for f in everything if T9 + 200_000_000 <= f.ts < T9 + 900_000_000]

    async def main() -> None:
        for kwargs, want in [({}, everything), ({"start": "09:00:00.2", "end": dt.time(9, 0, 0, 900_000)}, window)]:
            source = RecordedSource(tmp_path, speed=None, start_delay=0, batch_rows=7, **kwargs)
            assert source.recording.date == D and len(source.recording.runs) == 2
            async with serve(source, port=0) as server, connect(server.url) as ws:
                await login_reg(ws, [A, B], ["0D"])
                assert await recv_reals(ws, len(want), quiet=0.2) == [f.text for f in want]

    run(main())


def test_runs_of_v1_and_v2_files_merge_by_the_exact_nanosecond(tmp_path: Path) -> None:
    # run-a in schema v1 files, run-b in v2 files, each b frame 400 ns after an a frame in the same microsecond
    ta = [make_frame(T9 + k * 1_000_000 + 300, [(A, "0D")], k, 0) for k in range(30)]
    tb = [make_frame(T9 + k * 1_000_000 + 700, [(B, "0D")], k, 1) for k in range(30)]
    write_part(tmp_path, "run-b", 0, [(f.ts, "in", f.text, "REAL") for f in tb], version=2)
    write_part(tmp_path, "run-a", 0, [(f.ts, "in", f.text, "REAL") for f in ta[:10]], version=1)
    write_part(tmp_path, "run-a", 1, [(f.ts, "in", f.text, "REAL") for f in ta[10:]], seq0=10, version=2)
    want = [f.text for pair in zip(ta, tb, strict=True) for f in pair]

    async def main() -> None:
        source = RecordedSource(tmp_path, speed=None, start_delay=0, batch_rows=7)
        async with serve(source, port=0) as server, connect(server.url) as ws:
            await login_reg(ws, [A, B], ["0D"])
            assert await recv_reals(ws, len(want), quiet=0.2) == want

    run(main())


def test_max_speed_waits_for_a_client_that_does_not_read(tmp_path: Path) -> None:
    n = 4000  # 4000 frames of ~6 KB: far more than the socket buffers hold
    frames = [make_frame(T9 + k * 1_000_000, [(A, "0D")], k, 0, pad=6000) for k in range(n)]
    write_tape(tmp_path, frames)

    async def main() -> None:
        source = RecordedSource(tmp_path, speed=None, start_delay=0)
        async with serve(source, port=0, backpressure_frames=64) as server, connect(server.url) as slow:
            await login_reg(slow, [A], ["0D"])
            await asyncio.sleep(1.0)  # not reading
            played = source.status()["frames_played"]
            assert 0 < played < n / 2, played  # the tape waits for the reader
            got = await recv_reals(slow, n, quiet=0.2)
            assert got == [f.text for f in frames]
            assert server.stats.slow_clients_dropped == 0

    run(main())


# --------------------------------------------------------------------------------------------------
# CLI


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, ["replay", *args])


def test_cli_bad_input_names_the_problem_and_the_fix(tmp_path: Path) -> None:
    mixed_tape(tmp_path / "data", n=5)
    (tmp_path / "empty").mkdir()
    data = str(tmp_path / "data")
    cases = [
        ([str(tmp_path / "nowhere")], "does not exist"),
        ([str(tmp_path / "empty")], "not a kiwoom-tape dataset"),
        ([data, "--date", "2026-01-06"], "recorded days: 2026-01-05"),
        ([data, "--date", "yesterday"], "YYYY-MM-DD"),
        ([data, "--from", "10:00", "--to", "09:00"], "swap them"),
        ([data, "--from", "12:00"], "the recording covers 08:59:57.000 to 09:00:00.400"),
        ([data, "--simulate"], "not both"),
        ([data, "--seed", "3"], "only for --simulate"),
        (["--simulate", "--loop"], "only for a recorded DIR"),
        (["--simulate", "--speed", "max"], "--speed max"),
        ([data, "--speed", "fast"], "max"),
    ]
    for args, needle in cases:
        result = _cli(*args)
        assert result.exit_code != 0, (args, result.output)
        assert needle in result.output and "Traceback" not in result.output, (args, result.output)
    broken = Path(layout.partition_dir(data, "frames", D)) / layout.part_filename("broken", 0, "frames")
    broken.write_bytes(b"PAR1 this is not parquet")
    result = _cli(data)
    assert result.exit_code == 1 and "cannot read" in result.output and broken.name in result.output
    assert "move the file out" in result.output


def test_cli_serves_a_recorded_day_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    frames = mixed_tape(tmp_path, n=12)

    async def main() -> None:
        args = [str(tmp_path), "--port", "0", "--speed", "max", "--start-delay", "0", "--items", "005930"]
        async with started_replay(*args) as replay:
            async with connect(replay.url) as ws:
                await login_reg(ws, [A, B, C], ["0D", "0E"])
                want = [e for f in frames if (e := f.expected(lambda i, t: i == A))]  # --items 005930
                assert await recv_reals(ws, len(want), quiet=0.2) == want
            assert await replay.interrupt() == 0

    run(main())


# --------------------------------------------------------------------------------------------------
# The pytest fixture


def test_kiwoom_replay_fixture_serves_a_sync_client(kiwoom_replay: Any, tmp_path: Path) -> None:
    from websockets.sync.client import connect as sync_connect

    frames = mixed_tape(tmp_path, n=8)
    server = kiwoom_replay(tmp_path)
    assert server.status()["state"] == "waiting"
    with sync_connect(server.url) as ws:
        ws.send('{"trnm":"LOGIN","token":"t"}')
        assert json.loads(ws.recv(5))["return_code"] == 0
        ws.send(json.dumps({"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{"item": [C], "type": ["0D"]}]}))
        assert json.loads(ws.recv(5))["trnm"] == "REG"
        want = [e for f in frames if (e := f.expected(lambda i, t: i == C))]
        assert [ws.recv(5) for _ in want] == want
    assert server.control("status")["frames_played"] == 8
    with pytest.raises(ValueError, match="use one of"):
        server.control("rewind")


def test_kiwoom_replay_fixture_runs_a_fault_script(kiwoom_replay: Any, tmp_path: Path) -> None:
    """``faults=`` takes Faults or a TOML path: here the server drops the client after 3 frames (at 1x, so
    the 4th frame is not queued yet when the drop fires)."""
    from kiwoom_tape.replay.faults import Fault, FaultScriptError
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect as sync_connect

    frames = mixed_tape(tmp_path / "data", n=8)
    script = tmp_path / "drop.toml"
    script.write_text('[[fault]]\nkind = "drop"\nafter_frames = 3\ncode = 1012\nreason = "test"\n')
    for faults in ([Fault("drop", after_frames=3, code=1012, reason="test")], script):
        server = kiwoom_replay(tmp_path / "data", faults=faults, speed=1.0)  # 100 ms apart: the drop comes between
        assert server.fired() == []
        got: list[str] = []
        with sync_connect(server.url) as ws:
            ws.send('{"trnm":"LOGIN","token":"t"}')
            assert json.loads(ws.recv(5))["return_code"] == 0
            ws.send(json.dumps({"trnm": "REG", "grp_no": "1", "refresh": "1",
                                "data": [{"item": [A, B, C], "type": ["0D", "0E"]}]}))
            assert json.loads(ws.recv(5))["trnm"] == "REG"
            with pytest.raises(ConnectionClosedError) as closed:
                while True:
                    msg = ws.recv(5)
                    assert isinstance(msg, str)
                    if '"REAL"' in msg:
                        got.append(msg)
            rcvd = closed.value.rcvd
            assert rcvd is not None and (rcvd.code, rcvd.reason) == (1012, "test")
        want = [e for f in frames if (e := f.expected(lambda i, t: True))]
        assert got == want[:3]
        assert [f.split("(")[0] for f in server.fired()] == ["drop"] and "after 3 frames" in server.fired()[0]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[fault]]\nkind = "explode"\nat = 1\n')
    with pytest.raises(FaultScriptError, match="explode"):
        kiwoom_replay(tmp_path / "data", faults=bad)


def _docs_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", REPLAY_MD, re.S)
    tests = [b for b in blocks if "def test_" in b and "kiwoom_replay" in b]
    assert tests, "docs/replay.md has no example test using kiwoom_replay"
    return tests[0]


def test_the_docs_example_passes_with_the_plugin(pytester: pytest.Pytester, tmp_path: Path) -> None:
    data = tmp_path / "data"
    mixed_tape(data, n=20)
    pytester.makeini(f"[pytest]\nkiwoom_replay_dataset = {data}\nfilterwarnings = error\naddopts = --strict-markers\n")
    pytester.makepyfile(test_strategy=_docs_example())
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
