"""Every scripted fault of the mock server against the recorder (in-process, loopback, bounded).

After each: the recorder keeps recording (frames arrive after the fault ended), the gap is in ``events``
with its cause (for faults that cut the connection; none for the others), nothing is stored twice,
every connection recorded exactly what the server sent it, in order (a prefix of it only when the TCP
connection was cut), and a dead token ends in a clear error after a bounded number of LOGINs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kiwoom_tape.recorder.auth import TokenProvider
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay.faults import FaultScript
from kiwoom_tape.replay.server import Server, serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.errors import LoginError
from kiwoom_tape.schemas.redact import RedactTokens
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.http11 import Request, Response

from kiwoom_tape.testing import loopback_recorder, run_recorder

from ._recording import Recorded, record
from .conftest import Report, SecretAudit

ITEMS = ["005930_NX", "000660_NX", "035420_NX"]
START = 16 * 3600  # NXT after-market: 0D flows for _NX items (docs/protocol.md 5.3)
SPEED = 60.0
AFTER = 40
"""Frames the recorder must receive after the last fault ended: it kept recording."""


@dataclass
class Case:
    name: str
    toml: str
    causes: list[str] = field(default_factory=list)
    """The gap causes expected in ``events`` (empty: no gap at all)."""
    ping_interval: float = 15.0
    silence: float = 5.0
    lossy: bool = False
    max_connections: int = 1
    login_error: bool = False
    linger: float = 0.0
    """Seconds to go on recording after the fault ended and AFTER frames came."""
    check: Callable[[Recorded, Server, Recorder], None] | None = None


def _no_ping_hole(min_hole: float) -> Callable[[Recorded, Server, Recorder], None]:
    def check(rec: Recorded, server: Server, recorder: Recorder) -> None:
        pings = [f["recv_ts"] for f in rec.frames if f["direction"] == "in" and f["trnm"] == "PING"]
        holes = [(b - a) / 1e9 for a, b in itertools.pairwise(pings)]
        assert len(pings) > 3 and max(holes) >= min_hole, f"no PING-less window of {min_hole} s: {holes}"
        assert holes[-1] < min_hole / 2, "PINGs did not come back after the window"

    return check


def _system_before_gap(code: str) -> Callable[[Recorded, Server, Recorder], None]:
    def check(rec: Recorded, server: Server, recorder: Recorder) -> None:
        kinds = rec.kinds()
        gap = kinds.index("gap_start")
        system = [e for e in rec.events[:gap] if e["kind"] == "system"]
        assert system and json.loads(system[-1]["detail"])["code"] == code, rec.events[:gap]

    return check


def _malformed_kept(rec: Recorded, server: Server, recorder: Recorder) -> None:
    bad = [f for f in rec.frames if f["direction"] == "in" and f["parse_error"] is not None]
    texts = [f["text"] for f in bad]
    assert "502 Bad Gateway" in texts
    assert any(t.startswith('{"data":[{"type":"0D"') and not t.endswith("}") for t in texts)  # truncated
    assert any('"XYZZY"' in t for t in texts)
    assert any('"values":"oops"' in t for t in texts)
    assert len(bad) == 4 and recorder.stats.parse_errors == 4


def _duplicates(n: int) -> Callable[[Recorded, Server, Recorder], None]:
    def check(rec: Recorded, server: Server, recorder: Recorder) -> None:
        texts = [f["text"] for f in rec.by_connection[0]]
        pairs = sum(a == b for a, b in itertools.pairwise(texts))
        assert pairs == n, f"{pairs} frames stored twice in a row, the server duplicated {n}"

    return check


def _reordered(rec: Recorded, server: Server, recorder: Recorder) -> None:
    # the reordered frames went out newest first: their FID 21 (quote time) runs backwards somewhere
    times = [json.loads(f["text"])["data"][0]["values"]["21"] for f in rec.by_connection[0]]
    assert any(a > b for a, b in itertools.pairwise(times)), "nothing arrived out of order"


def _held_back(min_hole: float) -> Callable[[Recorded, Server, Recorder], None]:
    def check(rec: Recorded, server: Server, recorder: Recorder) -> None:
        ts = [f["recv_ts"] for f in rec.by_connection[0]]
        holes = [(b - a) / 1e9 for a, b in itertools.pairwise(ts)]
        assert max(holes) >= min_hole, f"REAL frames were not held back for {min_hole} s"

    return check


def _logins(n: int, failed: int) -> Callable[[Recorded, Server, Recorder], None]:
    def check(rec: Recorded, server: Server, recorder: Recorder) -> None:
        kinds = rec.kinds()
        assert kinds.count("login") == n and kinds.count("login_failed") == failed, kinds
        refused = [e for e in rec.events if e["kind"] == "login_failed"]
        assert all("8005" in e["detail"] for e in refused)

    return check


def _reg_refused(code: int, n: int) -> Callable[[Recorded, Server, Recorder], None]:
    def check(rec: Recorded, server: Server, recorder: Recorder) -> None:
        acks = [e["return_code"] for e in rec.events if e["kind"] == "reg_ack"]
        assert acks.count(code) == n, acks
        assert acks[-1] == 0, "the REG was never accepted in the end"

    return check


CASES = [
    Case("drop", '[[fault]]\nkind = "drop"\nat = "0.5s"\ncode = 1011\nreason = "server restart"\n',
         ["closed"], max_connections=2),
    Case("drop_abort", '[[fault]]\nkind = "drop"\nat = "0.5s"\nabort = true\n', ["dropped"], lossy=True,
         max_connections=2),
    Case("kick", '[[fault]]\nkind = "kick"\nat = "0.5s"\n', ["kicked"], max_connections=2),
    Case("stall", '[[fault]]\nkind = "stall"\nat = "0.5s"\nseconds = 1.5\n', ["silence"], silence=0.6,
         max_connections=4),
    Case("stall_short", '[[fault]]\nkind = "stall"\nat = "0.5s"\nseconds = "300ms"\n', silence=2.0,
         check=_held_back(0.25)),
    # (the mock's first PING comes up to 1 s after LOGIN: start the window once they flow)
    Case("no_pings", '[[fault]]\nkind = "no_pings"\nat = "1.2s"\nseconds = 1\n', ping_interval=0.1,
         check=_no_ping_hole(0.9), linger=0.3),
    # the cause should read "heartbeat": see test_gap_cause_names_the_system_code (xfail)
    Case("ignore_echoes", '[[fault]]\nkind = "ignore_echoes"\nat = "0.3s"\n', ["heartbeat"], ping_interval=0.1,
         max_connections=2, check=_system_before_gap("R10002")),
    Case("expire_token", '[[fault]]\nkind = "expire_token"\nat = "0.5s"\ndrop = true\n', ["closed"],
         max_connections=3, check=_logins(2, 1)),
    Case("refuse_login_once",
         '[[fault]]\nkind = "refuse_login"\nat = "0.4s"\n\n[[fault]]\nkind = "drop"\nat = "0.5s"\n',
         ["closed"], max_connections=3, check=_logins(2, 1)),
    Case("dead_token",
         '[[fault]]\nkind = "refuse_login"\nat = "0.4s"\ncount = 1000\n\n[[fault]]\nkind = "drop"\nat = "0.5s"\n',
         ["closed"], max_connections=3, login_error=True, check=_logins(1, 2)),
    Case("reject_reg_105110", '[[fault]]\nkind = "reject_reg"\nafter_frames = 0\nreturn_code = 105110\ncount = 2\n',
         check=_reg_refused(105110, 2)),
    Case("malformed",
         "".join(f'[[fault]]\nkind = "malformed"\nat = "0.5s"\nframe = "{m}"\n'
                 for m in ("not_json", "truncated", "unknown_trnm", "bad_row")),
         check=_malformed_kept),
    Case("duplicate", '[[fault]]\nkind = "duplicate"\nat = "0.5s"\ncount = 5\n', check=_duplicates(5)),
    # 20 frames: they span several market seconds (FID 21), whatever the instant the fault fires
    Case("reorder", '[[fault]]\nkind = "reorder"\nat = "0.5s"\ncount = 20\n', check=_reordered),
    Case("slow", '[[fault]]\nkind = "slow"\nat = "0.5s"\nseconds = 1\nbytes_per_second = 30000\n'),
    Case("burst", '[[fault]]\nkind = "burst"\nat = "0.5s"\nseconds = 1\n', check=_held_back(0.9)),
]

# PINGs every second keep the connection alive, as Kiwoom's do: no silence timeout comes to the rescue
REJECT_FOR_GOOD = [
    Case("reject_reg_105115", '[[fault]]\nkind = "reject_reg"\nafter_frames = 0\nreturn_code = 105115\n',
         ping_interval=1.0, check=_reg_refused(105115, 1)),
    Case("reject_reg_1", '[[fault]]\nkind = "reject_reg"\nafter_frames = 0\nreturn_code = 1\n',
         ping_interval=1.0, check=_reg_refused(1, 1)),
]


async def _run(case: Case, tmp: Path, audit: SecretAudit) -> tuple[Recorded, Server, Recorder, BaseException | None]:
    script = FaultScript.parse(case.toml, source=case.name)
    market = SimulatedMarket(seed=zlib.crc32(case.name.encode()) % 1000, items=ITEMS, start=START)
    tokens = TokenProvider("", appkey=audit.secret("appkey"), secretkey=audit.secret("secretkey"))
    async with serve(SimSource(market, speed=SPEED), port=0, keep_sent=True, faults=script,
                     ping_interval=case.ping_interval) as server:
        tokens.rest_base = server.rest_url
        runner = server.faults
        assert runner is not None

        async def until(rec: Recorder) -> None:
            while len(runner.fired) < len(script) or server._faults_task is None or not server._faults_task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            while rec.stats.reconnects < len(case.causes):  # noqa: ASYNC110  # the fault's effect may come later
                await asyncio.sleep(0.02)
            rows = rec.stats.real_rows
            frames = rec.stats.frames_in
            while rec.stats.real_rows < rows + AFTER or rec.stats.frames_in < frames + AFTER:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            await asyncio.sleep(case.linger)

        recorder, error = await record(server, tmp, ITEMS, tokens, until, silence_timeout=case.silence, limit=20)
        for tok in {*server._issued, *server._expired, server.required_token or ""}:
            audit.add(tok)
        if error is not None:
            audit.text("exception", f"{type(error).__name__}: {error}")
        sent = list(server.sent or [])
    rec = Recorded.read(tmp)
    rec.assert_no_duplicates()
    rec.compare_with_sent(sent, lossy=case.lossy)
    return rec, server, recorder, error


def _check(case: Case, rec: Recorded, server: Server, recorder: Recorder, error: BaseException | None) -> None:
    if case.login_error:
        assert isinstance(error, LoginError) and error.auth_code == 8005, error
    else:
        assert error is None, f"the recorder stopped: {error!r}"
    assert server.stats.connections <= case.max_connections, "more connections than the fault explains"
    assert rec.gap_causes() == case.causes, rec.events
    kinds = rec.kinds()
    assert kinds.count("gap_end") == kinds.count("gap_start")  # a LoginError ends the recording in its gap
    if case.login_error:
        assert json.loads(rec.events[-1]["detail"]).get("stopped") is True, rec.events[-1]
    if case.check is not None:
        case.check(rec, server, recorder)
    # it kept recording: REAL frames after the last fault ended
    fired = server.faults.fired if server.faults else []
    if not case.login_error:
        last_end_ns = max(int((f.wall + f.fault.seconds) * 1e9) for f in fired)
        after = [f for f in rec.frames if f["trnm"] == "REAL" and f["recv_ts"] > last_end_ns]
        assert len(after) >= AFTER // 2, f"only {len(after)} REAL frames after the fault"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_recorder_survives_fault(case: Case, tmp_path: Path, audit: SecretAudit, report: Report) -> None:
    report.faults[case.name] = "failed"
    rec, server, recorder, error = asyncio.run(_run(case, tmp_path, audit))
    _check(case, rec, server, recorder, error)
    report.faults[case.name] = "survived"


@pytest.mark.parametrize("case", REJECT_FOR_GOOD, ids=[c.name for c in REJECT_FOR_GOOD])
def test_recorder_registers_again_after_a_refused_reg(
    case: Case, tmp_path: Path, audit: SecretAudit, report: Report
) -> None:
    report.faults[case.name] = "failed: no data after the refused REG"

    async def bounded() -> tuple[Recorded, Server, Recorder, BaseException | None]:
        return await asyncio.wait_for(_run(case, tmp_path, audit), 4.0)

    rec, server, recorder, error = asyncio.run(bounded())
    _check(case, rec, server, recorder, error)
    report.faults[case.name] = "survived"


def test_gap_cause_names_the_system_code(tmp_path: Path, audit: SecretAudit) -> None:
    case = next(c for c in CASES if c.name == "ignore_echoes")
    rec, _server, _recorder, _error = asyncio.run(_run(case, tmp_path, audit))
    assert rec.gap_causes() == ["heartbeat"]


# -- closes right after the handshake (issue 12, finding 1) -----------------------------------------


_front_log = logging.getLogger("tests.front")
_front_log.addFilter(RedactTokens())  # websockets logs the LOGIN it carries at DEBUG


async def _pump(a: ServerConnection, b: ClientConnection) -> None:
    async for msg in a:
        await b.send(msg)


async def _proxy(client: ServerConnection, upstream_url: str) -> None:
    """Carry one connection to the mock server and back, frame for frame, until either side closes."""
    async with connect(upstream_url, compression=None, ping_interval=None, logger=_front_log) as up:
        tasks = [asyncio.ensure_future(_pump(client, up)), asyncio.ensure_future(_pump(up, client))]  # type: ignore[arg-type]
        _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_closes_right_after_the_handshake_are_reconnects(tmp_path: Path, audit: SecretAudit, report: Report) -> None:
    """A front server on loopback: connection 1 is the mock's (cut with 1011 once it recorded); connections 2-5
    fail at once (close 1011 on accept, close 1013 on the LOGIN, abort on accept, HTTP 503 handshake); 6 and
    later are the mock's again. The recorder must go on recording, with the hole in ``events``."""
    report.faults["close_after_handshake"] = "failed"
    market = SimulatedMarket(seed=12, items=ITEMS, start=START)
    tokens = TokenProvider("", appkey=audit.secret("appkey"), secretkey=audit.secret("secretkey"))
    first: list[ServerConnection] = []
    conns = [0]

    async def handler(ws: ServerConnection) -> None:
        conns[0] += 1
        k = conns[0]
        if k == 2:
            await ws.close(1011, "internal error")
        elif k == 3:
            await ws.recv()  # the LOGIN
            await ws.close(1013, "try again later")
        elif k == 4:
            ws.transport.abort()
        else:
            if k == 1:
                first.append(ws)
            await _proxy(ws, upstream)

    def refuse_fifth(ws: ServerConnection, request: Request) -> Response | None:
        if conns[0] == 4:
            conns[0] += 1
            return ws.respond(503, "restarting\n")
        return None

    async def main() -> tuple[Recorded, BaseException | None]:
        nonlocal upstream
        async with serve(SimSource(market, speed=SPEED), port=0) as server, \
                ws_serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None,
                         process_request=refuse_fifth, logger=_front_log) as front:
            upstream = server.url
            tokens.rest_base = server.rest_url
            port = front.sockets[0].getsockname()[1]
            url = f"ws://127.0.0.1:{port}/api/dostk/websocket"

            async def until(rec: Recorder) -> None:
                while rec.stats.real_rows < AFTER:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                await first[0].close(1011, "server restart")
                while conns[0] < 6 or not rec.stats.connected:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                rows = rec.stats.real_rows
                while rec.stats.real_rows < rows + AFTER:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)

            rec = loopback_recorder(url, tmp_path, ITEMS, ["0D"], tokens=tokens, run_id="handshake")
            error: BaseException | None = None
            async with asyncio.timeout(20):
                try:
                    await run_recorder(rec, until)
                except Exception as exc:
                    error = exc
            for tok in server._issued:
                audit.add(tok)
        return Recorded.read(tmp_path), error

    upstream = ""
    rec, error = asyncio.run(main())
    assert error is None, f"the recorder stopped: {error!r}"
    rec.assert_no_duplicates()
    causes = [json.loads(e["detail"])["cause"] for e in rec.events if e["kind"] == "disconnect"]
    assert causes[:5] == ["closed", "closed", "closed", "dropped", "connect_failed"], causes
    details = [json.loads(e["detail"]) for e in rec.events if e["kind"] == "disconnect"]
    assert [d.get("close_code") for d in details[:4]] == [1011, 1011, 1013, None]
    assert "503" in details[4]["detail"]
    assert rec.gap_causes() == ["closed"]  # one hole, from the cut until the next LOGIN
    assert rec.kinds().count("gap_end") == 1 and rec.kinds().count("login") == 2
    gap_end = next(e for e in rec.events if e["kind"] == "gap_end")
    after = [f for f in rec.frames if f["trnm"] == "REAL" and f["recv_ts"] > gap_end["recv_ts"]]
    assert len(after) >= AFTER // 2, "it did not record after the faults"
    report.faults["close_after_handshake"] = "survived"


