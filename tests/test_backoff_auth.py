"""Reconnect policy and token logic as pure functions: no sleeping, no network but loopback."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kiwoom_tape.recorder.auth import TokenProvider, rest_base_for, token_provider_from_env
from kiwoom_tape.recorder.backoff import KICKED, Ended, ReconnectPolicy, backoff, classify_close
from kiwoom_tape.schemas import auth
from kiwoom_tape.schemas.errors import CredentialsError
from kiwoom_tape.schemas.protocol import renews_token


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(0.01, 5), cap=st.floats(0.1, 120), rands=st.lists(st.floats(0, 1), min_size=1, max_size=40)
)
def test_backoff_is_jittered_capped_and_grows(base: float, cap: float, rands: list[float]) -> None:
    it = iter(rands)
    delays = list(itertools.islice(backoff(base, cap, rand=lambda: next(it)), len(rands)))
    for n, (d, r) in enumerate(zip(delays, rands, strict=True)):
        bound = min(cap, base * 2**n)
        assert 0.05 <= d <= max(0.05, bound) + 1e-9
        assert d == pytest.approx(max(0.05, r * bound))


def test_backoff_upper_bound_reaches_cap_and_stays() -> None:
    delays = list(itertools.islice(backoff(0.5, 30, rand=lambda: 1.0), 12))
    assert delays[:7] == [0.5, 1, 2, 4, 8, 16, 30]
    assert set(delays[6:]) == {30}


@pytest.mark.parametrize(
    ("code", "reason", "system", "cause"),
    [
        (1000, "Bye", None, "kicked"),
        (1000, "", "R10001", "kicked"),
        (1000, "", "R10002", "heartbeat"),
        (1000, "", "R10004", "no_login"),
        (None, "", None, "dropped"),
        (1011, "oops", None, "closed"),
    ],
)
def test_classify_close(code: int | None, reason: str, system: str | None, cause: str) -> None:
    assert classify_close(code, reason, system).cause == cause


def _policy(**kw: object) -> ReconnectPolicy:
    return ReconnectPolicy(rand=lambda: 1.0, **kw)  # type: ignore[arg-type]


def test_backoff_grows_across_failed_connections_and_resets_only_after_a_healthy_one() -> None:
    p = _policy(base=0.5, cap=30, healthy_after=60)
    drops = [p.after(Ended(c)) for c in ("connect_failed", "closed", "dropped", "token_unavailable", "closed")]
    assert [(d.action, d.delay) for d in drops] == [("reconnect", x) for x in (0.5, 1, 2, 4, 8)]
    # logged in, but closed (1013 during REG, a flapping server) before 60 s of receiving: no reset
    assert p.after(Ended("closed", logged_in=True, healthy_for=59.9)).delay == 16
    assert p.after(Ended("closed")).delay == 30
    assert p.after(Ended("dropped", logged_in=True, healthy_for=60.0)).delay == 0.5  # healthy: start over
    assert p.after(Ended("closed")).delay == 1


def test_a_kick_is_not_a_drop_it_waits_long_and_longer() -> None:
    p = _policy()
    waits = [p.after(Ended(KICKED, logged_in=True, healthy_for=2.0)) for _ in range(7)]
    assert [w.action for w in waits] == ["reconnect"] * 7
    assert waits[0].delay >= 60  # the default first wait
    assert [w.delay for w in waits] == [75, 150, 300, 600, 1200, 1800, 1800]  # x1.25 jitter at rand=1, capped
    assert p.after(Ended("closed")).delay == 0.5  # the drop backoff is its own streak
    again = p.after(Ended(KICKED, logged_in=True, healthy_for=1800.0))  # left alone for the longest wait
    assert again.delay == 75
    low = ReconnectPolicy(rand=lambda: 0.0)
    assert low.after(Ended(KICKED)).delay == 60  # jitter only ever lengthens the wait


def test_a_kick_ends_the_run_under_on_kick_exit() -> None:
    assert _policy(on_kick="exit").after(Ended(KICKED, logged_in=True)).action == "exit_kicked"
    assert _policy(on_kick="exit").after(Ended("closed")).action == "reconnect"


@pytest.mark.parametrize(
    ("return_code", "msg", "renew"),
    [
        (805004, "토큰 인증에 실패했습니다 [CODE=8005, MESSAGE=Token이 유효하지 않습니다]", True),
        (805004, "[CODE=8031, MESSAGE=mode]", True),
        (8103, "", True),
        (805004, "[CODE=8030, MESSAGE=real/mock mismatch]", False),
        (805004, "[CODE=8001, MESSAGE=bad app key]", False),
        (805004, "no code at all", False),
    ],
)
def test_the_protocol_layer_decides_which_refusals_a_new_token_fixes(return_code: int, msg: str, renew: bool) -> None:
    assert renews_token(return_code, msg) is renew
    p = _policy()
    d = p.after(Ended("login_failed", renew_token=renews_token(return_code, msg)))
    assert d.action == ("renew_token" if renew else "stop")


def test_one_new_token_per_refusal_until_a_login_works() -> None:
    p = _policy()
    refused = Ended("login_failed", renew_token=True)
    assert p.after(refused).action == "renew_token"
    assert p.after(refused).action == "stop"  # the new token was refused too: a token cannot fix it
    p = _policy()
    assert p.after(refused).action == "renew_token"
    assert p.after(Ended("closed", logged_in=True, healthy_for=1.0)).action == "reconnect"  # the new one worked
    assert p.after(refused).action == "renew_token"  # a later expiry gets its own new token
    assert _policy(can_renew=False).after(refused).action == "stop"  # KIWOOM_TOKEN: nothing to renew with


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("wss://api.kiwoom.com:10000/api/dostk/websocket", "https://api.kiwoom.com"),
        ("wss://mockapi.kiwoom.com:10000/api/dostk/websocket", "https://mockapi.kiwoom.com"),
        ("ws://127.0.0.1:10000/api/dostk/websocket", "http://127.0.0.1:10000"),
        ("ws://[::1]:9/api/dostk/websocket", "http://[::1]:9"),
    ],
)
def test_rest_base_follows_ws_url(url: str, base: str) -> None:
    assert rest_base_for(url) == base


def test_credentials_from_env() -> None:
    prod = "wss://api.kiwoom.com:10000/api/dostk/websocket"
    assert token_provider_from_env(prod, {"KIWOOM_TOKEN": "T"}).fixed_token == "T"
    p = token_provider_from_env(prod, {"KIWOOM_APPKEY": "A", "KIWOOM_SECRETKEY": "S"})
    assert p.renewable and "A" not in repr(p) and "S" not in repr(p).replace("TokenProvider", "")
    with pytest.raises(CredentialsError) as info:
        token_provider_from_env(prod, {})
    assert "KIWOOM_TOKEN" in str(info.value)
    with pytest.raises(CredentialsError):
        token_provider_from_env(prod, {"KIWOOM_APPKEY": "A"})
    assert token_provider_from_env("ws://127.0.0.1:1/api/dostk/websocket", {}).renewable


def test_fixed_token_cannot_renew_and_says_so() -> None:
    p = TokenProvider("https://api.kiwoom.com", fixed_token="SECRET-T")
    assert asyncio.run(p.token()) == "SECRET-T"
    with pytest.raises(CredentialsError) as info:
        asyncio.run(p.renew())
    assert "SECRET-T" not in str(info.value) and "KIWOOM_TOKEN" in str(info.value)


def test_token_renews_before_expiry_and_errors_hide_secrets() -> None:
    from kiwoom_tape.replay.server import serve

    async def main() -> None:
        async with serve(None, port=0) as server:
            clock = [time.time()]
            p = TokenProvider(server.rest_url, appkey="APPKEY-X", secretkey="SECRET-Y", now=lambda: clock[0])
            t1 = await p.token()
            assert await p.token() == t1  # still valid: no new request
            clock[0] += 24 * 3600 - 300  # inside the 600 s refresh window
            t2 = await p.token()
            assert t2 != t1
        # server gone: the error names the endpoint, not the secrets
        with pytest.raises(CredentialsError) as info:
            await p.renew()
        text = str(info.value)
        assert "APPKEY-X" not in text and "SECRET-Y" not in text and "token endpoint" in text

    asyncio.run(main())


def test_au10001_response_parsing() -> None:
    body = {"expires_dt": "20241107083713", "token_type": "bearer", "token": "WQJ", "return_code": 0, "return_msg": ""}
    tok = auth.parse_token_response(body)
    assert tok.token == "WQJ" and auth.format_expires_dt(tok.expires_at) == "20241107083713"
    with pytest.raises(CredentialsError):
        auth.parse_token_response({"return_code": 8001, "return_msg": "bad key"})
    with pytest.raises(CredentialsError):
        auth.parse_token_response({"return_code": 0, "token": "x", "expires_dt": "tomorrow"})
