"""Generated fuzz cases (``_fuzzgen``) against the mock server's HTTP endpoints: ``/oauth2/token``,
``/oauth2/revoke`` and ``/control``.

The bulk goes through the server's request handler in process (``Server.handle_rest``, which routes
``/control`` to ``kiwoom_tape.replay.control.handle_http``), with a recorded replay as the source so that every
command is really applied; a few hundred go over a real loopback socket as raw HTTP requests, mutated
down to the request line and headers.

Documented errors: none; the handler answers every request with a status and a JSON object
(``kiwoom_tape.replay.server``, ``kiwoom_tape.replay.control``). Properties: the status is one of 200/400/404/405 (and,
over
the socket, 413/431 from the request reader); the answer is encodable JSON; a token is issued only for
a well-formed au10001 request; the app key and secret never come back in an answer; ``/control``
answers a status (200) or a non-empty error (400); afterwards the server still issues tokens, answers
``/control`` and accepts a WebSocket LOGIN.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.replay.control import CONTROL_PATH
from kiwoom_tape.replay.recorded import RecordedSource
from kiwoom_tape.replay.server import Server, serve
from kiwoom_tape.schemas.auth import REVOKE_PATH, TOKEN_PATH, validate_token_request
from websockets.asyncio.client import connect

from ._fuzzgen import cases, mutate, nasty_scalar, run_cases, seed, server_seeds
from .conftest import Report, SecretAudit

SOCKET_CASES = 300
BATCH = 16
KST = dt.timezone(dt.timedelta(hours=9))
DAY_START_NS = int(dt.datetime(2026, 1, 5, 9, 0, tzinfo=KST).timestamp()) * 10**9


@dataclass(frozen=True)
class Secrets:
    appkey: str
    secretkey: str


@pytest.fixture
def secrets(audit: SecretAudit) -> Secrets:
    """The run's app key and secret: fixed by the seed (cases must be reproducible), grepped by the audit."""
    rng = random.Random(f"{seed()}/secrets")
    s = Secrets(f"FUZZAPPKEY{rng.randbytes(16).hex()}", f"FUZZSECRET{rng.randbytes(16).hex()}")
    audit.add(s.appkey, "fuzz app key")
    audit.add(s.secretkey, "fuzz secret key")
    return s


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """A small recorded day (the fuzz seeds' REAL frames, 100 ms apart from 09:00 KST)."""
    root = tmp_path / "recorded"
    with Store(root, "ctl") as store:
        k = 0
        for frame in server_seeds():
            k += store.add_real_frame(DAY_START_NS + k * 10**8, frame) is not None
    return root


def _bodies(s: Secrets) -> dict[str, tuple[bytes, ...]]:
    enc = msgspec.json.encode
    return {
        TOKEN_PATH: (enc({"grant_type": "client_credentials", "appkey": s.appkey, "secretkey": s.secretkey}),),
        REVOKE_PATH: (enc({"appkey": s.appkey, "secretkey": s.secretkey, "token": "tok"}),),
        CONTROL_PATH: tuple(enc(c) for c in (
            {"cmd": "status"}, {"cmd": "pause"}, {"cmd": "resume"}, {"cmd": "step", "n": 5},
            {"cmd": "seek", "to": "09:00:01.5"}, {"cmd": "speed", "value": 10}, {"cmd": "speed", "value": "max"},
        )),
    }


QUERIES = ("", "cmd=status", "cmd=step&n=3", "cmd=seek&to=09:00", "cmd=speed&value=max", "cmd=pause&cmd=resume",
           "n=%FF%FE", "cmd=%00", "to=" + "9" * 5000, "=&&=", "cmd=step&n=1e400")
METHODS = ("GET", "PUT", "DELETE", "HEAD", "post", "", "POST ", "\u0000", "가")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes


def _request_maker(s: Secrets) -> Callable[[random.Random], Request]:
    bodies = _bodies(s)
    every = tuple(b for group in bodies.values() for b in group)

    def make(rng: random.Random) -> Request:
        path = rng.choice((TOKEN_PATH, TOKEN_PATH, REVOKE_PATH, CONTROL_PATH, CONTROL_PATH, CONTROL_PATH, "/"))
        seeds = bodies.get(path, every)
        body = b"" if rng.random() < 0.05 else mutate(rng, seeds)
        if path == CONTROL_PATH and rng.random() < 0.4:
            path += "?" + rng.choice(QUERIES)
        if rng.random() < 0.1:
            path = rng.choice((path + "/", "/" + path, path.upper(), path + "%00", path + "?" + str(nasty_scalar(rng)),
                               "/oauth2", "//control", "*", "http://127.0.0.1/oauth2/token"))
        method = "POST" if rng.random() < 0.8 else rng.choice(METHODS)
        return Request(method, path, body)

    return make


