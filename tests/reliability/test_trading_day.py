"""A trading day of faults, end to end (issue 12): the console scripts as a user runs them, every row accounted for.

``replay --simulate`` serves 08:00-20:00 of market time at 600x (about 72 s) for a KRX stock, its NXT twin and an
ETF, with a fault script spread over the day on the market clock: a drop at the open, an 8005 token expiry
mid-morning, an R10001 kick at noon, a stall, 105110 refusals of the REG after a cut connection, a burst, and
closes right after the handshake. ``record`` records it as a subprocess until the simulator's clock (read from
``/control``) is past 20:10 and nothing is queued for the recorder (a busy machine's recorder lags behind the
server), however long that takes. Then:

- ``kiwoom-tape verify`` passes;
- every fault left its gap, with its cause, in ``events`` (the refused REGs and the closes after the handshake
  inside theirs);
- no frame is stored twice;
- since the simulator is a deterministic function of (seed, item, market time), the rows stored per (item, type)
  equal the rows the simulator produces for it, in order, except for runs of rows that each lie between two
  stored rows with a gap between them (or before the first stored row / after the last): nothing is lost
  outside a gap, nothing is invented, reordered or stored twice;
- the day replayed at ``--speed max`` reaches a client as exactly the recorded REAL frames.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.schemas.protocol import PING_TEXT
from websockets.asyncio.client import connect

from tests._cli import cli_argv, started_replay

from .conftest import Report

ITEMS = ("005930", "005930_NX", "069500")
SEED = 11
SPEED = 600
START = 8 * 3600
END = 20 * 3600 + 10 * 60
WALL_LIMIT = 300.0
"""Wall seconds the recording may take at most. It lasts until the simulator's clock (``market_time`` in the
replay's ``/control``) is at END: about 76 s at SPEED on a quiet machine, longer on a busy one, whose simulator
falls behind SPEED (the faults are on the market clock: they and the day stay the same)."""
NS = 1_000_000_000

FAULTS = """
[[fault]]
kind = "drop"                  # at the open
market_time = "09:00:40"
code = 1011

[[fault]]
kind = "expire_token"          # mid-morning: every token dies, connections close, the next LOGIN gets 8005
market_time = "10:30:00"
drop = true

[[fault]]
kind = "kick"                  # before noon: another session with the same app key (R10001)
market_time = "11:30:00"

[[fault]]
kind = "stall"                 # no frames and no PINGs for longer than record's --silence-timeout
market_time = "12:30:00"
seconds = 6

[[fault]]
kind = "reject_reg"            # the REGs after the next cut are refused (rate limit), twice
market_time = "13:59:59"
return_code = 105110
count = 2

[[fault]]
kind = "drop"
market_time = "14:00:00"
abort = true

[[fault]]
kind = "burst"                 # REAL frames held back, then all at once (PINGs go on)
market_time = "14:30:00"
seconds = 2

[[fault]]
kind = "close_after_handshake" # the next three connections are closed at once (a restarting server)
market_time = "16:29:59"
count = 3
code = 1013

