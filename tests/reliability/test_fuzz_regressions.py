"""Plain regression tests for what the generated fuzz cases (``test_fuzz_*``) found in product code."""

from __future__ import annotations

import math
from typing import Any

import pytest
from kiwoom_tape.replay.control import Command, ControlError, handle_http, parse_command
from kiwoom_tape.replay.server import Server
from kiwoom_tape.schemas.auth import REVOKE_PATH, TOKEN_PATH
from kiwoom_tape.schemas.protocol import ClientSession, LoginRejected, auth_code_of, login_failed
from kiwoom_tape.schemas.realframe import parse_real_frame


def test_a_login_refusal_with_a_huge_code_number_is_an_event_not_a_crash() -> None:
    # found by test_fuzz_sessions (ClientSession.receive, KIWOOM_TAPE_FUZZ_SEED=1..3): int() of 5000 digits
    # raised ValueError out of ClientSession.receive, which "never raises for bad input"
    s = ClientSession(token="t")
    s.connect(0.0)
    reply = login_failed(8005).replace("CODE=8005", "CODE=" + "9" * 5000)
    events = s.receive(reply, 0.0)
    assert len(events) == 1 and isinstance(events[0], LoginRejected)
    assert events[0].auth_code is None and not events[0].renew_token
    assert auth_code_of("[CODE=8005, MESSAGE=x]") == 8005
    assert auth_code_of("[CODE=" + "1" * 19 + "]") is None
    assert auth_code_of("[CODE=\u0668\u0660\u0660\u0665]") is None  # Arabic-Indic digits are not a code


def test_a_deeply_nested_http_body_is_a_400_not_a_crash() -> None:
    # found by test_fuzz_http (Server.handle_rest, the CI seed): msgspec raises RecursionError past its depth
    # limit, which escaped handle_rest (and the connection's data_received: no answer at all)
    server = Server(None)
    deep = b'{"a":' * 20_000 + b"1" + b"}" * 20_000
    for path in (TOKEN_PATH, REVOKE_PATH):
        status, payload = server.handle_rest("POST", path, deep)
        assert (status, payload["return_code"]) == (400, 1501), payload
    status, answer = handle_http(_Controls(), "POST", "", deep)
    assert status == 400 and "not JSON" in answer["error"], answer


class _Controls:
    """The least a /control target is (replay.control.Controllable)."""

    def status(self) -> dict[str, Any]:
        return {"state": "paused"}

    def apply(self, command: Command) -> None:
        pass


@pytest.mark.parametrize("args", [
    {"cmd": "speed", "value": 10**400},  # float() overflows
    {"cmd": "step", "n": math.inf},  # int() overflows
    {"cmd": "seek", "to": 10**400},  # math.isfinite() overflows
])
def test_control_numbers_too_large_for_a_float_are_a_control_error(args: dict[str, Any]) -> None:
    # found by test_fuzz_http (Server.handle_rest, the CI seed): OverflowError escaped /control
    with pytest.raises(ControlError):
        parse_command(args)


def test_a_subset_of_a_frame_with_two_data_keys_has_the_rows_asked_for() -> None:
    # found by test_fuzz_values (parse_real_frame, KIWOOM_TAPE_FUZZ_SEED=15, case 3101): the rows were found in
    # the first "data" list, the frame's rows are the last one's, and subset() kept the second list whole
    a = '{"values":{"21":"154500"},"type":"0E","name":"x","item":"A"}'
    b = '{"values":{"21":"154501"},"type":"0E","name":"x","item":"B"}'
    frame = parse_real_frame('{"data":[' + a + "," + b + '],"data":[' + a + "," + b + '],"trnm":"REAL"}')
    assert [r.item for r in frame.rows] == ["A", "B"]
    part = parse_real_frame(frame.subset(frame.rows[1:]))
    assert [r.item for r in part.rows] == ["B"] and part.row_texts == (b,)
    one = parse_real_frame('{"x":{"data":[' + a + ']},"data":[' + a + "," + b + '],"trnm":"REAL"}')
    assert [r.item for r in parse_real_frame(one.subset(one.rows[:1])).rows] == ["A"]
