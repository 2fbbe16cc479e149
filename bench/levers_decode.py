"""A/B runs of the batch-decode levers (issue 14), in-process on the bench workload, interleaved, medians of CPU time.

What ``record`` does now (:func:`kiwoom_tape.schemas.fastpath.read_real_frame`): per frame one msgspec decode of the
envelope, then per row two typed decodes of its ``values`` (every text-like value as received; every integer
parsed by msgspec once the "+" signs are gone). The levers, each measured against the same per-row work:

- ``decodes, per row``: only the three decodes per row of the fast path (no checks, no packing);
- ``decodes, batched``: the same decodes, one msgspec call per batch of 64 frames (the envelopes as one JSON
  list, then each type's ``values`` of the batch as one JSON list);
- ``0D ints, msgspec per row``: the integer FIDs of each 0D row parsed by msgspec and packed (the fast path);
- ``0D ints, pyarrow.compute``: the same values decoded as strings, turned into columns per batch and cast to
  int64 by ``pyarrow.compute`` kernels (``replace_substring`` of "+", ``cast``), batches of 64 / 1024 / 10,000 rows;
- ``pyarrow.json``: no Python per row at all: a batch of frames (64 or 1,024), one per line, read by pyarrow's JSON
  reader (one thread) into columns, the rows flattened and every integer FID of the 0D rows cast to int64 by the
  same kernels. It does none of the checks that keep the fast path exact (so it is a lower bound of that design's
  cost) and keeps no raw text per row.

::

    python -m bench.levers_decode --out bench/results/batch-decode-2026-12-02.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from kiwoom_tape.schemas import fastpath as fp
from kiwoom_tape.schemas.fields import FIELDS_0D
from msgspec.structs import astuple

from bench.frames import make_workload
from bench.machine import machine_info
from bench.report import median

__all__ = ["levers", "main"]

_BATCH = 64
"""The store's ``defer_frames``: the frames ``record`` reads as one batch."""


def _list_of(decode: Callable[[bytes], Any]) -> Any:
    """``list[T]`` of the Struct type ``T`` a fast-path decoder (a bound ``Decoder.decode``) reads."""
    t: Any = getattr(decode, "__self__").type  # noqa: B009 - a bound method of a C type: not in its stubs
    return list[t]


def levers(frames: list[bytes]) -> dict[str, Callable[[], int]]:
    """Each lever as a function over ``frames`` returning what it counts (frames or 0D rows)."""
    d0 = fp._FAST["0D"]
    envs = msgspec.json.Decoder(list[fp._Frame]).decode
    nums_l = {k: msgspec.json.Decoder(_list_of(v.read_nums), strict=False).decode for k, v in fp._FAST.items()}
    strs_l = {k: msgspec.json.Decoder(_list_of(v.read_strs)).decode for k, v in fp._FAST.items()}

    def read_real_frame() -> int:
        for f in frames:
            fp.read_real_frame(f)
        return len(frames)

    def per_row() -> int:
        for f in frames:
            for r in fp._read_frame(f).data:
                t = fp._FAST[r.type]
                raw = bytes(r.values)
                astuple(t.read_strs(raw))
                t.ints(astuple(t.read_nums(raw.replace(b"+", b""))))
        return len(frames)

    def batched() -> int:
        for i in range(0, len(frames), _BATCH):
            by: dict[str, list[bytes]] = {}
            for x in envs(b"[" + b",".join(frames[i : i + _BATCH]) + b"]"):
                for r in x.data:
                    by.setdefault(r.type, []).append(bytes(r.values))
            for typ, raws in by.items():
                j = b"[" + b",".join(raws) + b"]"
                t = fp._FAST[typ]
                [astuple(s) for s in strs_l[typ](j)]
                [t.ints(astuple(n)) for n in nums_l[typ](j.replace(b"+", b""))]
        return len(frames)

    def ints_msgspec() -> int:
        n = 0
        for f in frames:
            for r in fp._read_frame(f).data:
                if r.type == "0D":
                    d0.pack(*d0.ints(astuple(d0.read_nums(bytes(r.values).replace(b"+", b"")))))
                    n += 1
        return n

    def ints_arrow(batch: int) -> Callable[[], int]:
        def run() -> int:
            n = 0
            rows: list[tuple[Any, ...]] = []

            def cast(rows: list[tuple[Any, ...]]) -> None:
                for col in zip(*rows, strict=True):
                    pc.cast(pc.replace_substring(pa.array(col, pa.string()), "+", ""), pa.int64())

            for f in frames:
                for r in fp._read_frame(f).data:
                    if r.type == "0D":
                        rows.append(d0.ints(astuple(d0.read_every(bytes(r.values)))))
                        n += 1
                        if len(rows) >= batch:
                            cast(rows)
                            rows = []
            if rows:
                cast(rows)
            return n
        return run

    int_fids = [f.fid for f in FIELDS_0D if f.kind in fp._INT_KINDS]

    def arrow_json(batch: int) -> Callable[[], int]:
        opts = pj.ReadOptions(use_threads=False, block_size=1 << 24)

        def run() -> int:
            for i in range(0, len(frames), batch):
                t = pj.read_json(io.BytesIO(b"\n".join(frames[i : i + batch])), read_options=opts)
                rows = pc.list_flatten(t.column("data"))
                values = pc.struct_field(rows, "values")
                is_0d = pc.equal(pc.struct_field(rows, "type"), "0D")
                values = pc.filter(values, is_0d)
                for fid in int_fids:
                    pc.cast(pc.replace_substring(pc.struct_field(values, fid), "+", ""), pa.int64())
            return len(frames)
        return run

    return {
        "read_real_frame (the fast path, all of it), frames/s": read_real_frame,
        "decodes, per row (now), frames/s": per_row,
        f"decodes, batched {_BATCH} frames per call, frames/s": batched,
        "0D ints, msgspec per row (now), rows/s": ints_msgspec,
        "0D ints, pyarrow.compute cast, batch 64, rows/s": ints_arrow(64),
        "0D ints, pyarrow.compute cast, batch 1024, rows/s": ints_arrow(1024),
        "0D ints, pyarrow.compute cast, batch 10000, rows/s": ints_arrow(10_000),
        "pyarrow.json reader + pyarrow.compute casts, batch 64 frames, frames/s": arrow_json(64),
        "pyarrow.json reader + pyarrow.compute casts, batch 1024 frames, frames/s": arrow_json(1024),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=20_000, help="0D rows of the workload")
    args = ap.parse_args(argv)
    wl = make_workload(args.rows)
    runs: dict[str, list[float]] = {}
    fns = levers(wl.frames)
    load_before = os.getloadavg()
    for k in range(args.repeats):  # interleaved: every lever once per round
        for name, fn in fns.items():
            c = time.process_time()
            n = fn()
            runs.setdefault(name, []).append(n / (time.process_time() - c))
        print(f"round {k + 1}: " + "; ".join(f"{name} {v[-1]:,.0f}" for name, v in runs.items()), flush=True)
    res = {"lever": "batch-decode", "workload": wl.summary(), "machine": machine_info(), "load_before": load_before,
           "load_after": os.getloadavg(), "runs": runs, "medians": {k: median(v) for k, v in runs.items()},
           "measure": "CPU time of this process (time.process_time), one thread"}
    args.out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(json.dumps(res["medians"], indent=1))


if __name__ == "__main__":
    main()