# -- a kick is not a drop; only the protocol's auth codes renew the token (issue 12, finding 5) -----


def test_a_kicked_recorder_waits_instead_of_kicking_back(
    tmp_path: Path, audit: SecretAudit, caplog: pytest.LogCaptureFixture
) -> None:
    script = FaultScript.parse('[[fault]]\nkind = "kick"\nat = "0.5s"\n', source="kick_wait")
    tokens = TokenProvider("", appkey=audit.secret("appkey"), secretkey=audit.secret("secretkey"))
    wait = 1.5  # (60 s by default; the backoff of any other drop here is 0.05 s to 0.2 s)

    async def main() -> Recorded:
        async with serve(SimSource(SimulatedMarket(seed=7, items=ITEMS, start=START), speed=SPEED), port=0,
                         faults=script) as server:
            tokens.rest_base = server.rest_url

            async def until(rec: Recorder) -> None:
                while rec.stats.connects < 2 or rec.stats.real_rows < AFTER:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                rows = rec.stats.real_rows
                while rec.stats.real_rows < rows + AFTER:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)

            rec = loopback_recorder(server.url, tmp_path, ITEMS, ["0D"], tokens=tokens, kick_wait=wait)
            async with asyncio.timeout(20):
                await run_recorder(rec, until)
            for tok in server._issued:
                audit.add(tok)
        return Recorded.read(tmp_path)

    rec = asyncio.run(main())
    assert rec.gap_causes() == ["kicked"]
    kicked = next(e for e in rec.events if e["kind"] == "disconnect")
    back = [e for e in rec.events if e["kind"] == "connect"][1]
    assert (back["recv_ts"] - kicked["recv_ts"]) / 1e9 >= wait, "it reconnected at once and kicked the other session"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.endswith("recorder")]
    assert any("R10001" in m and "waiting" in m for m in warnings), warnings