def _check_answer(s: Secrets, path: str, body: bytes, status: int, payload: object, *, socket: bool = False) -> None:
    assert status in ((200, 400, 404, 405, 413, 431) if socket else (200, 400, 404, 405)), (status, payload)
    assert isinstance(payload, dict), payload
    encoded = msgspec.json.encode(payload)  # what the connection writes: it must encode
    route = path.partition("?")[0]
    if route in (TOKEN_PATH, REVOKE_PATH):
        assert s.appkey.encode() not in encoded and s.secretkey.encode() not in encoded, payload
    if route == TOKEN_PATH and payload.get("token") is not None:
        assert status == 200 and payload.get("return_code") == 0
        assert validate_token_request(msgspec.json.decode(body)) is None, body  # issued only for a valid request
    if route == CONTROL_PATH and status == 200:
        assert isinstance(payload.get("state"), str), payload
    if status == 400 and route == CONTROL_PATH:
        assert isinstance(payload.get("error"), str) and payload["error"], payload


def _still_serving(server: Server, s: Secrets) -> None:
    body = msgspec.json.encode({"grant_type": "client_credentials", "appkey": s.appkey, "secretkey": s.secretkey})
    status, payload = server.handle_rest("POST", TOKEN_PATH, body)
    assert status == 200 and isinstance(payload.get("token"), str), payload
    status, payload = server.handle_rest("GET", CONTROL_PATH, b"")
    assert status == 200 and payload["server"]["url"] == server.url, payload


def test_http_handlers_take_anything(recorded: Path, secrets: Secrets, report: Report) -> None:
    n = cases(0.10)
    server = Server(RecordedSource(recorded, speed=None, start_delay=60))

    def check(req: Request) -> None:
        status, payload = server.handle_rest(req.method, req.path, req.body)
        _check_answer(secrets, req.path, req.body, status, payload)

    run_cases("Server.handle_rest", n, _request_maker(secrets), check)
    _still_serving(server, secrets)
    report.fuzz["HTTP handlers (in process)"] = n


# -- over a real socket ----------------------------------------------------------------------------


def _raw(rng: random.Random, req: Request) -> tuple[bytes, bool]:
    """The request as bytes, and whether its request line and headers were mutated (or are not HTTP)."""
    line = f"{req.method} {req.path} HTTP/1.1"
    plain = len(line.split(" ")) == 3 and line.isprintable()
    head = (f"{line}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(req.body)}\r\n\r\n").encode("utf-8", "replace")
    if rng.random() < 0.25:
        return mutate(rng, (head,), valid_share=0.0) + req.body, True
    return head + req.body, not plain


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        writer.write_eof()  # no more is coming: a server waiting for a promised body may give up early
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 1.0)
    except (TimeoutError, ConnectionError):
        return b"<no answer>"
    finally:
        writer.close()


def test_http_over_loopback_takes_anything(recorded: Path, secrets: Secrets, report: Report) -> None:
    make = _request_maker(secrets)
    s = seed()
    reqs = [make(random.Random(f"{s}/socket/{i}")) for i in range(SOCKET_CASES)]
    raws, mutated = zip(*(_raw(random.Random(f"{s}/socket-raw/{i}"), r) for i, r in enumerate(reqs)), strict=True)

    async def main() -> list[bytes]:
        answers: list[bytes] = []
        async with serve(RecordedSource(recorded, speed=None, start_delay=60), port=0) as server:
            for k in range(0, len(raws), BATCH):
                answers += await asyncio.gather(*(_exchange(server.port, r) for r in raws[k : k + BATCH]))
            _still_serving(server, secrets)
            async with connect(server.url) as ws:  # and the WebSocket side still works
                await ws.send('{"trnm":"LOGIN","token":"' + server.issue_token() + '"}')
                assert msgspec.json.decode(await asyncio.wait_for(ws.recv(), 5))["return_code"] == 0
        return answers

    answers = asyncio.run(main())
    ours = 0
    for i, (req, raw, head_mutated, answer) in enumerate(zip(reqs, raws, mutated, answers, strict=True)):
        where = f"seed {s}, socket case {i}: {raw[:300]!r} -> {answer[:300]!r}"
        if answer in (b"", b"<no answer>"):
            continue  # closed, or waiting for a body its Content-Length promised
        assert answer.startswith(b"HTTP/1.1 "), where
        head, _, body = answer.partition(b"\r\n\r\n")
        if b"application/json" in head and not raw.startswith(b"GET "):
            ours += 1
            status, payload = int(head.split(b" ", 2)[1]), msgspec.json.decode(body)
            # a mutated request line may name another route, or none: then only the route-free checks
            _check_answer(secrets, "" if head_mutated else req.path, req.body, status, payload, socket=True)
    assert ours >= SOCKET_CASES // 2, ours  # most requests reached the handler and were checked
    report.fuzz["HTTP over loopback"] = SOCKET_CASES
