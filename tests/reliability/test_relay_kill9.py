"""kill -9 around the live relay (``record --serve``, issue 17): of a local client, and of the relay itself.

(a) A local client process killed with SIGKILL mid-stream: the relay and the recording go on (the recorder keeps
receiving), the upstream connection is untouched (one connection, one LOGIN), nothing upstream sent is missing
from the recording, and the item only the dead client wanted is removed upstream once the relay's forget delay
has passed. (b) The ``record --serve`` process killed with SIGKILL mid-stream: its local client sees the
connection close; every frame in the journal at the kill is in the dataset after the next ``record`` start
(recovery), ``gaps`` has the crash, and ``kiwoom-tape verify`` passes. Loopback, port 0, bounded time, every
subprocess killed on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from _cli import URL, cli_argv
from _relay import relay_token
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.recorder.journal_format import FrameRecord
from kiwoom_tape.recorder.journal_reader import read_journal
from kiwoom_tape.replay.catalog import connect as catalog
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.layout import JOURNAL_DIR
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kiwoom_tape.relay import relaying
from kiwoom_tape.testing import loopback_recorder, read_table, run_recorder
from kiwoom_tape.verify import verify

from .conftest import SecretAudit

MORNING = 10 * 3600.0
"""10:00 KST: continuous trading, 0D rows for every stock item."""

CLIENT = """
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main(url, token, item):
    async with connect(url) as ws:
        await ws.send(json.dumps({"trnm": "LOGIN", "token": token}))
        print(await ws.recv(), flush=True)
        await ws.send(json.dumps({"trnm": "REG", "grp_no": "1", "refresh": "1",
                                  "data": [{"item": [item], "type": ["0D"]}]}))
        async for msg in ws:
            if '"PING"' in msg:
                await ws.send(msg)
            else:
                print(msg, flush=True)