def test_a_refusal_a_new_token_cannot_fix_stops_at_once(tmp_path: Path, audit: SecretAudit) -> None:
    # 8030: real/mock mismatch (docs/protocol.md 1.11), not one of the auth codes after which a new token helps
    case = Case("refuse_login_8030",
                '[[fault]]\nkind = "refuse_login"\nat = "0.4s"\ncode = 8030\ncount = 1000\n\n'
                '[[fault]]\nkind = "drop"\nat = "0.5s"\n', ["closed"], max_connections=2, login_error=True)
    rec, server, _recorder, error = asyncio.run(_run(case, tmp_path, audit))
    kinds = rec.kinds()
    assert kinds.count("login") == 1 and kinds.count("login_failed") == 1, kinds  # no new token, no 2nd try
    assert isinstance(error, LoginError) and error.auth_code == 8030 and not error.renew_token, error
    assert server.stats.connections == 2


def test_a_token_endpoint_out_of_reach_is_a_reconnect(tmp_path: Path, audit: SecretAudit) -> None:
    """au10001 unreachable (the REST side restarting) is transient: gaps and retries, then it records."""
    tokens = TokenProvider("http://127.0.0.1:1", appkey=audit.secret("appkey"), secretkey=audit.secret("secretkey"))

    async def main() -> Recorded:
        async with serve(SimSource(SimulatedMarket(seed=3, items=ITEMS, start=START), speed=SPEED), port=0) as server:

            async def until(rec: Recorder) -> None:
                while rec.stats.connects < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                tokens.rest_base = server.rest_url  # the endpoint is back
                while rec.stats.real_rows < AFTER:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)

            rec = loopback_recorder(server.url, tmp_path, ITEMS, ["0D"], tokens=tokens)
            async with asyncio.timeout(20):
                await run_recorder(rec, until)
            for tok in server._issued:
                audit.add(tok)
        return Recorded.read(tmp_path)

    rec = asyncio.run(main())
    causes = [json.loads(e["detail"])["cause"] for e in rec.events if e["kind"] == "disconnect"]
    assert causes[:3] == ["token_unavailable"] * 3 and "login" in rec.kinds()
    assert rec.gap_causes() == ["token_unavailable"]