[[fault]]
kind = "drop"
market_time = "16:30:00"
code = 1011
"""

EXPECTED_DISCONNECTS = [
    ("closed", "1011"), ("closed", "token expired"), ("login_failed", "8005"), ("kicked", "R10001"), ("silence", ""),
    ("dropped", ""), ("closed", "1011"), ("closed", "1013"), ("closed", "1013"), ("closed", "1013"),
]
"""What the faults above end connections with, in order: (record's cause, a part of its detail). A fault may strike
while the gap of the one before is still open (the market clock runs on while the recorder reconnects), so the
check is on ``disconnect`` events, each of which must lie inside a gap."""


def _read(root: Path, table: str) -> list[dict[str, Any]]:
    """The table's rows in file order, ``recv_ts`` as integer nanoseconds in ``ns``."""
    t = ds.dataset(root / table, format="parquet", partitioning="hive").to_table()
    t = t.append_column("ns", t.column("recv_ts").cast(pa.int64())).drop_columns(["recv_ts"])
    return t.to_pylist()  # type: ignore[no-any-return]


async def _record_day(out: Path, faults: Path) -> tuple[int, str]:
    args = (
        "--simulate", "--sim-start", "08:00", "--speed", str(SPEED), "--items", ",".join(ITEMS), "--seed", str(SEED),
        "--port", "0", "--ping-interval", "2", "--faults", str(faults), "--max-backlog", "32",
    )
    async with started_replay(*args, limit=WALL_LIMIT + 90) as replay:
        argv = cli_argv(
            "record", "--items", ",".join(ITEMS), "--types", "0D,0E", "--url", replay.url, "--out", str(out),
            "--duration", f"{WALL_LIMIT + 30:g}s", "--silence-timeout", "3.5", "--kick-wait", "1",
            "--max-backoff", "1", "--healthy-after", "3", "-q",
        )
        rec = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
        try:
            await replay.stop_after_market_time(rec, END, WALL_LIMIT)
            _, err = await asyncio.wait_for(rec.communicate(), 45)
        finally:
            if rec.returncode is None:
                rec.kill()
                await rec.wait()
        assert await replay.interrupt() == 0, replay.output
        assert rec.returncode is not None
        return rec.returncode, err.decode() + replay.output


def _simulated_rows() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """What the server's simulator produces for each (item, type) over the day: rows as parsed JSON."""
    market = SimulatedMarket(seed=SEED, items=ITEMS, start=START)
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    t = float(START)
    while t < END:
        t = min(END, t + 600.0)
        for tick in market.advance(t):
            for row in tick.rows:
                rows[row.item, row.type].append(json.loads(row.text))
    return rows


def _stored_rows(frames: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[int, dict[str, Any]]]]:
    """Every REAL row the recorder stored, per (item, type), with its frame's receive time, in receive order."""
    rows: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for f in frames:
        if f["direction"] != "in" or f["trnm"] != "REAL":
            continue
        for row in json.loads(f["text"])["data"]:
            rows[row["item"], row["type"]].append((f["ns"], row))
    return rows


def _gaps(events: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """(start ns, end ns, cause) of every gap in ``events``, a gap still open at the end ending at infinity."""
    out: list[tuple[int, int, str]] = []
    start: tuple[int, str] | None = None
    for e in events:
        detail = json.loads(e["detail"]) if e["detail"] else {}
        if e["kind"] == "gap_start" and start is None:
            start = (e["ns"], detail.get("cause", ""))
        elif e["kind"] == "gap_end" and start is not None:
            out.append((start[0], e["ns"], start[1]))
            start = None
    if start is not None:
        out.append((start[0], 1 << 62, start[1]))
    return out


async def _replay_to_a_client(out: Path) -> list[str]:
    """The REAL frames a client gets of the whole recorded day: until the replay's ``/control`` says the tape
    ``ended`` and that it sent the client no more frames than it got (not until a quiet wall-clock spell)."""
    async with started_replay(str(out), "--speed", "max", "--start-delay", "0", "--port", "0", limit=240) as replay:
        got: list[str] = []
        async with connect(replay.url, max_size=None) as ws:
            await ws.send('{"trnm":"LOGIN","token":"t"}')
            await ws.recv()
            await ws.send(json.dumps({
                "trnm": "REG", "grp_no": "1", "refresh": "1",
                "data": [{"item": list(ITEMS), "type": ["0D", "0E"]}],
            }))
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), 1.0)
                except TimeoutError:
                    st = await replay.status()
                    if st["state"] == "ended" and st["server"]["frames_sent"] <= len(got):
                        break
                    continue
                assert isinstance(raw, str)
                if raw == PING_TEXT:
                    await ws.send(raw)
                elif '"trnm":"REAL"' in raw:
                    got.append(raw)
        assert await replay.interrupt() == 0
        return got


