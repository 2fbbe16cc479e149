"""A recorded REAL frame made ready to send: its exact bytes and each row's (item, type), read with msgspec.

The recorded text is never re-encoded: :class:`RecordedFrame` carries the recorded UTF-8 bytes, and the
server sends them unchanged to a client that registered every row; a client that registered only some
rows gets a frame rebuilt from the rows' own recorded texts (:mod:`kiwoom_tape.schemas.realframe`, parsed only
then). With ``items`` (``--items``), a frame is cut to those items' rows first. A frame that is not REAL
rows is skipped and counted (docs/protocol.md 1.7 for the REAL envelope).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from kiwoom_tape.replay.contracts import Dispatch, EncodedFrame
from kiwoom_tape.schemas.realframe import FrameHeads, RealFrame, decode_heads, parse_real_frame, real_heads

__all__ = ["RecordedFrame", "one_by_one", "take"]

log = logging.getLogger("kiwoom_tape.replay")


class RecordedFrame(msgspec.Struct, gc=False):
    """A recorded REAL frame as :meth:`Server.dispatch_frames` takes it
    (:class:`kiwoom_tape.replay.server.EncodedFrame`):
    its exact UTF-8 bytes and each row's (item, type); the rows' own texts are found only for a subset.
    (A Struct without GC tracking: one is made per frame played, and none is part of a cycle.)"""

    data: bytes
    keys: tuple[tuple[str, str], ...]
    parsed: RealFrame | None = None

    @property
    def real(self) -> RealFrame:
        """The frame as :class:`RealFrame` (parsed on first use)."""
        if self.parsed is None:
            self.parsed = parse_real_frame(self.data.decode("utf-8"))
        return self.parsed

    def subset(self, keep: Sequence[int]) -> str:
        real = self.real
        rows = real.rows
        return real.subset([rows[k] for k in keep])


def take(
    data: Sequence[bytes | None], i: int, hi: int, items: frozenset[str] | None, steps: int = 0
) -> tuple[list[RecordedFrame], int, int]:
    """The frames ``data[i:hi]`` that are part of the replay (at most ``steps`` of them if ``steps``).

    Returns them, the index after the last one looked at, and how many were skipped as not REAL rows
    (each logged at debug level). A frame with no row of ``items`` is left out without counting.
    """
    decode = decode_heads
    out: list[RecordedFrame] = []
    skipped = 0
    while i < hi:
        text = data[i]
        i += 1
        f: RecordedFrame | str | None
        try:  # the common case inline: a REAL frame, no --items (else see _encode)
            env = decode(text)  # type: ignore[arg-type]  # None: _encode says why
        except Exception:
            f = _encode(text, items)
        else:
            rows = env.data
            if env.trnm != "REAL" or items is not None or not rows:
                f = _encode(text, items, env)
            elif len(rows) == 1:
                h = rows[0]
                f = RecordedFrame(text, ((h.item, h.type),))  # type: ignore[arg-type]
            else:
                f = RecordedFrame(text, tuple([(h.item, h.type) for h in rows]))  # type: ignore[arg-type]
        if f is None:
            continue
        if isinstance(f, str):
            skipped += 1
            log.debug("skipping a recorded frame that is not REAL rows: %s", f)
            continue
        out.append(f)
        if len(out) == steps:
            break
    return out, i, skipped


def _encode(
    data: bytes | None, items: frozenset[str] | None, env: FrameHeads | None = None
) -> RecordedFrame | str | None:
    """A recorded frame's bytes (and their ``env``, if decoded already) as a :class:`RecordedFrame`; None if
    it has no row to replay (none of ``items``), or why it is not REAL rows
    (:func:`kiwoom_tape.schemas.realframe.real_heads`)."""
    if data is None:
        return "no text"
    if env is None or env.trnm != "REAL":
        checked = real_heads(data)
        if isinstance(checked, str):
            return checked
        env = checked
    rows = env.data
    if items is not None and not all(h.item in items for h in rows):
        real = parse_real_frame(data.decode("utf-8"))
        real = real.only(r for r in real.rows if r.item in items)
        if not real.rows:
            return None
        return RecordedFrame(real.text.encode("utf-8"), tuple((r.item, r.type) for r in real.rows), real)
    if not rows:
        return None
    return RecordedFrame(data, tuple([(h.item, h.type) for h in rows]))


def one_by_one(dispatch: Dispatch) -> Callable[..., Awaitable[None]]:
    """For a ``dispatch`` without ``frames``: each frame on its own, as rows of a :class:`RealFrame`."""

    async def send(frames: Sequence[EncodedFrame], *, wait: bool) -> None:
        for f in frames:
            real = f.real if isinstance(f, RecordedFrame) else parse_real_frame(f.data.decode("utf-8"))
            await dispatch(real.rows, real, wait=wait)

    return send
