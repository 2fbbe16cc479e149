"""Which REAL types a recorded day holds: what a replay of it can serve (docs/protocol.md 1.3, section 3).

A replay sends back what Kiwoom sent, so it serves the types the recorder registered that day: they
are read from the recorder's own REG frames (``direction = 'out'``, ``trnm = 'REG'``; docs/protocol.md
1.3), which are few, so that only the ``direction`` and ``trnm`` columns of the day are read in full. A
type registered but never sent is served as what it was: silence. A day without a REG frame of its
own (a tape not written by ``record``, or a recording that went on past midnight) is scanned instead:
the ``"type"`` of every row of its REAL frames, in Arrow, without decoding the frames in Python.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["day_types"]


class _RegData(msgspec.Struct):
    type: list[str] = []


class _Reg(msgspec.Struct):
    trnm: str
    data: list[_RegData] = []


_reg = msgspec.json.Decoder(_Reg)
_TYPE_KEY = r'"type"\s*:\s*"'
_TYPE_CODE = r'^(?P<t>[0-9A-Za-z]{1,4})"'


def _registered(file: pq.ParquetFile) -> set[str] | None:
    """The types of the REG frames the recorder sent in ``file``; None when it holds no REG frame."""
    heads = file.read(columns=["direction", "trnm"])
    mask = pc.and_(pc.equal(heads.column("direction"), "out"), pc.equal(heads.column("trnm"), "REG"))
    if not pc.any(mask).as_py():
        return None
    found: set[str] = set()
    row = 0
    for g in range(file.metadata.num_row_groups):
        n = file.metadata.row_group(g).num_rows
        if pc.any(mask.slice(row, n)).as_py():
            texts = file.read_row_group(g, columns=["text"]).column("text").filter(mask.slice(row, n))
            for text in texts.to_pylist():
                try:
                    msg = _reg.decode(text or "")
                except msgspec.DecodeError:
                    continue  # a REG the recorder logged but could not have sent as such: not a registration
                found.update(t for d in msg.data for t in d.type)
        row += n
    return found


def _scanned(file: pq.ParquetFile) -> set[str]:
    """The row types of the REAL frames received in ``file`` (a scan of their text in Arrow)."""
    table = file.read(columns=["direction", "trnm", "text"])
    mask = pc.and_(pc.equal(table.column("direction"), "in"), pc.equal(table.column("trnm"), "REAL"))
    texts = table.column("text").filter(mask)
    if not len(texts):
        return set()
    pieces = pc.list_flatten(pc.split_pattern_regex(texts, _TYPE_KEY))
    codes = pc.struct_field(pc.extract_regex(pieces, _TYPE_CODE), [0])
    return {c for c in pc.unique(codes).to_pylist() if c}


def day_types(paths: Iterable[Path]) -> frozenset[str] | None:
    """The REAL types the ``frames`` part files ``paths`` (one recorded day) can serve (see the module
    docstring); None if a file cannot be read (then nobody can say, and the server warns of nothing)."""
    files: list[pq.ParquetFile] = []
    try:
        files.extend(pq.ParquetFile(p) for p in paths)
        registered = [_registered(f) for f in files]
        if any(r is not None for r in registered):
            return frozenset(t for r in registered if r for t in r)
        return frozenset(t for f in files for t in _scanned(f))
    except (OSError, pa.ArrowException):
        return None
    finally:
        for f in files:
            f.close()