@pytest.mark.slow
@pytest.mark.timeout(WALL_LIMIT + 300)  # the recording (76 s quiet), the simulator's day in process, a replay
def test_a_trading_day_of_faults_is_recorded_with_every_row_accounted_for(tmp_path: Path, report: Report) -> None:
    out = tmp_path / "data"
    faults = tmp_path / "day.toml"
    faults.write_text(FAULTS)
    code, output = asyncio.run(_record_day(out, faults))
    assert code == 0, output
    report.extra["trading day"] = check_recorded_day(out)


def check_recorded_day(out: Path) -> str:
    """The checks of the module docstring on a recorded day; a line for the reliability summary."""
    verify = subprocess.run(
        cli_argv("kiwoom-tape", "verify", str(out)), capture_output=True, text=True, timeout=120
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    events = sorted(_read(out, "events"), key=lambda e: e["ns"])  # stable: file order among equal times
    gaps = _gaps(events)
    causes = [c for _, _, c in gaps]
    disconnects = [(e["ns"], json.loads(e["detail"])) for e in events if e["kind"] == "disconnect"]
    seen = iter((d["cause"], d.get("detail", "")) for _, d in disconnects)
    missing = [want for want in EXPECTED_DISCONNECTS if not any(c == want[0] and want[1] in d for c, d in seen)]
    assert not missing, f"faults without their disconnect: {missing}; disconnects {[d for _, d in disconnects]}"
    # a disconnect is logged, then its gap opened (moments later), or it falls inside an open gap
    outside = [d for t, d in disconnects if d["cause"] != "stopped" and not any(s - NS <= t <= e for s, e, _ in gaps)]
    assert not outside, f"disconnects outside any gap: {outside}"
    refused = [e for e in events if e["kind"] == "reg_ack" and e["return_code"] == 105110]
    assert len(refused) >= 2, [(e["return_code"], e["detail"]) for e in events if e["kind"] == "reg_ack"]

    frames = _read(out, "frames")
    frames.sort(key=lambda f: (f["run_id"], f["seq"]))
    keys = [(f["run_id"], f["seq"]) for f in frames]
    assert len(set(keys)) == len(keys), "a frame is stored twice"
    reals = [f["text"] for f in frames if f["direction"] == "in" and f["trnm"] == "REAL"]
    assert len(set(reals)) == len(reals), "a REAL frame is stored twice"

    simulated = _simulated_rows()
    stored = _stored_rows(frames)
    lost_outside = []
    accounted = 0
    for key, rows in stored.items():
        sim = simulated.get(key, [])
        pos = [-1]
        j = 0
        for _, row in rows:
            while j < len(sim) and sim[j] != row:
                j += 1
            assert j < len(sim), f"{key}: stored row not produced by the simulator (or out of order): {row}"
            pos.append(j)
            j += 1
        for k in range(1, len(pos) - 1):
            if pos[k + 1] != pos[k] + 1:  # rows between two stored rows missing: a gap must lie between them
                before, after = rows[k - 1][0], rows[k][0]
                if not any(before <= start and end <= after for start, end, _ in gaps):
                    lost_outside.append((key, pos[k + 1] - pos[k] - 1, before, after))
        accounted += len(rows)
    assert not lost_outside, f"rows lost outside any gap: {lost_outside[:5]}"
    assert set(stored) >= {("005930", "0D"), ("005930_NX", "0D"), ("069500", "0D"), ("005930", "0E")}, set(stored)

    got = asyncio.run(_replay_to_a_client(out))
    assert got == reals, f"replay sent {len(got)} frames, {len(reals)} recorded"

    return (
        f"{accounted} rows in {len(reals)} frames, 08:00-20:00 at {SPEED}x; gaps {len(gaps)} ({', '.join(causes)}); "
        "0 lost outside a gap; replay byte-exact"
    )
