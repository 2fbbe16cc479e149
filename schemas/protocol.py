"""The Kiwoom real-time WebSocket protocol, sans I/O: one import for the envelopes and both session machines.

docs/protocol.md section 1 is the spec. Nothing here touches a socket, a file or an event loop: a driver
feeds received text in with the current monotonic time, asks what to send, and asks for the next
deadline (when to call :meth:`tick`). ``recorder/`` drives :class:`ClientSession`; ``replay/``
drives :class:`ServerSession`; tests drive both against each other with no socket at all.

The code lives along its seams: :mod:`kiwoom_tape.schemas.envelopes` (constants and encoders),
:mod:`kiwoom_tape.schemas.messages` (decoded messages and decoders), :mod:`kiwoom_tape.schemas.server_session` and
:mod:`kiwoom_tape.schemas.client_session`. This module re-exports their public names.

Envelopes (both directions are JSON text frames, key order never matters)::

    client -> server  {"trnm":"LOGIN","token":"..."}
    server -> client  {"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}
    client -> server  {"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930"],"type":["0D"]}]}
    server -> client  {"trnm":"REG","return_code":0,"return_msg":""}          (no data echo)
    client -> server  {"trnm":"REMOVE","grp_no":"1","data":[{"item":["005930"],"type":["0D"]}]}
    server -> client  {"trnm":"PING"}      client echoes it verbatim
    server -> client  {"data":[{"values":{...},"type":"0D","name":"주식호가잔량","item":"005930"}],"trnm":"REAL"}
    server -> client  {"trnm":"SYSTEM","code":"R10002","message":"..."}
"""

from __future__ import annotations

from kiwoom_tape.schemas.client_session import (
    ClientSession,
    ClientState,
    Event,
    LoggedIn,
    LoginRejected,
    PingEchoed,
    RealData,
    RegistrationDone,
    SystemNotice,
    UnexpectedMessage,
)
from kiwoom_tape.schemas.envelopes import (
    AUTH_RETRY_CODES,
    MAX_ITEMS_PER_CONNECTION,
    MOCK_REST_URL,
    MOCK_WS_URL,
    PING_TEXT,
    PROD_REST_URL,
    PROD_WS_URL,
    RC_ERROR,
    RC_ITEM_CAP,
    RC_LOGIN_FAILED,
    RC_OK,
    RC_REG_RATE,
    SYSTEM_KICKED,
    SYSTEM_NO_HEARTBEAT,
    SYSTEM_NO_LOGIN,
    TERMINAL_SYSTEM_CODES,
    WS_PATH,
    ack,
    auth_code_of,
    encode,
    encode_real_frame,
    encode_real_row,
    encode_str,
    is_real_text,
    item_cap_msg,
    login,
    login_failed,
    login_ok,
    reg,
    reg_entries,
    renews_token,
    system,
)
from kiwoom_tape.schemas.messages import (
    Ack,
    Login,
    LoginReply,
    Message,
    Ping,
    Real,
    RealRow,
    Reg,
    Remove,
    Subscription,
    SystemMsg,
    Unknown,
    decode_client_message,
    decode_server_message,
    guess_trnm,
)
from kiwoom_tape.schemas.server_session import ServerConfig, ServerSession, ServerState

__all__ = [
    "AUTH_RETRY_CODES",
    "MAX_ITEMS_PER_CONNECTION",
    "MOCK_REST_URL",
    "MOCK_WS_URL",
    "PING_TEXT",
    "PROD_REST_URL",
    "PROD_WS_URL",
    "RC_ERROR",
    "RC_ITEM_CAP",
    "RC_LOGIN_FAILED",
    "RC_OK",
    "RC_REG_RATE",
    "SYSTEM_KICKED",
    "SYSTEM_NO_HEARTBEAT",
    "SYSTEM_NO_LOGIN",
    "TERMINAL_SYSTEM_CODES",
    "WS_PATH",
    "Ack",
    "ClientSession",
    "ClientState",
    "Event",
    "LoggedIn",
    "Login",
    "LoginRejected",
    "LoginReply",
    "Message",
    "Ping",
    "PingEchoed",
    "Real",
    "RealData",
    "RealRow",
    "Reg",
    "RegistrationDone",
    "Remove",
    "ServerConfig",
    "ServerSession",
    "ServerState",
    "Subscription",
    "SystemMsg",
    "SystemNotice",
    "UnexpectedMessage",
    "Unknown",
    "ack",
    "auth_code_of",
    "decode_client_message",
    "decode_server_message",
    "encode",
    "encode_real_frame",
    "encode_real_row",
    "encode_str",
    "guess_trnm",
    "is_real_text",
    "item_cap_msg",
    "login",
    "login_failed",
    "login_ok",
    "reg",
    "reg_entries",
    "renews_token",
    "system",
]

