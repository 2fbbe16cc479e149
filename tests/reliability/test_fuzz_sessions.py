"""Generated fuzz cases (``_fuzzgen``) against both sans-I/O sessions of ``kiwoom_tape.schemas.protocol`` and its
decoders.

Documented errors: ``decode_server_message`` and ``decode_client_message`` raise only ProtocolError;
``ClientSession.receive`` and ``ServerSession.receive``/``tick`` never raise (module docstrings).
Properties: the server session only ever sends JSON objects with a string ``trnm`` and closes only
with 1000; the client session sends only LOGIN/REG/REMOVE envelopes and verbatim PING echoes, and
turns every message the decoder refuses into exactly one UnexpectedMessage.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from kiwoom_tape.schemas.errors import ProtocolError
from kiwoom_tape.schemas.protocol import (
    ClientSession,
    ClientState,
    Event,
    PingEchoed,
    RealData,
    ServerSession,
    ServerState,
    UnexpectedMessage,
    decode_client_message,
    decode_server_message,
    guess_trnm,
)

from ._fuzzgen import as_received, cases, client_seeds, mutate, run_cases, server_seeds
from .conftest import Report

VALID_REG = '{"trnm":"REG","grp_no":"9","refresh":"1","data":[{"item":["A"],"type":["0D"]}]}'


@dataclass
class Conversation:
    """Messages fed to a session in one state, at the given times."""

    start: str
    messages: list[str | bytes]
    times: list[float]


def _conversation(rng: random.Random, seeds: tuple[bytes, ...], starts: tuple[str, ...]) -> Conversation:
    n = rng.choice((1, 1, 1, 2, 3))
    t, times = 0.1, []
    for _ in range(n):
        t += rng.choice((0.0, 0.01, 0.3, 2.0, 20.0))
        times.append(t)
    return Conversation(rng.choice(starts), [as_received(rng, mutate(rng, seeds)) for _ in range(n)], times)


def _received(seeds: tuple[bytes, ...], rng: random.Random) -> str | bytes:
    return as_received(rng, mutate(rng, seeds))


def _json_object_with_trnm(text: str | bytes) -> dict[str, object]:
    body = json.loads(text)
    assert isinstance(body, dict) and isinstance(body.get("trnm"), str), text
    return body


# -- the decoders ------------------------------------------------------------------------------------


def _check_decoded(decode: Callable[[str | bytes], object], data: str | bytes) -> None:
    try:
        decode(data)
    except ProtocolError as exc:
        assert exc.reason and len(exc.excerpt) <= 83, exc  # a short excerpt, never the whole message
        raise


def test_decoders_raise_only_protocol_error(report: Report) -> None:
    n = cases(0.06)
    targets: list[tuple[str, Callable[[str | bytes], object], tuple[bytes, ...]]] = [
        ("decode_server_message", decode_server_message, server_seeds()),
        ("decode_client_message", decode_client_message, client_seeds()),
    ]
    for name, decode, seeds in targets:
        run_cases(name, n, partial(_received, seeds), partial(_check_decoded, decode), documented=(ProtocolError,))
        report.fuzz[name] = n
    n_guess = cases(0.02)
    run_cases("guess_trnm", n_guess, partial(_received, client_seeds()), _check_guess)
    report.fuzz["guess_trnm"] = n_guess


def _check_guess(data: str | bytes) -> None:
    trnm = guess_trnm(data)
    assert trnm is None or (isinstance(trnm, str) and len(trnm) <= 20)


# -- the client session ----------------------------------------------------------------------------


def _client(start: str) -> ClientSession:
    s = ClientSession(token="t", reg_interval=0.0)
    s.subscribe(["005930", "000660_NX"], ["0D", "0E"])
    if start == "new":
        return s
    s.connect(0.0)
    if start == "open":
        s.receive('{"trnm":"LOGIN","return_code":0,"return_msg":""}', 0.0)
    s.data_to_send()
    return s


def _check_client(conv: Conversation) -> None:
    s = _client(conv.start)
    for msg, now in zip(conv.messages, conv.times, strict=True):
        try:
            decode_server_message(msg)
            refused = False
        except ProtocolError:
            refused = True
        events = s.receive(msg, now)
        assert events and all(isinstance(e, Event) for e in events), events
        if refused:
            assert len(events) == 1 and isinstance(events[0], UnexpectedMessage), events
        s.tick(now)
        for out in s.data_to_send():
            if any(isinstance(e, PingEchoed) for e in events) and out == msg:
                continue  # the verbatim PING echo (docs/protocol.md 1.6)
            body = _json_object_with_trnm(out)
            assert body["trnm"] in ("LOGIN", "REG", "REMOVE"), out
        deadline = s.next_deadline()
        assert deadline is None or not math.isnan(deadline)
    if s.state is ClientState.CLOSED:
        assert not s.data_to_send()
    real = server_seeds()[0]  # whatever came before, a REAL frame still reads as its rows
    events = s.receive(real, conv.times[-1] + 1.0)
    assert len(events) == 1 and isinstance(events[0], RealData) and events[0].rows, events


def test_client_session_takes_anything(report: Report) -> None:
    n = cases(0.16)
    run_cases("ClientSession.receive", n,
              lambda rng: _conversation(rng, server_seeds(), ("new", "login_sent", "open", "open")), _check_client)
    report.fuzz["ClientSession.receive"] = n


# -- the server session ----------------------------------------------------------------------------


def _check_server(conv: Conversation) -> None:
    s = ServerSession(now=0.0)
    if conv.start != "await_login":
        s.receive('{"trnm":"LOGIN","token":"t"}', 0.0)
        s.data_to_send()
    for msg, now in zip(conv.messages, conv.times, strict=True):
        s.receive(msg, now)
        s.tick(now)
        for out in s.data_to_send():
            _json_object_with_trnm(out)
        assert (s.state is ServerState.CLOSED) == (s.close_request is not None)
        assert s.close_request is None or s.close_request[0] == 1000, s.close_request
        assert all(t in s.config.known_types for _, t in s.registered)
    if s.state is ServerState.OPEN:  # whatever came before, a valid REG still works
        s.receive(VALID_REG, conv.times[-1] + 10.0)
        reply = _json_object_with_trnm(s.data_to_send()[-1])
        assert reply["return_code"] == 0 and s.wants("A", "0D"), reply


def test_server_session_takes_anything(report: Report) -> None:
    n = cases(0.16)
    run_cases("ServerSession.receive", n,
              lambda rng: _conversation(rng, client_seeds(), ("await_login", "open", "open")), _check_server)
    report.fuzz["ServerSession.receive"] = n
