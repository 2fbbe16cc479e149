"""Our replay server for the benchmarks: ``kiwoom_tape.replay.server.serve`` with a recorded dataset as its source.

Run as ``python -m bench.replay_server`` (pinned to its own core). It serves ``--dataset`` with
:class:`kiwoom_tape.replay.recorded.RecordedSource` (``--speed 0``: as fast as the slowest client reads, the
``replay --speed max`` path; else recorded seconds per real second), waits for ``--connections``
clients to come and go, and writes ``--stats`` JSON: frames sent, the CPU seconds it used from listening to
the end (``cpu_s``) and, with ``--pacing``, the pacing error of every frame sent to the first client (send
time minus its scheduled time, in seconds, counted from the least late frame; ``pacing_offset_s`` is that
frame's error counted from the first frame).

Without ``kiwoom_tape.replay.recorded`` (an older tree) it falls back to a minimal in-bench source that dispatches
the dataset's REAL frames as fast as the server takes them; the stats say which source ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds
from kiwoom_tape.replay.recorded import RecordedSource
from kiwoom_tape.replay.server import serve
from kiwoom_tape.schemas.versions import recv_ns_of

from bench.machine import write_atomic


def _recorded_frames(dataset: Path) -> tuple[list[int], list[str]]:
    t = ds.dataset(dataset / "frames", format="parquet", partitioning="hive").to_table(
        columns=["recv_ts", "recv_sub_us", "seq", "direction", "trnm", "text"])
    t = t.filter(pc.and_(pc.equal(t["direction"], "in"), pc.equal(t["trnm"], "REAL")))
    t = t.sort_by([("recv_ts", "ascending"), ("recv_sub_us", "ascending"), ("seq", "ascending")])
    return recv_ns_of(t).to_pylist(), t["text"].to_pylist()


async def _main(args: argparse.Namespace) -> int:
    dataset = Path(args.dataset)
    speed = None if args.speed == 0 else args.speed
    kind = "RecordedSource"
    source = RecordedSource(dataset, speed=speed, start_delay=args.start_delay)
    async with serve(source, port=0, keep_sent=args.pacing, ping_interval=3600.0,
                     max_queue_frames=10**7) as server:
        write_atomic(args.ready_file, str(server.port))
        cpu0 = time.process_time()
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if server.stats.connections >= args.connections and server.clients == 0:
                break
            await asyncio.sleep(0.1)
        stats: dict[str, Any] = {"source": kind, "frames_sent": server.stats.frames_sent,
                                 "connections": server.stats.connections, "cpu_s": time.process_time() - cpu0}
        if args.pacing and server.sent:
            ts, texts = _recorded_frames(dataset)
            when = dict(zip(texts, ts, strict=True))
            first = [(t, when[text]) for conn, t, text in server.sent if conn == 1 and text in when]
            if first:
                # Each frame's send time minus its recorded time (scaled), both from the first frame. The
                # first frame is sent at an unknown lateness of its own, so these are offset by it: the
                # errors are given from the least late frame (>= 0, the spread of the lateness), and that
                # frame's error from the first one (<= 0) as the offset.
                t0, r0 = first[0]
                errs = [(t - t0) - (r - r0) / 1e9 / (speed or 1.0) for t, r in first]
                least = min(errs)
                stats["pacing_errors_s"] = [e - least for e in errs]
                stats["pacing_offset_s"] = least
    write_atomic(args.stats, json.dumps(stats))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.replay_server", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--speed", type=float, default=0.0, help="0 = as fast as the clients read")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--start-delay", type=float, default=1.0)
    p.add_argument("--pacing", action="store_true", help="record send times and report the pacing error")
    p.add_argument("--timeout", type=float, default=900.0)
    args = p.parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