asyncio.run(main(*sys.argv[1:]))
"""
"""A local client as a user writes one: LOGIN, REG one item, print every frame (PINGs echoed)."""


async def _until(cond: object, seconds: float = 30) -> None:
    """Poll ``cond()`` (recorder state, server counters: nothing to wait on) every 20 ms, ``seconds`` at most."""
    assert callable(cond)
    async with asyncio.timeout(seconds):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


def _has(rec: Recorder, item: str) -> bool:
    return any(item in sub.items for sub in rec.subscriptions)


def test_a_local_client_killed_mid_stream_costs_the_recording_and_upstream_nothing(
    tmp_path: Path, audit: SecretAudit
) -> None:
    out = tmp_path / "data"
    script = tmp_path / "client.py"
    script.write_text(CLIENT, encoding="utf-8")

    async def main() -> list[str]:
        market = SimulatedMarket(seed=41, items=["005930", "000660"], start=MORNING)
        async with serve(SimSource(market, speed=10.0), port=0, keep_sent=True) as upstream:
            rec = loopback_recorder(upstream.url, out, ["005930"], ["0D"])

            async def until(rec: Recorder) -> None:
                async with relaying([rec], forget_after=0.5) as relay:
                    token = relay.issue_token()
                    audit.add(token, "relay token")
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable, "-u", str(script), relay.url, token, "000660",
                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
                    assert proc.stdout is not None
                    try:
                        assert json.loads(await proc.stdout.readline())["return_code"] == 0
                        got = 0
                        while got < 5:  # mid-stream: the client is getting the item it brought
                            line = await asyncio.wait_for(proc.stdout.readline(), 20)
                            assert line, "the client ended by itself"
                            got += b'"item":"000660"' in line
                        assert _has(rec, "000660")
                        proc.send_signal(signal.SIGKILL)
                        await proc.wait()
                    finally:
                        await _stop(proc)
                    at_kill = rec.stats.frames_in
                    await _until(lambda: relay.clients == 0)  # the relay saw the dead connection go
                    await _until(lambda: not _has(rec, "000660"))  # removed upstream after the forget delay
                    await _until(lambda: rec.stats.frames_in > at_kill + 20)  # and the recording goes on
                    assert _has(rec, "005930")
                assert upstream.stats.connections == 1 and upstream.stats.logins == 1  # upstream untouched

            await run_recorder(rec, until)
            for tok in upstream.tokens.known():
                audit.add(tok)
            assert upstream.sent is not None
            return [text for _, _, text in upstream.sent]

    sent = asyncio.run(main())
    frames = [r for r in read_table(out, "frames") if r["direction"] == "in" and r["trnm"] == "REAL"]
    assert [r["text"] for r in sorted(frames, key=lambda r: r["seq"])] == sent  # nothing upstream sent is lost
    events = [(e["kind"], json.loads(e["detail"])) for e in read_table(out, "events")]
    added = [d for k, d in events if k == "items_added" and d["items"] == ["000660"]]
    assert len(added) == 1 and added[0]["types"] == ["0D"], events
    assert added[0]["by"].startswith("relay client #1 127.0.0.1:"), added  # the killed client asked for it
    removed = [d for k, d in events if k == "items_removed" and d["items"] == ["000660"]]
    assert len(removed) == 1 and removed[0]["by"] == added[0]["by"], events
    assert verify(out).ok()


def _journaled(out: Path) -> dict[str, list[tuple[int, str, str]]]:
    """Run id -> the (seq, direction, text) of every frame record in its journal segments on disk now."""
    by_run: dict[str, list[tuple[int, str, str]]] = {}
    for path in sorted((out / JOURNAL_DIR).glob("*.journal")):
        contents = read_journal(path)
        if contents.header is None:
            continue
        by_run.setdefault(contents.header.run_id, []).extend(
            (r.seq, r.direction, r.text.decode()) for r in contents.records if isinstance(r, FrameRecord))
    return by_run


def test_the_relay_killed_mid_stream_loses_nothing_journaled_and_its_clients_see_the_close(
    tmp_path: Path, audit: SecretAudit
) -> None:
    out = tmp_path / "data"
    appkey, secret = audit.secret("appkey"), audit.secret("secretkey")
    env = {**os.environ, "KIWOOM_APPKEY": appkey, "KIWOOM_SECRETKEY": secret}
    env.pop("KIWOOM_TOKEN", None)

    async def main() -> tuple[dict[str, list[tuple[int, str, str]]], list[str], list[str]]:
        market = SimulatedMarket(seed=42, items=["005930"], start=MORNING)
        async with serve(SimSource(market, speed=10.0), port=0, keep_sent=True) as upstream:
            args = ("--items", "005930", "--types", "0D", "--url", upstream.url, "--out", str(out), "-q")
            proc = await asyncio.create_subprocess_exec(*cli_argv("record", *args, "--serve", "0"), env=env,
                                                        stderr=asyncio.subprocess.PIPE)
            assert proc.stderr is not None
            try:
                while not (line := (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()).startswith(
                        "relay: "):
                    assert line, "record exited before serving"
                    audit.text("record --serve stderr", line)
                url = URL.findall(line)[0]
                token = await relay_token(url, appkey, secret)
                audit.add(token, "relay token")
                received: list[str] = []
                async with connect(url) as ws:
                    await ws.send(json.dumps({"trnm": "LOGIN", "token": token}))
                    assert json.loads(await ws.recv())["return_code"] == 0
                    await ws.send(json.dumps({"trnm": "REG", "grp_no": "1", "refresh": "1",
                                              "data": [{"item": ["005930"], "type": ["0D"]}]}))
                    while sum('"REAL"' in m for m in received) < 20:  # mid-stream
                        msg = await asyncio.wait_for(ws.recv(), 20)
                        assert isinstance(msg, str)
                        received.append(msg)
                    await _until(lambda: any(_journaled(out).values()))  # something synced to the journal
                    proc.send_signal(signal.SIGKILL)
                    await proc.wait()
                    with contextlib.suppress(ConnectionClosed):  # the close, after what was in flight
                        async with asyncio.timeout(10):
                            while True:
                                received.append(str(await ws.recv()))
                    assert ws.close_code is None or ws.close_code != 1000  # no clean close: the relay died
                journaled = _journaled(out)
                audit.text("record --serve stderr", await proc.stderr.read())
            finally:
                await _stop(proc)
            assert upstream.sent is not None
            sent = [t for c, _, t in upstream.sent if c == 1]
            reals = [m for m in received if '"trnm":"REAL"' in m.replace(" ", "")]
            # the next start recovers the killed run's journal, then records on
            again = await asyncio.create_subprocess_exec(*cli_argv("record", *args, "--duration", "2s"), env=env,
                                                         stderr=asyncio.subprocess.PIPE)
            try:
                async with asyncio.timeout(60):
                    _, err = await again.communicate()
                audit.text("record stderr after the kill", err)
                assert again.returncode == 0, err.decode()[-2000:]
            finally:
                await _stop(again)
            for tok in upstream.tokens.known():
                audit.add(tok)
        return journaled, reals, sent

    journaled, reals, sent = asyncio.run(main())
    first = sent.index(reals[0])
    assert reals == sent[first:first + len(reals)]  # the client got upstream's frames in order, none skipped
    assert len(journaled) == 1
    (run_id, records), = journaled.items()
    assert any(d == "in" for _, d, _ in records)
    stored = sorted((r["seq"], r["direction"], r["text"]) for r in read_table(out, "frames") if r["run_id"] == run_id)
    assert stored == sorted(records)  # every frame journaled at the kill, and only those
    journaled_reals = [t for _, d, t in sorted(records) if d == "in" and '"trnm":"REAL"' in t.replace(" ", "")]
    assert journaled_reals and journaled_reals == sent[: len(journaled_reals)]  # a prefix of what upstream sent
    gaps = catalog(out).execute("SELECT run_id, cause FROM gaps").fetchall()
    assert (run_id, "crash") in gaps, gaps
    assert not list((out / JOURNAL_DIR).glob("*.journal")), "the second run recovered and closed everything"
    assert verify(out).ok()
