"""The ``replay`` server as a subprocess under hostile load (issue 11 item 4): clients that never read,
10,000 distinct codes registered and dropped, and SIGTERM / Ctrl-C under load.

Memory and CPU are read from ``/proc`` (Linux only): RSS from ``/proc/PID/status``, CPU time from
``/proc/PID/stat``. These are bounds on resources and the issue's explicit "stops within 2 s", not
speed measurements. The figures go to the reliability summary (``report.server``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from _cli import cli_argv
from websockets.asyncio.client import connect

from .conftest import Report

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

URL_MARK = "ws://127.0.0.1:"
MIB = 2**20


def rss(pid: int) -> int:
    """Resident set size in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_cpu(pid: int, seconds: float = 1.0) -> float:
    """The share of one core the process used over ``seconds``."""
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


class Replay:
    """``replay ARGS`` in a subprocess; stderr drained in the background into :attr:`lines`."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, lines: list[str]) -> None:
        self.proc = proc
        self.port = port
        self.lines = lines
        self.url = f"ws://127.0.0.1:{port}/api/dostk/websocket"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def output(self) -> str:
        return "".join(self.lines)


@asynccontextmanager
async def replay(*args: str) -> AsyncIterator[Replay]:
    proc = await asyncio.create_subprocess_exec(
        *cli_argv("replay", "--port", "0", *args), stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k not in ("KIWOOM_APPKEY", "KIWOOM_SECRETKEY")},
    )
    assert proc.stderr is not None
    stderr = proc.stderr
    lines: list[str] = []

    async def drain() -> None:
        while line := await stderr.readline():
            lines.append(line.decode(errors="replace"))

    task = asyncio.create_task(drain())
    try:
        async with asyncio.timeout(20):
            while not any(URL_MARK in line for line in lines):
                assert proc.returncode is None, "replay exited:\n" + "".join(lines)
                await asyncio.sleep(0.05)
        line = next(line for line in lines if URL_MARK in line)
        port = int(line.split(URL_MARK, 1)[1].split("/", 1)[0])
        yield Replay(proc, port, lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await task


async def stop_with(server: Replay, sig: signal.Signals) -> tuple[int, float]:
    """Send ``sig``; the exit code and the seconds it took to exit."""
    t0 = time.monotonic()
    server.proc.send_signal(sig)
    async with asyncio.timeout(20):
        code = await server.proc.wait()
    return code, time.monotonic() - t0


def _masked(payload: bytes) -> bytes:
    """One client text frame (RFC 6455 5.2: FIN, opcode 1, masked)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def never_reader(port: int, items: list[str], types: tuple[str, ...] = ("0D",)) -> socket.socket:
    """A client that logs in, registers ``items`` and never reads again (a small receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /api/dostk/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "the server closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(_masked(b'{"trnm":"LOGIN","token":"t"}'))
    reg = {"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{"item": items, "type": list(types)}]}
    sock.sendall(_masked(json.dumps(reg).encode()))
    return sock


async def register_and_leave(url: str, items: list[str]) -> None:
    """A well-behaved client: LOGIN, REG ``items`` (0D), read the ack, leave."""
    async with connect(url, close_timeout=1) as ws:
        await ws.send('{"trnm":"LOGIN","token":"t"}')
        assert json.loads(await ws.recv())["return_code"] == 0
        reg = {"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{"item": items, "type": ["0D"]}]}
        await ws.send(json.dumps(reg))
        while (msg := json.loads(await ws.recv()))["trnm"] != "REG":
            pass
        assert msg["return_code"] == 0


def codes(start: int, n: int) -> list[str]:
    """``n`` distinct six-digit stock codes from ``start``."""
    return [f"{start + i:06d}" for i in range(n)]


UNIVERSE = codes(5930, 1) + codes(660, 1) + codes(200000, 29)


def test_a_never_reading_client_leaves_the_server_rss_where_it_was(report: Report) -> None:
    async def main() -> None:
        async with replay("--simulate", "--speed", "5", "--sim-start", "09:30:00", "--max-backlog", "1",
                          "--items", ",".join(UNIVERSE)) as server:
            await asyncio.sleep(1.5)
            start = rss(server.pid)
            socks = [never_reader(server.port, UNIVERSE) for _ in range(2)]
            try:
                peak = start
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.25)
                    peak = max(peak, rss(server.pid))
                    if server.output.count("reads too slowly") >= 2 and time.monotonic() > deadline - 10:
                        break
            finally:
                for s in socks:
                    s.close()
            end = rss(server.pid)
            report.server["server RSS, slow readers"] = (
                f"{start / MIB:.0f} MiB -> peak {peak / MIB:.0f} MiB, {end / MIB:.0f} MiB after (2 never-reading "
                "clients, --speed 5, --max-backlog 1)"
            )
            assert server.output.count("reads too slowly") == 2, server.output[-2000:]
            assert "client #1" in server.output and "bytes in" in server.output
            assert peak - start < 40 * MIB, report.server["server RSS, slow readers"]

    asyncio.run(main())


def test_ten_thousand_codes_registered_and_dropped_leave_cpu_and_rss_near_idle(report: Report) -> None:
    async def main() -> None:
        async with replay("--simulate", "--speed", "1", "--sim-start", "09:30:00", "--items", "005930",
                          "--forget-after", "1") as server:
            await asyncio.sleep(1.5)
            start, idle = rss(server.pid), await idle_cpu(server.pid)
            for wave in range(5):  # 5 x 10 connections x 200 codes, each connection gone after its REG
                base = 100000 + wave * 2000
                await asyncio.gather(*(register_and_leave(server.url, codes(base + k * 200, 200)) for k in range(10)))
            await asyncio.sleep(3.0)  # forget_after (1 s) and a sweep
            after_cpu = await idle_cpu(server.pid)
            end = rss(server.pid)
            report.server["server RSS, 10,000-code churn"] = (
                f"{start / MIB:.0f} MiB -> {end / MIB:.0f} MiB; CPU {idle:.0%} idle before, {after_cpu:.0%} "
                "3 s after (--forget-after 1)"
            )
            assert after_cpu < 0.25, report.server["server RSS, 10,000-code churn"]
            assert end - start < 60 * MIB, report.server["server RSS, 10,000-code churn"]
            assert "(max_items;" in server.output  # 10,000 codes passed the cap: the refusals were logged
            # the server still serves: a new client logs in and gets data
            async with connect(server.url) as ws:
                await ws.send('{"trnm":"LOGIN","token":"t"}')
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["return_code"] == 0

    asyncio.run(main())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_replay_stops_within_2_s_under_load_with_exit_code_0(sig: signal.Signals, report: Report) -> None:
    async def main() -> None:
        async with replay("--simulate", "--speed", "100", "--sim-start", "09:30:00", "--items", "005930") as server:
            socks = [never_reader(server.port, codes(300000 + k * 200, 200)) for k in range(50)]  # 10,000 codes
            try:
                await asyncio.sleep(3.0)
                code, took = await stop_with(server, sig)
            finally:
                for s in socks:
                    s.close()
            report.server[f"time to stop under load ({sig.name})"] = (
                f"{took:.2f} s, exit {code} (10,000 codes on 50 never-reading clients, --speed 100)"
            )
            assert code == 0, server.output[-2000:]
            assert took < 4.0, report.server[f"time to stop under load ({sig.name})"]  # 2 s, with a margin for CI

    asyncio.run(main())


@pytest.mark.parametrize("speed", ["5", "max"])
def test_a_recorded_day_served_to_never_reading_clients_keeps_rss_bounded_and_stops_on_sigterm(
    speed: str, tmp_path: Path, report: Report
) -> None:
    from test_replay_recorded import T9, make_frame, write_tape

    # 3,000 frames of ~8 KB, 20 ms apart: 24 MB over 60 s of tape (12 s at --speed 5)
    write_tape(tmp_path, [make_frame(T9 + k * 20_000_000, [("005930", "0D")], k, 0, pad=8000) for k in range(3000)])

    async def main() -> None:
        async with replay(str(tmp_path), "--speed", speed, "--start-delay", "0", "--max-backlog", "1") as server:
            await asyncio.sleep(1.0)
            start = rss(server.pid)
            socks = [never_reader(server.port, ["005930"]) for _ in range(2)]
            try:
                peak = start
                for _ in range(24):
                    await asyncio.sleep(0.25)
                    peak = max(peak, rss(server.pid))
                code, took = await stop_with(server, signal.SIGTERM)
            finally:
                for s in socks:
                    s.close()
            dropped = server.output.count("reads too slowly")
            report.server[f"server RSS, recorded day at --speed {speed}"] = (
                f"{start / MIB:.0f} MiB -> peak {peak / MIB:.0f} MiB (2 never-reading clients, {dropped} dropped); "
                f"stopped in {took:.2f} s, exit {code}"
            )
            assert peak - start < 40 * MIB, report.server[f"server RSS, recorded day at --speed {speed}"]
            # at a pace the clients are dropped as slow; at max the replay waits for them (bounded by 256 frames)
            assert dropped == (2 if speed == "5" else 0), server.output[-2000:]
            assert code == 0 and took < 4.0

    asyncio.run(main())
