"""Plain regression tests for what the generated fuzz cases (``test_fuzz_*``) found in product code."""

from __future__ import annotations

from schemas.protocol import ClientSession, LoginRejected, auth_code_of, login_failed


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
