"""A/B of the transport lever (issue 14): a bare picows client (:mod:`bench.bare_picows`) against the bare websockets
client (:mod:`bench.bare_client`, the record section's ceiling), each receiving the lean sender's stream as fast as
TCP delivers it, pinned to core 1 as in ``python -m bench``; interleaved, medians. Needs ``pip install picows``.

::

    python -m bench.levers_transport --out bench/results/transport-2026-12-02.json --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.bare_receive import bare_receive
from bench.frames import make_workload
from bench.machine import machine_info
from bench.report import Config, median

__all__ = ["main"]

CLIENTS = {"websockets": "bench.bare_client", "picows": "bench.bare_picows"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=40_000, help="0D rows of the workload")
    ap.add_argument("--seconds", type=float, default=10.0, help="each run")
    args = ap.parse_args(argv)
    wl = make_workload(args.rows)
    cfg = Config.make(False)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in CLIENTS}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kiwoom-bench-transport-") as d:
        tmp = Path(d)
        wl_path = tmp / "workload.pkl"
        wl.save(wl_path)
        for k in range(args.repeats):
            for name, module in CLIENTS.items():
                r = bare_receive(cfg, tmp, wl_path, wl.items, args.seconds, f"{name}{k}", module)
                runs[name].append(r)
                print(f"run {k + 1} {name}: {r['rate']:,.0f} frames/s, received {r['received']} of {r['sent']}",
                      flush=True)
    med = {name: median([r["rate"] for r in rs]) for name, rs in runs.items()}
    res = {"lever": "transport", "workload": wl.summary(), "machine": machine_info(), "load_before": load_before,
           "load_after": os.getloadavg(), "runs": runs, "medians_frames_per_s": med,
           "picows_over_websockets": med["picows"] / med["websockets"]}
    args.out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k in ("medians_frames_per_s", "picows_over_websockets")}))


if __name__ == "__main__":
    main()
