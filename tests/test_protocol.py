"""The sans-I/O protocol core, without sockets (docs/protocol.md section 1 and 4.1).

In the style of python-websockets' protocol tests: literal frames go in, and the tests assert the events
that come out and the exact frames queued for sending. :class:`Wire` drives a :class:`ClientSession`
against a :class:`ServerSession` in memory, with an explicit clock (``now``), so pacing, PING cadence and
timeouts are checked without sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kiwoom_tape.schemas import protocol as p
from kiwoom_tape.schemas.errors import KiwoomTapeError, ProtocolError, TooManyItems
from kiwoom_tape.schemas.protocol import (
    Ack,
    ClientSession,
    ClientState,
    Event,
    LoggedIn,
    Login,
    LoginRejected,
    LoginReply,
    Ping,
    PingEchoed,
    Real,
    RealData,
    RealRow,
    RegistrationDone,
    ServerConfig,
    ServerSession,
    ServerState,
    Subscription,
    SystemMsg,
    SystemNotice,
    UnexpectedMessage,
    Unknown,
    decode_client_message,
    decode_server_message,
)

# -- literal frames, as Kiwoom sends them (docs/protocol.md section 1)

LOGIN = '{"trnm":"LOGIN","token":"tok"}'
LOGIN_OK = '{"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}'
REG_OK = '{"trnm":"REG","return_code":0,"return_msg":""}'
REMOVE_OK = '{"trnm":"REMOVE","return_code":0,"return_msg":""}'
REG_RATE = '{"trnm":"REG","return_code":105110,"return_msg":"해당 TRNM 허용 요청 건수 초과"}'
REG_CAP = '{"trnm":"REG","return_code":105115,"return_msg":"등록 허용 개수(200) 초과"}'
PING = '{"trnm":"PING"}'
R10001 = '{"trnm":"SYSTEM","code":"R10001","message":"동일한 App key로 접속이 되었습니다. 기존 세션은 종료가 됩니다"}'
R10002 = (
    '{"trnm":"SYSTEM","code":"R10002",'
    '"message":"사용자 프로그램으로부터 Heartbeat(연결유지) 메시지가 오지않아서 접속을 종료합니다"}'
)
R10004 = '{"trnm":"SYSTEM","code":"R10004","message":"접속허용요청(토큰)이 들어오지 않았습니다"}'

ROW_0D = (
    '{"values":{"21":"165207","41":"-20800","61":"82","81":"0","51":"-20700","71":"23847","91":"0",'
    '"121":"12622527","125":"14453430","215":""},"type":"0D","name":"주식호가잔량","item":"005930"}'
)
ROW_0E = (
    '{"values":{"21":"165208","131":"43955","132":"+156","135":"0","136":"0"},'
    '"type":"0E","name":"주식시간외호가","item":"005930"}'
)
ROW_0B_NX = '{"values":{"20":"135622","10":"+686000","15":"+3"},"type":"0B","name":"주식체결","item":"000810_NX"}'


def reg_text(items: Sequence[str], types: Sequence[str] = ("0D",), *, grp_no: str = "1", refresh: str = "1") -> str:
    body = {"trnm": "REG", "grp_no": grp_no, "refresh": refresh, "data": [{"item": list(items), "type": list(types)}]}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def remove_text(items: Sequence[str], types: Sequence[str] = ("0D",), *, grp_no: str = "1") -> str:
    body = {"trnm": "REMOVE", "grp_no": grp_no, "data": [{"item": list(items), "type": list(types)}]}
    return json.dumps(body, separators=(",", ":"))


def codes(n: int, start: int = 0) -> list[str]:
    return [f"{k:06d}" for k in range(start, start + n)]


def reply(server: ServerSession, text: str | bytes, now: float) -> list[str]:
    server.receive(text, now)
    return server.data_to_send()


def open_server(now: float = 0.0, config: ServerConfig | None = None) -> ServerSession:
    server = ServerSession(config, now=now)
    assert reply(server, LOGIN, now) == [LOGIN_OK]
    return server


def open_client(now: float = 0.0, **kwargs: Any) -> ClientSession:
    client = ClientSession(token="tok", **kwargs)
    client.connect(now)
    assert client.data_to_send() == [LOGIN]
    assert client.receive(LOGIN_OK, now) == [LoggedIn()]
    assert client.state is ClientState.OPEN
    return client


def loads(text: str | bytes) -> dict[str, Any]:
    obj = json.loads(text)
    assert isinstance(obj, dict)
    return obj


class Wire:
    """A ClientSession and a ServerSession joined in memory, with an explicit clock.

    ``pump()`` delivers queued frames both ways until both sides are quiet; ``advance(t)`` runs both
    sides' timers (``next_deadline()``/``tick()``) up to ``t``. Every frame is logged with its send time.
    ``drop_up`` can swallow client frames (e.g. PING echoes) to simulate a deaf client.
    """

    def __init__(
        self,
        client: ClientSession | None = None,
        config: ServerConfig | None = None,
        *,
        now: float = 0.0,
        connect: bool = True,
    ) -> None:
        self.now = now
        self.client = client if client is not None else ClientSession(token="tok")
        self.server = ServerSession(config, now=now)
        self.up: list[tuple[float, str | bytes]] = []
        self.down: list[tuple[float, str]] = []
        self.events: list[Event] = []
        self.drop_up: Callable[[str | bytes], bool] = lambda _: False
        if connect:
            self.client.connect(now)
            self.pump()

    def pump(self) -> list[Event]:
        new: list[Event] = []
        for _ in range(10_000):
            up = self.client.data_to_send()
            for frame in up:
                self.up.append((self.now, frame))
                if not self.drop_up(frame):
                    self.server.receive(frame, self.now)
            down = self.server.data_to_send()
            for frame in down:
                self.down.append((self.now, frame))
                new += self.client.receive(frame, self.now)
            if not up and not down:
                break
        else:
            raise AssertionError("the sessions never went quiet")
        self.events += new
        return new

    def advance(self, until: float) -> list[Event]:
        new: list[Event] = []
        for _ in range(10_000):
            due = [d for d in (self.client.next_deadline(), self.server.next_deadline()) if d is not None]
            due = [d for d in due if d <= until]
            if not due:
                break
            self.now = max(self.now, min(due))
            self.client.tick(self.now)
            self.server.tick(self.now)
            new += self.pump()
        else:
            raise AssertionError("a deadline never moved: tick() does not act at next_deadline()")
        self.now = max(self.now, until)
        return new

    def sent_up(self, trnm: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, loads(f)) for t, f in self.up if loads(f).get("trnm") == trnm]

    def sent_down(self, trnm: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, loads(f)) for t, f in self.down if loads(f).get("trnm") == trnm]


# ==================================================================================================
# Encoding helpers


def test_encode_is_compact_and_keeps_korean_unescaped() -> None:
    assert p.encode({"trnm": "REG", "return_code": 1, "return_msg": "등록 종목수 초과"}) == (
        '{"trnm":"REG","return_code":1,"return_msg":"등록 종목수 초과"}'
    )
    assert p.encode({"b": 1, "a": [1, "x"]}) == '{"b":1,"a":[1,"x"]}'  # key order kept


def test_envelope_builders_emit_the_exact_frames() -> None:
    assert p.login("tok") == LOGIN
    assert p.login_ok() == LOGIN_OK
    assert p.ack("REG") == REG_OK
    assert p.ack("REMOVE") == REMOVE_OK
    assert p.PING_TEXT == PING
    assert p.system(*p.SYSTEM_NO_HEARTBEAT) == R10002
    assert p.login_failed() == (
        '{"trnm":"LOGIN","return_code":805004,'
        '"return_msg":"토큰 인증에 실패했습니다. 접속을 종료합니다 [CODE=8005, MESSAGE=Token이 유효하지 않습니다]"}'
    )
    assert p.reg(["005930", "039490_NX"], ["0D", "0E"]) == (
        '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930","039490_NX"],"type":["0D","0E"]}]}'
    )
    # REMOVE carries no refresh ("해지(REMOVE)시 값 불필요", docs/protocol.md 1.3)
    assert p.reg(["005930"], ["0D"], grp_no="3", trnm="REMOVE") == (
        '{"trnm":"REMOVE","grp_no":"3","data":[{"item":["005930"],"type":["0D"]}]}'
    )


def test_encode_real_row_key_order_is_values_type_name_item() -> None:
    values = p.encode({"21": "165207", "41": "-20800"})
    assert p.encode_real_row("0D", "005930", values) == (
        '{"values":{"21":"165207","41":"-20800"},"type":"0D","name":"주식호가잔량","item":"005930"}'
    )
    assert p.encode_real_row("0E", "005930_AL", "{}") == (
        '{"values":{},"type":"0E","name":"주식시간외호가","item":"005930_AL"}'
    )
    assert p.encode_real_row("zz", "x", "{}") == '{"values":{},"type":"zz","name":"","item":"x"}'
    assert p.encode_real_row("0D", 'a"b', "{}", name="이름") == '{"values":{},"type":"0D","name":"이름","item":"a\\"b"}'


def test_encode_real_frame_shape_data_first_and_round_trip() -> None:
    frame = p.encode_real_frame([ROW_0D, ROW_0E])
    assert frame == '{"data":[' + ROW_0D + "," + ROW_0E + '],"trnm":"REAL"}'
    msg = decode_server_message(frame)
    assert isinstance(msg, Real)
    assert [(r.type, r.name, r.item) for r in msg.rows] == [
        ("0D", "주식호가잔량", "005930"),
        ("0E", "주식시간외호가", "005930"),
    ]
    assert msg.rows[1].values == {"21": "165208", "131": "43955", "132": "+156", "135": "0", "136": "0"}
    assert p.encode_real_frame([]) == '{"data":[],"trnm":"REAL"}'
    assert decode_server_message(p.encode_real_frame([])) == Real(())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"data":[],"trnm":"REAL"}', True),
        ('{"trnm":"REAL","data":[]}', True),  # the official key order (K-SPEC) puts trnm first
        ('{"trnm": "REAL", "data": []}', True),
        (b'{"data":[],"trnm":"REAL"}', True),
        (b'{"trnm":"REAL","data":[]}', True),
        (PING, False),
        (REG_OK, False),
        (LOGIN_OK, False),
        ("", False),
    ],
)
def test_is_real_text(text: str | bytes, expected: bool) -> None:
    assert p.is_real_text(text) is expected


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ("토큰 인증에 실패했습니다 [CODE=8005, MESSAGE=Token이 유효하지 않습니다]", 8005),
        ("[CODE=8103, MESSAGE=...]", 8103),
        ("", None),
        ("CODE=abc", None),
    ],
)
def test_auth_code_of(msg: str, code: int | None) -> None:
    assert p.auth_code_of(msg) == code


# ==================================================================================================
# Decoding: client -> server


def test_decode_client_messages() -> None:
    assert decode_client_message(LOGIN) == Login("tok")
    assert decode_client_message(b'{"token":"t","trnm":"LOGIN"}') == Login("t")
    assert decode_client_message(reg_text(["005930", "039490_NX"], ["0D", "0E"], grp_no="3")) == p.Reg(
        "3", "1", (Subscription(("005930", "039490_NX"), ("0D", "0E")),)
    )
    assert decode_client_message(remove_text(["005930"])) == p.Remove("1", (Subscription(("005930",), ("0D",)),))
    assert decode_client_message(PING) == Ping(PING)
    assert decode_client_message(b'{"trnm":"PING"}') == Ping(PING)
    assert decode_client_message('{"trnm":"CNSRLST"}') == Unknown("CNSRLST", {"trnm": "CNSRLST"})


def test_decode_client_reg_tolerances() -> None:
    # account-level / market-wide types: item [""] or no item at all (docs/protocol.md 1.3)
    msg = decode_client_message('{"trnm":"REG","grp_no":"2","refresh":"1","data":[{"item":[""],"type":["00"]}]}')
    assert isinstance(msg, p.Reg) and msg.data == (Subscription(("",), ("00",)),)
    msg = decode_client_message('{"trnm":"REG","grp_no":"2","refresh":"1","data":[{"item":[],"type":["1h"]}]}')
    assert isinstance(msg, p.Reg) and msg.data == (Subscription(("",), ("1h",)),)
    msg = decode_client_message('{"trnm":"REG","data":[{"type":["1h"]}]}')
    assert msg == p.Reg("1", "1", (Subscription(("",), ("1h",)),))
    # bare strings, as some clients send
    msg = decode_client_message('{"trnm":"REG","grp_no":"1","refresh":"0","data":[{"item":"005930","type":"0D"}]}')
    assert msg == p.Reg("1", "0", (Subscription(("005930",), ("0D",)),))
    # hoga-ops sends refresh on REMOVE too: harmless
    msg = decode_client_message('{"trnm":"REMOVE","grp_no":"1","refresh":"1","data":[{"item":["1"],"type":["0B"]}]}')
    assert msg == p.Remove("1", (Subscription(("1",), ("0B",)),))


# ==================================================================================================
# LOGIN (docs/protocol.md 1.1, 1.2)


def test_login_ok_exact_reply_and_ping_schedule_starts() -> None:
    server = ServerSession(now=100.0)
    assert server.next_deadline() == 110.0  # login_timeout
    assert reply(server, LOGIN, 101.0) == [LOGIN_OK]
    assert server.state is ServerState.OPEN
    assert server.close_request is None
    assert server.next_deadline() == 116.0  # first PING one ping_interval after login


def test_login_as_the_official_sample_client_sends_it() -> None:
    # the seed client json.dumps()-es with default separators and ASCII escapes
    server = ServerSession(now=0.0)
    text = json.dumps({"trnm": "LOGIN", "token": "사용자 AccessToken"})
    assert reply(server, text, 0.0) == [LOGIN_OK]


def test_wire_login_ok() -> None:
    wire = Wire()
    assert wire.up == [(0.0, LOGIN)]
    assert wire.down == [(0.0, LOGIN_OK)]
    assert wire.events == [LoggedIn()]
    assert wire.client.state is ClientState.OPEN
    assert wire.server.state is ServerState.OPEN


def test_login_refused_by_check_token() -> None:
    config = ServerConfig(check_token=lambda token: None if token == "good" else 8005)
    wire = Wire(ClientSession(token="stale"), config)
    assert len(wire.down) == 1
    frame = loads(wire.down[0][1])
    assert frame["trnm"] == "LOGIN"
    assert frame["return_code"] == p.RC_LOGIN_FAILED != 0
    assert "[CODE=8005, " in frame["return_msg"]
    assert wire.server.close_request is not None
    assert wire.server.state is ServerState.CLOSED
    assert wire.events == [LoginRejected(p.RC_LOGIN_FAILED, frame["return_msg"], 8005, True)]
    assert wire.client.state is ClientState.CLOSED
    # a closed server ignores everything and has no timers
    assert reply(wire.server, '{"trnm":"LOGIN","token":"good"}', 1.0) == []
    assert wire.server.next_deadline() is None

    ok = Wire(ClientSession(token="good"), config)
    assert ok.events == [LoggedIn()]


def test_login_refused_with_a_code_that_a_new_token_cannot_fix() -> None:
    wire = Wire(ClientSession(token="t"), ServerConfig(check_token=lambda _: 8001))
    (event,) = wire.events
    assert isinstance(event, LoginRejected)
    assert (event.auth_code, event.renew_token) == (8001, False)


@pytest.mark.parametrize("token", ["", "   "])
def test_empty_token_refused_by_default(token: str) -> None:
    server = ServerSession(now=0.0)
    (frame,) = reply(server, json.dumps({"trnm": "LOGIN", "token": token}), 0.0)
    assert loads(frame)["return_code"] == p.RC_LOGIN_FAILED
    assert "CODE=8005" in loads(frame)["return_msg"]
    assert server.close_request is not None
    assert server.state is ServerState.CLOSED


@pytest.mark.parametrize(
    ("frame", "auth_code", "renew"),
    [
        # the CLI test fixture of docs/protocol.md 1.2, with spaces
        (
            '{"trnm": "LOGIN", "return_code": 805004, '
            '"return_msg": "토큰 인증에 실패했습니다 [CODE=8005, MESSAGE=Token이 유효하지 않습니다]"}',
            8005,
            True,
        ),
        ('{"trnm":"LOGIN","return_code":8031,"return_msg":""}', None, True),
        ('{"trnm":"LOGIN","return_code":1,"return_msg":"[CODE=8103, MESSAGE=x]"}', 8103, True),
        ('{"trnm":"LOGIN","return_code":1,"return_msg":"[CODE=8001, MESSAGE=x]"}', 8001, False),
        ('{"trnm":"LOGIN","return_code":1}', None, False),
    ],
)
def test_client_login_rejected_literal_frames(frame: str, auth_code: int | None, renew: bool) -> None:
    client = ClientSession(token="tok")
    client.connect(0.0)
    (event,) = client.receive(frame, 0.0)
    assert isinstance(event, LoginRejected)
    assert event.return_code == loads(frame)["return_code"]
    assert (event.auth_code, event.renew_token) == (auth_code, renew)
    assert client.state is ClientState.CLOSED
    assert client.data_to_send() == [LOGIN]


def test_client_stray_login_reply_is_kept_not_raised() -> None:
    client = open_client()
    (event,) = client.receive(LOGIN_OK, 1.0)
    assert event == UnexpectedMessage(LOGIN_OK, "LOGIN reply without a LOGIN in flight")
    assert client.state is ClientState.OPEN


@pytest.mark.parametrize(
    "frame",
    [
        reg_text(["005930"]),
        remove_text(["005930"]),
        '{"trnm":"CNSRLST"}',
        '{"trnm":"REAL","data":[]}',
    ],
)
def test_anything_but_login_first_gets_r10004_and_close(frame: str) -> None:
    server = ServerSession(now=0.0)
    assert reply(server, frame, 1.0) == [R10004]
    assert server.state is ServerState.CLOSED
    assert server.close_request == (1000, "")
    assert server.registered == frozenset()
    assert reply(server, LOGIN, 1.5) == []


def test_ping_echo_before_login_is_ignored() -> None:
    server = ServerSession(now=0.0)
    assert server.state is ServerState.AWAIT_LOGIN
    assert reply(server, PING, 1.0) == []
    assert server.state is ServerState.AWAIT_LOGIN
    assert reply(server, LOGIN, 2.0) == [LOGIN_OK]


def test_login_timeout_sends_r10004_and_closes() -> None:
    server = ServerSession(ServerConfig(login_timeout=3.0), now=10.0)
    assert server.next_deadline() == 13.0
    server.tick(12.999)
    assert server.data_to_send() == []
    server.tick(13.0)
    assert server.data_to_send() == [R10004]
    assert server.state is ServerState.CLOSED
    assert server.close_request == (1000, "")
    assert server.next_deadline() is None
    server.tick(100.0)
    assert server.data_to_send() == []


def test_wire_client_that_never_logs_in_gets_terminal_r10004() -> None:
    wire = Wire(connect=False)
    wire.advance(30.0)
    assert wire.down == [(10.0, R10004)]
    assert wire.events == [SystemNotice("R10004", p.SYSTEM_NO_LOGIN[1], True)]
    assert wire.client.state is ClientState.CLOSED
    assert wire.up == []  # a SYSTEM frame is never echoed


def test_second_login_on_an_open_session_is_acknowledged() -> None:
    server = open_server()
    assert reply(server, LOGIN, 1.0) == [LOGIN_OK]
    assert server.state is ServerState.OPEN


# ==================================================================================================
# REG / REMOVE (docs/protocol.md 1.3-1.5, 4.1)


def test_reg_ack_is_exact_and_carries_no_data() -> None:
    server = open_server()
    assert reply(server, reg_text(["005930", "039490_NX"], ["0D", "0E"]), 1.0) == [REG_OK]
    assert server.groups == {
        "1": {("005930", "0D"), ("005930", "0E"), ("039490_NX", "0D"), ("039490_NX", "0E")},
    }
    assert server.wants("039490_NX", "0E")
    assert not server.wants("039490", "0E")  # the venue suffix is part of the code
    assert server.items == {"005930", "039490_NX"}


def test_reg_refresh_1_keeps_and_refresh_0_replaces_the_group() -> None:
    server = open_server()
    assert reply(server, reg_text(["A"]), 1.0) == [REG_OK]
    assert reply(server, reg_text(["B"], refresh="1"), 2.0) == [REG_OK]
    assert server.groups["1"] == {("A", "0D"), ("B", "0D")}
    assert reply(server, reg_text(["C"], ["0E"], refresh="0"), 3.0) == [REG_OK]
    assert server.groups["1"] == {("C", "0E")}
    assert server.registered == {("C", "0E")}


def test_several_groups_are_independent() -> None:
    server = open_server()
    assert reply(server, reg_text(["005930"], ["0B", "0D"], grp_no="1"), 1.0) == [REG_OK]
    assert reply(server, reg_text(["001"], ["0J"], grp_no="3"), 2.0) == [REG_OK]
    assert reply(server, reg_text(["000660"], grp_no="3"), 3.0) == [REG_OK]
    assert server.groups == {
        "1": {("005930", "0B"), ("005930", "0D")},
        "3": {("001", "0J"), ("000660", "0D")},
    }
    # refresh "0" replaces only its own group
    assert reply(server, reg_text(["035720"], grp_no="3", refresh="0"), 4.0) == [REG_OK]
    assert server.groups["1"] == {("005930", "0B"), ("005930", "0D")}
    assert server.groups["3"] == {("035720", "0D")}
    # REMOVE in one group does not touch the other (hoga-ops' reason for using two groups)
    assert reply(server, remove_text(["005930", "035720"], ["0D"], grp_no="1"), 5.0) == [REMOVE_OK]
    assert server.registered == {("005930", "0B"), ("035720", "0D")}
    # the same pair in two groups stays wanted until removed from both
    assert reply(server, reg_text(["035720"], grp_no="1"), 6.0) == [REG_OK]
    assert reply(server, remove_text(["035720"], grp_no="3"), 7.0) == [REMOVE_OK]
    assert server.wants("035720", "0D")
    assert "3" not in server.groups  # an emptied group is dropped
    assert reply(server, remove_text(["035720"], grp_no="1"), 8.0) == [REMOVE_OK]
    assert not server.wants("035720", "0D")


def test_remove_exact_ack_and_unknown_pairs_are_fine() -> None:
    server = open_server()
    assert reply(server, reg_text(["A", "B"], ["0D", "0E"]), 1.0) == [REG_OK]
    assert reply(server, remove_text(["A"], ["0D"]), 2.0) == [REMOVE_OK]
    assert server.registered == {("A", "0E"), ("B", "0D"), ("B", "0E")}
    assert reply(server, remove_text(["Z"], ["0D"], grp_no="9"), 3.0) == [REMOVE_OK]
    assert reply(server, remove_text(["A", "B"], ["0D", "0E"]), 4.0) == [REMOVE_OK]
    assert server.registered == frozenset()
    assert server.groups == {}


def test_account_level_item_does_not_use_item_slots() -> None:
    server = open_server()
    account = '{"trnm":"REG","grp_no":"2","refresh":"1","data":[{"item":[""],"type":["00","04"]}]}'
    assert reply(server, account, 1.0) == [REG_OK]
    assert server.wants("", "00")
    assert reply(server, reg_text(codes(200)), 2.0) == [REG_OK]
    assert len(server.items - {""}) == 200


def test_item_cap_201_distinct_items_refused_and_nothing_applied() -> None:
    server = open_server()
    assert reply(server, reg_text(codes(201)), 1.0) == [REG_CAP]
    assert server.registered == frozenset()
    assert server.groups == {}
    # 200 items x 2 types is still 200 items ("타입 무관")
    assert reply(server, reg_text(codes(200), ["0D", "0E"]), 2.0) == [REG_OK]
    assert len(server.registered) == 400
    # one more item in any group is refused; the refused REG changes nothing
    before = server.registered
    assert reply(server, reg_text(["999999"], grp_no="7"), 3.0) == [REG_CAP]
    assert reply(server, reg_text(["999999"], ["0B"]), 4.0) == [REG_CAP]
    assert server.registered == before
    assert "7" not in server.groups
    # an item already registered can get another type
    assert reply(server, reg_text(["000000"], ["0B"], grp_no="7"), 5.0) == [REG_OK]
    # refresh "0" replaces: 200 other items fit
    assert reply(server, remove_text(["000000"], ["0B"], grp_no="7"), 6.0) == [REMOVE_OK]
    assert reply(server, reg_text(codes(200, start=500), refresh="0"), 7.0) == [REG_OK]
    assert server.items == set(codes(200, start=500))


def test_item_cap_is_configurable() -> None:
    server = open_server(config=ServerConfig(max_items=2))
    assert reply(server, reg_text(["A", "B"]), 1.0) == [REG_OK]
    frame = loads(reply(server, reg_text(["C"]), 2.0)[0])
    assert (frame["trnm"], frame["return_code"]) == ("REG", p.RC_ITEM_CAP)


def test_rate_limit_sixth_reg_within_one_second_gets_105110() -> None:
    server = open_server()
    times = [10.0, 10.1, 10.2, 10.3, 10.4]
    for k, t in enumerate(times):
        assert reply(server, reg_text([f"{k}"]), t) == [REG_OK]
    assert reply(server, reg_text(["refused"]), 10.5) == [REG_RATE]
    assert not server.wants("refused", "0D")
    # REMOVE shares the budget
    assert reply(server, remove_text(["0"]), 10.9) == [
        '{"trnm":"REMOVE","return_code":105110,"return_msg":"해당 TRNM 허용 요청 건수 초과"}'
    ]
    assert server.wants("0", "0D")
    # one second after the first REG, a slot frees up (refused requests do not use slots)
    assert reply(server, reg_text(["later"]), 11.0) == [REG_OK]
    assert reply(server, reg_text(["later2"]), 11.05) == [REG_RATE]
    assert reply(server, reg_text(["later2"]), 11.1) == [REG_OK]


def test_rate_limit_is_configurable() -> None:
    server = open_server(config=ServerConfig(reg_rate=1, reg_window=2.0))
    assert reply(server, reg_text(["A"]), 1.0) == [REG_OK]
    assert reply(server, reg_text(["B"]), 2.9) == [REG_RATE]
    assert reply(server, reg_text(["B"]), 3.0) == [REG_OK]


def test_unknown_type_gets_return_code_1_and_nothing_applied() -> None:
    server = open_server()
    (frame,) = reply(server, reg_text(["005930"], ["0D", "ZZ"]), 1.0)
    body = loads(frame)
    assert (body["trnm"], body["return_code"]) == ("REG", p.RC_ERROR)
    assert set(body) == {"trnm", "return_code", "return_msg"}
    assert server.registered == frozenset()
    (frame,) = reply(server, remove_text(["005930"], ["zz"]), 2.0)
    assert (loads(frame)["trnm"], loads(frame)["return_code"]) == ("REMOVE", p.RC_ERROR)
    # type codes are case-sensitive: "0g" exists, "0G" too, "0S" does not
    assert reply(server, reg_text(["005930"], ["0g", "0G", "0s"]), 3.0) == [REG_OK]
    assert loads(reply(server, reg_text(["005930"], ["0S"]), 4.0)[0])["return_code"] == p.RC_ERROR


def test_reg_does_not_validate_item_codes() -> None:
    server = open_server()  # "garbage codes get return_code 0" (docs/protocol.md 1.4)
    assert reply(server, reg_text(["쓰레기", "!!!"]), 1.0) == [REG_OK]


MALFORMED_REGS = [
    '{"trnm":"REG","grp_no":"1","refresh":"1","data":{"item":["005930"],"type":["0D"]}}',
    '{"trnm":"REG","grp_no":"1","refresh":"1","data":[]}',
    '{"trnm":"REG","grp_no":"1","refresh":"1"}',
    '{"trnm":"REG","grp_no":"1","refresh":"1","data":["005930"]}',
    '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":[5930],"type":["0D"]}]}',
    '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930",null],"type":["0D"]}]}',
    '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":{"a":1},"type":["0D"]}]}',
    '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930"]}]}',
    '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930"],"type":[]}]}',
    '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930"],"type":[13]}]}',
    '{"trnm":"REG","grp_no":"1","refresh":"2","data":[{"item":["005930"],"type":["0D"]}]}',
    '{"trnm":"REG","grp_no":"1","refresh":1,"data":[{"item":["005930"],"type":["0D"]}]}',
    '{"trnm":"REG","grp_no":1,"refresh":"1","data":[{"item":["005930"],"type":["0D"]}]}',
    '{"trnm":"REG","grp_no":null,"refresh":"1","data":[{"item":["005930"],"type":["0D"]}]}',
]


@pytest.mark.parametrize("frame", MALFORMED_REGS)
def test_malformed_reg_gets_error_ack_never_an_exception(frame: str) -> None:
    with pytest.raises(ProtocolError):
        decode_client_message(frame)
    server = open_server()
    assert reply(server, reg_text(["keep"]), 0.5) == [REG_OK]
    (ack,) = reply(server, frame, 1.0)
    body = loads(ack)
    assert (body["trnm"], body["return_code"]) == ("REG", p.RC_ERROR)
    assert isinstance(body["return_msg"], str)
    assert set(body) == {"trnm", "return_code", "return_msg"}
    assert server.state is ServerState.OPEN
    assert server.registered == {("keep", "0D")}
    assert server.protocol_errors == 1
    assert reply(server, reg_text(["next"]), 2.0) == [REG_OK]


@pytest.mark.parametrize(
    "frame",
    [
        '{"trnm":"REMOVE","grp_no":"1","data":"005930"}',
        '{"trnm":"REMOVE","grp_no":"1","data":[{"item":["005930"],"type":"0"}]}'.replace('"0"', "0"),
        '{"trnm":"REMOVE","grp_no":[],"data":[{"item":["005930"],"type":["0D"]}]}',
    ],
)
def test_malformed_remove_gets_error_ack(frame: str) -> None:
    server = open_server()
    (ack,) = reply(server, frame, 1.0)
    assert (loads(ack)["trnm"], loads(ack)["return_code"]) == ("REMOVE", p.RC_ERROR)
    assert server.state is ServerState.OPEN


def test_unknown_trnm_after_login_gets_error_ack() -> None:
    server = open_server()
    assert reply(server, '{"trnm":"CNSRLST"}', 1.0) == [
        '{"trnm":"CNSRLST","return_code":1,"return_msg":"지원하지 않는 서비스입니다"}'
    ]
    assert server.state is ServerState.OPEN


# -- the client side of REG


def test_client_registers_everything_subscribed_before_login() -> None:
    client = ClientSession(token="tok")
    client.subscribe(["005930", "039490_NX"], ["0D", "0E"])
    client.connect(0.0)
    assert client.data_to_send() == [LOGIN]  # no REG before the LOGIN ack
    assert client.next_deadline() is None
    assert client.receive(LOGIN_OK, 0.2) == [LoggedIn()]
    assert client.data_to_send() == [
        '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930","039490_NX"],"type":["0D","0E"]}]}'
    ]
    assert client.registration_pending
    (event,) = client.receive(REG_OK, 0.3)
    assert event == RegistrationDone("REG", ("005930", "039490_NX"), ("0D", "0E"), 0, "", False)
    assert not client.registration_pending
    assert client.data_to_send() == []


def test_client_batches_over_50_items_one_in_flight_spaced_reg_interval() -> None:
    items = codes(120)
    client = open_client(now=0.0)
    client.subscribe(items, ["0D"], now=1.0)
    assert client.data_to_send() == [p.reg(items[:50], ["0D"])]
    assert client.next_deadline() is None  # one in flight: wait for its ack
    client.tick(5.0)
    assert client.data_to_send() == []
    # the ack comes quickly: the next REG waits for reg_interval after the previous send
    assert client.receive(REG_OK, 1.1)[0] == RegistrationDone("REG", tuple(items[:50]), ("0D",), 0, "", False)
    assert client.data_to_send() == []
    assert client.next_deadline() == pytest.approx(1.35)
    client.tick(1.34)
    assert client.data_to_send() == []
    client.tick(1.35)
    assert client.data_to_send() == [p.reg(items[50:100], ["0D"])]
    # the ack comes late: the next REG goes out at once
    client.receive(REG_OK, 3.0)
    assert client.data_to_send() == [p.reg(items[100:], ["0D"])]
    client.receive(REG_OK, 3.1)
    assert client.next_deadline() is None
    assert not client.registration_pending


def test_wire_batches_are_spaced_and_all_applied() -> None:
    client = ClientSession(token="tok", reg_interval=0.35)
    items = codes(160)
    client.subscribe(items, ["0D", "0E"])
    wire = Wire(client)
    wire.advance(10.0)
    regs = wire.sent_up("REG")
    assert [len(r["data"][0]["item"]) for _, r in regs] == [50, 50, 50, 10]
    assert [t for t, _ in regs] == pytest.approx([0.0, 0.35, 0.70, 1.05])
    assert all(r["data"][0]["type"] == ["0D", "0E"] for _, r in regs)
    assert wire.server.registered == {(i, t) for i in items for t in ("0D", "0E")}
    done = [e for e in wire.events if isinstance(e, RegistrationDone)]
    assert len(done) == 4 and all(e.return_code == 0 for e in done)


def test_client_raises_too_many_items_over_200() -> None:
    client = ClientSession(token="tok")
    with pytest.raises(TooManyItems) as info:
        client.subscribe(codes(201), ["0D"])
    assert (info.value.count, info.value.limit) == (201, 200)
    assert isinstance(info.value, KiwoomTapeError)
    assert "several app keys" in str(info.value)
    assert client.subscribed == {}
    client.subscribe(codes(200), ["0D"])
    client.subscribe(codes(200), ["0E"])  # types do not count
    with pytest.raises(TooManyItems):
        client.subscribe(["999999"], ["0D"])
    assert len(client.subscribed) == 400


def test_client_requeues_a_105110_batch_and_retries_after_rate_backoff() -> None:
    client = open_client(now=0.0, rate_backoff=1.0)
    client.subscribe(["005930"], ["0D"], now=0.0)
    (first,) = client.data_to_send()
    # a literal 105110 ack, exactly as hoga-ops measured it
    (event,) = client.receive(REG_RATE, 0.1)
    assert event == RegistrationDone("REG", ("005930",), ("0D",), 105110, "해당 TRNM 허용 요청 건수 초과", True)
    assert client.data_to_send() == []
    assert client.registration_pending
    assert ("005930", "0D") in client.subscribed
    assert client.next_deadline() == pytest.approx(1.1)
    client.tick(1.09)
    assert client.data_to_send() == []
    client.tick(1.1)
    assert client.data_to_send() == [first]
    assert client.receive(REG_OK, 1.2)[0].will_retry is False  # type: ignore[union-attr]


def test_wire_client_paced_too_fast_recovers_from_105110() -> None:
    client = ClientSession(token="tok", reg_batch=10, reg_interval=0.05, rate_backoff=1.0)
    items = codes(200)
    client.subscribe(items, ["0D"])
    wire = Wire(client)
    wire.advance(30.0)
    assert wire.server.items == set(items)
    done = [e for e in wire.events if isinstance(e, RegistrationDone)]
    assert any(e.return_code == p.RC_REG_RATE and e.will_retry for e in done)
    assert sum(e.return_code == 0 for e in done) == 20
    # never more than 5 accepted REGs in any 1-second window, one in flight at a time
    ok_times = [t for t, f in wire.down if f == REG_OK]
    assert all(b - a >= 1.0 for a, b in zip(ok_times, ok_times[5:], strict=False))
    assert not client.registration_pending


@pytest.mark.parametrize("frame", [REG_CAP, '{"trnm":"REG","return_code":1,"return_msg":"등록 종목수 초과"}'])
def test_client_retries_a_refused_reg_later_then_forgets_it(frame: str) -> None:
    client = open_client()
    client.reg_retries = 3
    client.subscribe(["A", "B"], ["0D"], now=0.0)
    (reg_text,) = client.data_to_send()
    now, delays = 0.1, []
    for _attempt in range(3):
        (event,) = client.receive(frame, now)
        assert isinstance(event, RegistrationDone)
        assert event.return_code != 0 and event.will_retry
        assert set(client.subscribed) == {("A", "0D"), ("B", "0D")}
        assert client.data_to_send() == []  # not at once
        due = client.next_deadline()
        assert due is not None
        delays.append(round(due - now, 6))
        client.tick(due)
        assert client.data_to_send() == [reg_text]  # the same batch again
        now = due + 0.1
    assert delays == [1.0, 2.0, 4.0]  # doubling, never a tight loop
    (event,) = client.receive(frame, now)
    assert isinstance(event, RegistrationDone) and not event.will_retry
    assert client.subscribed == {}
    assert client.next_deadline() is None and client.data_to_send() == []


def test_wire_unknown_type_is_refused_and_forgotten() -> None:
    client = ClientSession(token="tok")
    client.subscribe(["005930"], ["0D"])
    wire = Wire(client)
    wire.now = 1.0
    wire.client.subscribe(["005930"], ["XX"], now=1.0)
    wire.pump()
    wire.advance(80.0)  # five retries, 1 + 2 + 4 + 8 + 16 s apart, then forgotten
    done = [e for e in wire.events if isinstance(e, RegistrationDone)]
    assert [(e.types, e.return_code) for e in done] == [(("0D",), 0)] + [(("XX",), 1)] * 6
    assert [e.will_retry for e in done[1:]] == [True] * 5 + [False]
    assert list(wire.client.subscribed) == [("005930", "0D")]
    assert wire.server.registered == {("005930", "0D")}


def test_wire_unsubscribe_sends_remove() -> None:
    client = ClientSession(token="tok", grp_no="3")
    client.subscribe(["A", "B"], ["0D"])
    wire = Wire(client)
    wire.now = 1.0
    wire.client.unsubscribe(["A"], ["0D"], now=1.0)
    wire.pump()
    assert wire.up[-1] == (1.0, '{"trnm":"REMOVE","grp_no":"3","data":[{"item":["A"],"type":["0D"]}]}')
    assert wire.down[-1] == (1.0, REMOVE_OK)
    assert wire.events[-1] == RegistrationDone("REMOVE", ("A",), ("0D",), 0, "", False)
    assert wire.server.groups == {"3": {("B", "0D")}}
    assert list(wire.client.subscribed) == [("B", "0D")]


def test_client_ack_without_request_in_flight_is_unexpected() -> None:
    client = open_client()
    (event,) = client.receive(REG_OK, 1.0)
    assert isinstance(event, UnexpectedMessage) and event.text == REG_OK
    client.subscribe(["A"], ["0D"], now=1.0)
    (event,) = client.receive(REMOVE_OK, 1.1)  # wrong trnm for what is in flight
    assert isinstance(event, UnexpectedMessage)
    assert client.registration_pending
    assert isinstance(client.receive(REG_OK, 1.2)[0], RegistrationDone)


def test_client_closed_clears_pending_and_reconnect_re_registers() -> None:
    client = open_client()
    client.subscribe(codes(120), ["0D"], now=0.0)
    client.data_to_send()
    client.closed()
    assert client.state is ClientState.CLOSED
    assert not client.registration_pending
    assert client.next_deadline() is None
    wire = Wire(client, now=100.0)
    wire.advance(110.0)
    assert wire.server.items == set(codes(120))


def test_client_has_no_deadline_once_the_server_said_goodbye() -> None:
    client = open_client()
    client.subscribe(codes(120), ["0D"], now=0.0)
    client.data_to_send()
    client.receive(REG_OK, 0.1)
    assert client.next_deadline() == pytest.approx(0.35)
    client.receive(R10002, 0.2)
    assert client.state is ClientState.CLOSED
    assert client.next_deadline() is None  # else a driver would spin: tick() sends nothing when closed
    client.tick(1.0)
    assert client.data_to_send() == []


# ==================================================================================================
# PING (docs/protocol.md 1.6, 4.1)


def test_server_pings_every_interval_after_login() -> None:
    server = open_server(now=3.0, config=ServerConfig(ping_interval=10.0))
    assert server.next_deadline() == 13.0
    server.tick(12.0)
    assert server.data_to_send() == []
    server.tick(13.0)
    assert server.data_to_send() == [PING]
    assert server.next_deadline() == 23.0
    assert reply(server, PING, 13.5) == []  # an echo gets no answer
    server.tick(23.0)
    assert server.data_to_send() == [PING]


@pytest.mark.parametrize(
    "frame",
    [
        PING,
        '{"trnm": "PING"}',
        '{ "trnm" : "PING" ,"time":"20260716101500", "seq": 7 }',
        '{"seq":1,"trnm":"PING"}',
        b'{"trnm":"PING"}',
        '{"trnm":"PING","msg":"한글"}',
    ],
)
def test_client_echoes_ping_verbatim(frame: str | bytes) -> None:
    client = open_client()
    events = client.receive(frame, 1.0)
    text = frame if isinstance(frame, str) else frame.decode()
    assert events == [PingEchoed(text)]
    sent = client.data_to_send()
    assert sent == [frame]
    assert type(sent[0]) is type(frame)


def test_client_echoes_ping_even_before_login_ack() -> None:
    client = ClientSession(token="tok")
    client.connect(0.0)
    client.data_to_send()
    assert client.receive(PING, 0.5) == [PingEchoed(PING)]
    assert client.data_to_send() == [PING]
    assert client.state is ClientState.LOGIN_SENT


def test_wire_with_echoes_stays_open_past_five_intervals() -> None:
    wire = Wire(config=ServerConfig(ping_interval=15.0))
    wire.advance(15.0 * 12 + 1)
    assert wire.server.state is ServerState.OPEN
    assert wire.client.state is ClientState.OPEN
    pings_down = [t for t, f in wire.down if f == PING]
    assert pings_down == [15.0 * k for k in range(1, 13)]
    assert [t for t, f in wire.up if f == PING] == pings_down
    assert [e for e in wire.events if not isinstance(e, PingEchoed)] == [LoggedIn()]


def test_server_closes_after_five_unanswered_pings_at_the_sixth_due_time() -> None:
    server = open_server(now=0.0, config=ServerConfig(ping_interval=15.0))
    sent: list[tuple[float, str]] = []
    t = 0.0
    while server.next_deadline() is not None:
        t = server.next_deadline()  # type: ignore[assignment]
        server.tick(t)
        sent += [(t, f) for f in server.data_to_send()]
    assert sent == [(15.0, PING), (30.0, PING), (45.0, PING), (60.0, PING), (75.0, PING), (90.0, R10002)]
    assert server.state is ServerState.CLOSED
    assert server.close_request == (1000, "")


def test_wire_deaf_client_gets_terminal_r10002() -> None:
    wire = Wire(config=ServerConfig(ping_interval=10.0))
    wire.drop_up = lambda frame: frame == PING
    wire.advance(100.0)
    assert [(t, f) for t, f in wire.down if f != LOGIN_OK] == [
        (10.0, PING),
        (20.0, PING),
        (30.0, PING),
        (40.0, PING),
        (50.0, PING),
        (60.0, R10002),
    ]
    assert wire.events[-1] == SystemNotice("R10002", p.SYSTEM_NO_HEARTBEAT[1], True)
    assert wire.client.state is ClientState.CLOSED
    assert wire.server.close_request == (1000, "")


def test_one_echo_resets_the_missed_count() -> None:
    server = open_server(config=ServerConfig(ping_interval=1.0, max_missed_pings=5))
    for t in (1.0, 2.0, 3.0, 4.0):
        server.tick(t)
        assert server.data_to_send() == [PING]
    # the official sample client echoes json.dumps(response): spaces, not verbatim; still counts
    assert reply(server, '{"trnm": "PING"}', 4.5) == []
    for t in (5.0, 6.0, 7.0, 8.0, 9.0):
        server.tick(t)
        assert server.data_to_send() == [PING]
    server.tick(10.0)
    assert server.data_to_send() == [R10002]


# ==================================================================================================
# REAL (docs/protocol.md 1.7)

OFFICIAL_0D_VALUES = {
    "21": "165207",
    "41": "-20800", "61": "82", "81": "0", "51": "-20700", "71": "23847", "91": "0",
    "42": "+20900", "62": "393", "82": "0", "52": "-20650", "72": "834748", "92": "0",
    "121": "12622527", "122": "-1036021", "125": "14453430", "126": "+1062126",
    "23": "20850", "24": "332941", "128": "+1830903", "129": "114.51",
    "13": "30379650", "299": "-1.06", "215": "", "216": "",
}  # fmt: skip


def test_decode_official_0d_frame_trnm_first() -> None:
    text = json.dumps(
        {
            "trnm": "REAL",
            "data": [{"type": "0D", "name": "주식호가잔량", "item": "005930", "values": OFFICIAL_0D_VALUES}],
        },
        ensure_ascii=False,
        indent=4,
    )
    msg = decode_server_message(text)
    assert msg == Real((RealRow("0D", "주식호가잔량", "005930", OFFICIAL_0D_VALUES),))
    assert list(msg.rows[0].values) == list(OFFICIAL_0D_VALUES)  # key order kept


def test_decode_measured_frame_data_first_several_rows_and_types() -> None:
    text = '{"data":[' + ROW_0D + "," + ROW_0B_NX + "," + ROW_0E + '],"trnm":"REAL"}'
    msg = decode_server_message(text.encode())
    assert isinstance(msg, Real)
    assert [(r.type, r.item) for r in msg.rows] == [("0D", "005930"), ("0B", "000810_NX"), ("0E", "005930")]
    assert msg.rows[1].values == {"20": "135622", "10": "+686000", "15": "+3"}
    assert msg.rows[0].values["215"] == ""


def test_decode_real_tolerates_missing_name_and_extra_keys() -> None:
    msg = decode_server_message('{"trnm":"REAL","x":1,"data":[{"type":"0D","item":"1","values":{},"y":[]}]}')
    assert msg == Real((RealRow("0D", "", "1", {}),))
    msg = decode_server_message('{"trnm":"REAL","data":[{"type":"0D","name":7,"item":"1","values":{}}]}')
    assert msg == Real((RealRow("0D", "", "1", {}),))


@pytest.mark.parametrize(
    "frame",
    [
        '{"trnm":"REAL"}',
        '{"trnm":"REAL","data":null}',
        '{"trnm":"REAL","data":{"type":"0D","item":"1","values":{}}}',
        '{"trnm":"REAL","data":["0D"]}',
        '{"trnm":"REAL","data":[{"item":"1","values":{}}]}',
        '{"trnm":"REAL","data":[{"type":"0D","values":{}}]}',
        '{"trnm":"REAL","data":[{"type":"0D","item":"1"}]}',
        '{"trnm":"REAL","data":[{"type":"0D","item":"1","values":[]}]}',
        '{"trnm":"REAL","data":[{"type":"0D","item":"1","values":"21=1"}]}',
        '{"trnm":"REAL","data":[{"type":13,"item":"1","values":{}}]}',
        '{"trnm":"REAL","data":[{"type":"0D","item":1,"values":{}}]}',
        '{"data":[{"type":"0D","item":"1","values":{}},{"type":"0D","values":{}}],"trnm":"REAL"}',
    ],
)
def test_decode_real_with_a_bad_row_raises_protocol_error(frame: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_server_message(frame)
    assert info.value.excerpt == (frame[:80] + ("..." if len(frame) > 80 else ""))
    (event,) = open_client().receive(frame, 1.0)
    assert isinstance(event, UnexpectedMessage) and event.text == frame


@pytest.mark.parametrize("as_bytes", [False, True])
def test_client_returns_real_data_with_the_verbatim_text(as_bytes: bool) -> None:
    text = '{"data":[' + ROW_0D + "," + ROW_0E + '],"trnm":"REAL"}'
    frame: str | bytes = text.encode() if as_bytes else text
    client = open_client()
    (event,) = client.receive(frame, 1.0)
    assert isinstance(event, RealData)
    assert event.text is frame
    assert [r.item for r in event.rows] == ["005930", "005930"]
    assert client.data_to_send() == []  # REAL is never answered


def test_wire_server_real_frame_reaches_client() -> None:
    wire = Wire()
    row = p.encode_real_row("0D", "005930", p.encode(OFFICIAL_0D_VALUES))
    frame = p.encode_real_frame([row])
    events = wire.client.receive(frame, 1.0)
    assert events == [RealData(frame, (RealRow("0D", "주식호가잔량", "005930", OFFICIAL_0D_VALUES),))]


# ==================================================================================================
# SYSTEM and kick (docs/protocol.md 1.8, 1.9)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (R10001, "R10001"),
        (R10002, "R10002"),
        (R10004, "R10004"),
        ('{"trnm":"SYSTEM","code":"R10004","message":"접속허용요청이 들어오지 않았습니다"}', "R10004"),
    ],
)
def test_terminal_system_codes(frame: str, code: str) -> None:
    client = open_client()
    (event,) = client.receive(frame, 1.0)
    assert event == SystemNotice(code, loads(frame)["message"], True)
    assert client.state is ClientState.CLOSED
    assert client.data_to_send() == []  # echoing SYSTEM made the server close (V71): never echo it


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ('{"trnm":"SYSTEM","code":"R10003","message":"안내"}', "R10003", "안내"),
        ('{"trnm":"SYSTEM","return_code":"0","return_msg":"정상 처리"}', "0", "정상 처리"),  # V71 variant
        ('{"trnm":"SYSTEM","return_code":0,"return_msg":""}', "0", ""),
        ('{"trnm":"SYSTEM"}', "", ""),
    ],
)
def test_other_system_frames_are_not_terminal(frame: str, code: str, message: str) -> None:
    assert decode_server_message(frame) == SystemMsg(code, message)
    client = open_client()
    assert client.receive(frame, 1.0) == [SystemNotice(code, message, False)]
    assert client.state is ClientState.OPEN
    assert client.data_to_send() == []


def test_system_between_login_ack_and_reg_ack() -> None:
    # "prod 실측 순서: LOGIN ack -> SYSTEM -> REG ack" (docs/protocol.md 1.2)
    client = ClientSession(token="tok")
    client.subscribe(["005930"], ["0D"])
    client.connect(0.0)
    client.receive(LOGIN_OK, 0.1)
    client.data_to_send()
    assert client.receive('{"trnm":"SYSTEM","return_code":"0","return_msg":"x"}', 0.2) == [
        SystemNotice("0", "x", False)
    ]
    (event,) = client.receive(REG_OK, 0.3)
    assert isinstance(event, RegistrationDone) and event.return_code == 0


def test_kick_sends_r10001_and_close_1000_bye() -> None:
    server = open_server()
    server.tick(15.0)
    server.data_to_send()
    server.kick()
    assert server.data_to_send() == [R10001]
    assert server.close_request == (1000, "Bye")
    assert server.state is ServerState.CLOSED
    assert server.next_deadline() is None
    server.kick()
    server.tick(1000.0)
    assert reply(server, LOGIN, 1000.0) == []
    assert server.close_request == (1000, "Bye")


def test_kick_before_login() -> None:
    server = ServerSession(now=0.0)
    server.kick()
    assert server.data_to_send() == [R10001]
    assert server.close_request == (1000, "Bye")


def test_wire_kick_is_terminal_for_the_client() -> None:
    wire = Wire()
    wire.server.kick()
    assert wire.pump() == [SystemNotice("R10001", p.SYSTEM_KICKED[1], True)]
    assert wire.client.state is ClientState.CLOSED


# ==================================================================================================
# Decoding server -> client: envelopes other than REAL


def test_decode_server_envelopes() -> None:
    assert decode_server_message(LOGIN_OK) == LoginReply(0, "")
    assert decode_server_message(REG_OK) == Ack("REG", 0, "")
    assert decode_server_message(REMOVE_OK) == Ack("REMOVE", 0, "")
    assert decode_server_message(REG_RATE) == Ack("REG", 105110, "해당 TRNM 허용 요청 건수 초과")
    assert decode_server_message('{"trnm":"REG","return_code":"0"}') == Ack("REG", 0, "")
    assert decode_server_message('{"trnm":"REG","return_code":" -1 "}') == Ack("REG", -1, "")
    assert decode_server_message(PING) == Ping(PING)
    assert decode_server_message('{"trnm":"CNSRLST","data":[]}') == Unknown("CNSRLST", {"trnm": "CNSRLST", "data": []})


@pytest.mark.parametrize(
    "frame",
    [
        '{"trnm":"LOGIN"}',
        '{"trnm":"LOGIN","return_code":null}',
        '{"trnm":"LOGIN","return_code":true}',
        '{"trnm":"LOGIN","return_code":0.5}',
        '{"trnm":"REG","return_code":"abc"}',
        '{"trnm":"REG","return_code":"²"}',  # str.isdigit() but not int()-able
        '{"trnm":"REG","return_code":"--5"}',
        '{"trnm":"REG","return_code":"\\u0661"}',  # Arabic-Indic digit one
        '{"trnm":"REG","return_code":"' + "9" * 5000 + '"}',  # int() refuses > 4300 digits
        '{"trnm":"REMOVE","return_code":[]}',
    ],
)
def test_bad_return_code_is_a_protocol_error(frame: str) -> None:
    with pytest.raises(ProtocolError):
        decode_server_message(frame)
    client = open_client()
    client.subscribe(["A"], ["0D"], now=0.0)
    (event,) = client.receive(frame, 0.1)
    assert isinstance(event, UnexpectedMessage)


@pytest.mark.parametrize(
    "frame",
    [
        "",
        " ",
        "null",
        "[]",
        '"trnm"',
        "{}",
        '{"trnm":null}',
        '{"trnm":5}',
        '{"trnm":["PING"]}',
        '{"trnm":"PING"',
        '{"trnm":"PING"}{"trnm":"PING"}',
        "{'trnm': 'PING'}",  # the Python-repr style of the printed docs is not JSON
        "PING",
        b"\xff\xfe",
        b'{"trnm":"PING","x":"\xff"}',
        '{"trnm":"PING","x":"\ud800"}',  # a str with a lone surrogate cannot be UTF-8
        '{"trnm":"\\ud800"}',
        '{"trnm":"PING","n":1e999}',
    ],
)
def test_garbage_is_a_protocol_error_in_both_directions(frame: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_server_message(frame)
    with pytest.raises(ProtocolError):
        decode_client_message(frame)


# ==================================================================================================
# Bad input: whatever arrives, decoders raise only ProtocolError and sessions never raise

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["0", "1", "2", " 0", "-0", "²", "0D", "005930", "R10001", "R10002", "R10004", ""])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
TRNMS = st.sampled_from(["LOGIN", "REG", "REMOVE", "PING", "REAL", "SYSTEM", "CNSRLST", "", "real"])
KEYS = ["token", "grp_no", "refresh", "data", "return_code", "return_msg", "sor_yn", "code", "message"]
ROWS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["0D", "0E", "ZZ"]) | JSON_VALUES,
        "name": JSON_VALUES,
        "item": st.sampled_from(["005930", "", "039490_NX"]) | JSON_VALUES,
        "values": st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=4) | JSON_VALUES,
    },
)
ENTRIES = st.fixed_dictionaries(
    {},
    optional={
        "item": st.lists(st.sampled_from(["005930", "", "A"]) | JSON_VALUES, max_size=3) | JSON_VALUES,
        "type": st.lists(st.sampled_from(["0D", "0E", "00", "ZZ"]) | JSON_VALUES, max_size=3) | JSON_VALUES,
    },
)
ENVELOPES = st.fixed_dictionaries(
    {"trnm": TRNMS | JSON_VALUES},
    optional={k: JSON_VALUES for k in KEYS}
    | {"data": st.lists(ROWS | ENTRIES | JSON_VALUES, max_size=3) | JSON_VALUES},
)


def _dump(obj: Any, ascii_: bool) -> str:
    return json.dumps(obj, ensure_ascii=ascii_)


FRAMES: st.SearchStrategy[str | bytes] = st.one_of(
    st.text(),
    st.binary(),
    st.builds(_dump, JSON_VALUES, st.booleans()),
    st.builds(_dump, ENVELOPES, st.booleans()),
    st.builds(_dump, ENVELOPES, st.booleans()).map(str.encode),
    st.builds(_dump, ENVELOPES, st.booleans()).map(lambda s: s[: len(s) // 2]),
)

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_or_protocol_error(decode: Callable[[str | bytes], p.Message], frame: str | bytes) -> None:
    try:
        msg = decode(frame)
    except ProtocolError as exc:
        assert isinstance(exc.reason, str) and isinstance(exc.excerpt, str)
        return
    assert isinstance(msg, Login | p.Reg | p.Remove | Ping | LoginReply | Ack | Real | SystemMsg | Unknown)


@PROPERTY
@given(FRAMES)
def test_decoders_return_a_message_or_raise_protocol_error(frame: str | bytes) -> None:
    _decode_or_protocol_error(decode_client_message, frame)
    _decode_or_protocol_error(decode_server_message, frame)


@PROPERTY
@given(FRAMES)
def test_server_never_raises_and_keeps_working_after_garbage(frame: str | bytes) -> None:
    # garbage before LOGIN: at worst the session closes (R10004) or logs in; it never raises
    early = ServerSession(now=0.0)
    early.receive(frame, 0.5)
    early.data_to_send()
    if early.state is ServerState.AWAIT_LOGIN:
        assert reply(early, LOGIN, 1.0) == [LOGIN_OK]
        assert reply(early, reg_text(["005930"], grp_no="zz"), 2.0) == [REG_OK]

    # garbage after LOGIN never closes the session, and the next REG still works
    server = open_server()
    server.receive(frame, 0.5)
    for out in server.data_to_send():
        body = loads(out)
        assert isinstance(body.get("trnm"), str)
    assert server.state is ServerState.OPEN
    assert reply(server, reg_text(["005930"], grp_no="zz"), 5.0) == [REG_OK]
    assert server.wants("005930", "0D")
    server.tick(15.0)
    assert server.data_to_send() == [PING]


@PROPERTY
@given(FRAMES)
def test_client_never_raises_on_garbage(frame: str | bytes) -> None:
    fresh = ClientSession(token="tok")
    fresh.connect(0.0)
    for event in fresh.receive(frame, 0.1):
        assert isinstance(event, LoggedIn | LoginRejected | PingEchoed | RealData | SystemNotice | UnexpectedMessage)

    client = open_client()
    client.subscribe(["005930"], ["0D"], now=0.0)
    client.data_to_send()
    events = client.receive(frame, 0.1)
    assert isinstance(events, list)
    for out in client.data_to_send():
        assert out is frame  # the only thing garbage can make the client send is a PING echo
    if client.state is ClientState.OPEN:
        client.receive(PING, 0.2)
        assert client.data_to_send() == [PING]


def _nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


@pytest.mark.parametrize(
    "frame",
    [
        _nested(10_000),
        _nested(10_000, '{"a":', "}"),
        '{"trnm":"REAL","data":' + _nested(10_000) + "}",
        '{"trnm":"REG","grp_no":"1","refresh":"1","data":' + _nested(10_000) + "}",
        '{"trnm":"LOGIN","token":' + _nested(10_000, '{"a":', "}") + "}",
        "[" * 100_000,
    ],
)
def test_deeply_nested_json_is_a_protocol_error_or_message(frame: str) -> None:
    _decode_or_protocol_error(decode_client_message, frame)
    _decode_or_protocol_error(decode_server_message, frame)
    server = open_server()
    server.receive(frame, 0.5)
    server.data_to_send()
    assert reply(server, reg_text(["A"]), 1.0) == [REG_OK]
    client = open_client()
    assert isinstance(client.receive(frame, 1.0)[0], UnexpectedMessage)


@pytest.mark.parametrize("depth", [10, 100, 400, 700, 900, 990, 1000, 1100, 2000])
def test_nested_values_inside_valid_envelopes_at_every_depth(depth: int) -> None:
    # values that decode fine but are turned into text afterwards (return_msg, SYSTEM code/message)
    for frame in (
        '{"trnm":"LOGIN","return_code":1,"return_msg":' + _nested(depth) + "}",
        '{"trnm":"REG","return_code":0,"return_msg":' + _nested(depth, '{"a":', "}") + "}",
        '{"trnm":"SYSTEM","code":' + _nested(depth) + ',"message":' + _nested(depth) + "}",
        '{"trnm":"CNSRLST","x":' + _nested(depth) + "}",
    ):
        _decode_or_protocol_error(decode_server_message, frame)
        client = ClientSession(token="tok")
        client.connect(0.0)
        client.receive(frame, 0.1)
        server = open_server()
        server.receive(frame, 0.5)
        server.data_to_send()


def test_huge_strings() -> None:
    big = "가" * 2_000_000
    token_login = '{"trnm":"LOGIN","token":"' + big + '"}'
    server = ServerSession(now=0.0)
    assert reply(server, token_login, 0.1) == [LOGIN_OK]
    (ack,) = reply(server, '{"trnm":"' + big + '"}', 0.2)
    assert len(ack) < 200  # the error reply does not echo the huge trnm
    assert reply(server, reg_text(["A"]), 0.3) == [REG_OK]

    with pytest.raises(ProtocolError) as info:
        decode_server_message(big)
    assert len(info.value.excerpt) == 83
    with pytest.raises(ProtocolError):
        decode_server_message(b"\xff" * 3_000_000)

    real = '{"data":[{"type":"0D","name":"' + big + '","item":"A","values":{"21":"' + big + '"}}],"trnm":"REAL"}'
    (event,) = open_client().receive(real, 1.0)
    assert isinstance(event, RealData) and event.rows[0].values["21"] == big


def test_lone_surrogate_str_never_escapes_as_unicode_error() -> None:
    frame = '{"trnm":"\ud800x"}'
    server = open_server()
    server.receive(frame, 0.5)
    (out,) = server.data_to_send()
    assert loads(out)["return_code"] == p.RC_ERROR
    (event,) = open_client().receive('{"trnm":"PING","x":"\udcff"}', 0.5)
    assert isinstance(event, UnexpectedMessage)


@PROPERTY
@given(st.text(alphabet=st.characters(codec=None, categories=None), max_size=30))
def test_any_str_including_surrogates(garbage: str) -> None:
    for frame in (garbage, '{"trnm":"PING","x":"' + garbage + '"}', '{"trnm":"' + garbage + '"}'):
        _decode_or_protocol_error(decode_client_message, frame)
        _decode_or_protocol_error(decode_server_message, frame)
        server = open_server()
        server.receive(frame, 0.5)
        server.data_to_send()
        open_client().receive(frame, 0.5)


# REMOVE in the forms real clients send (issue 11 item 4; docs/protocol.md 1.3-1.5)


def test_remove_with_only_grp_no_removes_the_whole_group_and_leaves_the_others() -> None:
    server = open_server()
    assert reply(server, reg_text(["005930", "000660"], ["0D", "0E"], grp_no="1"), 1.0) == [REG_OK]
    assert reply(server, reg_text(["001"], ["0J"], grp_no="3"), 2.0) == [REG_OK]
    assert decode_client_message('{"trnm":"REMOVE","grp_no":"1"}') == p.Remove("1", None)
    assert reply(server, '{"trnm":"REMOVE","grp_no":"1"}', 3.0) == [REMOVE_OK]
    assert server.groups == {"3": {("001", "0J")}}
    assert server.registered == {("001", "0J")}
    # "data": null is the same; a group that has nothing is still answered with success
    assert reply(server, '{"trnm":"REMOVE","grp_no":"3","data":null}', 4.0) == [REMOVE_OK]
    assert server.registered == frozenset()
    assert reply(server, '{"trnm":"REMOVE","grp_no":"9"}', 5.0) == [REMOVE_OK]


def test_remove_with_a_type_and_no_item_removes_that_type_for_the_groups_items() -> None:
    server = open_server()
    assert reply(server, reg_text(["005930", "000660"], ["0D", "0E"], grp_no="1"), 1.0) == [REG_OK]
    assert reply(server, reg_text(["035720"], ["0D"], grp_no="2"), 2.0) == [REG_OK]
    text = '{"trnm":"REMOVE","grp_no":"1","data":[{"type":["0D"]}]}'
    assert decode_client_message(text) == p.Remove("1", (Subscription((), ("0D",)),))
    assert reply(server, text, 3.0) == [REMOVE_OK]
    assert server.groups == {"1": {("005930", "0E"), ("000660", "0E")}, "2": {("035720", "0D")}}
    # a bare string type, and an explicit item list alongside, in one REMOVE
    text = '{"trnm":"REMOVE","grp_no":"1","data":[{"type":"0E"},{"item":["035720"],"type":["0D"]}]}'
    assert reply(server, text, 4.0) == [REMOVE_OK]
    assert server.groups == {"2": {("035720", "0D")}}


def test_remove_still_refuses_what_is_really_malformed() -> None:
    server = open_server()
    assert reply(server, reg_text(["005930"], ["0D"]), 1.0) == [REG_OK]
    for k, text in enumerate([
        '{"trnm":"REMOVE","grp_no":"1","data":"nope"}',
        '{"trnm":"REMOVE","grp_no":"1","data":[]}',
        '{"trnm":"REMOVE","grp_no":"1","data":[{"item":["005930"]}]}',
        '{"trnm":"REMOVE","grp_no":"1","data":[{"type":["ZZ"]}]}',
        '{"trnm":"REMOVE","grp_no":1}',
        '{"trnm":"REMOVE","grp_no":"1","data":[["005930"]]}',
    ]):
        (frame,) = reply(server, text, 2.0 + k)
        assert (loads(frame)["trnm"], loads(frame)["return_code"]) == ("REMOVE", p.RC_ERROR), text
    assert server.registered == {("005930", "0D")}
