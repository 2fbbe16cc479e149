"""Keeping tokens out of log lines (stored frames are redacted by :func:`kiwoom_tape.schemas.tables.redact_login`).

websockets logs every frame at DEBUG (``-vv``), a LOGIN with its token among them. Both the mock
server and the recorder attach :class:`RedactTokens` to the logger they give websockets. No I/O here.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactTokens", "redact_tokens"]

_TOKEN_IN_TEXT = re.compile(r'("token"\s*:\s*")[^"]*')


def redact_tokens(text: str) -> str:
    """``"token":"abc"`` -> ``"token":"***"`` anywhere in free text (a log line, a repr)."""
    return _TOKEN_IN_TEXT.sub(r"\1***", text) if '"token"' in text else text


class RedactTokens(logging.Filter):
    """A logging filter that rewrites a record's message with :func:`redact_tokens`."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if '"token"' in text:
            record.msg, record.args = redact_tokens(text), None
        return True
