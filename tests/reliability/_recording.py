"""Recording from the mock server in-process, and reading back what was recorded, for the reliability tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiwoom_tape.recorder.auth import TokenProvider
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay.server import Server
from kiwoom_tape.schemas.protocol import is_real_text

from kiwoom_tape.testing import loopback_recorder, run_recorder
from kiwoom_tape.testing import read_table as table

RUN_ID = "reliability"


@dataclass
class Recorded:
    """What one recording left on disk, split by connection (each starts with the recorder's LOGIN)."""

    frames: list[dict[str, Any]]
    events: list[dict[str, Any]]
    orderbook: list[dict[str, Any]]
    by_connection: list[list[dict[str, Any]]] = field(default_factory=list)
    """REAL-looking in-frames of each connection, in the order received."""

    @classmethod
    def read(cls, root: Path) -> Recorded:
        frames = sorted(table(root, "frames"), key=lambda r: (r["run_id"], r["seq"]))
        events = sorted(table(root, "events"), key=lambda r: r["recv_ts"])
        rec = cls(frames, events, table(root, "orderbook"))
        for f in frames:
            if f["direction"] == "out" and f["trnm"] == "LOGIN":
                rec.by_connection.append([])
            elif f["direction"] == "in" and is_real_text(f["text"]) and rec.by_connection:
                rec.by_connection[-1].append(f)
        return rec

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]

    def gap_causes(self) -> list[str]:
        import json

        return [json.loads(e["detail"])["cause"] for e in self.events if e["kind"] == "gap_start"]

    def assert_no_duplicates(self) -> None:
        keys = [(f["run_id"], f["seq"]) for f in self.frames]
        assert len(keys) == len(set(keys)), "a frame was stored twice"
        rows = [(r["run_id"], r["frame_seq"], r["row_idx"]) for r in self.orderbook]
        assert len(rows) == len(set(rows)), "an orderbook row was stored twice"

    def compare_with_sent(self, sent: list[tuple[int, float, str]], *, lossy: bool = False) -> int:
        """Each connection recorded what the server sent it, in order: all of it, or (``lossy``) a prefix.
        Returns how many frames were sent but not recorded."""
        lost = 0
        for k, got in enumerate(self.by_connection, start=1):
            texts = [f["text"] for f in got]
            mine = [text for conn, _, text in sent if conn == k]
            assert texts == mine[: len(texts)], f"connection {k}: not what the server sent, in its order"
            lost += len(mine) - len(texts)
            if not lossy:
                assert len(texts) == len(mine), f"connection {k}: {len(mine) - len(texts)} frames sent, not recorded"
        extra = [c for c, _, _ in sent if c > len(self.by_connection)]
        assert not extra, f"frames sent on connections the recorder never logged in on: {set(extra)}"
        return lost


async def record(
    server: Server,
    root: Path,
    items: list[str],
    tokens: TokenProvider,
    until: Callable[[Recorder], Awaitable[None]],
    *,
    silence_timeout: float = 5.0,
    limit: float = 30.0,
) -> tuple[Recorder, BaseException | None]:
    """Record into ``root`` until ``until(recorder)`` returns; returns the recorder and what it raised."""
    rec = loopback_recorder(server.url, root, items, ["0D"], tokens=tokens, run_id=RUN_ID,
                            silence_timeout=silence_timeout)
    error: BaseException | None = None
    async with asyncio.timeout(limit):
        try:
            await run_recorder(rec, until)
        except Exception as exc:
            error = exc
    return rec, error
