"""A REAL frame as text: its rows' exact substrings, and frames rebuilt from some of them. Pure.

The replay server sends a recorded REAL frame unchanged to a client that registered every row in it;
a client that registered only some rows gets a frame made of the recorded text around the rows (the
prefix up to the ``data`` list, the separator between rows, the suffix after it) and the wanted rows'
own recorded substrings, in their original order. Key order, spacing and escapes are never re-encoded::

    >>> f = parse_real_frame('{"trnm":"REAL", "data":[{"item":"A","type":"0D","values":{}}, '
    ...                      '{"item":"B","type":"0D","values":{}}]}')
    >>> [(r.item, r.type) for r in f.rows]
    [('A', '0D'), ('B', '0D')]
    >>> f.subset(f.rows[1:])
    '{"trnm":"REAL", "data":[{"item":"B","type":"0D","values":{}}]}'

:func:`parse_real_frame` decodes only each row's ``item`` and ``type`` (msgspec skips ``values``), the
cost of routing a frame. The rows' texts are found the first time one is asked for: the frame is
decoded again with ``data: list[msgspec.Raw]`` (each row's exact bytes), each row's bytes are located
in the frame text in order, the text between them is checked to be only the list's commas and
whitespace, and the text around them to decode to no rows (no second ``data`` key after them). If a
check fails (a frame repeating a row's text outside ``data``, say), rebuilt frames
use the canonical envelope of :func:`kiwoom_tape.schemas.protocol.encode_real_frame`; the whole frame is always
its own text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, Protocol

import msgspec
from kiwoom_tape.schemas.errors import ProtocolError

__all__ = ["FrameHeads", "RealFrame", "RealFrameRow", "decode_heads", "parse_real_frame", "real_heads"]

_CANON_PREFIX: Final = '{"data":['
_CANON_SUFFIX: Final = '],"trnm":"REAL"}'
_WS: Final = b" \t\r\n"
_DATA_OPEN: Final = re.compile(rb'"data"[ \t\r\n]*:[ \t\r\n]*\[[ \t\r\n]*\Z')


class _Head(msgspec.Struct, gc=False):
    type: str
    item: str


class FrameHeads(msgspec.Struct, gc=False):
    """A frame's ``trnm`` and its rows' ``type``/``item``, decoded straight from its text or bytes (msgspec;
    no GC tracking: one is made per frame, none is part of a cycle)."""

    trnm: str
    data: list[_Head]


class _Raws(msgspec.Struct):
    data: list[msgspec.Raw]


_raws = msgspec.json.Decoder(_Raws)
decode_heads: Final = msgspec.json.Decoder(FrameHeads).decode
"""Decode a frame's :class:`FrameHeads`; raises ``msgspec.DecodeError`` (or RecursionError). The fast path of
callers that check ``trnm`` themselves; :func:`real_heads` says why a frame is not REAL rows."""


class _HasText(Protocol):
    @property
    def text(self) -> str: ...


class RealFrameRow:
    """One row of a :class:`RealFrame`: ``item``, ``type``, and its exact ``text`` (found on first use)."""

    __slots__ = ("frame", "index", "item", "type")

    def __init__(self, frame: RealFrame, index: int, item: str, type: str) -> None:
        self.frame = frame
        self.index = index
        self.item = item
        self.type = type

    @property
    def text(self) -> str:
        """The row exactly as it appears in the frame, ``{"values":{...},"type":"0D",...}``."""
        return self.frame.row_texts[self.index]

    def __repr__(self) -> str:
        return f"RealFrameRow({self.item!r}, {self.type!r}, #{self.index})"


class RealFrame:
    """A REAL frame's text and its rows; :meth:`subset` rebuilds a frame from some of the rows.

    Make one with :func:`parse_real_frame`.
    """

    __slots__ = ("_parts", "rows", "text")

    def __init__(self, text: str, heads: Iterable[tuple[str, str]]) -> None:
        self.text = text
        """The whole frame, exactly as recorded."""
        self.rows: tuple[RealFrameRow, ...] = tuple(
            RealFrameRow(self, k, item, rtype) for k, (item, rtype) in enumerate(heads)
        )
        self._parts: tuple[str, str, str, tuple[str, ...]] | None = None

    def __repr__(self) -> str:
        return f"RealFrame({len(self.rows)} rows, {len(self.text)} chars)"

    @property
    def prefix(self) -> str:
        """The text before the first row: ``{"data":[`` in Kiwoom's measured key order."""
        return self._split()[0]

    @property
    def sep(self) -> str:
        """The text between two rows (``,`` in compact JSON)."""
        return self._split()[1]

    @property
    def suffix(self) -> str:
        """The text after the last row: ``],"trnm":"REAL"}``."""
        return self._split()[2]

    @property
    def row_texts(self) -> tuple[str, ...]:
        """Every row's exact text, in order."""
        return self._split()[3]

    def subset(self, rows: Iterable[_HasText]) -> str:
        """The frame with only ``rows`` (some of :attr:`rows`, in order), in the original formatting."""
        prefix, sep, suffix, _ = self._split()
        return prefix + sep.join(r.text for r in rows) + suffix

    def only(self, rows: Iterable[RealFrameRow]) -> RealFrame:
        """A frame of just ``rows`` (some of :attr:`rows`, in order); ``self`` if that is all of them."""
        kept = tuple(rows)
        if len(kept) == len(self.rows):
            return self
        return RealFrame(self.subset(kept), ((r.item, r.type) for r in kept))

    def _split(self) -> tuple[str, str, str, tuple[str, ...]]:
        if self._parts is None:
            self._parts = _split(self.text, len(self.rows))
        return self._parts


def real_heads(data: str | bytes) -> FrameHeads | str:
    """The frame's :class:`FrameHeads` if it is a REAL frame with item/type rows, else why it is not."""
    try:
        env = decode_heads(data)
    except (msgspec.DecodeError, UnicodeError) as exc:  # ValidationError is a DecodeError
        return f"not a REAL frame with item/type rows ({exc})"
    except RecursionError:
        return "JSON nested too deeply"
    if env.trnm != "REAL":
        return f"trnm is {env.trnm[:20]!r}, not 'REAL'"
    return env


def parse_real_frame(text: str) -> RealFrame:
    """Read a REAL frame's rows' ``item`` and ``type`` (see the module docstring).

    Raises :class:`ProtocolError` unless ``text`` is a JSON object with ``"trnm": "REAL"`` and a
    ``data`` list whose rows are objects with string ``item`` and ``type`` (:func:`real_heads`).
    """
    env = real_heads(text)
    if isinstance(env, str):
        raise ProtocolError(env, text)
    return RealFrame(text, ((h.item, h.type) for h in env.data))


def _holds_no_rows(envelope: bytes) -> bool:
    """Whether the frame without the rows found decodes to no rows: the rows were the ``data`` that is read.

    It is not when another ``data`` list follows (a duplicate key: the last one is read) or the rows
    were found inside some other value.
    """
    try:
        return not _raws.decode(envelope).data
    except msgspec.DecodeError:
        return False


def _split(text: str, n: int) -> tuple[str, str, str, tuple[str, ...]]:
    raw = text.encode("utf-8")
    pieces = [bytes(r) for r in _raws.decode(raw).data]  # parse_real_frame already validated the frame
    if len(pieces) != n:  # a duplicate "data" key decoded differently: cannot happen with one decoder
        raise ProtocolError("rows changed between two decodes", text)
    texts = tuple(p.decode("utf-8") for p in pieces)
    if not pieces:
        return _CANON_PREFIX, ",", _CANON_SUFFIX, texts
    starts: list[int] = []
    pos = 0
    for k, p in enumerate(pieces):
        if k == 0:
            at = raw.find(p[:24])  # a short needle is found fast; the whole row is checked next
            while at >= 0 and not raw.startswith(p, at):
                at = raw.find(p[:24], at + 1)
        else:  # the next row follows one comma and whitespace
            at = pos
            while at < len(raw) and raw[at] in b" \t\r\n,":
                at += 1
            if raw.count(b",", pos, at) != 1 or not raw.startswith(p, at):
                at = -1
        if at < 0:
            return _CANON_PREFIX, ",", _CANON_SUFFIX, texts
        starts.append(at)
        pos = at + len(p)
    head, tail = raw[: starts[0]], raw[pos:]
    if _DATA_OPEN.search(head) is None or not tail.lstrip(_WS).startswith(b"]") or not _holds_no_rows(head + tail):
        return _CANON_PREFIX, ",", _CANON_SUFFIX, texts
    sep = raw[starts[0] + len(pieces[0]) : starts[1]].decode("utf-8") if n > 1 else ","
    return head.decode("utf-8"), sep, tail.decode("utf-8"), texts
